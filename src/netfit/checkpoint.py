"""Training checkpoints: everything needed to continue a run exactly where it stood.

A checkpoint is a folder under ``RUN/checkpoints/``::

    epoch-0003/             after 3 whole epochs (``epoch-0003+0000120``: 120 steps into the 4th)
        weights.safetensors the network's state_dict
        state.safetensors   optimizer tensors, RNG states (torch CPU and CUDA, the shuffle generator)
        state.json          counters, history, Python and NumPy RNG states, the spec and its hash,
                            the training data's hash, and the SHA-256 of both files above; sealed
                            with the hash of its own body
    best/                   the weights of the best validation epoch, with its own state.json

Each folder is written into a hidden staging folder, fsynced, and renamed into place; an old one
is renamed to a hidden name before it is deleted. So a crash at any instant leaves every visible
checkpoint whole, and what it interrupted is a hidden folder that the next resume clears. Nothing here is ever unpickled: tensors
are safetensors, the rest is JSON, and every file's hash is checked before any of it is used.
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

from .errors import NetfitError
from .spec import Spec, spec_from_dict
from .storage import dump_sealed_json, fsync_dir, load_sealed_json, read_verified, remove_tree
from .train import EpochRecord, TrainingState

__all__ = ["CHECKPOINT_FORMAT", "Checkpointer", "Checkpoint", "list_checkpoints",
           "read_checkpoint", "verify_checkpoints", "spec_hash", "data_hash"]

CHECKPOINT_FORMAT = "netfit-checkpoint/1"
FOLDER = "checkpoints"
WEIGHTS, TENSORS, STATE = "weights.safetensors", "state.safetensors", "state.json"
_NAME = re.compile(r"^epoch-(\d+)(?:\+(\d+))?$")


def spec_hash(spec: Spec) -> str:
    """SHA-256 of the spec's canonical JSON: equal specs, equal hashes."""
    return _spec_dict_hash(spec.to_dict())


def _spec_dict_hash(raw: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode("utf-8")).hexdigest()


def data_hash(X: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-256 of the training rows and targets as stored, so a resume can tell they are the same."""
    digest = hashlib.sha256()
    for t in (X, y):
        array = t.detach().cpu().contiguous().numpy()
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


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


class Checkpointer:
    """Writes a run's checkpoints: every ``every`` epochs, at the end, and the best epoch's weights."""

    def __init__(self, run_dir: Path, spec: Spec, data_sha256: str, steps_per_epoch: int) -> None:
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / FOLDER
        self.spec = spec
        self.data_sha256 = data_sha256
        self.steps_per_epoch = steps_per_epoch

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
            if not path.name.startswith("."):
                continue
            if ".replaced-" in path.name:
                name = path.name[1:].split(".replaced-")[0]
                if (path / name).is_dir() and not (self.folder / name).exists():
                    os.rename(path / name, self.folder / name)
                    fsync_dir(self.folder)
                remove_tree(path)
            elif ".partial-" in path.name or ".removed-" in path.name:
                remove_tree(path)

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
        from . import __version__

        return {"spec": self.spec.to_dict(), "spec_sha256": spec_hash(self.spec), "data_sha256": self.data_sha256,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "versions": {"netfit": __version__, "torch": torch.__version__}}

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
            staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".{name}.partial-"))
            body = {**body, "files": {f: hashlib.sha256(data).hexdigest() for f, data in files.items()}}
            for fname, data in {**files, STATE: dump_sealed_json(body)}.items():
                _write_durably(staging / fname, data)
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


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


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


# ----------------------------------------------------------------------------- reading


@dataclass
class Checkpoint:
    """A verified checkpoint: its state.json body and its tensors, hashes already checked."""

    path: Path
    body: dict[str, Any]
    weights: dict[str, torch.Tensor]
    tensors: dict[str, torch.Tensor]

    @property
    def spec(self) -> Spec:
        return spec_from_dict(self.body["spec"], source=str(self.path / STATE))

    def training_state(self) -> TrainingState:
        b = self.body
        history = [EpochRecord(**r) for r in b["history"]]
        return TrainingState(b["epochs_done"], b["steps_into_epoch"], b["global_step"], b["epoch_loss_sum"],
                             history, b["best"]["score"], b["best"]["epoch"], b["best"]["waited"],
                             b["stopped_early"])

    def best_weights(self) -> dict[str, torch.Tensor] | None:
        """The weights early stopping would restore, as they were when this was written."""
        best = {k.removeprefix("best."): v for k, v in self.tensors.items() if k.startswith("best.")}
        return best or None

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                grad_scaler: torch.amp.GradScaler | None = None) -> None:
        """Put weights, optimizer state and every RNG back as they were when this was written."""
        _load_weights(model, self.weights, self.path)
        _restore_optimizer(optimizer, self, self.path)
        if grad_scaler is not None and self.body.get("grad_scaler"):
            grad_scaler.load_state_dict(self.body["grad_scaler"])
        t = self.tensors
        generator.set_state(t["rng.shuffle"])
        torch.set_rng_state(t["rng.torch_cpu"])
        cuda = [t[f"rng.cuda.{i}"] for i in range(len([k for k in t if k.startswith("rng.cuda.")]))]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        version, internal, gauss = self.body["rng"]["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = self.body["rng"]["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def read_checkpoint(path: Path) -> Checkpoint:
    """Verify every file of one checkpoint folder against its sealed state.json, then load it."""
    path = Path(path)
    body = load_sealed_json(path / STATE)
    if body.get("format") != CHECKPOINT_FORMAT:
        raise NetfitError(f"{path / STATE}: not a {CHECKPOINT_FORMAT} file")
    try:
        listed = dict(body["files"])
        spec_ok = body["spec_sha256"] == _spec_dict_hash(body["spec"])
    except (KeyError, TypeError, ValueError) as err:
        raise NetfitError(f"{path / STATE} is incomplete (missing {err}); it cannot be used") from None
    if not spec_ok:
        raise NetfitError(f"{path / STATE}: the spec does not match its recorded hash; refusing to use it")
    blobs = {fname: read_verified(path / fname, expected, path / STATE) for fname, expected in listed.items()}
    try:
        weights = load_tensors(blobs[WEIGHTS]) if WEIGHTS in blobs else {}
        tensors = load_tensors(blobs[TENSORS]) if TENSORS in blobs else {}
    except (SafetensorError, KeyError, ValueError) as err:
        raise NetfitError(f"checkpoint {path} cannot be read ({err})") from None
    if body.get("kind") == "resume" and (not weights or "rng.shuffle" not in tensors):
        raise NetfitError(f"checkpoint {path} lacks its weights or training state; it cannot be resumed")
    return Checkpoint(path, body, weights, tensors)


def verify_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """Read and verify every checkpoint of a run (``best`` included), oldest first."""
    paths = list_checkpoints(run_dir)
    best = Path(run_dir) / FOLDER / "best"
    return [read_checkpoint(p) for p in paths + ([best] if best.is_dir() else [])]


def _load_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        lines = str(err).strip().splitlines()
        raise NetfitError(f"{source}: the weights do not fit the network its spec describes "
                          f"({lines[1].strip() if len(lines) > 1 else lines[0]})") from None


def _restore_optimizer(optimizer: torch.optim.Optimizer, checkpoint: Checkpoint, source: Path) -> None:
    saved = checkpoint.body["optimizer"]
    if saved["class"] != type(optimizer).__name__:
        raise NetfitError(f"{source}: saved for {saved['class']}, not {type(optimizer).__name__}")
    current = optimizer.state_dict()
    count = sum(len(g["params"]) for g in current["param_groups"])
    state: dict[int, dict[str, Any]] = {}
    items = [(k.removeprefix("optimizer."), v) for k, v in checkpoint.tensors.items() if k.startswith("optimizer.")]
    for name, value in items + list(saved["scalars"].items()):
        index, key = name.split(".", 1)
        if not index.isdigit() or int(index) >= count:
            raise NetfitError(f"{source}: optimizer state for parameter {index} does not fit this network")
        state.setdefault(int(index), {})[key] = value
    # The parameter groups (fused, capturable, ...) are this run's own: only the state is restored.
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
