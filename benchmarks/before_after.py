"""Is netfit slower than it was? The CPU benchmarks of two checkouts, run alternately on one machine.

Each round runs, for the earlier checkout and then this one, in fresh processes and each with its
own copy of the scripts: ``cpu_epoch.py`` (netfit against the hand-written loop on mnist-sample)
and ``compare.py --device cpu --only netfit`` (Fashion-MNIST, batch 64). Alternating rounds let
drift in the machine's speed hit both alike; the medians over rounds are compared. Both
checkouts train the same trajectory, so their test accuracies must agree exactly: a difference
means the change altered training, not only its speed.

    git worktree add /tmp/netfit-before <commit>
    .venv/bin/python benchmarks/before_after.py /tmp/netfit-before [--rounds 5] [--epochs 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _run(tree: Path, script: str, args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run([sys.executable, str(tree / "benchmarks" / script), *args], env=env, capture_output=True,
                          text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{tree}/benchmarks/{script} failed: {done.stderr[-2000:]}")
    return done.stdout


def cpu_epoch(tree: Path) -> float:
    out = _run(tree, "cpu_epoch.py", [])
    return float(re.search(r"^netfit:\s+([0-9.]+) s/epoch", out, re.M).group(1))


def compare(tree: Path, epochs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "out.json"
        _run(tree, "compare.py", ["--device", "cpu", "--batch-size", "64", "--epochs", str(epochs),
                                  "--target", "0.86", "--only", "netfit", "--json", str(result)])
        rows = json.loads(result.read_text())
    netfit = rows["runs"][0]["results"]["netfit"]
    return float(netfit["s_per_epoch"]), float(netfit["test_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path, help="a checkout of the earlier commit (git worktree add DIR COMMIT)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5, help="compare.py epochs per run")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": HERE}
    seen: dict[str, dict[str, list[float]]] = {k: {"cpu_epoch": [], "compare": [], "acc": []} for k in trees}
    for round_ in range(1, args.rounds + 1):
        for name, tree in trees.items():
            seen[name]["cpu_epoch"].append(cpu_epoch(tree))
            seconds, accuracy = compare(tree, args.epochs)
            seen[name]["compare"].append(seconds)
            seen[name]["acc"].append(accuracy)
            print(f"round {round_} {name:6s} cpu_epoch {seen[name]['cpu_epoch'][-1]:.3f} s/epoch   "
                  f"compare {seconds:.3f} s/epoch, test acc {accuracy:.4f}", flush=True)
    print()
    for bench in ("cpu_epoch", "compare"):
        before, after = (statistics.median(seen[k][bench]) for k in trees)
        print(f"{bench:9s} median s/epoch: before {before:.3f}, after {after:.3f}, after/before {after / before:.2f}")
    same = seen["before"]["acc"] == seen["after"]["acc"]
    print(f"test accuracies {'identical' if same else 'DIFFER'}: {sorted(set(seen['before']['acc'] + seen['after']['acc']))}")
    if args.json:
        args.json.write_text(json.dumps({"before": str(trees["before"]), "rounds": args.rounds,
                                         "epochs": args.epochs, "runs": seen}, indent=1))


if __name__ == "__main__":
    main()
