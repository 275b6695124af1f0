"""The experiment spec: the single source of configuration for a netfit run.

A spec has three sections, ``model``, ``data`` and ``train``. It is read from TOML, built in
Python, or changed from the command line with ``--set section.key=value``; all three paths end
in the same pydantic models, so the same limits and the same messages apply everywhere. Unknown
keys are refused. A loss or an optimizer is a tagged union: ``"sgd"`` or
``{name = "sgd", momentum = 0.9}``, and only the chosen entry's own options may be written.
"""

from __future__ import annotations

import codecs
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from .errors import NetfitError
from .files import read_regular
from .registry import nearest

__all__ = [
    "toml_value",
    "Spec",
    "MissingSpec",
    "AugmentSpec",
    "CategoricalSpec",
    "TextSpec",
    "DATA_FORMATS",
    "COLUMN_TYPES",
    "ModelSpec",
    "DataSpec",
    "TrainSpec",
    "EarlyStopping",
    "TuneSpec",
    "TuneRange",
    "load_spec",
    "spec_from_dict",
    "apply_overrides",
    "with_absolute_paths",
    "spec_json_schema",
    "ACTIVATIONS",
    "SCALINGS",
    "LOGS",
]

# Seeds are 32-bit, as scikit-learn's random_state: every generator netfit seeds takes them.
MAX_SEED = 2**32 - 1
# Bounds that no real run reaches but that keep absurd values (2**63 - 1 epochs) from reaching torch.
MAX_EPOCHS = 1_000_000
MAX_WIDTH = 2**31 - 1

ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid")
SCALINGS = ("auto", "none", "divide_by_255", "standardize")
# Where a run logs its epochs as it trains; netfit.loggers.LOGGERS implements each one.
LOGS = ("csv", "tensorboard")


# Paths come as text from TOML and JSON, and a pair of betas as a list: both are converted.
FilePath = Annotated[Path, Field(strict=False)]
Betas = Annotated[tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]], Field(strict=False)]


class _Section(BaseModel):
    # Typos must fail loudly: a silently ignored key is a silently wrong experiment.
    # Strict types too: "yes" is not true, true is not 1 epoch, "0.5" is not a learning rate. TOML and
    # --set give real types, so a value of another type is a mistake to name, not to convert.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


# ----------------------------------------------------------------------------- model


class ModelSpec(_Section):
    """The network: Linear blocks with an activation, optional BatchNorm and Dropout, a linear head."""

    input: int | Literal["auto"] = Field("auto", description='input width, or "auto" to take it from the data')
    hidden: list[Annotated[int, Field(gt=0, le=MAX_WIDTH)]] = Field(
        default_factory=lambda: [512, 256], max_length=1000, description="sizes of the hidden layers, first to last"
    )
    activation: Literal[ACTIVATIONS] = Field("relu", description="activation after each hidden layer")  # type: ignore[valid-type]
    batchnorm: bool = Field(False, description="BatchNorm1d after each hidden Linear layer")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout rate after each hidden block (0 = off)")
    output: int | Literal["auto"] = Field(
        "auto", description='output width (classes, or targets for regression), or "auto" from the data'
    )
    init: Literal["default", "kaiming", "xavier"] = Field(
        "default", description="weight initialisation: PyTorch's default, kaiming (He) or xavier (Glorot)"
    )
    module: str | None = Field(
        None,
        description='your own nn.Module as "package.module:ClassName", used instead of the layers above',
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments for the custom module's constructor"
    )
    allow_probability_outputs: bool = Field(
        False, description="let a custom module that ends in softmax or sigmoid train anyway (the loss then applies "
                           "it a second time); left false, such a module is refused before the first step")

    @field_validator("input", "output")
    @classmethod
    def _positive_width(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 < value <= MAX_WIDTH:
            raise ValueError(f"must be a positive integer up to {MAX_WIDTH} or \"auto\"")
        return value

    @model_validator(mode="after")
    def _kwargs_need_module(self) -> "ModelSpec":
        if self.kwargs and self.module is None:
            raise ValueError("model.kwargs is only for a custom model.module; set model.module or remove kwargs")
        if self.module is not None:
            # These describe netfit's own layers; with a module of the user's they would be silently ignored.
            given = [key for key in _LAYER_KEYS if key in self.model_fields_set]
            if given:
                raise ValueError(f"model.{given[0]} describes netfit's own layers and does nothing with your "
                                 f"model.module {self.module!r}; remove model.{given[0]} (your module sets its own "
                                 "layers through model.kwargs), or remove model.module")
        elif self.allow_probability_outputs:
            raise ValueError("model.allow_probability_outputs is for a custom model.module (netfit's own "
                             "layers always return logits); remove it")
        return self

    @model_serializer(mode="wrap")
    def _without_unused_layer_keys(self, handler):
        # A spec with a module is saved without the layer keys it refuses, so it reads back as itself.
        data = handler(self)
        if self.module is not None and isinstance(data, dict):
            for key in _LAYER_KEYS:
                data.pop(key, None)
        return data


_LAYER_KEYS = ("input", "hidden", "activation", "batchnorm", "dropout", "output", "init")


# ----------------------------------------------------------------------------- data

DATA_FORMATS = ("idx", "csv", "parquet", "feather", "npz", "npy", "images")
# What a table column is: a number, one of a set of values, free text, or not used.
COLUMN_TYPES = ("numeric", "categorical", "text", "ignore")


class MissingSpec(_Section):
    """Missing cells (empty, NA, null; NaN for numbers), per column type, decided on training rows only."""

    numeric: Literal["refuse", "impute"] = Field(
        "refuse", description="refuse, or impute the training median and add a was-missing indicator column")
    categorical: Literal["refuse", "impute"] = Field(
        "refuse", description="refuse, or impute the most frequent training value and add a was-missing indicator")
    text: Literal["refuse", "empty"] = Field("refuse", description="refuse, or read a missing text as empty")


class CategoricalSpec(_Section):
    """One-hot for few values, a learned embedding for many; values not seen in training share one bucket."""

    embed_above: int = Field(16, ge=1, le=MAX_WIDTH,
                             description="a column with more distinct values than this gets an embedding, not one-hot")
    embedding_dim: int | Literal["auto"] = Field(
        "auto", description='width of each embedding; auto: min(50, round(1.6 * values ** 0.56))')

    @field_validator("embedding_dim")
    @classmethod
    def _positive_dim(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 < value <= 65_536:
            raise ValueError('must be a positive integer up to 65536 or "auto"')
        return value


class TextSpec(_Section):
    """Bag-of-words: the most frequent tokens of the training rows, as counts, 0/1 or TF-IDF."""

    max_tokens: int = Field(20_000, ge=1, le=10_000_000, description="vocabulary size: the N most frequent tokens")
    min_count: int = Field(1, ge=1, description="tokens in fewer training rows than this are left out")
    weighting: Literal["tfidf", "counts", "binary"] = Field(
        "tfidf", description="tfidf (scikit-learn's, rows L2-normalised), counts, or binary (present or not)")
    ngrams: Literal[1, 2] = Field(1, description="1: words; 2: words and pairs of adjacent words (bigrams)")
    lowercase: bool = Field(True, description="lowercase text before tokenising")


class AugmentSpec(_Section):
    """Random changes to training images, drawn afresh every epoch from train.seed; validation, test and
    prediction images are never changed. Images only: built-in image datasets and image folders."""

    shift: int = Field(0, ge=0, le=64, description="move each training image by up to this many pixels along each "
                                                   "axis, uncovered pixels black (0 = off)")
    flip: bool = Field(False, description="mirror each training image left to right with probability 1/2; only for "
                                          "classes that keep their name in a mirror (clothes, not digits)")

    @property
    def enabled(self) -> bool:
        return self.shift > 0 or self.flip


class DataSpec(_Section):
    """Where the examples come from and how inputs are scaled."""

    dataset: str | None = Field(
        None, description="a built-in dataset: mnist-sample, digits, diabetes, mnist, fashion-mnist, kmnist"
    )
    path: FilePath | None = Field(None, description="a data file or IDX directory, instead of a built-in dataset")
    format: Literal[DATA_FORMATS] | None = Field(  # type: ignore[valid-type]
        None, description="format of data.path (idx, csv, parquet, feather, npz, npy, images); inferred from the "
                          "suffix, or from a folder's contents, when left out"
    )
    target: str | list[str] | None = Field(
        None, description='the CSV column to predict, or a list of columns for several regression targets')
    header: bool = Field(
        True, description="whether a CSV file's first row names its columns; false: columns are f0, f1, ... "
                          "(never guessed)")
    encoding: str | None = Field(
        None, description="text encoding of CSV files (e.g. latin-1); left out: a byte-order mark decides, "
                          "else UTF-8")
    test_path: FilePath | None = Field(None, description="a separate file with test examples, same format")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="fraction of training rows held out for validation")
    test_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="fraction of rows held out for testing when the data has no test part or test_path",
    )
    split_seed: int = Field(0, ge=0, le=MAX_SEED,
                            description="seed of the train/validation/test split (kept apart from train.seed)")
    scaling: Literal[SCALINGS] = Field(  # type: ignore[valid-type]
        "auto", description="input scaling fitted on training rows: auto, none, divide_by_255, standardize"
    )
    target_scaling: Literal["auto", "none", "standardize"] = Field(
        "auto", description="regression targets standardized on training rows (auto = yes for regression)"
    )
    columns: dict[str, Literal[COLUMN_TYPES]] = Field(  # type: ignore[valid-type]
        default_factory=dict, max_length=100_000,
        description='what a table column is, where inference is not enough: {color = "categorical", '
                    'review = "text", zip = "categorical", id = "ignore", rooms = "numeric"}')
    missing: MissingSpec = Field(default_factory=lambda: MissingSpec(),
                                 description="what to do with missing cells, per column type")
    categorical: CategoricalSpec = Field(default_factory=lambda: CategoricalSpec(),
                                         description="how categorical columns are encoded")
    text: TextSpec = Field(default_factory=lambda: TextSpec(), description="how text columns become bag-of-words")
    augment: AugmentSpec = Field(default_factory=lambda: AugmentSpec(),
                                 description="random shifts and mirror flips of training images (images only)")
    image_size: Annotated[list[Annotated[int, Field(gt=0, le=65_536)]], Field(min_length=2, max_length=2)] | None = \
        Field(None, description="[height, width] every image of an image folder is resized to; left out, all "
                                "images must have the first image's size")
    image_mode: Literal["auto", "L", "RGB"] = Field(
        "auto", description="image channels: L (grayscale), RGB, or auto (L when every image is grayscale)")
    streaming: bool | Literal["auto"] = Field(
        "auto", description="stream training rows from disk in chunks (Parquet, .npy) instead of holding them in "
                            "memory; auto: only when they do not fit")
    chunk_rows: int = Field(65_536, ge=64, le=2**26, description="rows per chunk when streaming")
    shuffle_window: int = Field(8, ge=1, le=4096,
                                description="chunks shuffled together when streaming (more: better mixing, more memory)")
    data_dir: FilePath | None = Field(
        None, description="folder with IDX files for mnist, fashion-mnist, kmnist (else NETFIT_DATA_DIR, system, cache)"
    )
    download: bool = Field(True, description="download missing built-in datasets into the cache")

    @field_validator("target")
    @classmethod
    def _target_names(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list names no target; give one column or several")
            repeated = sorted({name for name in value if value.count(name) > 1})
            if repeated:
                raise ValueError(f"column {repeated[0]!r} is named twice")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                is_text = codecs.lookup(value)._is_text_encoding  # base64 and rot13 are codecs, not text encodings
            except LookupError:
                is_text = False
            if not is_text:
                raise ValueError("is not a text encoding Python knows; try utf-8, latin-1, cp1252 or utf-16")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> "DataSpec":
        # Neither is fine here: netfit.fit(spec, X, y) brings its own arrays. load_raw checks.
        if self.dataset is not None and self.path is not None:
            raise ValueError("set data.dataset or data.path, not both")
        if self.test_path is not None and self.test_fraction > 0:
            raise ValueError("data.test_path and data.test_fraction both give a test set; keep one")
        targets = [self.target] if isinstance(self.target, str) else (self.target or [])
        typed = [name for name in targets if name in self.columns]
        if typed:
            raise ValueError(f"data.columns types {typed[0]!r}, which is data.target; the target's type comes from "
                             "train.task, so remove it from data.columns")
        return self


# ----------------------------------------------------------------------------- losses


class _Choice(_Section):
    """Base of a tagged-union entry: ``name`` picks the entry, the other fields are its options."""


class CrossEntropy(_Choice):
    """Softmax cross-entropy on logits, for classes 0..K-1."""

    name: Literal["cross_entropy"]
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="share of target mass spread over all classes")
    class_weights: list[Annotated[float, Field(ge=0)]] | Literal["balanced"] | None = Field(
        None, description='one weight per class, or "balanced" for inverse class frequency on training rows'
    )


class BCE(_Choice):
    """Sigmoid binary cross-entropy on one logit, for targets 0/1."""

    name: Literal["bce"]
    pos_weight: float | None = Field(None, gt=0, description="weight of positive examples (e.g. negatives/positives)")


class MSE(_Choice):
    """Mean squared error, for regression."""

    name: Literal["mse"]


class L1(_Choice):
    """Mean absolute error, for regression."""

    name: Literal["l1"]


class Huber(_Choice):
    """Huber loss: squared near zero, absolute beyond ``delta``."""

    name: Literal["huber"]
    delta: float = Field(1.0, gt=0, description="where the loss turns from squared to absolute")


def _name_to_table(value: Any) -> Any:
    # "sgd" is shorthand for {name = "sgd"}: both spellings validate through the same model.
    return {"name": value} if isinstance(value, str) else value


LossSpec = Annotated[
    Union[CrossEntropy, BCE, MSE, L1, Huber], Field(discriminator="name"), BeforeValidator(_name_to_table)
]
LOSS_TASK = {"cross_entropy": "classification", "bce": "binary", "mse": "regression", "l1": "regression",
             "huber": "regression"}


# ----------------------------------------------------------------------------- optimizers


class SGD(_Choice):
    """Stochastic gradient descent, optionally with (Nesterov) momentum."""

    name: Literal["sgd"]
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="momentum factor (0 = plain SGD)")
    nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0)")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "SGD":
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov = true needs momentum > 0")
        return self


class Adam(_Choice):
    """Adam; weight decay is added to the gradient (L2), as in torch.optim.Adam."""

    name: Literal["adam"]
    betas: Betas = Field(
        (0.9, 0.999), description="decay rates of the first and second moment estimates"
    )
    eps: float = Field(1e-8, gt=0, description="added to the denominator for numerical stability")


class AdamW(_Choice):
    """Adam with decoupled weight decay."""

    name: Literal["adamw"]
    betas: Betas = Field(
        (0.9, 0.999), description="decay rates of the first and second moment estimates"
    )
    eps: float = Field(1e-8, gt=0, description="added to the denominator for numerical stability")


class RMSprop(_Choice):
    """RMSprop."""

    name: Literal["rmsprop"]
    alpha: float = Field(0.99, gt=0, lt=1, description="smoothing constant of the squared-gradient average")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="momentum factor")
    eps: float = Field(1e-8, gt=0, description="added to the denominator for numerical stability")


OptimizerSpec = Annotated[
    Union[SGD, Adam, AdamW, RMSprop], Field(discriminator="name"), BeforeValidator(_name_to_table)
]


# ----------------------------------------------------------------------------- schedules


class ConstantSchedule(_Choice):
    """The same learning rate for every step."""

    name: Literal["constant"]


class WarmupSchedule(_Choice):
    """Linear warm-up from near zero to train.lr, then constant."""

    name: Literal["warmup"]
    warmup_epochs: float = Field(1.0, gt=0, description="epochs of linear warm-up")


class StepSchedule(_Choice):
    """Multiply the rate by gamma every step_epochs epochs."""

    name: Literal["step"]
    step_epochs: int = Field(10, gt=0, description="epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="factor applied at each decay")
    warmup_epochs: float = Field(0.0, ge=0, description="epochs of linear warm-up first")


class CosineSchedule(_Choice):
    """Cosine decay from train.lr to min_lr_ratio * train.lr over the run."""

    name: Literal["cosine"]
    warmup_epochs: float = Field(0.0, ge=0, description="epochs of linear warm-up first")
    min_lr_ratio: float = Field(0.0, ge=0, lt=1, description="final rate as a fraction of train.lr")


class OneCycleSchedule(_Choice):
    """One cycle, as torch's OneCycleLR: up from train.lr / div_factor to train.lr, then far below the start."""

    name: Literal["one_cycle"]
    pct_start: float = Field(0.25, gt=0, lt=1, description="fraction of the run spent rising")
    div_factor: float = Field(25.0, ge=1, description="start rate = train.lr / div_factor")
    final_div_factor: float = Field(1e4, ge=1, description="final rate = start rate / final_div_factor")


ScheduleSpec = Annotated[
    Union[ConstantSchedule, WarmupSchedule, StepSchedule, CosineSchedule, OneCycleSchedule],
    Field(discriminator="name"), BeforeValidator(_name_to_table),
]


# ----------------------------------------------------------------------------- train


class EarlyStopping(_Section):
    """Stop when a validation metric has not improved for ``patience`` epochs; keep the best weights."""

    metric: Literal["val_loss", "val_accuracy", "val_r2"] = Field("val_loss", description="metric to watch")
    patience: int = Field(5, gt=0, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0.0, description="smallest change that counts as an improvement")


class TrainSpec(_Section):
    """How the network is trained."""

    task: Literal["auto", "classification", "binary", "regression"] = Field(
        "auto", description="inferred from the loss, else from the targets (integers = classes)"
    )
    loss: LossSpec | None = Field(None, description="loss on logits; left out: cross_entropy, bce or mse by task")
    optimizer: OptimizerSpec = Field(default_factory=lambda: Adam(name="adam"), description="optimizer")
    lr: float = Field(1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 penalty (decoupled for adamw)")
    batch_size: int = Field(64, gt=0, description="examples per training step")
    epochs: int = Field(10, gt=0, le=MAX_EPOCHS, description="passes over the training rows")
    print_every: int = Field(1, gt=0, description="print a progress line every N epochs")
    schedule: ScheduleSpec = Field(default_factory=lambda: ConstantSchedule(name="constant"),
                                   description="learning-rate schedule over the run")
    clip_grad_norm: float | None = Field(None, gt=0, description="clip the gradients' global norm to this")
    early_stopping: EarlyStopping | None = Field(None, description="stop early and restore the best weights")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed for initial weights, shuffling and dropout")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="where to train (auto = cuda if present)")
    engine: Literal["auto", "eager", "graph", "compile"] = Field(
        "auto", description="how steps run: eager, graph (CUDA graph replay), compile (torch.compile); auto picks")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="compute precision of forward and backward "
                            "(auto = bf16 on CUDA and on CPUs with native bf16, else fp32)")
    checkpoint_every: int = Field(
        1, ge=0, description="write a resumable checkpoint every N epochs (0 = only at the end); runs saved with out only")
    keep_checkpoints: int = Field(3, gt=0, description="how many of the latest checkpoints to keep (the best is kept apart)")
    on_nonfinite: Literal["stop", "skip_step"] = Field(
        "stop", description="on a NaN or infinite loss or gradient: stop (the last good checkpoint stays), or skip "
                            "that step (costs a host sync per step)")
    log: list[Literal[LOGS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["csv"],
        description='logs written into the run folder as it trains: "csv" (metrics.csv rewritten as epochs are read '
                    'back), "tensorboard" (RUN/tensorboard/: scalars, confusion matrix, hyperparameters; needs '
                    "pip install 'netfit[tensorboard]'); the final metrics.csv is written either way")

    @field_validator("log", mode="before")
    @classmethod
    def _known_logs(cls, value: Any) -> Any:
        # One name stands for a list of it, so `--set train.log=tensorboard` needs no TOML brackets.
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list):
            return value  # the type check names the problem
        for name in names:
            if isinstance(name, str) and name not in LOGS:
                hint = nearest(name, list(LOGS))
                tip = f"did you mean {hint!r}? " if hint else ""
                raise ValueError(f"unknown log {name!r}; {tip}choose from: {', '.join(LOGS)}")
        repeated = sorted({name for name in names if isinstance(name, str) and names.count(name) > 1})
        if repeated:
            raise ValueError(f"{repeated[0]!r} is listed twice; list each log once")
        return names

    @model_validator(mode="after")
    def _task_fits_loss(self) -> "TrainSpec":
        if self.loss is not None and self.task != "auto" and LOSS_TASK[self.loss.name] != self.task:
            raise ValueError(f"loss {self.loss.name!r} does not fit task {self.task!r}")
        if (self.early_stopping is not None and self.early_stopping.metric != "val_loss"
                and self.task != "auto" and (self.early_stopping.metric == "val_r2") != (self.task == "regression")):
            raise ValueError(f"early_stopping.metric {self.early_stopping.metric!r} does not fit task {self.task!r}")
        return self


# ----------------------------------------------------------------------------- spec


# ----------------------------------------------------------------------------- tune


class TuneRange(_Section):
    """One searched spec field: a range ``{low, high}`` (``log``, ``int``) or a list of ``choices``."""

    low: float | None = Field(None, description="smallest value of a range")
    high: float | None = Field(None, description="largest value of a range")
    log: bool = Field(False, description="sample the range on a log scale (learning rates, weight decay)")
    int: bool = Field(False, description="sample whole numbers from the range (layers, epochs)")
    choices: list[Any] | None = Field(None, min_length=1, max_length=10_000,
                                      description="the values to choose from, instead of a range")

    @model_validator(mode="after")
    def _range_or_choices(self) -> "TuneRange":
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log or self.int:
                raise ValueError("give either choices or low/high (with log, int), not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give low and high, or choices")
        if not self.low < self.high:
            raise ValueError(f"low {self.low:g} must be below high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low:g}")
        if self.int and (self.low != round(self.low) or self.high != round(self.high)):
            raise ValueError("an int range needs whole-number low and high")
        return self


class TuneSpec(_Section):
    """A hyperparameter search: how many trials, which figure, and the space of spec fields."""

    trials: int = Field(20, ge=1, le=100_000, description="how many trials `netfit tune` runs")
    metric: Literal["auto", "val_accuracy", "val_r2", "val_loss"] = Field(
        "auto", description="the validation figure to optimise; auto: the task's (val_accuracy or val_r2, "
                            "maximised); val_loss is minimised")
    space: dict[str, TuneRange] = Field(
        default_factory=dict, max_length=1000,
        description='dotted spec keys and their ranges: {"train.lr" = {low = 1e-4, high = 1e-2, log = true}}')


class Spec(_Section):
    """A whole experiment: ``model``, ``data`` and ``train`` sections.

    >>> spec = Spec(data={"dataset": "mnist-sample"}, train={"epochs": 3})
    >>> spec.model.hidden
    [512, 256]
    """

    model: ModelSpec = Field(default_factory=ModelSpec, description="the network")
    data: DataSpec = Field(default_factory=DataSpec, description="the examples")
    train: TrainSpec = Field(default_factory=TrainSpec, description="the training recipe")
    tune: TuneSpec | None = Field(None, description="a hyperparameter search for `netfit tune` (train ignores it)")

    @model_serializer(mode="wrap")
    def _without_empty_tune(self, handler):
        # Left out when unset, so specs and runs written before [tune] existed read and compare as before.
        data = handler(self)
        if self.tune is None and isinstance(data, dict):
            data.pop("tune", None)
        return data

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``Spec.model_validate`` turns back into an equal spec."""
        return self.model_dump(mode="json")

    def to_toml(self) -> str:
        """The spec as TOML text (None values are left out, as TOML has no null)."""
        return _dict_to_toml(self.to_dict())


def default_spec_dict() -> dict[str, Any]:
    """The tutorials' MNIST network: 784-512-256-10, ReLU, cross-entropy, Adam at 1e-3, batch 64.

    Only the data is written down: the model and train defaults are that network already, and
    leaving the loss out lets it follow the task when ``--set`` points at other data.
    """
    return {"data": {"dataset": "mnist-sample"}}


# ----------------------------------------------------------------------------- reading and errors


# A spec is three tables with small values: far below these, and far below what recursion survives.
MAX_SPEC_BYTES = 1 << 20
MAX_SPEC_DEPTH = 32


def spec_from_dict(raw: dict[str, Any], source: str = "spec") -> Spec:
    """Validate a plain dict into a Spec, turning pydantic's report into one actionable line."""
    if _deeper_than(raw, MAX_SPEC_DEPTH):
        raise NetfitError(f"{source}: nested more than {MAX_SPEC_DEPTH} levels deep; a spec is a few flat tables")
    try:
        return Spec.model_validate(raw)
    except ValidationError as err:
        raise NetfitError(f"{source}: {_explain(err, raw)}") from None


def _deeper_than(value: Any, limit: int) -> bool:
    # Iterative, so that the check itself cannot run out of stack on the input it guards against.
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
    return False


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """Read a TOML spec, apply ``--set key=value`` overrides, and validate it."""
    path = Path(path)
    if not path.expanduser().exists() and not path.is_symlink():
        raise NetfitError(f"spec file {str(path)!r} does not exist; write one with `netfit init {path}`")
    content = read_regular(path, "spec file", MAX_SPEC_BYTES)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        line = content[:err.start].count(b"\n") + 1
        raise NetfitError(f"spec file {str(path)!r} is not UTF-8 text (byte {err.start}, line {line}); TOML files "
                          "are UTF-8: save it as UTF-8") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise NetfitError(f"{path}: not valid TOML ({err}); fix the line it names") from None
    except RecursionError:
        raw = None
    if raw is None or _deeper_than(raw, MAX_SPEC_DEPTH):
        raise NetfitError(f"{path}: nested more than {MAX_SPEC_DEPTH} levels deep; a spec is a few flat tables")
    _resolve_paths(raw, path.parent)
    return spec_from_dict(apply_overrides(raw, overrides), source=str(path))


_PATH_KEYS = ("path", "test_path", "data_dir")


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    # Paths in a spec file are relative to the file, so a spec works from any working directory.
    data = raw.get("data")
    if isinstance(data, dict):
        for key in _PATH_KEYS:
            value = data.get(key)
            if isinstance(value, str) and not Path(value).expanduser().is_absolute():
                data[key] = str(base / value)
    # A searched path ("data.path" = { choices = [...] }) is a path in this file too: relative to it,
    # not to the folder tune runs in.
    tune = raw.get("tune")
    space = tune.get("space") if isinstance(tune, dict) else None
    if isinstance(space, dict):
        for key in _PATH_KEYS:
            searched = space.get(f"data.{key}")
            choices = searched.get("choices") if isinstance(searched, dict) else None
            if isinstance(choices, list):
                searched["choices"] = [str(base / c) if isinstance(c, str) and not Path(c).expanduser().is_absolute()
                                       else c for c in choices]


def with_absolute_paths(spec: Spec) -> Spec:
    """The spec with its data paths made absolute, so a saved run means the same files from any folder."""
    updates = {key: Path(value).expanduser().absolute() for key in _PATH_KEYS
               if (value := getattr(spec.data, key)) is not None and not Path(value).expanduser().is_absolute()}
    if not updates:
        return spec
    return spec.model_copy(update={"data": spec.data.model_copy(update=updates)})


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a raw spec dict (a copy is returned).

    Values are read as TOML values (``3e-4``, ``[256, 128]``, ``true``, ``"text"``); a value that
    is not valid TOML is taken as a plain string, so ``--set data.dataset=digits`` works unquoted.
    """
    result = json.loads(json.dumps(raw, default=str))
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise NetfitError(f"--set {item!r}: write it as section.key=value, e.g. --set train.lr=3e-4")
        parts = key.split(".")
        node = result
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and part in ("loss", "optimizer", "schedule"):
                child = {"name": child}  # --set train.optimizer.momentum=0.9 on top of optimizer = "sgd"
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise NetfitError(f"--set {key}: {'.'.join(parts[:i + 1])} is a value, not a section")
            node[part] = child
            node = child
        node[parts[-1]] = _parse_value(text)
        if parts[0] == "data" and len(parts) == 2 and parts[1] in _DATA_SOURCES:
            # The two sources are alternatives: choosing one on the command line drops the other.
            node.pop(_DATA_SOURCES[parts[1]], None)
    return result


_DATA_SOURCES = {"dataset": "path", "path": "dataset"}


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def _explain(err: ValidationError, raw: dict[str, Any]) -> str:
    """One line for the first problem: the key, the bad value, and what is allowed."""
    problems = []
    for e in err.errors(include_url=False):
        loc = [str(p) for p in e["loc"] if not _is_union_tag(p) and not isinstance(p, int)]
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]
                      if not _is_union_tag(p)).lstrip(".") or "spec"
        if e["type"] == "extra_forbidden":
            parent = loc[:-1]
            allowed = _allowed_keys(parent, raw)
            hint = nearest(loc[-1], allowed)
            tip = f"did you mean {'.'.join(parent + [hint])!r}?" if hint else f"allowed keys: {', '.join(allowed)}"
            problems.append(f"unknown key {key!r}; {tip}")
        elif e["type"] == "missing":
            problems.append(f"{key} is required")
        elif e["type"] == "union_tag_invalid":
            problems.append(f"{key}: unknown name {e['input'].get('name')!r}; "
                            f"choose one of: {e['ctx']['expected_tags']}")
        elif e["type"] == "union_tag_not_found":
            names = [_choice_name(m) for m in _CHOICES.get(loc[-1] if loc else "", ())]
            problems.append(f"{key}: a table needs name = ...; choose one of: {', '.join(names)} "
                            f"(e.g. --set {key}.name={names[0] if names else '...'})")
        else:
            msg = e["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            if "input" in e and not isinstance(e["input"], dict):
                problems.append(f"{key} = {e['input']!r}: {msg}")
            else:
                problems.append(f"{key}: {msg}")
    # Union errors repeat per member; keep the first of each key.
    seen, unique = set(), []
    for p in problems:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    extra = f" (and {len(unique) - 1} more problem{'s' if len(unique) > 2 else ''})" if len(unique) > 1 else ""
    return unique[0] + extra


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the chosen tag ("sgd") into the error location of a tagged union.
    return isinstance(part, str) and part in _TAGS




def _allowed_keys(parent: list[str], raw: dict[str, Any]) -> list[str]:
    model: type[BaseModel] = Spec
    node: Any = raw
    keyed = False  # the part before was a dict of tables (tune.space): this part is a user's key
    for part in parent:
        node = node.get(part) if isinstance(node, dict) else None
        if keyed:
            keyed = False
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        choice = _choice_model(part, node)
        if choice is not None:
            model = choice
            continue
        if getattr(ann, "__origin__", None) is dict:
            ann, keyed = ann.__args__[1], True
        for candidate in getattr(ann, "__args__", (ann,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
    return list(model.model_fields)


def _choice_model(section: str, node: Any) -> type[BaseModel] | None:
    if section not in _CHOICES or not isinstance(node, dict):
        return None
    for model in _CHOICES[section]:
        if _choice_name(model) == node.get("name"):
            return model
    return None


def _choice_name(model: type[BaseModel]) -> str:
    return model.model_fields["name"].annotation.__args__[0]


# The tagged unions of the spec, by the key that holds them.
_CHOICES: dict[str, tuple[type[BaseModel], ...]] = {
    "loss": (CrossEntropy, BCE, MSE, L1, Huber), "optimizer": (SGD, Adam, AdamW, RMSprop),
    "schedule": (ConstantSchedule, WarmupSchedule, StepSchedule, CosineSchedule, OneCycleSchedule)}
_TAGS = {_choice_name(model) for models in _CHOICES.values() for model in models}


# ----------------------------------------------------------------------------- schema and TOML


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema of the spec, generated from the same models that validate it (for editors)."""
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "netfit spec"
    return schema


def _dict_to_toml(spec: dict[str, Any]) -> str:
    lines: list[str] = []

    def emit(prefix: str, table: dict[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
        tables = {k: v for k, v in table.items() if isinstance(v, dict)}
        if scalars or not tables:
            lines.append(f"[{prefix}]")
            lines.extend(f"{_toml_key(k)} = {toml_value(v)}" for k, v in scalars.items())
            lines.append("")
        for k, v in tables.items():
            emit(f"{prefix}.{_toml_key(k)}", v)

    for section, table in spec.items():
        emit(section, table)
    return "\n".join(lines)


def _toml_key(key: str) -> str:
    # A key with a dot ("train.lr" of tune.space) or other non-bare characters is quoted, else TOML nests it.
    return key if key and all(c.isalnum() or c in "-_" for c in key) and key.isascii() else json.dumps(key)


def toml_value(value: Any) -> str:
    """``value`` as a TOML value: what ``--set key=VALUE`` reads back as the same value (tables inline)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))
