"""Training seconds until a recipe first reaches a test accuracy, in a cold and in a warm process.

The clock covers what fit spends in its epochs, graph capture and warm-up steps included, and
leaves out data loading and the per-epoch evaluation that decides when the target is reached.
"cold" is the first run in a fresh process (after CUDA's context and cuBLAS handle exist), so it
also pays for the one-time loading of every CUDA kernel the step uses; "warm" is a second run of
the same recipe in the same process, as in a sweep or a notebook.

    python benchmarks/gpu_time_to_target.py configs/fashion-mnist-fast.toml --target 0.89
"""

from __future__ import annotations

import argparse
import json

import torch

import netfit
from netfit.prepare import prepare
from netfit.spec import load_spec


def time_to_target(spec, X_test: torch.Tensor, y_test: torch.Tensor, target: float) -> dict:
    elapsed, reached, accuracies = 0.0, None, []

    @torch.no_grad()
    def score(record, network):
        nonlocal elapsed, reached
        elapsed += record.epoch_time_s
        was_training = network.training
        network.eval()
        accuracy = (network(X_test).argmax(1) == y_test).float().mean().item()
        network.train(was_training)
        accuracies.append(round(accuracy, 4))
        if reached is None and accuracy >= target:
            reached = elapsed

    run = netfit.fit(spec, out=None, progress=None, on_epoch_end=score)
    return {"seconds_to_target": reached, "training_seconds": elapsed, "accuracies": accuracies,
            "epoch_seconds": [round(r.epoch_time_s, 4) for r in run.history.epochs], "engine": run.history.engine,
            "test_accuracy": run.metrics.get("test_accuracy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="TOML recipe")
    parser.add_argument("--target", type=float, default=0.89)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--runs", type=int, default=3, help="runs in this process (the first is cold)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = load_spec(args.spec, args.overrides + [f"train.device={device}"])
    if device == "cuda":  # the same start the comparison benchmark gives every contender
        a = torch.randn(64, 64, device="cuda", requires_grad=True)
        (a @ a).sum().backward()
        torch.cuda.synchronize()
    test = prepare(spec).test
    X_test, y_test = test.inputs(slice(None)).to(device), test.y.to(device)
    results = []
    for i in range(args.runs):
        result = time_to_target(spec, X_test, y_test, args.target)
        result["run"] = "cold" if i == 0 else "warm"
        results.append(result)
        reached = result["seconds_to_target"]
        print(f"run {i + 1} ({result['run']}, {result['engine']}): "
              f"{'not reached' if reached is None else f'{reached:.3f} s'} to {args.target}, "
              f"{result['training_seconds']:.3f} s for {len(result['epoch_seconds'])} epochs, "
              f"final test accuracy {result['test_accuracy']:.4f}; epochs {result['epoch_seconds']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "spec": args.spec,
                       "target": args.target, "runs": results}, f, indent=2)


if __name__ == "__main__":
    main()
