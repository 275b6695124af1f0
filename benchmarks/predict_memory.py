"""Peak memory of ``netfit predict`` on CSV files of growing size: it should not grow with the file.

Writes numeric CSVs of the sizes asked for (50 feature columns of 6-digit numbers, as a
spreadsheet export looks), trains a small run on the first 2,000 rows once, then runs
``netfit predict RUN FILE -o OUT`` on each file in a fresh process and reads that process's peak
resident memory from ``os.wait4``. The baseline is the peak of a process that imports netfit and
exits at once (``netfit --help``). Linux only (``ru_maxrss`` in kilobytes).

    .venv/bin/python benchmarks/predict_memory.py [--sizes-mb 68,272] [--dir /tmp] \\
        [--json benchmarks/results/cpu-predict-memory.json]
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

COLUMNS = 50


def write_csv(path: Path, megabytes: int, seed: int = 0) -> int:
    """A CSV of about ``megabytes`` MB with a header and a 0/1 target in the last column; returns its rows."""
    rng = np.random.default_rng(seed)
    header = ",".join([f"x{i}" for i in range(COLUMNS)] + ["y"]) + "\n"
    rows = 0
    with path.open("w") as out:
        out.write(header)
        while out.tell() < megabytes * 10**6:
            block = rng.normal(size=(10_000, COLUMNS)).round(4)
            target = (block[:, 0] + block[:, 1] > 0).astype(int)
            lines = [",".join(f"{v:.4f}" for v in row) + f",{t}\n" for row, t in zip(block, target)]
            out.writelines(lines)
            rows += len(lines)
    return rows


def run(argv: list[str]) -> tuple[int, float, float]:
    """Exit code, seconds and peak RSS (MB) of ``python -m netfit ARGV`` in a fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "netfit", *argv], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"netfit {' '.join(argv)} exited {code}: {process.stderr.read().decode()}")
    return code, seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", default="68,272", help="CSV sizes to predict on, in MB")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the CSVs and the run go")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="netfit-predict-memory-", dir=args.dir))
    try:
        train_csv = work / "train.csv"
        write_csv(train_csv, 1)
        run(["train", "--set", f"data.path={train_csv}", "--set", "data.target=y", "--set", "model.hidden=[64]",
             "--set", "train.epochs=1", "--out", str(work / "runs"), "--quiet"])
        (run_dir,) = (work / "runs").iterdir()
        baseline = _baseline()
        results = []
        for megabytes in (int(s) for s in args.sizes_mb.split(",")):
            data = work / f"rows-{megabytes}mb.csv"
            rows = write_csv(data, megabytes, seed=megabytes)
            _, seconds, peak = run(["predict", str(run_dir), str(data), "-o", str(work / f"predictions-{megabytes}mb.csv")])
            size_mb = data.stat().st_size / 1e6
            results.append({"csv_mb": round(size_mb, 1), "rows": rows, "peak_rss_mb": round(peak, 1),
                            "above_baseline_mb": round(peak - baseline, 1), "seconds": round(seconds, 1)})
            print(f"{size_mb:7.1f} MB CSV, {rows:,} rows: peak RSS {peak:.0f} MB "
                  f"({peak - baseline:+.0f} MB above an idle netfit process), {seconds:.1f} s", flush=True)
            data.unlink()
            (work / f"predictions-{megabytes}mb.csv").unlink()
        report = {"baseline_rss_mb": round(baseline, 1), "results": results, "python": platform.python_version(),
                  "machine": platform.machine(), "cpus": os.cpu_count()}
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _baseline() -> float:
    """Peak RSS (MB) of a process that imports netfit's CLI and its dependencies, then exits."""
    process = subprocess.Popen([sys.executable, "-c", "import netfit.cli, netfit.api, netfit.data"])
    _, _, usage = os.wait4(process.pid, 0)
    return usage.ru_maxrss / 1024


if __name__ == "__main__":
    main()
