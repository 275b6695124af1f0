"""Time and peak memory of reading a large numeric CSV: netfit's reader against pyarrow.csv alone.

Writes a CSV of ``--rows`` rows and ``--columns`` numeric columns (6-decimal normal numbers, as a
spreadsheet export looks; 200,000 x 50 is about 92 MB) plus a 0/1 target, then reads it whole in
a fresh process per contender and round:

- ``pyarrow``: ``pyarrow.csv.read_csv(path)`` alone (its own typing: float64 columns), the floor
- ``netfit``: ``netfit.data.read_file(path, target="y")``: float32 features (n, d), int64 targets
- ``before``: the same call on another netfit source tree (``--before-src``), e.g. an older commit

Time is the read itself, measured inside the child. Peak memory is the child's peak resident set
(``os.wait4``) minus that of an idle child that imported the same modules and read nothing.
Linux only (``ru_maxrss`` in kilobytes).

    .venv/bin/python benchmarks/read_csv.py [--rows 200000] [--columns 50] [--rounds 3] \\
        [--before-src DIR] [--json benchmarks/results/cpu-read-csv.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"

_CHILD = """
import sys, time
kind, path = sys.argv[1], sys.argv[2]
import numpy, pyarrow, pyarrow.csv
from netfit.data import read_file
if kind == "idle":
    print(0.0)
    raise SystemExit
start = time.perf_counter()
if kind == "pyarrow":
    table = pyarrow.csv.read_csv(path)
    rows = table.num_rows
else:
    table = read_file(path, target="y")
    rows = len(table.X)
print(time.perf_counter() - start, rows)
"""


def write_csv(path: Path, rows: int, columns: int, seed: int = 0) -> None:
    """``rows`` rows of ``columns`` numbers with 6 decimals, and a 0/1 target ``y``."""
    rng = np.random.default_rng(seed)
    with path.open("w") as out:
        out.write(",".join([f"x{i}" for i in range(columns)] + ["y"]) + "\n")
        for start in range(0, rows, 10_000):
            block = rng.normal(size=(min(10_000, rows - start), columns))
            target = (block[:, 0] + block[:, 1] > 0).astype(int)
            out.writelines(",".join(f"{v:.6f}" for v in row) + f",{t}\n" for row, t in zip(block, target))


def child(kind: str, path: Path, src: Path) -> tuple[float, float]:
    """Seconds of the read and peak RSS (MB) of one fresh process reading ``path`` as ``kind``."""
    process = subprocess.Popen([sys.executable, "-c", _CHILD, kind, str(path)], stdout=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(src)})
    out = process.stdout.read().decode().split()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the {kind} reader failed on {path}")
    return float(out[0]), usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--columns", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per contender (median time)")
    parser.add_argument("--before-src", type=Path, help="a netfit src folder to time as 'before'")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the CSV is written")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="netfit-read-csv-", dir=args.dir))
    try:
        path = work / "numbers.csv"
        write_csv(path, args.rows, args.columns)
        size_mb = path.stat().st_size / 1e6
        float32_mb = args.rows * args.columns * 4 / 1e6
        print(f"{size_mb:.1f} MB CSV, {args.rows:,} rows x {args.columns} columns "
              f"({float32_mb:.1f} MB as float32)", flush=True)
        contenders = [("pyarrow", SRC), ("netfit", SRC)] + ([("before", args.before_src)] if args.before_src else [])
        results = {}
        for name, src in contenders:
            idle = max(child("idle", path, src)[1] for _ in range(2))
            # Rounds alternate between nothing else: each contender's rounds run back to back.
            runs = [child("pyarrow" if name == "pyarrow" else "netfit", path, src) for _ in range(args.rounds)]
            seconds = statistics.median(t for t, _ in runs)
            above = max(peak for _, peak in runs) - idle
            results[name] = {"seconds": round(seconds, 3), "all_seconds": [round(t, 3) for t, _ in runs],
                             "peak_rss_mb": round(max(p for _, p in runs), 1), "idle_rss_mb": round(idle, 1),
                             "above_idle_mb": round(above, 1), "above_idle_vs_float32": round(above / float32_mb, 2)}
            print(f"{name:8s} {seconds:7.3f} s  peak {above:7.1f} MB above an idle process "
                  f"({above / float32_mb:.2f}x the float32 data)", flush=True)
        for name in results:
            results[name]["seconds_vs_pyarrow"] = round(results[name]["seconds"] / results["pyarrow"]["seconds"], 2)
        if "before" in results:
            print(f"netfit is {results['before']['seconds'] / results['netfit']['seconds']:.1f}x faster than before, "
                  f"{results['netfit']['seconds_vs_pyarrow']:.2f}x the time of pyarrow alone")
        report = {"csv_mb": round(size_mb, 1), "rows": args.rows, "columns": args.columns, "rounds": args.rounds,
                  "float32_mb": round(float32_mb, 1), "results": results, "python": platform.python_version(),
                  "machine": platform.machine(), "cpus": os.cpu_count()}
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
