"""Streamed training on a Parquet file 3x larger than the memory a process may use, against
resident training on the same rows.

Writes N x 50 float32 rows with a 0/1 target as Parquet (row groups of ``data.chunk_rows`` rows)
and the same rows as an .npz, then trains the same network for two epochs, each run in a fresh
process: streamed under a memory limit, resident (the .npz) without one, and resident under the
same limit (which should fail: that is what streaming is for).
The limit is RLIMIT_AS (``resource.setrlimit`` in the child): this machine's memory cgroup
(v1) is the machinery's own and is not delegated, and ``ulimit -v`` is the same limit. RLIMIT_AS
counts address space, and torch with its libraries reserves about 1 GB of it before any data is
read, so the limit is that of an idle netfit + torch process plus ``--room-mb``; the data is
``3 x room`` by default. Epoch times are the training steps alone (``epoch_time_s``, validation
excluded); the second epoch is compared, the first also pays for reading the file into the
page cache.

    .venv/bin/python benchmarks/stream_parquet.py [--room-mb 512] [--times 3] [--dir /tmp] \\
        [--json benchmarks/results/cpu-stream-parquet.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

FEATURES = 50
CHUNK_ROWS = 65_536

_CHILD = """
import json, resource, sys, netfit
run = netfit.fit(json.loads(sys.argv[1]), out=None, progress=sys.stderr)
print(json.dumps({"epoch_time_s": [e.epoch_time_s for e in run.history.epochs],
                  "val_accuracy": run.metrics.get("val_accuracy"), "engine": run.history.engine,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_data(folder: Path, rows: int, seed: int = 0) -> tuple[Path, Path]:
    """The same rows as Parquet (row groups of CHUNK_ROWS) and as an .npz."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    X = np.empty((rows, FEATURES), np.float32)
    for start in range(0, rows, 1_000_000):
        X[start:start + 1_000_000] = rng.standard_normal((min(1_000_000, rows - start), FEATURES), dtype=np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(np.int64)
    names = [f"x{i}" for i in range(FEATURES)]
    schema = pa.schema([(name, pa.float32()) for name in names] + [("y", pa.int64())])
    with pq.ParquetWriter(folder / "rows.parquet", schema) as writer:
        for start in range(0, rows, CHUNK_ROWS):
            block = X[start:start + CHUNK_ROWS]
            writer.write_table(pa.table([*block.T, y[start:start + CHUNK_ROWS]], schema=schema))
    np.savez(folder / "rows.npz", X=X, y=y)
    return folder / "rows.parquet", folder / "rows.npz"


def train(spec: dict, address_space: int | None = None) -> dict:
    def limit() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    # Under an address-space limit, glibc's per-thread malloc arenas (64 MB of address space each,
    # one per thread of torch and pyarrow) would count against it though they are barely used.
    # pyarrow's default allocator (mimalloc) reserves about 1 GB of address space up front: the
    # system allocator is used instead under the limit. Neither changes what is resident.
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "ARROW_DEFAULT_MEMORY_POOL": "system"} \
        if address_space is not None else None
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], capture_output=True, text=True,
                          preexec_fn=limit, env=env)
    if done.returncode != 0:
        return {"failed": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout)


def idle_address_space() -> int:
    """Bytes of address space (VmPeak) of a process that imported netfit and torch."""
    code = "import torch, netfit.api; print(open('/proc/self/status').read())"
    status = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmPeak:"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--room-mb", type=int, default=512, help="memory the streamed run may use above an idle one")
    parser.add_argument("--times", type=float, default=3.0, help="data size as a multiple of the room")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--hidden", default="64", help="hidden widths, e.g. 512,256 (the reference network)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the data goes")
    parser.add_argument("--runs", default="streamed_limited,resident,resident_limited", help="which runs")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    room = args.room_mb * 2**20
    rows = int(args.times * room / (FEATURES * 4))
    work = Path(tempfile.mkdtemp(prefix="netfit-stream-parquet-", dir=args.dir))
    try:
        parquet, npz = write_data(work, rows)
        data_mb = rows * FEATURES * 4 / 2**20
        idle = idle_address_space()
        hidden = [int(w) for w in args.hidden.split(",")]
        base = {"model": {"hidden": hidden}, "train": {"epochs": 2, "batch_size": args.batch_size, "seed": 0}}
        streamed = {**base, "data": {"path": str(parquet), "target": "y", "streaming": True,
                                     "chunk_rows": CHUNK_ROWS}}
        runs = {
            "streamed_limited": lambda: train(streamed, idle + room),
            "resident": lambda: train({**base, "data": {"path": str(npz)}}),
            # Resident under the same limit: what streaming is for.
            "resident_limited": lambda: train({**base, "data": {"path": str(npz)}}, idle + room),
        }
        results = {name: run() for name, run in runs.items() if name in args.runs.split(",")}
        for name, result in results.items():
            print(f"{name:17s} {result}", flush=True)
        second = {name: r["epoch_time_s"][-1] for name, r in results.items() if "epoch_time_s" in r}
        report = {"rows": rows, "features": FEATURES, "data_mb": round(data_mb, 1),
                  "parquet_mb": round(parquet.stat().st_size / 2**20, 1), "room_mb": args.room_mb,
                  "idle_address_space_mb": round(idle / 2**20, 1), "batch_size": args.batch_size, "hidden": hidden,
                  "chunk_rows": CHUNK_ROWS, "shuffle_window": 8, "results": results,
                  "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
        if "streamed_limited" in second and "resident" in second:
            report["streamed_limited_speed_vs_resident"] = round(second["resident"] / second["streamed_limited"], 3)
            print(f"second epoch: streamed under the limit {second['streamed_limited']:.1f} s, resident "
                  f"{second['resident']:.1f} s: {report['streamed_limited_speed_vs_resident']:.2f}x resident speed")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
