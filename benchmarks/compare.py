"""Seconds per epoch and seconds to a test accuracy: netfit against the usual ways to train the same MLP.

Every contender trains the tutorials' network (784-512-256-10, ReLU, cross-entropy, Adam at 1e-3,
inputs divided by 255) on the 60,000 Fashion-MNIST training images, and is scored on the 10,000
test images after every epoch, outside the timed part:

  dataloader      the tutorials' loop: TensorDataset + DataLoader(shuffle=True), each batch copied to the device
  device-tensors  a hand-written loop over float32 tensors already on the device, randperm + slicing
  lightning       a LightningModule and a Trainer over the same DataLoader (only where Lightning is installed)
  sklearn         MLPClassifier, one partial_fit per epoch (CPU only)
  netfit          netfit.fit(spec) through the public API, evaluated from its on_epoch_end callback

Each contender runs in a fresh spawned process that reads the IDX files itself, so the peak host
memory reported is that contender's own. The output is a markdown table per batch size, ready for
docs/benchmarks.md; --json also saves every epoch's time and accuracy.

    python benchmarks/compare.py --device cpu --batch-size 64 --epochs 15 --target 0.885
    python benchmarks/compare.py --device cuda --batch-size 64,512 --epochs 5
    python benchmarks/compare.py --only dataloader,netfit --netfit-spec configs/fashion-mnist-fast.toml
    python benchmarks/compare.py --netfit-set train.precision=fp32 --json results.json
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import importlib.util
import inspect
import json
import logging
import multiprocessing
import os
import platform
import random
import resource
import shlex
import statistics
import struct
import sys
import time
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

CONTENDERS = ("dataloader", "device-tensors", "lightning", "sklearn", "netfit")
LR = 1e-3


@dataclass(frozen=True)
class Setup:
    """Everything a contender's process needs; small and picklable (the data travels as a folder path)."""

    name: str
    device: str  # "cpu" or "cuda", already resolved
    batch_size: int
    epochs: int
    seed: int
    threads: int | None  # None: torch's default
    data_dir: str
    netfit_spec: str | None = None  # a TOML recipe instead of the built-in spec
    netfit_set: tuple[str, ...] = ()  # extra section.key=value overrides for netfit


# ----------------------------------------------------------------------------- data and shared pieces


def load_split(folder: str, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, 784) and int64 labels of the ``train`` or ``t10k`` part."""
    images, labels = Path(folder) / f"{prefix}-images-idx3-ubyte.gz", Path(folder) / f"{prefix}-labels-idx1-ubyte.gz"
    try:
        from netfit.data.formats import read_idx_pair
    except Exception:  # a netfit without it, or one mid-edit: the baselines must not depend on its state
        X, y = _read_idx(images), _read_idx(labels)
        return X.reshape(len(X), -1), y.astype(np.int64)
    pair = read_idx_pair(images, labels)
    return pair[0], pair[1]  # (X, y), or a Table that also carries the image shape


def _read_idx(path: Path) -> np.ndarray:
    # IDX: two zero bytes, a type byte (0x08 = uint8), the number of dimensions, then each dimension
    # as a big-endian uint32: 16 header bytes for images, 8 for labels.
    with gzip.open(path, "rb") as file:
        content = file.read()
    if content[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not a uint8 IDX file")
    ndim = content[3]
    shape = struct.unpack(f">{ndim}I", content[4:4 + 4 * ndim])
    return np.frombuffer(content, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def as_inputs(X: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1] on ``device`` (copied over as uint8: a quarter of the bytes)."""
    return torch.from_numpy(X).to(device).float().div_(255)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the clock must not stop while queued kernels still run


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    correct = (model(X).argmax(dim=1) == y).sum().item()  # one host sync per evaluation, off the clock
    model.train(was_training)
    return correct / len(y)


def tutorial_parts(setup: Setup):
    """The network, loss and optimizer every torch contender shares, plus the test tensors on the device."""
    device = torch.device(setup.device)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    X_test, y_test = load_split(setup.data_dir, "t10k")
    test = as_inputs(X_test, device), torch.from_numpy(y_test).to(device)
    return device, model, nn.CrossEntropyLoss(), optimizer, test


def tutorial_loader(setup: Setup) -> DataLoader:
    """The tutorials' input pipeline: float32 CPU tensors, shuffled batches, no workers, no pinned memory."""
    X, y = load_split(setup.data_dir, "train")
    return DataLoader(TensorDataset(as_inputs(X, "cpu"), torch.from_numpy(y)), batch_size=setup.batch_size,
                      shuffle=True)


def timed_epochs(setup: Setup, train_one_epoch, evaluate) -> dict:
    """Clock each epoch (CUDA synchronized at both ends), then evaluate outside the clock."""
    device = torch.device(setup.device)
    times, accuracies = [], []
    for _ in range(setup.epochs):
        sync(device)
        started = time.perf_counter()
        train_one_epoch()
        sync(device)
        times.append(time.perf_counter() - started)
        accuracies.append(evaluate())
    return {"epoch_times": times, "accuracies": accuracies}


# ----------------------------------------------------------------------------- the contenders


def run_dataloader(setup: Setup) -> dict:
    device, model, loss_fn, optimizer, test = tutorial_parts(setup)
    loader = tutorial_loader(setup)

    def one_epoch() -> None:
        model.train()
        for xb, yb in loader:
            # Blocking copies, as the tutorials write them: non_blocking only overlaps from pinned memory.
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()

    return timed_epochs(setup, one_epoch, lambda: accuracy(model, *test)) | {"train_rows": len(loader.dataset)}


def run_device_tensors(setup: Setup) -> dict:
    device, model, loss_fn, optimizer, test = tutorial_parts(setup)
    X, y = load_split(setup.data_dir, "train")
    X, y = as_inputs(X, device), torch.from_numpy(y).to(device)
    n, batch = len(X), setup.batch_size

    def one_epoch() -> None:
        model.train()
        order = torch.randperm(n, device=device)  # a fresh shuffle every epoch, made where the data lives
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            optimizer.zero_grad()
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            optimizer.step()

    return timed_epochs(setup, one_epoch, lambda: accuracy(model, *test)) | {"train_rows": n}


def run_lightning(setup: Setup) -> dict:
    try:
        import lightning.pytorch as pl
    except ImportError:
        import pytorch_lightning as pl
    logging.getLogger(pl.__name__).setLevel(logging.WARNING)  # no "GPU available: ..." banner per run
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # the same loader as the others
    device, model, loss_fn, optimizer, test = tutorial_parts(setup)
    loader = tutorial_loader(setup)
    times, accuracies = [], []

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            return loss_fn(self.net(xb), yb)

        def configure_optimizers(self):
            return optimizer

    class EpochClock(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            sync(device)
            self.started = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            sync(device)
            times.append(time.perf_counter() - self.started)
            accuracies.append(accuracy(pl_module, *test))  # after the clock stopped

    # accelerator follows --device rather than "auto", so that --device cpu stays on the CPU on a GPU host.
    trainer = pl.Trainer(max_epochs=setup.epochs, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[EpochClock()])
    trainer.fit(Classifier(), train_dataloaders=loader)
    return {"epoch_times": times, "accuracies": accuracies, "train_rows": len(loader.dataset),
            "lightning": f"{pl.__name__} {pl.__version__}"}


def run_sklearn(setup: Setup) -> dict:
    from sklearn.neural_network import MLPClassifier

    X, y = load_split(setup.data_dir, "train")
    X_test, y_test = load_split(setup.data_dir, "t10k")
    X, X_test = X.astype(np.float32) / 255, X_test.astype(np.float32) / 255  # float32: sklearn keeps the dtype
    classes = np.unique(y)
    model = MLPClassifier(hidden_layer_sizes=(512, 256), solver="adam", learning_rate_init=LR,
                          batch_size=setup.batch_size, max_iter=1, shuffle=True,
                          alpha=0.0,  # no L2 penalty (sklearn's default is 1e-4), as in the torch contenders
                          # A RandomState, not an int: each call re-seeds from an int, replaying one batch order.
                          random_state=np.random.RandomState(setup.seed))

    def one_epoch() -> None:
        # partial_fit, not fit(warm_start=True): fit builds a new Adam on every call, so its moment
        # estimates would restart each epoch; partial_fit keeps them, as the torch loops do.
        model.partial_fit(X, y, classes=classes)

    return timed_epochs(setup, one_epoch, lambda: model.score(X_test, y_test)) | {"train_rows": len(X)}


def netfit_spec(setup: Setup):
    """The validated netfit Spec: the built-in one or --netfit-spec, then the run's settings, then --netfit-set."""
    from netfit.spec import apply_overrides, load_spec, spec_from_dict

    forced = ["data.val_fraction=0.0", f"data.data_dir={setup.data_dir}", f"train.epochs={setup.epochs}",
              f"train.batch_size={setup.batch_size}", f"train.device={setup.device}", f"train.seed={setup.seed}"]
    overrides = forced + list(setup.netfit_set)
    if setup.netfit_spec is not None:
        spec = load_spec(setup.netfit_spec, overrides)
    else:
        raw = {"model": {"hidden": [512, 256], "activation": "relu"}, "data": {"dataset": "fashion-mnist"},
               "train": {"loss": "cross_entropy", "optimizer": "adam", "lr": LR}}
        spec = spec_from_dict(apply_overrides(raw, overrides))
    same = (spec.data.dataset, spec.train.epochs, spec.train.batch_size, spec.train.device)
    if same != ("fashion-mnist", setup.epochs, setup.batch_size, setup.device):
        raise ValueError(f"the netfit spec trains {same} (dataset, epochs, batch, device); the comparison needs "
                         "fashion-mnist and this run's --epochs, --batch-size and --device, not --netfit-set")
    return spec


def run_netfit(setup: Setup) -> dict:
    import netfit

    spec = netfit_spec(setup)
    X_test, y_test = load_split(setup.data_dir, "t10k")
    test_cpu = (as_inputs(X_test, "cpu"), torch.from_numpy(y_test))
    n = len(_read_idx(Path(setup.data_dir) / "train-labels-idx1-ubyte.gz"))
    train_rows = n - round(n * spec.data.val_fraction)  # netfit holds out round(n * val_fraction) rows
    times, accuracies, test_on = [], [], {}
    chosen = [f"{key}={getattr(spec.train, key)}" for key in ("engine", "precision") if hasattr(spec.train, key)]
    notes = [f"spec {setup.netfit_spec or 'built in'}" + "".join(f", {o}" for o in chosen + list(setup.netfit_set))]

    def on_epoch_end(record, network: nn.Module) -> None:
        device = next(network.parameters()).device
        if device not in test_on:  # netfit scales by /255 itself; we feed what it trains on
            test_on[device] = tuple(t.to(device) for t in test_cpu)
        times.append(record.epoch_time_s)  # netfit's own clock: the callback's time is not in it
        accuracies.append(accuracy(network, *test_on[device]))

    if "on_epoch_end" in inspect.signature(netfit.fit).parameters:
        run = netfit.fit(spec, out=None, progress=None, on_epoch_end=on_epoch_end)
    else:
        run = netfit.fit(spec, out=None, progress=None)
        times = [record.epoch_time_s for record in run.history.epochs]
        accuracies = [None] * (len(times) - 1) + [float(np.mean(run.model.predict(X_test) == y_test))]
        notes.append("this netfit.fit takes no on_epoch_end: accuracy after the last epoch only, no time to target")
    reported = run.metrics.get("test_accuracy")
    if reported is not None and accuracies[-1] is not None and abs(reported - accuracies[-1]) > 0.002:
        notes.append(f"netfit reports test accuracy {reported:.4f} but the benchmark measured {accuracies[-1]:.4f}; "
                     "is data.scaling something other than divide_by_255?")
    return {"epoch_times": times, "accuracies": accuracies, "train_rows": train_rows, "notes": notes,
            "netfit_test_accuracy": reported, "spec": spec.to_dict()}


RUNNERS = {"dataloader": run_dataloader, "device-tensors": run_device_tensors, "lightning": run_lightning,
           "sklearn": run_sklearn, "netfit": run_netfit}


# ----------------------------------------------------------------------------- one process per contender


def contender_process(setup: Setup) -> dict:
    """Runs in a fresh spawned process: set threads and seeds, train, report this process's peaks."""
    if setup.threads:
        torch.set_num_threads(setup.threads)
    random.seed(setup.seed)
    np.random.seed(setup.seed)
    torch.manual_seed(setup.seed)  # CPU and CUDA: the torch contenders start from the same weights
    cuda = setup.device == "cuda"
    if cuda:
        # The same start for every contender: a CUDA context and a cuBLAS handle exist before any
        # clock runs (a throwaway matmul with a backward pass). Everything after this, a graph
        # capture included, counts in the contender's first epoch.
        torch.cuda.init()
        a = torch.randn(64, 64, device="cuda", requires_grad=True)
        (a @ a).sum().backward()
        torch.cuda.synchronize()
        del a
        torch.cuda.reset_peak_memory_stats()
    limit = contextlib.nullcontext()
    if setup.threads:  # numpy's BLAS (sklearn) has its own thread pool
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(setup.threads)
    with limit:
        result = RUNNERS[setup.name](setup)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    result["peak_device_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20 if cuda else None
    return result


def run_isolated(setup: Setup) -> dict:
    # spawn, not fork: a clean interpreter (CUDA cannot be forked) whose ru_maxrss is this contender's alone.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(contender_process, setup).result()


def check_netfit_spec(args: argparse.Namespace) -> None:
    """Stop in a second on a bad --netfit-spec or --netfit-set, not after the other contenders have run."""
    try:
        from netfit.errors import NetfitError
    except Exception as err:  # netfit itself is broken: its row will say so, the others still run
        print(f"note: netfit does not import ({type(err).__name__}: {err})", file=sys.stderr)
        return
    try:
        netfit_spec(Setup("netfit", args.device, args.batch_size[0], args.epochs, args.seed, args.threads,
                          args.data_dir, args.netfit_spec, tuple(args.netfit_set)))
    except (NetfitError, ValueError) as err:
        print(f"compare.py: netfit spec: {err}", file=sys.stderr)
        sys.exit(2)


def skip_reason(name: str, device: str) -> str | None:
    if name == "lightning" and not any(importlib.util.find_spec(m) for m in ("lightning", "pytorch_lightning")):
        return "skipped: neither lightning nor pytorch_lightning is installed"
    if name == "sklearn" and device != "cpu":
        return "skipped: CPU only (run with --device cpu)"
    return None


def summarize(result: dict, target: float) -> dict:
    times, accuracies = result["epoch_times"], result["accuracies"]
    median = statistics.median(times[1:] or times)  # the first epoch carries warm-up; shown apart
    to_target, elapsed = None, 0.0
    for seconds, acc in zip(times, accuracies):
        elapsed += seconds
        if acc is None:  # accuracy not known after every epoch: time to target unknown
            break
        if acc >= target:
            to_target = elapsed
            break
    return {"s_per_epoch": median, "first_epoch_s": times[0], "samples_per_s": result["train_rows"] / median,
            "test_accuracy": accuracies[-1], "time_to_target_s": to_target}


# ----------------------------------------------------------------------------- report


def hardware(device: str) -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as file:
        cpu = next((line.split(":", 1)[1].strip() for line in file if line.startswith("model name")), cpu)
    info = {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "gpu": None}
    if device == "cuda":
        info["gpu"] = f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return info


def table(batch_size: int, results: dict, notes: list[str], args: argparse.Namespace) -> str:
    def num(value, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    def ratio(value, netfit_value) -> str:
        return "-" if value is None or netfit_value is None else f"{value / netfit_value:.2f}x"

    base = results.get("netfit", {})
    lines = [f"### Batch size {batch_size}: {args.device}, {args.epochs} epochs", "",
             f"| contender | s/epoch | first epoch s | samples/s | peak RSS MiB | peak GPU MiB | test acc "
             f"| s to {args.target} | s/epoch vs netfit | to target vs netfit |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        to_target = num(r["time_to_target_s"], ".2f")
        if to_target == "-" and None not in r["accuracies"]:  # None: accuracy unknown for some epochs
            to_target = "not reached"
        lines.append(f"| {name} | {r['s_per_epoch']:.3f} | {r['first_epoch_s']:.3f} | {r['samples_per_s']:,.0f} "
                     f"| {r['peak_rss_mib']:,.0f} | {num(r['peak_device_mib'], ',.0f')} "
                     f"| {num(r['test_accuracy'], '.4f')} | {to_target} "
                     f"| {ratio(r['s_per_epoch'], base.get('s_per_epoch'))} "
                     f"| {ratio(r['time_to_target_s'], base.get('time_to_target_s'))} |")
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def header(info: dict, args: argparse.Namespace) -> str:
    timed = "epochs 2.." + str(args.epochs) if args.epochs > 1 else "the only epoch"
    return "\n".join([
        "## Fashion-MNIST, 784-512-256-10 ReLU, Adam 1e-3: netfit and the usual training loops", "",
        f"- command: `{shlex.join(['python', *sys.argv])}`",
        f"- CPU: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable); torch {info['torch']} "
        f"with {info['torch_threads']} threads; Python {info['python']}",
        f"- GPU: {info['gpu'] or 'none used'}",
        f"- 60,000 training and 10,000 test images; seed {args.seed}; every contender in its own process"
        + ("; on CUDA each process creates its context and cuBLAS handle before any clock runs" if info["gpu"] else ""),
        f"- s/epoch: median over {timed} (training only, evaluation excluded); first epoch s: epoch 1 with its "
        "warm-up; samples/s: training rows / s/epoch; peak RSS: the contender's process high-water mark "
        "(Python and torch included); peak GPU: torch.cuda.max_memory_allocated (cuBLAS workspaces, 32 MiB a stream, "
        "included)",
        f"- test acc: after the last epoch; s to {args.target}: training seconds until the first epoch whose test "
        "accuracy reaches it; vs netfit: the contender's figure divided by netfit's (above 1: netfit is faster)", ""])


# ----------------------------------------------------------------------------- command line


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown contender {unknown}; choose from {', '.join(CONTENDERS)}")
    return [n for n in CONTENDERS if n in names]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers, e.g. 512 or 64,512")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto = cuda if available")
    p.add_argument("--batch-size", type=_sizes, default=[512], help="one size or a comma list, run in turn")
    p.add_argument("--epochs", type=int, default=5, help="epochs per contender (the first is reported apart)")
    p.add_argument("--target", type=float, default=0.885, help="test accuracy for the time-to-target column")
    p.add_argument("--only", type=_names, default=list(CONTENDERS), help=f"comma list from {', '.join(CONTENDERS)}")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and shuffling, the same for every contender")
    p.add_argument("--threads", type=int, default=None, help="torch and BLAS threads (default: torch's default)")
    p.add_argument("--json", type=Path, default=None, help="also write all results, every epoch, to this file")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist", help="folder of the four IDX .gz files")
    p.add_argument("--netfit-spec", default=None, help="benchmark this TOML recipe instead of the built-in spec "
                   "(its epochs, batch size, device and seed give way to this run's; val_fraction to 0)")
    p.add_argument("--netfit-set", action="append", default=[], metavar="KEY=VALUE",
                   help="netfit spec override, e.g. train.precision=fp32 (repeatable)")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    args.data_dir = str(Path(args.data_dir).resolve())  # netfit and every contender read the very same files
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but this torch sees no CUDA GPU")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = hardware(args.device)
    if "netfit" in args.only:
        check_netfit_spec(args)
    print(header(info, args), flush=True)
    report = {"command": shlex.join(["python", *sys.argv]), "hardware": info, "runs": [],
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    failures = 0
    for batch_size in args.batch_size:
        results, notes = {}, []
        for name in args.only:
            reason = skip_reason(name, args.device)
            if reason:
                notes.append(f"{name}: {reason}")
                continue
            setup = Setup(name, args.device, batch_size, args.epochs, args.seed, args.threads, args.data_dir,
                          args.netfit_spec, tuple(args.netfit_set))
            print(f"[batch {batch_size}] {name} ...", file=sys.stderr, flush=True)
            try:
                result = run_isolated(setup)
            except Exception as err:  # one contender failing (netfit mid-edit, no memory) must not end the others
                traceback.print_exception(err, file=sys.stderr)
                notes.append(f"{name}: failed: {type(err).__name__}: {err}")
                failures += 1
                continue
            result |= summarize(result, args.target)
            results[name] = result
            notes += [f"{name}: {note}" for note in result.get("notes", [])]
            print(f"[batch {batch_size}] {name}: {result['s_per_epoch']:.2f} s/epoch, test acc "
                  f"{result['test_accuracy'] or float('nan'):.4f}", file=sys.stderr, flush=True)
        print(table(batch_size, results, notes, args), flush=True)
        report["runs"].append({"batch_size": batch_size, "results": results, "notes": notes})
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")
    if failures:
        sys.exit(1)  # the tables above still hold every contender that finished


if __name__ == "__main__":
    main()
