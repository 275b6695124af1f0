"""Run directories: written whole or not at all, never overwritten, verified before use.

A run directory holds::

    model.safetensors   the weights (no pickle anywhere)
    run.json            spec, preparation (scalers, classes), final metrics, versions, file hashes
    metrics.csv         one row per epoch

The files are written into a hidden staging folder beside the target and renamed into place in
one step, so a crash leaves either a complete run or a staging folder, never a half-written run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import NetfitError
from .prepare import Preparation
from .spec import Spec, spec_from_dict
from .train import History

__all__ = ["RunFiles", "check_writable", "write_run", "read_run", "RUN_FORMAT"]

RUN_FORMAT = "netfit-run/1"
WEIGHTS, INFO, METRICS = "model.safetensors", "run.json", "metrics.csv"


@dataclass
class RunFiles:
    """The verified contents of a run directory."""

    path: Path
    spec: Spec
    preparation: Preparation
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, float]
    info: dict[str, Any]


def check_writable(parent: Path) -> None:
    """Fail before training, not after, if runs cannot be written under ``parent``."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".netfit-probe-"):
            pass
    except OSError as err:
        raise NetfitError(f"cannot write runs to {str(parent)!r} ({err.strerror or err}); "
                          "choose a writable folder with --out") from None


def write_run(parent: Path, name: str, network: torch.nn.Module, spec: Spec, preparation: Preparation,
              history: History, metrics: dict[str, float], device: str) -> Path:
    """Write a new run directory under ``parent`` and return its path."""
    check_writable(parent)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.partial-"))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        save_file(state, str(staging / WEIGHTS), metadata={"format": RUN_FORMAT})
        _write_metrics_csv(staging / METRICS, history)
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
            "files": {f: _sha256(staging / f) for f in (WEIGHTS, METRICS)},
        }
        (staging / INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        for f in (WEIGHTS, METRICS, INFO):
            _fsync(staging / f)
        final = _unused_name(parent, name)
        os.rename(staging, final)
        _fsync(parent)
        return final
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise NetfitError(f"could not write the run under {str(parent)!r} ({err.strerror or err}); "
                          "free some space or choose another folder with --out") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_run(path: str | Path) -> RunFiles:
    """Read and verify a run directory: every file's hash is checked before any is used."""
    path = Path(path)
    if not path.is_dir():
        raise NetfitError(f"run {str(path)!r} does not exist or is not a folder; pass a folder that "
                          "`netfit train` wrote")
    try:
        info = json.loads((path / INFO).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NetfitError(f"{str(path)!r} is not a netfit run: it has no {INFO}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NetfitError(f"{path / INFO} is damaged ({err}); the run cannot be trusted, train it again") from None
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        raise NetfitError(f"{path / INFO}: not a {RUN_FORMAT} run file")
    try:
        expected = dict(info["files"])
        spec = spec_from_dict(info["spec"], source=str(path / INFO))
        preparation = Preparation.from_dict(info["preparation"])
    except (KeyError, TypeError, ValueError) as err:
        raise NetfitError(f"{path / INFO} is incomplete or edited (missing {err}); train the run again") from None
    for name in (WEIGHTS, METRICS):
        if name not in expected:
            raise NetfitError(f"{path / INFO} lists no hash for {name}; the run is incomplete")
        if not (path / name).is_file():
            raise NetfitError(f"run {str(path)!r} is missing {name}; the run is incomplete")
        actual = _sha256(path / name)
        if actual != expected[name]:
            raise NetfitError(f"{path / name} does not match the hash in {INFO} (changed or damaged after "
                              "training); refusing to use it")
    try:
        state = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError) as err:
        raise NetfitError(f"{path / WEIGHTS} cannot be read ({err})") from None
    return RunFiles(path, spec, preparation, state, dict(info.get("metrics", {})), info)


def _write_metrics_csv(path: Path, history: History) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "train_loss", "val_loss", history.metric_name, "lr", "epoch_time_s"])
        for r in history.epochs:
            writer.writerow([r.epoch, f"{r.train_loss:.6g}", _fmt(r.val_loss), _fmt(r.val_metric),
                             f"{r.lr:.6g}", f"{r.epoch_time_s:.4f}"])


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _unused_name(parent: Path, name: str) -> Path:
    candidate, n = parent / name, 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{name}-{n}"
    return candidate


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _versions() -> dict[str, str]:
    from . import __version__

    return {"netfit": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}
