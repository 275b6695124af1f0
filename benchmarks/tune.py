"""Does `netfit tune` find a spec at least as good as the one it starts from, and in what time?

Runs, each in a fresh process as a user would: ``netfit train SPEC`` (the spec as shipped) and
``netfit tune SPEC --trials N``, then reads the test accuracy of the shipped run and of the
study's best trial from their run folders. Trials are compared on validation accuracy only; the
test figures are read after the search, so the test rows never steer it.

    .venv/bin/python benchmarks/tune.py configs/fashion-mnist.toml --trials 20 \\
        [--workers K] [--json benchmarks/results/cpu-tune-fashion-mnist.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _netfit(args: list[str]) -> tuple[dict, float]:
    env = {**os.environ, "PYTHONPATH": str(HERE / "src")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "netfit", *args, "--json", "--quiet"], env=env, capture_output=True,
                          text=True, timeout=6 * 3600)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"netfit {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), seconds


def _test_accuracy(run_dir: str) -> float:
    sys.path.insert(0, str(HERE / "src"))
    from netfit.rundir import read_run

    return float(read_run(run_dir).metrics["test_accuracy"])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="netfit-tune-bench-") as work:
        shipped, shipped_s = _netfit(["train", str(args.spec), "--out", f"{work}/runs"])
        tune_args = ["tune", str(args.spec), "--trials", str(args.trials), "--out", work, "--name", "study"]
        if args.workers > 1:
            tune_args += ["--workers", str(args.workers)]
        study, tune_s = _netfit(tune_args)
        states = [t["state"] for t in study["trials"]]
        result = {
            "spec": str(args.spec), "trials": args.trials, "workers": args.workers,
            "machine": f"{_cpu_name()}, {os.cpu_count()} cores",
            "shipped": {"train_s": round(shipped_s, 1), "test_accuracy": _test_accuracy(shipped["run_dir"]),
                        "val_accuracy": shipped["metrics"].get("val_accuracy")},
            "tune": {"wall_s": round(tune_s, 1), "complete": states.count("complete"),
                     "pruned": states.count("pruned"), "failed": states.count("fail"),
                     "best_val_accuracy": study["best_value"], "best_params": study["best_params"],
                     "best_test_accuracy": _test_accuracy(study["best_run_dir"])},
            "trials_table": [{k: t[k] for k in ("number", "state", "value", "params")} for t in study["trials"]],
        }
    t, s = result["tune"], result["shipped"]
    print(f"shipped spec: val {s['val_accuracy']:.4f}  test {s['test_accuracy']:.4f}  ({s['train_s']:.0f} s)")
    print(f"tune, {args.trials} trials ({t['complete']} completed, {t['pruned']} pruned, {t['failed']} failed) in "
          f"{t['wall_s']:.0f} s: best val {t['best_val_accuracy']:.4f}  test {t['best_test_accuracy']:.4f}")
    print(f"best values: {json.dumps(t['best_params'])}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
