"""The JSON files of a run folder as typed schemas: what netfit writes, and all it accepts back.

A run folder is data that may come from anyone, so each value read from it is checked here
before any of it is used: unknown keys are refused, types are strict (``"2"`` is not an
epoch count), counters are bounded and agree with each other, and a message names the field.
The tensors a checkpoint lists are checked against these bodies in ``checkpoint.py``; the spec
inside a file is validated by :func:`netfit.spec.spec_from_dict`, the preparation by
``Preparation.from_dict``.

Files and their formats::

    run-id.json                           RunIdFile   written when the folder is created
    run.json                              RunInfo     written last, when training ends
    checkpoints/epoch-NNNN/state.json     ResumeState
    checkpoints/best/state.json           BestState
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from .errors import NetfitError
from .storage import dump_sealed_json, load_sealed_json, write_atomic

__all__ = ["RUN_FORMAT", "CHECKPOINT_FORMAT", "RUN_ID_FILE", "RunIdFile", "RunInfo", "TrainingInfo", "ResumeState",
           "BestState", "HistoryRow", "FileEntry", "OPTIMIZER_STATE", "validate", "check_format", "write_run_id",
           "read_run_id", "CheckpointState"]

RUN_FORMAT = "netfit-run/2"
CHECKPOINT_FORMAT = "netfit-checkpoint/2"
_OLDER_FORMATS = {"netfit-run/1", "netfit-checkpoint/1"}
RUN_ID_FILE = "run-id.json"
_RUN_ID_MAX_BYTES = 64 * 1024  # the identity file holds three short strings

# What a torch optimizer keeps per parameter, by the spec's optimizer name (``optim.OPTIMIZERS``),
# so a checkpoint's optimizer state can be checked before torch sees it: a missing key would only
# fail at the next step, an extra one would be carried along unused. ``tests/test_run_trust.py``
# runs a step of every registered optimizer and compares with this table.
OPTIMIZER_STATE: dict[str, tuple[str, Any]] = {
    # name: (torch class, options -> the keys of one parameter's state; "step" is a scalar)
    "sgd": ("SGD", lambda o: {"momentum_buffer"} if o.momentum > 0 else set()),
    "adam": ("Adam", lambda o: {"step", "exp_avg", "exp_avg_sq"}),
    "adamw": ("AdamW", lambda o: {"step", "exp_avg", "exp_avg_sq"}),
    "rmsprop": ("RMSprop", lambda o: {"step", "square_avg"} | ({"momentum_buffer"} if o.momentum > 0 else set())),
}


class _Strict(BaseModel):
    # Strict: JSON gives exact types, so a value of another type was put there by hand.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
RunId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Count = Annotated[int, Field(ge=0)]
Epoch = Annotated[int, Field(ge=1)]
Text = Annotated[str, StringConstraints(max_length=200)]
EngineName = Literal["eager", "graph", "compile"]
MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")]


class FileEntry(_Strict):
    """Another file of the folder: checked by size before it is read, then by hash."""

    sha256: Sha256
    bytes: Annotated[int, Field(ge=0, le=2**48)]


def _files(*names: str):
    def check(files: dict[str, FileEntry]) -> dict[str, FileEntry]:
        if set(files) != set(names):
            raise ValueError(f"must list exactly {', '.join(names)}")
        return files

    return Annotated[dict[str, FileEntry], AfterValidator(check)]


class Versions(_Strict):
    netfit: Text
    torch: Text
    numpy: Text | None = None  # checkpoints written before they recorded every version lack these two
    python: Text | None = None


class RunIdFile(_Strict):
    """``run-id.json``: which run this folder is; every checkpoint and run.json repeats the id."""

    format: Literal["netfit-run/2"]
    run_id: RunId
    created: Text


class Processes(_Strict):
    """The processes that trained a run together under torchrun."""

    world_size: Annotated[int, Field(ge=1, le=1_000_000)]
    backend: Literal["gloo", "nccl"]


class TrainingInfo(_Strict):
    epochs_run: Count
    best_epoch: Epoch | None
    stopped_early: bool
    device: Text
    engine: EngineName
    # Rows in each part ("train", "validation", "test"); runs written before it was recorded lack it.
    rows: dict[Literal["train", "validation", "test"], Count] | None = None
    processes: Processes | None = None  # a torchrun job's; runs of one plain process lack it

    @model_validator(mode="after")
    def _best_was_run(self) -> "TrainingInfo":
        if self.best_epoch is not None and self.best_epoch > self.epochs_run:
            raise ValueError(f"best_epoch {self.best_epoch} is after the last epoch run, {self.epochs_run}")
        return self


class RunVersions(Versions):
    numpy: Text
    python: Text


class RunInfo(_Strict):
    """``run.json``: a finished run; its ``spec`` and ``preparation`` are validated by their owners."""

    format: Literal["netfit-run/2"]
    run_id: RunId
    created: Text
    spec: dict[str, Any]
    preparation: dict[str, Any]
    metrics: dict[MetricName, float]  # strict floats take integers too (epochs), never text or booleans
    training: TrainingInfo
    versions: RunVersions
    files: _files("model.safetensors", "metrics.csv")


class HistoryRow(_Strict):
    """One epoch of the history, as :class:`netfit.train.EpochRecord` (the same fields, no others)."""

    # Every figure netfit records is finite: the NaN guard stops a run before a non-finite loss is kept.
    epoch: Epoch
    train_loss: Annotated[float, Field(allow_inf_nan=False)]
    val_loss: Annotated[float, Field(allow_inf_nan=False)] | None
    val_metric: Annotated[float, Field(allow_inf_nan=False)] | None
    lr: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    epoch_time_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]


class BestSoFar(_Strict):
    score: float
    epoch: Epoch | None
    waited: Count


class OptimizerInfo(_Strict):
    class_: Text = Field(alias="class")
    # Non-tensor entries of the optimizer's per-parameter state, as "INDEX.KEY".
    scalars: dict[Annotated[str, StringConstraints(pattern=r"^\d{1,9}\.[a-z_]{1,40}$")], float | None]


class GradScalerState(_Strict):
    """``torch.amp.GradScaler.state_dict()`` (fp16 training only)."""

    scale: Annotated[float, Field(gt=0)]
    growth_factor: Annotated[float, Field(gt=1)]
    backoff_factor: Annotated[float, Field(gt=0, lt=1)]
    growth_interval: Annotated[int, Field(gt=0)]
    growth_tracker: Count = Field(alias="_growth_tracker")


_U32 = 2**32


def _python_rng(value: list[Any]) -> list[Any]:
    # random.getstate(): (3, 624 words of the Mersenne Twister and the position 0..624, gauss or None)
    ok = (len(value) == 3 and type(value[0]) is int and value[0] == 3 and isinstance(value[1], list)
          and len(value[1]) == 625 and all(type(w) is int and 0 <= w < _U32 for w in value[1][:624])
          and type(value[1][624]) is int and 0 <= value[1][624] <= 624
          and (value[2] is None or type(value[2]) is float))
    if not ok:
        raise ValueError("is not Python's random state: [3, 625 integers (624 words, then 0..624), null or a number]")
    return value


def _numpy_rng(value: list[Any]) -> list[Any]:
    # np.random.get_state(): ("MT19937", 624 uint32 words, position 0..624, has_gauss 0/1, cached gaussian)
    ok = (len(value) == 5 and value[0] == "MT19937" and isinstance(value[1], list) and len(value[1]) == 624
          and all(type(w) is int and 0 <= w < _U32 for w in value[1])
          and type(value[2]) is int and 0 <= value[2] <= 624 and type(value[3]) is int and value[3] in (0, 1)
          and type(value[4]) is float)
    if not ok:
        raise ValueError('is not NumPy\'s random state: ["MT19937", 624 integers below 2**32, 0..624, 0 or 1, '
                         "a number]")
    return value


class HostRng(_Strict):
    python: Annotated[list[Any], AfterValidator(_python_rng)]
    numpy: Annotated[list[Any], AfterValidator(_numpy_rng)]


class _CheckpointBody(_Strict):
    format: Literal["netfit-checkpoint/2"]
    run_id: RunId
    spec: dict[str, Any]
    spec_sha256: Sha256
    data_sha256: Sha256
    created: Text
    versions: Versions


class ResumeState(_CheckpointBody):
    """``checkpoints/epoch-NNNN[+SSSSSSS]/state.json``: everything a resume needs besides tensors."""

    kind: Literal["resume"]
    epochs_done: Count
    steps_into_epoch: Count  # steps of epoch epochs_done + 1 already run
    global_step: Count
    steps_per_epoch: Annotated[int, Field(ge=1, le=2**40)]
    epoch_loss_sum: float
    history: list[HistoryRow]
    best: BestSoFar
    stopped_early: bool
    optimizer: OptimizerInfo
    grad_scaler: GradScalerState | None
    rng: HostRng
    engine: EngineName
    files: _files("weights.safetensors", "state.safetensors")

    @model_validator(mode="after")
    def _counters_agree(self) -> "ResumeState":
        if self.steps_into_epoch >= self.steps_per_epoch:
            raise ValueError(f"steps_into_epoch = {self.steps_into_epoch}: must be below steps_per_epoch "
                             f"({self.steps_per_epoch})")
        expected = self.epochs_done * self.steps_per_epoch + self.steps_into_epoch
        if self.global_step != expected:
            raise ValueError(f"global_step = {self.global_step}: must be epochs_done * steps_per_epoch + "
                             f"steps_into_epoch = {expected}")
        epochs = [row.epoch for row in self.history]
        if epochs != list(range(1, self.epochs_done + 1)):
            raise ValueError(f"history holds epochs {_short(epochs)}: must be 1, 2, ... up to epochs_done "
                             f"({self.epochs_done}), in order")
        if self.best.epoch is not None and self.best.epoch > self.epochs_done:
            raise ValueError(f"best.epoch = {self.best.epoch}: after epochs_done ({self.epochs_done})")
        if self.best.waited > self.epochs_done:
            raise ValueError(f"best.waited = {self.best.waited}: more than epochs_done ({self.epochs_done})")
        if self.stopped_early and self.steps_into_epoch:
            raise ValueError("stopped_early = true inside an epoch: early stopping happens at an epoch's end")
        return self


class BestState(_CheckpointBody):
    """``checkpoints/best/state.json``: the best validation epoch's weights."""

    kind: Literal["best"]
    epoch: Epoch
    metric: Literal["val_loss", "val_accuracy", "val_r2"]
    score: float
    files: _files("weights.safetensors")


CheckpointState = Annotated[Union[ResumeState, BestState], Field(discriminator="kind")]
_ADAPTERS: dict[Any, TypeAdapter] = {}


def validate(schema: Any, raw: dict[str, Any], source: Path | str) -> Any:
    """``raw`` checked against ``schema`` (a model or ``CheckpointState``), else one line naming the field."""
    adapter = _ADAPTERS.get(schema)
    if adapter is None:
        adapter = _ADAPTERS[schema] = TypeAdapter(schema)
    try:
        return adapter.validate_python(raw)
    except ValidationError as err:
        problem = _explain(err, tagged=schema is CheckpointState)
        raise NetfitError(f"{source}: {problem}; this file was edited or not written by this netfit, so the run "
                          "cannot be used (train it again, or get an unaltered copy)") from None


def check_format(raw: dict[str, Any], expected: str, source: Path | str) -> None:
    """Refuse a file of another format before its schema is applied (older netfit formats by name)."""
    found = raw.get("format")
    if found == expected:
        return
    if found in _OLDER_FORMATS:
        raise NetfitError(f"{source} was made by an older netfit ({found}; this one reads {expected}); "
                          "train it again")
    raise NetfitError(f"{source}: format = {_short(found)}: not a {expected} file; it was not written by netfit")


def write_run_id(run_dir: Path) -> str:
    """Give a new run folder its identity: a random id in a sealed ``run-id.json``, written atomically."""
    run_id = uuid.uuid4().hex
    body = {"format": RUN_FORMAT, "run_id": run_id, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_atomic(Path(run_dir) / RUN_ID_FILE, dump_sealed_json(body))
    return run_id


def read_run_id(run_dir: Path) -> str:
    """The id of the run in ``run_dir``, from its sealed ``run-id.json``."""
    path = Path(run_dir) / RUN_ID_FILE
    if not path.exists() and not path.is_symlink():
        raise NetfitError(f"{run_dir} has no {RUN_ID_FILE}: it was made by an older netfit (or is not a netfit "
                          "run); train it again")
    raw = load_sealed_json(path, max_bytes=_RUN_ID_MAX_BYTES)
    check_format(raw, RUN_FORMAT, path)
    return validate(RunIdFile, raw, path).run_id


def _explain(err: ValidationError, tagged: bool) -> str:
    """The first problem as ``field = value: what is wrong`` (``history[1].lr``, ``rng.python``).

    ``tagged``: the schema is a union tagged by ``kind``, whose tag pydantic puts first in the location.
    """
    e = err.errors(include_url=False)[0]
    loc = list(e["loc"])[1:] if tagged and e["type"] != "union_tag_invalid" else list(e["loc"])
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        return f"unknown key {key!r}"
    if e["type"] == "missing":
        return f"{key} is missing"
    if e["type"] == "union_tag_not_found":
        return "kind is missing"
    if e["type"] == "union_tag_invalid":
        return f"kind = {_short(e['input'].get('kind'))}: must be \"resume\" or \"best\""
    if not key:
        return msg
    if e["type"] in ("model_type", "dict_type", "model_attributes_type"):
        return f"{key} = {_short(e['input'])}: must be a JSON object"
    if e["type"] == "value_error" and isinstance(e.get("input"), dict):
        return f"{key}: {msg}"  # a check across the fields of one object
    return f"{key} = {_short(e.get('input'))}: {msg}"


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
