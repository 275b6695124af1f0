"""Run directories: created once, never overwritten, finished atomically, verified before use.

A run directory holds::

    run-id.json         the run's random id, written when the folder is created
    checkpoints/        resumable checkpoints and the best epoch's weights (``checkpoint.py``)
    model.safetensors   the final weights (no pickle anywhere)
    metrics.csv         one row per epoch
    run.json            the run id, spec, preparation (scalers, classes), final metrics, versions,
                        the SHA-256 and size of model.safetensors and metrics.csv; sealed

The folder is created when training starts and holds only checkpoints until training ends.
``run.json`` is written last, atomically: a run is finished exactly when it has one, and until
then it can be resumed (``netfit train --resume RUN``) but not loaded. Every JSON file is sealed
(``storage.py``: a SHA-256, or an HMAC with ``NETFIT_SIGNING_KEY``) and validated by its schema
(``runformat.py``) when read; run.json and every checkpoint must carry the folder's run id.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as dump_tensors

from .checkpoint import Checkpoint, list_checkpoints, verify_checkpoints
from .errors import NetfitError
from .preparation import Preparation
from .runformat import RUN_FORMAT, RUN_ID_FILE, RunInfo, check_format, read_run_id, validate, write_run_id
from .spec import LOSS_TASK, Spec, spec_from_dict
from .storage import dump_sealed_json, file_entry, fsync_dir, load_sealed_json, read_verified, remove_tree, write_atomic
from .history import History, metrics_csv
from .version import versions

__all__ = ["RunFiles", "enclosing_run", "check_writable", "create_run_dir", "run_lock", "finish_run", "read_run", "is_finished",
           "RUN_FORMAT", "RUN_ID_FILE"]

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
    checkpoints: list[Checkpoint]  # verified, oldest first, ``best`` last


def enclosing_run(path: Path) -> Path | None:
    """The run folder that ``path`` is or lies in, if any: netfit never writes anything of its own there."""
    target = Path(path).expanduser().absolute()
    for folder in (target, *target.parents):
        if (folder / INFO).is_file() or (folder / RUN_ID_FILE).is_file() or (folder / "checkpoints").is_dir():
            return folder
    return None


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
    """A new run folder under ``parent`` (``name``, else ``name-2``, ``name-3``...) holding only its id."""
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
        try:
            write_run_id(candidate)
        except BaseException as err:
            remove_tree(candidate)  # a folder without its id is no run: leave nothing behind
            if isinstance(err, OSError):
                raise NetfitError(f"cannot create a run under {str(parent)!r} ({err.strerror or err}); "
                                  "choose a writable folder with --out") from None
            raise
        fsync_dir(parent)
        return candidate


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock while training: two processes never write one run at the same time.

    The lock is the operating system's (``flock``) on the run folder itself, not on a file in it:
    deleting or replacing any file cannot release it, and it ends with the process that holds
    it, however that process ends. It is not re-entrant: a second ``run_lock`` on the same run,
    even in the same process, is refused.
    """
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        yield
        return
    try:
        fd = os.open(run_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise NetfitError(f"cannot open run {str(run_dir)!r} ({err.strerror or err}); pass a run folder that "
                          "`netfit train` wrote") from None
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
               history: History, metrics: dict[str, float], device: str, rows: dict[str, int],
               processes: dict[str, Any] | None = None) -> Path:
    """Write the final files of a trained run; ``run.json`` last, so the run is whole or unfinished.

    ``rows``: how many rows each part ("train", "validation", "test") had; ``processes``: the
    torchrun job's ``world_size`` and ``backend`` (None: one process, not started by torchrun).
    """
    run_id = read_run_id(run_dir)
    try:
        # A resumed run replaces its final files: it is first marked unfinished, so a crash in
        # between leaves a run to resume, never one whose files disagree.
        if (run_dir / INFO).exists():
            (run_dir / INFO).unlink()
            fsync_dir(run_dir)
        state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        files = {WEIGHTS: dump_tensors(state, metadata={"format": RUN_FORMAT}),
                 METRICS: metrics_csv(history.epochs, history.metric_name).encode("utf-8")}
        for name, data in files.items():
            write_atomic(run_dir / name, data)
        info = {
            "format": RUN_FORMAT,
            "run_id": run_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "spec": spec.to_dict(),
            "preparation": preparation.to_dict(),
            "metrics": metrics,
            "training": {"epochs_run": len(history.epochs), "best_epoch": history.best_epoch,
                         "stopped_early": history.stopped_early, "device": device,
                         "engine": history.engine, "rows": rows,
                         **({"processes": processes} if processes is not None else {})},
            "versions": versions(),
            "files": {name: file_entry(data) for name, data in files.items()},
        }
        write_atomic(run_dir / INFO, dump_sealed_json(info))
        return run_dir
    except OSError as err:
        raise NetfitError(f"could not write the finished run to {str(run_dir)!r} ({err.strerror or err}); its "
                          f"checkpoints are intact: free some space, then `netfit train --resume {run_dir}`") from None


def is_finished(run_dir: Path) -> bool:
    """Whether training wrote the run's final files (``run.json`` is written last).

    Anything named run.json counts: reading it then says what is wrong with it (a FIFO, a folder).
    """
    return os.path.lexists(Path(run_dir) / INFO)


def read_run(path: str | Path) -> RunFiles:
    """Read a finished run, after checking every file of it (checkpoints included): seal, schema, size, hash."""
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
    source = path / INFO
    raw = load_sealed_json(source)
    check_format(raw, RUN_FORMAT, source)
    info: RunInfo = validate(RunInfo, raw, source)
    run_id = read_run_id(path)
    if info.run_id != run_id:
        raise NetfitError(f"{source} belongs to run {info.run_id}, not to run {run_id} ({path}): it was copied from "
                          "another run, so the run cannot be used")
    spec = spec_from_dict(raw["spec"], source=f"{source} (spec)")
    if info.training.epochs_run > spec.train.epochs:
        raise NetfitError(f"{source}: training.epochs_run = {info.training.epochs_run}: more than the spec's "
                          f"train.epochs ({spec.train.epochs}); the file was edited, so the run cannot be used")
    preparation = Preparation.from_dict(raw["preparation"], source=f"{source} (preparation)")
    _check_spec_fits_preparation(spec, preparation, source)
    weights = read_verified(path / WEIGHTS, info.files[WEIGHTS].model_dump(), source)
    read_verified(path / METRICS, info.files[METRICS].model_dump(), source)
    checkpoints = verify_checkpoints(path)
    try:
        state = load_tensors(weights)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise NetfitError(f"{path / WEIGHTS} cannot be read ({err})") from None
    return RunFiles(path, spec, preparation, state, dict(raw["metrics"]), raw, checkpoints)


def _check_spec_fits_preparation(spec: Spec, preparation: Preparation, source: str) -> None:
    """The spec and the preparation of one run must describe the same network and task."""
    widths = {"model.input": (spec.model.input, preparation.input_size),
              "model.output": (spec.model.output, preparation.output_size)}
    for key, (written, prepared) in widths.items():
        if written != "auto" and spec.model.module is None and written != prepared:
            raise NetfitError(f"{source}: {key} = {written} but the preparation says {prepared}; the file was "
                              "edited, so the run cannot be used")
    task = spec.train.task if spec.train.task != "auto" else (
        LOSS_TASK[spec.train.loss.name] if spec.train.loss is not None else preparation.task)
    if task != preparation.task:
        raise NetfitError(f"{source}: the spec trains for {task} but the preparation says {preparation.task}; the "
                          "file was edited, so the run cannot be used")
