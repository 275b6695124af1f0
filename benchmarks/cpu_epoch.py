"""Seconds per epoch: netfit against the hand-written DataLoader loop, same work, one process.

Both train the tutorials' network (784-512-256-10, ReLU, cross-entropy, Adam at 1e-3, batch 64)
on the same mnist-sample training rows, scaled the same way, with no validation pass, on the
same threads. The runs alternate (loop, netfit, loop, netfit, ...) so that drift in the
machine's speed hits both alike; the median epoch time of each is compared.

    .venv/bin/python benchmarks/cpu_epoch.py [--epochs 3] [--rounds 3] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import netfit
from netfit.prepare import prepare


def tutorial_loop(X: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, seed: int) -> list[float]:
    """The loop the tutorials write: TensorDataset, DataLoader(shuffle=True), zero_grad/forward/backward/step."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=True)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def netfit_epochs(spec: netfit.Spec) -> list[float]:
    run = netfit.fit(spec, out=None, progress=None)
    return [r.epoch_time_s for r in run.history.epochs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is dropped as warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both loops")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    spec = netfit.Spec.model_validate({
        "data": {"dataset": "mnist-sample", "val_fraction": 0.0},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "device": "cpu"},
    })
    data = prepare(spec)  # the same scaled training tensors netfit trains on
    X, y = data.train.inputs(slice(None)), data.train.y  # scaled float32, as the tutorials feed it

    loop_times, netfit_times = [], []
    for round_ in range(args.rounds):
        loop_times += tutorial_loop(X, y, args.epochs, args.batch_size, seed=round_)[1:]
        netfit_times += netfit_epochs(spec)[1:]

    loop_s, netfit_s = statistics.median(loop_times), statistics.median(netfit_times)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    print(f"data: mnist-sample, {len(X)} training rows, batch {args.batch_size}, "
          f"{args.rounds} rounds x {args.epochs - 1} timed epochs each")
    print(f"hand-written DataLoader loop: {loop_s:.3f} s/epoch")
    print(f"netfit:                       {netfit_s:.3f} s/epoch")
    print(f"ratio (loop / netfit):        {loop_s / netfit_s:.2f}x  (above 1 = netfit faster)")


if __name__ == "__main__":
    main()
