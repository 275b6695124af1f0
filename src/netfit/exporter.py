"""A trained run -> one ONNX, TorchScript or torch.export (.pt2) file that reads raw rows and needs no netfit to run.

The exported graph is :class:`RawRowsNetwork`: the run's input scaling (and, for regression, the
inverse target scaling) held as buffers around the network in eval mode, so the file takes rows as
the user has them and answers in the user's units. Its output contract, also written into the
file's metadata (``netfit.outputs``):

- classification (several classes): ``logits`` (batch, classes) and ``probabilities`` (batch,
  classes), the softmax of the logits; the label is the argmax, ``classes[argmax]``.
- binary: ``logits`` (batch, 1) and ``probabilities`` (batch, 2): column 1 is sigmoid(logit), the
  probability of ``classes[1]``, column 0 its complement (the columns of ``predict_proba``).
- regression: ``predictions`` (batch, targets), in the targets' own units.

Inputs, also in the metadata (``netfit.inputs``, see :func:`_inputs_contract`); the batch axis is dynamic:

- ``rows``, float32 (batch, len(inputs["rows"])): the numeric columns named in ``inputs["rows"]``,
  in that order. A run without categorical columns: every feature (``netfit.feature_names``);
  image runs take the raw 0..255 pixels flattened as the run read them. A run that imputes missing
  numbers (``data.missing.numeric = "impute"``) reads NaN as a missing cell and fills it in the graph
  as netfit does (training median, was-missing indicator); in a run that refuses missing cells, a
  NaN gives NaN outputs, where netfit would refuse the row.
- ``codes``, int64 (batch, len(inputs["codes"])), only for a run with categorical columns: per
  column named in ``inputs["codes"]``, the index of the cell's value in ``inputs["categories"][column]``
  (the training values, compared as text, the way netfit casts a cell to a string); ``-1``
  (``inputs["unseen_code"]``) for a value not in that list, which gets the run's "unseen" bucket (an
  all-zero one-hot, or embedding code 0, as netfit predicts); ``-2`` (``inputs["missing_code"]``) for
  a missing cell, filled with the most frequent training value plus its indicator when the run
  imputes, else read as unseen (netfit would refuse the row). The one-hot (or embedding lookup),
  the numeric scaling and their concatenation in the training column order happen in the graph.
  A table with only categorical columns still has ``rows``, of width 0.

Text columns are refused: their bag of words comes from scikit-learn's tokeniser, which runs in
Python on strings.

The exporter checks its own output: the written file is loaded back (onnxruntime, torch.jit.load,
torch.export.load) and run on the run's test rows, its inputs built from the file's own
``netfit.inputs`` as a user would build them (:func:`_file_inputs`); unless every label and every
probability (or value) agrees with ``TrainedModel`` within :data:`PROBA_TOLERANCE` /
:data:`VALUE_TOLERANCE`, the file is removed and the export refused.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .encoder import CategoricalColumn, ColumnEncoder, NumericColumn
from .errors import NetfitError, UnseenValuesWarning
from .files import refuse_special_output
from .features import TableBatch
from .storage import save_file
from .trained import TrainedModel
from .version import __version__

__all__ = ["export", "ExportResult", "RawRowsNetwork", "FORMATS", "PROBA_TOLERANCE", "VALUE_TOLERANCE", "UNSEEN_CODE",
           "MISSING_CODE", "run_file"]

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}
# float32 graphs from another runtime differ from torch in the last bits (fused kernels, another
# summation order): 1e-4 is far above that noise and far below any difference a user would notice.
PROBA_TOLERANCE = 1e-4  # absolute, on probabilities
VALUE_TOLERANCE = 1e-4  # relative to max(1, |value|), on regression values in the targets' units
_EXPORT_BATCH = 2  # traced with 2 rows: a batch of 1 lets an exporter specialise the batch axis to 1
_CHECK_ROWS = 1000  # rows drawn when the run has no test part to check on
UNSEEN_CODE = -1  # in ``codes``: a value not among the column's training values
MISSING_CODE = -2  # in ``codes``: a missing cell

_OUTPUTS = {"classification": ["logits", "probabilities"], "binary": ["logits", "probabilities"],
            "regression": ["predictions"]}


class RawRowsNetwork(nn.Module):
    """The run's network with its scaling around it: raw rows (and category codes) in, outputs of the contract out."""

    def __init__(self, model: TrainedModel) -> None:
        super().__init__()
        prep = model.preparation
        self.task = prep.task
        self.network = model.network.eval()
        # A table run scales each numeric column inside its encoder (its input_scaler is "none").
        self.columns = _TableColumns(prep.encoder) if prep.encoder is not None else None
        shift, scale = _affine(prep.input_scaler, prep.input_size)
        self.register_buffer("input_shift", shift)
        self.register_buffer("input_scale", scale)
        shift, scale = _affine(prep.target_scaler, prep.output_size)
        self.register_buffer("target_shift", shift)
        self.register_buffer("target_scale", scale)

    def forward(self, rows: torch.Tensor, codes: torch.Tensor | None = None):
        x = self.columns(rows, codes) if self.columns is not None else (rows - self.input_shift) / self.input_scale
        z = self.network(x)
        if self.task == "regression":
            return z * self.target_scale + self.target_shift
        if self.task == "binary":
            p = torch.sigmoid(z)
            return z, torch.cat([1 - p, p], dim=1)
        return z, torch.softmax(z, dim=1)


class _TableColumns(nn.Module):
    """``ColumnEncoder.transform`` as tensor ops: numeric ``rows`` and category ``codes`` -> what the network reads.

    Builds the encoder's dense row column by column in the training order (value, then its
    was-missing indicator; one-hot, then its indicator), and the embedding codes of embedded
    columns (value i -> i + 1, unseen and missing -> 0), exactly as ``transform`` lays them out.
    """

    def __init__(self, encoder: ColumnEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.layout = encoder.layout
        numeric = [c for c in encoder.columns if isinstance(c, NumericColumn)]
        categorical = [c for c in encoder.columns if isinstance(c, CategoricalColumn)]
        # NaN as the fill of a column that refuses missing cells: torch.where then leaves the NaN.
        self.register_buffer("fill", torch.tensor([np.nan if c.fill is None else c.fill for c in numeric],
                                                  dtype=torch.float32))
        self.register_buffer("shift", torch.tensor([c.shift for c in numeric], dtype=torch.float32))
        self.register_buffer("scale", torch.tensor([c.scale for c in numeric], dtype=torch.float32))
        # A missing cell of a column that refuses them is read as unseen: the file cannot refuse a row.
        self.register_buffer("fill_code", torch.tensor(
            [UNSEEN_CODE if c.fill is None else c.values.index(c.fill) for c in categorical], dtype=torch.int64))

    def forward(self, rows: torch.Tensor, codes: torch.Tensor | None) -> torch.Tensor | TableBatch:
        absent = torch.isnan(rows)
        values = (torch.where(absent, self.fill, rows) - self.shift) / self.scale
        if codes is not None:
            missing = codes == MISSING_CODE
            codes = torch.where(missing, self.fill_code, codes)
        dense, embedded = [], []
        i = j = 0
        # A Python loop at export time: the graph holds a few ops per column, in the training order.
        for c in self.encoder.columns:
            if isinstance(c, NumericColumn):
                dense.append(values[:, i:i + 1])
                if c.indicator:
                    dense.append(absent[:, i:i + 1].float())
                i += 1
                continue
            code = codes[:, j:j + 1]
            if c.embedding is None:  # unseen (-1) matches no value: an all-zero one-hot
                dense.append((code == torch.arange(len(c.values), device=code.device)).float())
            else:  # embedding code 0 is the unseen bucket
                embedded.append(torch.clamp(code + 1, min=0))
            if c.indicator:
                dense.append(missing[:, j:j + 1].float())
            j += 1
        row = torch.cat(dense, dim=1) if dense else rows[:, :0]
        if self.layout.plain:
            return row
        # No bag of words: text columns are refused, so the first layer's bag is never read.
        none = torch.zeros(0, dtype=torch.int64, device=row.device)
        return TableBatch(row, torch.cat(embedded, dim=1), none, torch.zeros(row.shape[0], dtype=torch.int64,
                          device=row.device), torch.zeros(0, device=row.device))


def _affine(scaler, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A scaler as (shift, scale) of shape (width,): "none" is (0, 1), divide_by_255 (0, 255)."""
    if scaler.method == "none":
        return torch.zeros(width), torch.ones(width)
    shift = torch.as_tensor(np.asarray(scaler.shift, np.float32)).reshape(-1)
    scale = torch.as_tensor(np.asarray(scaler.scale, np.float32)).reshape(-1)
    return shift.expand(width).clone(), scale.expand(width).clone()


@dataclass
class ExportResult:
    """What was written and how it was checked."""

    path: Path
    format: str
    rows_checked: int
    checked_on: str  # "the run's test part", "the rows given", or "random rows in the training range"
    max_difference: float  # largest |difference| in probabilities (or relative, in regression values)
    task: str

    def summary(self) -> str:
        """The one line the CLI prints."""
        agreed = ("same labels, max probability difference" if self.task != "regression"
                  else "max relative difference")
        return (f"wrote {self.path} ({self.format}); checked on {self.rows_checked} rows of {self.checked_on}: "
                f"{agreed} {self.max_difference:.1e}")


def export(run: str | Path | TrainedModel, format: str, path: str | Path, *, force: bool = False,
           rows: Any = None, trust_module: bool = False, data_dir: str | Path | None = None) -> ExportResult:
    """Write ``run`` (a run folder or a loaded :class:`TrainedModel`) as ONNX, TorchScript or pt2 at ``path``.

    The file takes raw rows and applies the run's scaling and one-hot encoding itself (see this
    module's docstring for the input and output contract). After writing, the file is run on the
    run's test part (or on ``rows``, raw rows you pass: an array, or for a run with categorical
    columns a pyarrow Table, dict of columns or DataFrame; or, when neither exists, on 1,000 seeded
    random rows in the training range) and compared with netfit's own predictions; on any
    disagreement the file is removed and :class:`~netfit.NetfitError` raised.
    """
    from .loading import load

    if format not in FORMATS:
        raise NetfitError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path).expanduser()
    if path.is_dir():
        raise NetfitError(f"{path} is a folder; give the path of a file to write")
    refuse_special_output(path)
    if path.exists() and not force:
        raise NetfitError(f"{path} already exists; choose another path or pass --force to replace it")
    if format == "onnx":
        _require_onnx()
    try:  # before the export's seconds of work: a folder that cannot be made is refused at once
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NetfitError(f"cannot write {path} ({err.strerror or err}); choose a writable folder") from None
    model = run if isinstance(run, TrainedModel) else load(_run_folder(run), trust_module=trust_module)
    _refuse_unexportable(model)
    check_rows, checked_on = _check_rows(model, rows, data_dir)
    # netfit's own answer first: rows it refuses (NaN, text in a numeric column) are refused before any file is written.
    with warnings.catch_warnings():
        # Values unseen in training are part of what is checked here, not news for the user.
        warnings.simplefilter("ignore", UnseenValuesWarning)
        expected = model.logits(check_rows)
    wrapper = RawRowsNetwork(model).eval()
    metadata = _metadata(model)
    writer = {"onnx": _onnx_bytes, "torchscript": _torchscript_bytes, "pt2": _pt2_bytes}[format]
    save_file(path, writer(wrapper, model, metadata))
    try:
        difference = _check(path, format, model, check_rows, expected, json.loads(metadata["netfit.inputs"]))
    except BaseException:
        path.unlink(missing_ok=True)  # a file that disagrees with netfit is never left behind
        raise
    return ExportResult(path, format, len(check_rows), checked_on, difference, model.task)


def _run_folder(run: str | Path) -> Path:
    run = Path(run)
    if not run.is_dir():
        raise NetfitError(f"run {str(run)!r} does not exist or is not a folder; pass the folder `netfit train` created")
    return run


def _require_onnx() -> None:
    for package in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(package)
        except ImportError:
            raise NetfitError(f"ONNX export needs the {package} package, which is not installed: "
                              "pip install 'netfit[export]'") from None


def _refuse_unexportable(model: TrainedModel) -> None:
    encoder = model.preparation.encoder
    text = [c.name for c in encoder.columns if c.kind == "text"] if encoder is not None else []
    if text:
        # Tokenising and the vocabulary lookup run in Python (scikit-learn) on strings, not as tensor ops.
        raise NetfitError(f"this run cannot be exported: its text columns {', '.join(text)} become bags of words "
                          "through scikit-learn's tokeniser in Python, which an exported graph cannot do; train "
                          "without them, or turn them into numeric columns outside the model and train on those")


def _check_rows(model: TrainedModel, rows: Any, data_dir: str | Path | None) -> tuple[Any, str]:
    """Raw rows to check the file on (float32 array, or a pyarrow Table for a table run), and where they came from."""
    from .evaluation import TestPartUnavailable, load_test_part

    if rows is not None:
        found, where = rows, "the rows given"
    else:
        try:
            found, where = load_test_part(model, Path(data_dir) if data_dir else None).X, "the run's test part"
        except TestPartUnavailable:
            found, where = _random_rows(model), "random rows in the training range"
    encoder = model.preparation.encoder
    if encoder is not None:
        from .encoder import as_arrow

        table = as_arrow(found, encoder.names, where)
        if table.num_rows == 0:
            raise NetfitError(f"{where}: no rows to check the export on; give at least one row")
        return table, where
    width = model.preparation.input_size
    found = np.asarray(found)
    found = found.reshape(len(found), -1) if found.ndim > 2 else found
    if found.ndim != 2 or found.shape[1] != width or len(found) == 0 or found.dtype.kind not in "biuf":
        raise NetfitError(f"rows to check the export on must be numbers, shape (rows, {width}); got "
                          f"{found.dtype} of shape {found.shape}")
    return found.astype(np.float32), where


def _random_rows(model: TrainedModel) -> Any:
    """Seeded rows where the training rows lay: mean +- std per feature, pixels 0..255, else N(0, 1);
    a table run's categorical columns draw their training values uniformly."""
    prep, generator = model.preparation, np.random.default_rng(0)
    if prep.encoder is not None:
        return {c.name: (c.shift + c.scale * generator.standard_normal(_CHECK_ROWS)).astype(np.float32)
                if isinstance(c, NumericColumn) else np.asarray(c.values, dtype=object)[
                    generator.integers(0, len(c.values), _CHECK_ROWS)]
                for c in prep.encoder.columns}
    shape = (_CHECK_ROWS, prep.input_size)
    if prep.input_scaler.method == "divide_by_255" or prep.image is not None:
        return generator.integers(0, 256, shape).astype(np.float32)
    if prep.input_scaler.method == "standardize":
        return (prep.input_scaler.shift + prep.input_scaler.scale * generator.standard_normal(shape)).astype(np.float32)
    return generator.standard_normal(shape).astype(np.float32)


def _inputs_contract(model: TrainedModel) -> dict[str, Any]:
    """``netfit.inputs``: which column goes where in ``rows`` and ``codes``, and each category list."""
    prep = model.preparation
    if prep.encoder is None:
        return {"rows": prep.feature_names or [f"f{i}" for i in range(prep.input_size)], "codes": [],
                "categories": {}, "unseen_code": UNSEEN_CODE, "missing_code": MISSING_CODE}
    columns = prep.encoder.columns
    categorical = [c for c in columns if isinstance(c, CategoricalColumn)]
    return {"rows": [c.name for c in columns if isinstance(c, NumericColumn)], "codes": [c.name for c in categorical],
            "categories": {c.name: list(c.values) for c in categorical}, "unseen_code": UNSEEN_CODE,
            "missing_code": MISSING_CODE}


def _metadata(model: TrainedModel) -> dict[str, str]:
    prep = model.preparation
    features = prep.feature_names or [f"f{i}" for i in range(prep.input_size)]
    return {"netfit.version": __version__, "netfit.task": prep.task,
            "netfit.inputs": json.dumps(_inputs_contract(model)),
            "netfit.outputs": json.dumps(_OUTPUTS[prep.task]), "netfit.feature_names": json.dumps(features),
            "netfit.classes": json.dumps(prep.classes), "netfit.target_names": json.dumps(prep.target_names)}


def _example(model: TrainedModel) -> tuple[torch.Tensor, ...]:
    """Zero inputs of the file's shapes: code 0 is a real value of every categorical column."""
    contract = _inputs_contract(model)
    rows = torch.zeros(_EXPORT_BATCH, len(contract["rows"]))
    if not contract["codes"]:
        return (rows,)
    return rows, torch.zeros(_EXPORT_BATCH, len(contract["codes"]), dtype=torch.int64)


def _input_names(example: tuple[torch.Tensor, ...]) -> list[str]:
    return ["rows", "codes"][:len(example)]


def _batch_axes(example: tuple[torch.Tensor, ...]) -> tuple[dict[int, Any], ...]:
    """One named Dim for the batch axis of every input: the graph takes any batch, the same in each input."""
    batch = torch.export.Dim("batch")
    return tuple({0: batch} for _ in example)


def _onnx_bytes(wrapper: RawRowsNetwork, model: TrainedModel, metadata: dict[str, str]) -> bytes:
    import onnx

    outputs = _OUTPUTS[model.task]
    example = _example(model)
    # The torch.export-based exporter (dynamo=True), the default since torch 2.9: the TorchScript-based
    # one (dynamo=False) still works in 2.13 but warns that it will be removed. The batch axis is a
    # named Dim so the graph takes any batch; weights stay inside the one file (external_data=False)
    # because a feed-forward network is far below ONNX's 2 GB protobuf limit.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export's notes on internals, nothing a user can act on
        # It also logs "torchvision is not installed" once per torchvision op: noise for a netfit network.
        registration.setLevel(logging.ERROR)
        target = Path(scratch) / "model.onnx"
        try:
            torch.onnx.export(wrapper, example, str(target), input_names=_input_names(example), output_names=outputs,
                              dynamic_shapes=_batch_axes(example), dynamo=True, external_data=False, verbose=False,
                              report=False)
        finally:
            registration.setLevel(level)
        graph = onnx.load(str(target))
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    graph.producer_name = f"netfit {__version__}"
    return graph.SerializeToString()


def _torchscript_bytes(wrapper: RawRowsNetwork, model: TrainedModel, metadata: dict[str, str]) -> bytes:
    # torch.jit is deprecated in torch 2.13 but still works and is what libtorch (C++) loads; tracing
    # records the one path a feed-forward network takes, and the branches on the task are fixed here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, _example(model), check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"netfit.json": json.dumps(metadata)})
    return buffer.getvalue()


def _pt2_bytes(wrapper: RawRowsNetwork, model: TrainedModel, metadata: dict[str, str]) -> bytes:
    # torch.export: the successor of TorchScript, the form AOTInductor compiles and ExecuTorch reads.
    # The metadata travels as an extra file of the archive, as in TorchScript.
    example = _example(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(wrapper, example, dynamic_shapes=_batch_axes(example))
        buffer = io.BytesIO()
        torch.export.save(program, buffer, extra_files={"netfit.json": json.dumps(metadata)})
    return buffer.getvalue()


def _file_inputs(table: Any, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """The file's inputs for the rows of a pyarrow ``table``, built from ``netfit.inputs`` alone.

    This is the README's recipe, the way a user without netfit builds them; the self-check goes
    through it so that the documented contract, not netfit's encoder, is what gets checked.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    rows = [pc.fill_null(pc.cast(table[name], pa.float32()), np.nan).to_numpy() for name in inputs["rows"]]
    feeds = {"rows": np.stack(rows, axis=1) if rows else np.zeros((n, 0), np.float32)}
    codes = []
    for name in inputs["codes"]:
        text = pc.cast(table[name], pa.string())
        code = pc.index_in(text, value_set=pa.array(inputs["categories"][name], pa.string()))
        code = pc.if_else(pc.is_null(text), inputs["missing_code"], pc.fill_null(code, inputs["unseen_code"]))
        codes.append(code.to_numpy().astype(np.int64))
    if codes:
        feeds["codes"] = np.stack(codes, axis=1)
    return feeds


def run_file(path: Path, format: str, inputs: np.ndarray | dict[str, np.ndarray]) -> list[np.ndarray]:
    """The outputs of an exported file on ``inputs`` (float32 rows, or ``{"rows": ..., "codes": ...}``),
    as the file's own runtime gives them."""
    feeds = inputs if isinstance(inputs, dict) else {"rows": inputs}
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, feeds)
    tensors = [torch.from_numpy(feeds[name]) for name in ("rows", "codes") if name in feeds]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path)) if format == "torchscript" else torch.export.load(str(path)).module()
        out = module(*tensors)
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def _check(path: Path, format: str, model: TrainedModel, rows: Any, z: torch.Tensor, inputs: dict[str, Any]) -> float:
    """Largest difference between the file on ``rows`` and netfit's logits ``z``; NetfitError if beyond tolerance."""
    outputs = run_file(path, format, _file_inputs(rows, inputs) if model.preparation.encoder is not None else rows)
    if model.task == "regression":
        expected = model.preparation.target_scaler.inverse(z.numpy())
        got = outputs[0]
        relative = np.abs(got - expected) / np.maximum(1.0, np.abs(expected))
        worst = float(relative.max()) if got.shape == expected.shape else np.inf
        if not worst <= VALUE_TOLERANCE:  # also catches NaN
            raise NetfitError(f"the exported {format} file disagrees with netfit on {len(rows)} check rows (max "
                              f"relative difference {worst:.2e} > {VALUE_TOLERANCE:g}); it was removed: this is a "
                              "netfit bug, please report it")
        return worst
    expected = model.proba_from_logits(z)
    got = outputs[1]
    if got.shape != expected.shape:
        raise NetfitError(f"the exported {format} file gives probabilities of shape {got.shape}, netfit "
                          f"{expected.shape}; it was removed: this is a netfit bug, please report it")
    worst = float(np.abs(got - expected).max())
    wrong = int((got.argmax(axis=1) != expected.argmax(axis=1)).sum())
    if wrong or not worst <= PROBA_TOLERANCE:
        raise NetfitError(f"the exported {format} file disagrees with netfit on {len(rows)} check rows ({wrong} "
                          f"labels differ, max probability difference {worst:.2e}, tolerance {PROBA_TOLERANCE:g}); "
                          "it was removed: this is a netfit bug, please report it")
    return worst
