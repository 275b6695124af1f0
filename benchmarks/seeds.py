"""Test accuracy (or R^2) and time of shipped specs over several seeds, in fp32 and bf16.

Each run is ``netfit train SPEC --set train.seed=S --set train.precision=P`` in a fresh process,
as a user runs it. ``wall_s`` is the whole command (start-up, reading the data, training, the
test evaluation, writing the run); ``train_s`` is the sum of the epochs' times in metrics.csv.
Two uses in docs/benchmarks.md:

- is bf16 as accurate as fp32 on the shipped specs (same epochs, paired by seed)?

    .venv/bin/python benchmarks/seeds.py configs/*.toml --seeds 0,1,2 --precision fp32,bf16 \\
        --json benchmarks/results/cpu-bf16-accuracy.json

- what does ``configs/fashion-mnist-best.toml`` reach, and in what time?

    .venv/bin/python benchmarks/seeds.py configs/fashion-mnist-best.toml --seeds 0,1,2 --precision auto \\
        --json benchmarks/results/cpu-fashion-mnist-best.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _train(spec: Path, seed: int, precision: str, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(HERE / "src")}
    args = [sys.executable, "-m", "netfit", "train", str(spec), "--set", f"train.seed={seed}", "--set",
            f"train.precision={precision}", "--out", str(out), "--json", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=6 * 3600, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    metrics = result["metrics"]
    with open(Path(result["run_dir"]) / "metrics.csv", newline="") as f:
        train_s = sum(float(row["epoch_time_s"]) for row in csv.DictReader(f))
    name = "test_accuracy" if "test_accuracy" in metrics else "test_r2"
    return {"spec": str(spec), "seed": seed, "precision": precision, "metric": name, "value": metrics[name],
            "epochs": metrics["epochs"], "wall_s": round(wall, 2), "train_s": round(train_s, 2)}


def _table(runs: list[dict], precisions: list[str]) -> str:
    """One row per spec: each precision's values by seed, their mean, and the paired difference."""
    lines = []
    head = ["spec", "metric"] + [f"{p} by seed (mean)" for p in precisions] + [f"{p} wall s (mean)" for p in precisions]
    if len(precisions) == 2:
        head.append(f"{precisions[1]} - {precisions[0]}, paired (mean)")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * 2 + "---:|" * (len(head) - 2))
    for spec in dict.fromkeys(r["spec"] for r in runs):
        mine = [r for r in runs if r["spec"] == spec]
        by = {p: sorted((r for r in mine if r["precision"] == p), key=lambda r: r["seed"]) for p in precisions}
        cells = [Path(spec).name, mine[0]["metric"]]
        for p in precisions:
            values = [r["value"] for r in by[p]]
            cells.append(", ".join(f"{v:.4f}" for v in values) + f" ({statistics.mean(values):.4f})")
        for p in precisions:
            cells.append(f"{statistics.mean(r['wall_s'] for r in by[p]):.1f}")
        if len(precisions) == 2:
            diffs = [b["value"] - a["value"] for a, b in zip(by[precisions[0]], by[precisions[1]])]
            cells.append(", ".join(f"{d:+.4f}" for d in diffs) + f" ({statistics.mean(diffs):+.4f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", type=Path, nargs="+")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated train.seed values")
    parser.add_argument("--precision", default="fp32,bf16", help="comma-separated train.precision values")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    precisions = args.precision.split(",")
    runs = []
    with tempfile.TemporaryDirectory() as out:
        for spec in args.specs:
            for seed in seeds:
                for precision in precisions:  # interleaved, so a change in machine load hits both alike
                    run = _train(spec, seed, precision, Path(out))
                    print(json.dumps(run), flush=True)
                    runs.append(run)
    table = _table(runs, precisions)
    print(table)
    if args.json:
        load = os.getloadavg()[0]
        args.json.write_text(json.dumps({"machine": f"{os.cpu_count()} cores", "load_at_end": round(load, 2),
                                         "runs": runs, "table": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
