"""Run directories: created once, never overwritten, finished atomically, verified before use.

A run directory holds::

    checkpoints/        resumable checkpoints and the best epoch's weights (``checkpoint.py``)
    model.safetensors   the final weights (no pickle anywhere)
    metrics.csv         one row per epoch
    run.json            spec, preparation (scalers, classes), final metrics, versions, the hash of
                        every file above, sealed with the hash of its own body

The folder is created when training starts and holds only checkpoints until training ends.
``run.json`` is written last, atomically: a run is finished exactly when it has one, and until
then it can be resumed (``netfit train --resume RUN``) but not loaded.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as dump_tensors

from .checkpoint import Checkpoint, list_checkpoints, verify_checkpoints
from .errors import NetfitError
from .prepare import Preparation
from .spec import Spec, spec_from_dict
from .storage import dump_sealed_json, fsync_dir, load_sealed_json, read_verified, write_atomic
from .train import History

__all__ = ["RunFiles", "check_writable", "create_run_dir", "run_lock", "finish_run", "read_run", "is_finished",
           "RUN_FORMAT"]

RUN_FORMAT = "netfit-run/1"
WEIGHTS, INFO, METRICS, LOCK = "model.safetensors", "run.json", "metrics.csv", ".lock"


@dataclass
class RunFiles:
    """The verified contents of a run directory."""

    path: Path
    spec: Spec
    preparation: Preparation
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, float]
    info: dict[str, Any]
    checkpoints: list[Checkpoint]  # verified, oldest first, ``best`` last


def check_writable(parent: Path) -> None:
    """Fail before training, not after, if runs cannot be written under ``parent``."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".netfit-probe-"):
            pass
    except OSError as err:
        raise NetfitError(f"cannot write runs to {str(parent)!r} ({err.strerror or err}); "
                          "choose a writable folder with --out") from None


def create_run_dir(parent: Path, name: str) -> Path:
    """A new, empty run folder under ``parent``: ``name``, else ``name-2``, ``name-3``..."""
    check_writable(parent)
    n = 1
    while True:
        candidate = parent / (name if n == 1 else f"{name}-{n}")
        try:
            candidate.mkdir()  # fails if it exists: two runs never share a folder
        except FileExistsError:
            n += 1
            continue
        except OSError as err:
            raise NetfitError(f"cannot create a run under {str(parent)!r} ({err.strerror or err}); "
                              "choose a writable folder with --out") from None
        fsync_dir(parent)
        return candidate


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock while training: two processes never write one run at the same time."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        yield
        return
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NetfitError(f"run {str(run_dir)!r} is being trained by another netfit process; wait for it "
                              "to finish or stop it first") from None
        yield
    finally:
        os.close(fd)


def finish_run(run_dir: Path, network: torch.nn.Module, spec: Spec, preparation: Preparation,
               history: History, metrics: dict[str, float], device: str) -> Path:
    """Write the final files of a trained run; ``run.json`` last, so the run is whole or unfinished."""
    try:
        # A resumed run replaces its final files: it is first marked unfinished, so a crash in
        # between leaves a run to resume, never one whose files disagree.
        if (run_dir / INFO).exists():
            (run_dir / INFO).unlink()
            fsync_dir(run_dir)
        state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        files = {WEIGHTS: dump_tensors(state, metadata={"format": RUN_FORMAT}),
                 METRICS: _metrics_csv(history).encode("utf-8")}
        for name, data in files.items():
            write_atomic(run_dir / name, data)
        info = {
            "format": RUN_FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "spec": spec.to_dict(),
            "preparation": preparation.to_dict(),
            "metrics": metrics,
            "training": {"epochs_run": len(history.epochs), "best_epoch": history.best_epoch,
                         "stopped_early": history.stopped_early, "device": device,
                         "engine": history.engine},
            "versions": _versions(),
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        }
        write_atomic(run_dir / INFO, dump_sealed_json(info))
        return run_dir
    except OSError as err:
        raise NetfitError(f"could not write the finished run to {str(run_dir)!r} ({err.strerror or err}); its "
                          f"checkpoints are intact: free some space, then `netfit train --resume {run_dir}`") from None


def is_finished(run_dir: Path) -> bool:
    """Whether training wrote the run's final files (``run.json`` is written last)."""
    return (Path(run_dir) / INFO).is_file()


def read_run(path: str | Path) -> RunFiles:
    """Read a finished run, after checking every file of it (checkpoints included) against its hash."""
    path = Path(path)
    if not path.is_dir():
        raise NetfitError(f"run {str(path)!r} does not exist or is not a folder; pass a folder that "
                          "`netfit train` wrote")
    if not is_finished(path):
        checkpoints = list_checkpoints(path)
        if checkpoints:
            raise NetfitError(f"run {str(path)!r} has not finished training (latest checkpoint: "
                              f"{checkpoints[-1].name}); continue it with `netfit train --resume {path}`")
        raise NetfitError(f"{str(path)!r} is not a netfit run: it has no {INFO}")
    info = load_sealed_json(path / INFO)
    if info.get("format") != RUN_FORMAT:
        raise NetfitError(f"{path / INFO}: not a {RUN_FORMAT} run file")
    try:
        expected = dict(info["files"])
        spec = spec_from_dict(info["spec"], source=str(path / INFO))
        preparation = Preparation.from_dict(info["preparation"])
    except (KeyError, TypeError, ValueError) as err:
        raise NetfitError(f"{path / INFO} is incomplete (missing {err}); train the run again") from None
    for name in (WEIGHTS, METRICS):
        if name not in expected:
            raise NetfitError(f"{path / INFO} lists no hash for {name}; the run is incomplete")
    weights = read_verified(path / WEIGHTS, expected[WEIGHTS], path / INFO)
    read_verified(path / METRICS, expected[METRICS], path / INFO)
    checkpoints = verify_checkpoints(path)
    try:
        state = load_tensors(weights)
    except (SafetensorError, ValueError) as err:
        raise NetfitError(f"{path / WEIGHTS} cannot be read ({err})") from None
    return RunFiles(path, spec, preparation, state, dict(info.get("metrics", {})), info, checkpoints)


def _metrics_csv(history: History) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["epoch", "train_loss", "val_loss", history.metric_name, "lr", "epoch_time_s"])
    for r in history.epochs:
        writer.writerow([r.epoch, f"{r.train_loss:.6g}", _fmt(r.val_loss), _fmt(r.val_metric),
                         f"{r.lr:.6g}", f"{r.epoch_time_s:.4f}"])
    return buffer.getvalue()


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _versions() -> dict[str, str]:
    from . import __version__

    return {"netfit": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}
