"""Peak resident memory of ``netfit train`` on an .npz of 1,000,000 x 50 float32 rows (200 MB).

Writes the data into a temporary folder, trains a small network (one hidden layer of 64) for one
epoch with ``netfit train`` in a fresh process, and reads that process's peak resident memory
(``ru_maxrss`` from ``os.wait4``). The baseline is the peak of a process that imports netfit and
torch and exits, so the figure reported is what training adds: the data, its copies, the
network and its optimizer state. Linux only (``ru_maxrss`` in kilobytes).

    .venv/bin/python benchmarks/train_memory.py [--rows 1000000] [--features 50] [--dir /tmp] \\
        [--src DIR] [--json benchmarks/results/cpu-train-memory.json]

``--src`` runs another netfit source tree (e.g. ``git archive COMMIT src | tar -x -C DIR``, then
``--src DIR/src``) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_npz(path: Path, rows: int, features: int, seed: int = 0) -> int:
    """Float32 features and a 0/1 target that depends on two of them; returns the features' bytes."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features), dtype=np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    np.savez(path, X=X, y=y)
    return X.nbytes


def peak_rss_mb(command: list[str], src: str | None = None) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of ``command`` run in a fresh process, which must succeed."""
    env = {**os.environ, "PYTHONPATH": src} if src else None
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()}")
    return usage.ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the data and the run go")
    parser.add_argument("--src", help="the netfit source tree to run (default: the installed one)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="netfit-train-memory-", dir=args.dir))
    try:
        data = work / "rows.npz"
        data_bytes = write_npz(data, args.rows, args.features)
        baseline, _ = peak_rss_mb([sys.executable, "-c", "import torch, netfit.cli, netfit.api, netfit.data"],
                                  args.src)
        peak, seconds = peak_rss_mb([
            sys.executable, "-m", "netfit", "train", "--set", f"data.path={data}", "--set", "model.hidden=[64]",
            "--set", "train.epochs=1", "--set", "train.batch_size=256", "--out", str(work / "runs"), "--quiet"], args.src)
        data_mb = data_bytes / 2**20
        report = {"rows": args.rows, "features": args.features, "data_mb": round(data_mb, 1),
                  "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(peak, 1),
                  "above_baseline_mb": round(peak - baseline, 1),
                  "above_baseline_per_data": round((peak - baseline) / data_mb, 2), "seconds": round(seconds, 1),
                  "src": args.src or "installed", "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
        print(f"{args.rows:,} x {args.features} float32 rows ({data_mb:.0f} MiB): peak RSS {peak:.0f} MiB, "
              f"{peak - baseline:.0f} MiB above an idle netfit + torch process "
              f"({(peak - baseline) / data_mb:.2f}x the data), {seconds:.1f} s")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
