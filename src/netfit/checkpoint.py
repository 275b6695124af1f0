"""Training checkpoints: everything needed to continue a run exactly where it stood.

A checkpoint is a folder under ``RUN/checkpoints/``::

    epoch-0003/             after 3 whole epochs (``epoch-0003+0000120``: 120 steps into the 4th)
        weights.safetensors the network's state_dict
        state.safetensors   optimizer tensors, RNG states (torch CPU and CUDA, the shuffle generator)
        state.json          counters, history, Python and NumPy RNG states, the spec and its hash,
                            the training data's hash, the id of the run it belongs to, and the
                            SHA-256 and size of both files above; sealed (``storage.py``)
    best/                   the weights of the best validation epoch, with its own state.json

Each folder is written into a hidden staging folder, fsynced, and renamed into place; an old one
is renamed to a hidden name before it is deleted. So a crash at any instant leaves every visible
checkpoint whole, and what it interrupted is a hidden folder that the next resume clears.

Reading trusts nothing: the seal and every file's size and hash are checked, state.json is
validated by its schema (``runformat.py``), and the tensors are checked against it (names,
shapes, dtypes, RNG state sizes) before any of them is used. A checkpoint whose run id is not
its folder's run is refused. Nothing here is ever unpickled: tensors are safetensors, the rest
is JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as dump_tensors
from torch import nn

from .callbacks import Callback, Training, watched_metric
from .errors import NetfitError
from .features import Features
from .runformat import (CHECKPOINT_FORMAT, OPTIMIZER_STATE, BestState, CheckpointState, ResumeState, check_format,
                        read_run_id, validate)
from .spec import Spec, spec_from_dict
from .storage import (arrays_sha256, dump_sealed_json, file_entry, fsync_dir, load_sealed_json, read_verified,
                      remove_tree, temporary_folder, write_durably)
from .history import EpochRecord, TrainingState
from .model import load_weights
from .version import versions

__all__ = ["CHECKPOINT_FORMAT", "Checkpointer", "FollowerCheckpoints", "Checkpoint", "list_checkpoints",
           "read_checkpoint", "verify_checkpoints", "spec_hash", "data_hash"]

FOLDER = "checkpoints"
WEIGHTS, TENSORS, STATE = "weights.safetensors", "state.safetensors", "state.json"
_NAME = re.compile(r"^epoch-(\d{1,12})(?:\+(\d{1,15}))?$")  # bounded: a 5,000-digit name is no checkpoint


def spec_hash(spec: Spec) -> str:
    """SHA-256 of the spec's canonical JSON: equal specs, equal hashes."""
    return _spec_dict_hash(spec.to_dict())


def _spec_dict_hash(raw: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode("utf-8")).hexdigest()


def data_hash(X: torch.Tensor | Features, y: torch.Tensor) -> str:
    """SHA-256 of the training rows and targets as stored, so a resume can tell they are the same."""
    if isinstance(X, Features):
        return arrays_sha256(*X.arrays(), y.detach().cpu().numpy())
    return arrays_sha256(*(t.detach().cpu().numpy() for t in (X, y)))


def _checkpoint_name(state: TrainingState) -> str:
    name = f"epoch-{state.epochs_done:04d}"
    return name if state.steps_into_epoch == 0 else f"{name}+{state.steps_into_epoch:07d}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's resumable checkpoints, oldest first (staging folders and ``best`` excluded)."""
    folder = Path(run_dir) / FOLDER
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir():
            found.append(((int(match[1]), int(match[2] or 0)), path))
    return [path for _, path in sorted(found)]


class Checkpointer(Callback):
    """Writes a run's checkpoints: every ``checkpoint_every`` epochs, at the end, and the best epoch's weights.

    As a callback it saves at the ends of epochs; the loop also calls ``save`` when a signal
    stops a run mid-epoch.
    """

    def __init__(self, run_dir: Path, spec: Spec, data_sha256: str, steps_per_epoch: int,
                 resuming: "Checkpoint | None" = None) -> None:
        """``resuming``: the checkpoint training continues from, checked against this run and its data."""
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / FOLDER
        self.spec = spec
        self.data_sha256 = data_sha256
        self.steps_per_epoch = steps_per_epoch
        self.run_id = read_run_id(self.run_dir)  # every checkpoint names the run it belongs to
        if resuming is not None and isinstance(resuming.state, ResumeState) \
                and resuming.state.steps_per_epoch != steps_per_epoch:
            raise NetfitError(f"{resuming.path / STATE}: steps_per_epoch = {resuming.state.steps_per_epoch}, but the "
                              f"run's data and batch size give {steps_per_epoch} steps an epoch; the checkpoint was "
                              "edited or not written by this netfit, so it cannot be resumed")

    @property
    def latest(self) -> Path | None:
        """The newest resumable checkpoint on disk (only error messages ask, so a listing is cheap)."""
        existing = list_checkpoints(self.run_dir)
        return existing[-1] if existing else None

    def clear_leftovers(self) -> None:
        """Tidy what a killed process left behind (call it holding the run's lock).

        Staging folders and folders set aside for deletion go. A folder set aside to be replaced
        whose replacement never arrived (killed between the two renames) is put back.
        """
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.iterdir()):
            if not path.name.startswith(".") or path.is_symlink():  # netfit makes no links: never follow one
                continue
            if ".replaced-" in path.name:
                name = path.name[1:].split(".replaced-")[0]
                if (path / name).is_dir() and not (self.folder / name).exists():
                    os.rename(path / name, self.folder / name)
                    fsync_dir(self.folder)
                remove_tree(path)
            elif ".partial-" in path.name or ".removed-" in path.name:
                remove_tree(path)

    def on_epoch_end(self, training: Training, record: EpochRecord) -> None:
        if training.improved:  # BestEpoch, which runs first, has just found a new best
            self.save_best(training.model, record.epoch, watched_metric(training.spec, training.task),
                           training.state.best_score)
        last = record.epoch == training.epochs or training.stop_reason is not None
        # Records read back late are of epochs already past: only the epoch that just ended is saved.
        if record.epoch == training.state.epochs_done and (self.due(record.epoch) or last):
            self.save(training.state, training.model, training.optimizer, training.generator.get_state(),
                      training.grad_scaler, training.engine, training.best_weights)

    def due(self, epoch: int) -> bool:
        every = self.spec.train.checkpoint_every
        return every > 0 and epoch % every == 0

    def save(self, state: TrainingState, model: nn.Module, optimizer: torch.optim.Optimizer,
             shuffle_state: torch.Tensor, grad_scaler: torch.amp.GradScaler | None = None,
             engine: str = "eager", best_state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write a resumable checkpoint of ``state``; older ones beyond ``keep_checkpoints`` go.

        ``shuffle_state`` is the shuffle generator's state at the start of the epoch in progress
        (of the next epoch, at a boundary); ``best_state`` the weights early stopping would restore.
        """
        optimizer_tensors, optimizer_scalars = _optimizer_state(optimizer)
        tensors = {**{f"optimizer.{k}": v for k, v in optimizer_tensors.items()}, **_torch_rng_states(shuffle_state)}
        if best_state is not None:
            tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best_state.items()})
        body = {
            "format": CHECKPOINT_FORMAT,
            "kind": "resume",
            "epochs_done": state.epochs_done,
            "steps_into_epoch": state.steps_into_epoch,
            "global_step": state.global_step,
            "steps_per_epoch": self.steps_per_epoch,
            "epoch_loss_sum": state.epoch_loss_sum,
            "history": [asdict(r) for r in state.history],
            "best": {"score": state.best_score, "epoch": state.best_epoch, "waited": state.waited},
            "stopped_early": state.stopped_early,
            "optimizer": {"class": type(optimizer).__name__, "scalars": optimizer_scalars},
            "grad_scaler": grad_scaler.state_dict() if grad_scaler is not None else None,
            "rng": _host_rng_states(),
            "engine": engine,
            **self._identity(),
        }
        files = {WEIGHTS: _weights_bytes(model), TENSORS: dump_tensors(tensors)}
        path = self._write(_checkpoint_name(state), files, body)
        for old in list_checkpoints(self.run_dir)[:-self.spec.train.keep_checkpoints]:
            self._discard(old)
        return path

    def _discard(self, path: Path) -> None:
        # Deleting file by file can be cut short; renaming first hides the folder in one step, so
        # no visible checkpoint is ever half deleted.
        try:
            aside = self._set_aside(path, "removed")
            fsync_dir(self.folder)
        except OSError:
            return  # an old checkpoint left in place costs space, not correctness; the next save retries
        remove_tree(aside)

    def save_best(self, model: nn.Module, epoch: int, metric: str, score: float) -> Path:
        """Replace ``best/`` with the current weights, the best so far by ``metric``."""
        body = {"format": CHECKPOINT_FORMAT, "kind": "best", "epoch": epoch, "metric": metric, "score": score,
                **self._identity()}
        return self._write("best", {WEIGHTS: _weights_bytes(model)}, body)

    def _identity(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "spec": self.spec.to_dict(), "spec_sha256": spec_hash(self.spec),
                "data_sha256": self.data_sha256, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "versions": versions()}

    def _set_aside(self, path: Path, why: str) -> Path:
        """Move ``path`` into a new hidden folder ``.NAME.WHY-*`` in one rename; returns that folder."""
        aside = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".{path.name}.{why}-"))
        os.rename(path, aside / path.name)
        return aside

    def _write(self, name: str, files: dict[str, bytes], body: dict[str, Any]) -> Path:
        final = self.folder / name
        staging: Path | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            staging = temporary_folder(self.folder, f".{name}.partial-")
            body = {**body, "files": {f: file_entry(data) for f, data in files.items()}}
            for fname, data in {**files, STATE: dump_sealed_json(body)}.items():
                write_durably(staging / fname, data)
            fsync_dir(staging)
            # The same position written again (best, or after a resume): swap the old one out.
            aside = self._set_aside(final, "replaced") if final.exists() else None
            os.rename(staging, final)
            fsync_dir(self.folder)
            if aside is not None:
                remove_tree(aside)
            return final
        except OSError as err:
            if staging is not None:
                remove_tree(staging)
            latest = self.latest
            kept = f"the last good checkpoint {latest} is intact" if latest else "no checkpoint was kept"
            raise NetfitError(f"could not write checkpoint {final} ({err.strerror or err}); {kept}; free some "
                              f"space or make {self.folder} writable, then resume with "
                              f"`netfit train --resume {self.run_dir}`") from None


def _weights_bytes(model: nn.Module) -> bytes:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return dump_tensors(state, metadata={"format": CHECKPOINT_FORMAT})


def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    # Tensors (moments, step counts) go to safetensors; anything else (a None buffer, a number) to JSON.
    tensors, scalars = {}, {}
    for index, entries in optimizer.state_dict()["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, scalars


def _torch_rng_states(shuffle_state: torch.Tensor) -> dict[str, torch.Tensor]:
    states = {"rng.torch_cpu": torch.get_rng_state(), "rng.shuffle": shuffle_state.cpu()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"rng.cuda.{i}"] = s
    return states


def _host_rng_states() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


class FollowerCheckpoints(Callback):
    """What a rank other than 0 knows of the checkpoints: the same schedule, and nothing written.

    Rank 0's :class:`Checkpointer` writes them; the loop on every other rank takes the same
    decisions from this one (when to read back, where a signal's checkpoint went).
    """

    def __init__(self, run_dir: Path, spec: Spec) -> None:
        self.run_dir, self.spec = Path(run_dir), spec

    @property
    def latest(self) -> Path | None:
        return None  # only rank 0's messages name it

    due = Checkpointer.due  # the same schedule, read from the same spec

    def save(self, state: TrainingState, *args: Any, **kwargs: Any) -> Path:
        return self.run_dir / FOLDER / _checkpoint_name(state)  # where rank 0 writes it


# ----------------------------------------------------------------------------- reading


@dataclass
class Checkpoint:
    """A verified checkpoint: its validated state.json, its spec and its tensors, all checked."""

    path: Path
    body: dict[str, Any]  # state.json as written (seal removed), every value validated by ``state``
    state: ResumeState | BestState
    spec: Spec
    weights: dict[str, torch.Tensor]
    tensors: dict[str, torch.Tensor]

    def training_state(self) -> TrainingState:
        s = self.state
        history = [EpochRecord(**row.model_dump()) for row in s.history]
        return TrainingState(s.epochs_done, s.steps_into_epoch, s.global_step, s.epoch_loss_sum, history,
                             s.best.score, s.best.epoch, s.best.waited, s.stopped_early)

    def best_weights(self) -> dict[str, torch.Tensor] | None:
        """The weights early stopping would restore, as they were when this was written."""
        best = {k.removeprefix("best."): v for k, v in self.tensors.items() if k.startswith("best.")}
        return best or None

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                grad_scaler: torch.amp.GradScaler | None = None) -> None:
        """Put weights, optimizer state and every RNG back as they were when this was written.

        Everything is checked against the live objects first (optimizer class and state shapes,
        RNG state sizes), so a checkpoint that does not fit changes nothing and names the problem.
        """
        t = self.tensors
        cuda = [t[f"rng.cuda.{i}"] for i in range(sum(k.startswith("rng.cuda.") for k in t))]
        restore_cuda = bool(cuda) and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count()
        self._check_fits(optimizer, generator, cuda if restore_cuda else [])
        load_weights(model, self.weights, self.path)
        _restore_optimizer(optimizer, self)
        if grad_scaler is not None and self.state.grad_scaler is not None:
            grad_scaler.load_state_dict(self.body["grad_scaler"])
        generator.set_state(t["rng.shuffle"])
        torch.set_rng_state(t["rng.torch_cpu"])
        if restore_cuda:
            torch.cuda.set_rng_state_all(cuda)
        version, internal, gauss = self.state.rng.python
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = self.state.rng.numpy
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))

    def _check_fits(self, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                    cuda: list[torch.Tensor]) -> None:
        source = self.path / TENSORS
        saved = self.state.optimizer.class_
        if saved != type(optimizer).__name__:
            raise NetfitError(f"{self.path / STATE}: optimizer.class = {saved!r}, but the run trains with "
                              f"{type(optimizer).__name__}; refusing to resume from it")
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for name, value in self.tensors.items():
            if not name.startswith("optimizer."):
                continue
            index, key = name.removeprefix("optimizer.").split(".", 1)
            if int(index) >= len(params):
                _bad_tensor(source, name, f"is for parameter {index}, but the network has {len(params)}")
            param = params[int(index)]
            if key != "step" and (value.shape != param.shape or value.dtype != param.dtype):
                _bad_tensor(source, name, f"is {_describe(value)}, but parameter {index} is {_describe(param)}")
        for name, expected in [("rng.shuffle", generator.get_state())] + [
                (f"rng.cuda.{i}", torch.cuda.get_rng_state(i)) for i in range(len(cuda))]:
            value = self.tensors[name]
            if value.shape != expected.shape or value.dtype != expected.dtype:
                _bad_tensor(source, name, f"is {_describe(value)}, but this generator's state is {_describe(expected)}")
        for index in {int(k.split(".")[0]) for k in self.state.optimizer.scalars}:
            if index >= len(params):
                raise NetfitError(f"{self.path / STATE}: optimizer.scalars names parameter {index}, but the network "
                                  f"has {len(params)}; refusing to resume from it")


def read_checkpoint(path: Path, run_id: str | None = None) -> Checkpoint:
    """Verify one checkpoint folder (seal, schema, every file's size and hash, tensors), then load it.

    ``run_id`` is the id of the run the folder is in (read from ``RUN/run-id.json`` when None):
    a checkpoint of another run is refused.
    """
    path = Path(path)
    source = path / STATE
    raw = load_sealed_json(source)
    check_format(raw, CHECKPOINT_FORMAT, source)
    state: ResumeState | BestState = validate(CheckpointState, raw, source)
    run_dir = path.parent.parent
    if run_id is None:
        run_id = read_run_id(run_dir)
    if state.run_id != run_id:
        raise NetfitError(f"checkpoint {path} belongs to run {state.run_id}, not to run {run_id} ({run_dir}): it was "
                          f"copied from another run; remove it (or put back this run's own) before using {run_dir}")
    name = "best" if isinstance(state, BestState) else _checkpoint_name(state)
    if path.name != name:
        raise NetfitError(f"{source} describes checkpoint {name!r} but lies in {path.name!r}; it was moved or "
                          "edited, so it cannot be used")
    if state.spec_sha256 != _spec_dict_hash(state.spec):
        raise NetfitError(f"{source}: the spec does not match its recorded hash; refusing to use it")
    spec = spec_from_dict(raw["spec"], source=f"{source} (spec)")
    _check_spec_agrees(state, spec, raw["spec"], source)
    blobs = {fname: read_verified(path / fname, entry.model_dump(), source) for fname, entry in state.files.items()}
    weights = _tensors(blobs[WEIGHTS], path / WEIGHTS)
    tensors = _tensors(blobs[TENSORS], path / TENSORS) if TENSORS in blobs else {}
    if isinstance(state, ResumeState):
        _check_state_tensors(state, spec, weights, tensors, path / TENSORS)
    return Checkpoint(path, raw, state, spec, weights, tensors)


def verify_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """Read and verify every checkpoint of a run (``best`` included), oldest first; all must be the run's own."""
    paths = list_checkpoints(run_dir)
    best = Path(run_dir) / FOLDER / "best"
    paths += [best] if best.is_dir() else []
    if not paths:  # nothing to check (a process killed as it started may not have written the run's id yet)
        return []
    run_id = read_run_id(run_dir)
    return [read_checkpoint(p, run_id) for p in paths]


def _check_spec_agrees(state: ResumeState | BestState, spec: Spec, raw: dict[str, Any], source: Path) -> None:
    # The spec is stored as Spec.to_dict() wrote it; a value the spec's own (lenient) validation
    # would convert, such as "2" for 2, was put there by hand.
    canonical = spec.to_dict()
    if json.dumps(canonical, sort_keys=True) != json.dumps(raw, sort_keys=True):
        where = _first_difference(raw, canonical) or "spec"
        raise NetfitError(f"{source}: {where} is not as netfit writes it; the file was edited, so the run cannot "
                          "be used")
    if isinstance(state, ResumeState):
        if state.epochs_done > spec.train.epochs:
            raise NetfitError(f"{source}: epochs_done = {state.epochs_done}: more than the spec's train.epochs "
                              f"({spec.train.epochs}); the file was edited, so the run cannot be used")
        torch_class = OPTIMIZER_STATE[spec.train.optimizer.name][0]
        if state.optimizer.class_ != torch_class:
            raise NetfitError(f"{source}: optimizer.class = {state.optimizer.class_!r}, but the spec trains with "
                              f"{spec.train.optimizer.name!r} ({torch_class}); the file was edited, so the run "
                              "cannot be used")
    elif state.epoch > spec.train.epochs:
        raise NetfitError(f"{source}: epoch = {state.epoch}: more than the spec's train.epochs ({spec.train.epochs})")


def _first_difference(a: Any, b: Any, prefix: str = "spec") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{prefix}.{key}")
            if found:
                return found
        return None
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    return None if same else f"{prefix} = {json.dumps(a)[:60]}"


def _tensors(data: bytes, source: Path) -> dict[str, torch.Tensor]:
    try:
        return load_tensors(data)
    except (SafetensorError, KeyError, ValueError, RuntimeError) as err:
        raise NetfitError(f"checkpoint file {source} cannot be read ({err}); it was not written by netfit") from None


_OPTIMIZER_TENSOR = re.compile(r"^optimizer\.(\d{1,9})\.([a-z_]{1,40})$")
_CUDA_RNG = re.compile(r"^rng\.cuda\.(\d{1,4})$")


def _check_state_tensors(state: ResumeState, spec: Spec, weights: dict[str, torch.Tensor],
                         tensors: dict[str, torch.Tensor], source: Path) -> None:
    """What can be checked without the network: names, dtypes, RNG state sizes, optimizer state keys."""
    options = spec.train.optimizer
    per_param = OPTIMIZER_STATE[options.name][1](options)
    keys: dict[int, set[str]] = {}
    cuda = []
    for name, value in tensors.items():
        if name == "rng.torch_cpu":
            expected = torch.get_rng_state()
            if value.shape != expected.shape or value.dtype != expected.dtype:
                _bad_tensor(source, name, f"is {_describe(value)}, but torch's CPU generator state is "
                            f"{_describe(expected)}")
        elif name == "rng.shuffle" or _CUDA_RNG.match(name):
            if value.dtype != torch.uint8 or value.dim() != 1:
                _bad_tensor(source, name, f"is {_describe(value)}, not a generator state (a 1-D uint8 tensor)")
            if name != "rng.shuffle":
                cuda.append(int(_CUDA_RNG.match(name)[1]))
        elif name.startswith("best."):
            twin = weights.get(name.removeprefix("best."))
            if twin is None or twin.shape != value.shape or twin.dtype != value.dtype:
                _bad_tensor(source, name, "does not match a tensor of the checkpoint's weights")
        elif match := _OPTIMIZER_TENSOR.match(name):
            index, key = int(match[1]), match[2]
            if key not in per_param:
                _bad_tensor(source, name, f"is no state of {state.optimizer.class_} as the spec sets it up "
                            f"(its state per parameter: {', '.join(sorted(per_param)) or 'none'})")
            keys.setdefault(index, set()).add(key)
            if key == "step":
                if value.shape != () or value.dtype != torch.float32:
                    _bad_tensor(source, name, f"is {_describe(value)}, not a step count (a float32 scalar)")
                step = float(value)
                if not (step.is_integer() and 0 <= step <= state.global_step):
                    _bad_tensor(source, name, f"= {step:g}, not a count of steps between 0 and global_step "
                                f"({state.global_step})")
            elif not value.dtype.is_floating_point:
                _bad_tensor(source, name, f"is {_describe(value)}, not a floating-point tensor")
        else:
            _bad_tensor(source, name, "is not part of a checkpoint")
    for required in ("rng.torch_cpu", "rng.shuffle"):
        if required not in tensors:
            raise NetfitError(f"{source}: the tensor {required!r} is missing; the checkpoint cannot be resumed")
    if sorted(cuda) != list(range(len(cuda))):
        raise NetfitError(f"{source}: CUDA generator states {sorted(cuda)} are not numbered 0, 1, ...")
    best = {k for k in tensors if k.startswith("best.")}
    if best and best != {f"best.{k}" for k in weights}:
        raise NetfitError(f"{source}: the best weights (best.*) are not a whole set of the network's tensors")
    for name, value in state.optimizer.scalars.items():
        # torch keeps every entry of these optimizers' state as a tensor; only a buffer not made
        # yet may be None. A number here would reach torch's update code as the wrong type.
        index, key = name.split(".", 1)
        if key not in per_param or key in keys.get(int(index), set()) or value is not None:
            raise NetfitError(f"{source.parent / STATE}: optimizer.scalars[{name!r}] = {value!r} is not a state "
                              f"{state.optimizer.class_} keeps outside its tensors; the file was edited or not "
                              "written by this netfit, so the run cannot be used")
        keys.setdefault(int(index), set()).add(key)
    for index, found in sorted(keys.items()):
        if found != per_param:
            raise NetfitError(f"{source}: the optimizer state of parameter {index} holds {', '.join(sorted(found))}; "
                              f"{state.optimizer.class_} needs {', '.join(sorted(per_param))}")


def _bad_tensor(source: Path, name: str, problem: str) -> None:
    raise NetfitError(f"{source}: tensor {name!r} {problem}; the file was edited or not written by this netfit, "
                      "so the run cannot be used")


def _describe(t: torch.Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} of shape {tuple(t.shape)}"


def _restore_optimizer(optimizer: torch.optim.Optimizer, checkpoint: Checkpoint) -> None:
    # Names, shapes and dtypes were checked by read_checkpoint and Checkpoint._check_fits.
    current = optimizer.state_dict()
    state: dict[int, dict[str, Any]] = {}
    items = [(k.removeprefix("optimizer."), v) for k, v in checkpoint.tensors.items() if k.startswith("optimizer.")]
    for name, value in items + list(checkpoint.state.optimizer.scalars.items()):
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    # The parameter groups (fused, capturable, ...) are this run's own: only the state is restored.
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
