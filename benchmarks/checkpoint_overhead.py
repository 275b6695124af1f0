"""What checkpointing every epoch costs, as a share of epoch time.

Trains the tutorials' network (784-512-256-10, ReLU, cross-entropy, Adam at 1e-3, batch 64) on
mnist-sample on the CPU, in one process, with ``train.checkpoint_every = 1`` (a checkpoint after
every epoch) and ``= 0`` (one only at the end; ``best/`` is kept up to date either way). The
settings alternate round by round, so drift in the machine's speed hits both alike. Each fit is
timed whole, run folder and final files included, and divided by its epochs; the medians over
the rounds are compared. Checkpoints are fsynced, so the figure depends on the disk under
``--dir``.

    .venv/bin/python benchmarks/checkpoint_overhead.py [--rounds 3] [--epochs 5] [--dir /tmp] \\
        [--json benchmarks/results/cpu-checkpoint-overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

import netfit

SETTINGS = {"every epoch": 1, "at the end only": 0}


def spec(epochs: int, every: int) -> dict:
    return {"data": {"dataset": "mnist-sample"},
            "train": {"epochs": epochs, "device": "cpu", "checkpoint_every": every}}


def timed_fit(epochs: int, every: int, out: Path) -> tuple[float, Path]:
    start = time.perf_counter()
    run = netfit.fit(spec(epochs, every), out=out, progress=None)
    return time.perf_counter() - start, run.run_dir


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both settings")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per fit")
    parser.add_argument("--dir", type=Path, help="where the runs are written (default: the system's temp folder)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the figures here")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: with one, both settings write the same single checkpoint")

    seconds: dict[str, list[float]] = {name: [] for name in SETTINGS}
    checkpoint_sizes: list[int] = []
    with tempfile.TemporaryDirectory(prefix="netfit-checkpoint-overhead-", dir=args.dir) as tmp:
        timed_fit(1, 1, Path(tmp) / "warm-up")  # first-call costs (imports, data loading) go here
        for round_ in range(args.rounds):
            for name, every in SETTINGS.items():
                elapsed, run_dir = timed_fit(args.epochs, every, Path(tmp) / f"{round_}-{every}")
                seconds[name].append(elapsed / args.epochs)
                if every:
                    checkpoint_sizes += [folder_bytes(p) for p in (run_dir / "checkpoints").glob("epoch-*")]
                shutil.rmtree(run_dir)  # runs are 10+ MB each: keep the disk's state alike for every fit

    per_epoch = {name: statistics.median(values) for name, values in seconds.items()}
    every, end = per_epoch["every epoch"], per_epoch["at the end only"]
    ratio = every / end
    # Every-epoch writes epochs - 1 checkpoints more than end-only does.
    per_checkpoint = (every - end) * args.epochs / (args.epochs - 1)
    checkpoint_mb = statistics.mean(checkpoint_sizes) / 1e6

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; runs written under {args.dir or tempfile.gettempdir()}")
    print(f"784-512-256-10 on mnist-sample, batch 64, Adam 1e-3, CPU; {args.rounds} rounds x {args.epochs} epochs")
    print(f"{'checkpoints':<18} {'s/epoch (median)':>17}   per round")
    for name, values in seconds.items():
        print(f"{name:<18} {per_epoch[name]:>17.3f}   {', '.join(f'{v:.3f}' for v in values)}")
    print(f"ratio: {ratio:.3f}x epoch time ({(ratio - 1) * 100:+.1f}%); about {per_checkpoint * 1000:.0f} ms "
          f"per checkpoint; one checkpoint folder: {checkpoint_mb:.2f} MB")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                       f"{torch.get_num_threads()} torch threads, torch {torch.__version__}",
            "settings": {"rounds": args.rounds, "epochs": args.epochs, "network": "784-512-256-10",
                         "dataset": "mnist-sample", "batch_size": 64, "optimizer": "adam", "lr": 1e-3},
            "seconds_per_epoch": {name: {"median": per_epoch[name], "rounds": seconds[name]} for name in SETTINGS},
            "ratio_every_epoch_to_end_only": ratio,
            "seconds_per_checkpoint": per_checkpoint,
            "checkpoint_folder_mb": checkpoint_mb,
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
