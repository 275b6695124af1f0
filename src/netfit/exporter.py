"""A trained run -> one ONNX or TorchScript file that reads raw rows and needs no netfit to run.

The exported graph is :class:`RawRowsNetwork`: the run's input scaling (and, for regression, the
inverse target scaling) held as buffers around the network in eval mode, so the file takes rows as
the user has them and answers in the user's units. Its output contract, also written into the
file's metadata (``netfit.outputs``):

- classification (several classes): ``logits`` (batch, classes) and ``probabilities`` (batch,
  classes), the softmax of the logits; the label is the argmax, ``classes[argmax]``.
- binary: ``logits`` (batch, 1) and ``probabilities`` (batch, 2): column 1 is sigmoid(logit), the
  probability of ``classes[1]``, column 0 its complement (the columns of ``predict_proba``).
- regression: ``predictions`` (batch, targets), in the targets' own units.

Input: ``rows``, float32 (batch, features) in the run's feature order (``netfit.feature_names``);
image runs take the raw 0..255 pixels flattened as the run read them. The batch axis is dynamic.

The exporter checks its own output: the written file is loaded back (onnxruntime, torch.jit.load)
and run on the run's test rows; unless every label and every probability (or value) agrees with
``TrainedModel`` within :data:`PROBA_TOLERANCE` / :data:`VALUE_TOLERANCE`, the file is removed and
the export refused.
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

from .errors import NetfitError
from .storage import save_file
from .trained import TrainedModel
from .version import __version__

__all__ = ["export", "ExportResult", "RawRowsNetwork", "FORMATS", "PROBA_TOLERANCE", "VALUE_TOLERANCE"]

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
# float32 graphs from another runtime differ from torch in the last bits (fused kernels, another
# summation order): 1e-4 is far above that noise and far below any difference a user would notice.
PROBA_TOLERANCE = 1e-4  # absolute, on probabilities
VALUE_TOLERANCE = 1e-4  # relative to max(1, |value|), on regression values in the targets' units
_EXPORT_BATCH = 2  # traced with 2 rows: a batch of 1 lets an exporter specialise the batch axis to 1
_CHECK_ROWS = 1000  # rows drawn when the run has no test part to check on

_OUTPUTS = {"classification": ["logits", "probabilities"], "binary": ["logits", "probabilities"],
            "regression": ["predictions"]}


class RawRowsNetwork(nn.Module):
    """The run's network with its scaling around it: raw float32 rows in, outputs of the contract out."""

    def __init__(self, model: TrainedModel) -> None:
        super().__init__()
        prep = model.preparation
        self.task = prep.task
        self.network = model.network.eval()
        shift, scale = _affine(prep.input_scaler, prep.input_size)
        self.register_buffer("input_shift", shift)
        self.register_buffer("input_scale", scale)
        shift, scale = _affine(prep.target_scaler, prep.output_size)
        self.register_buffer("target_shift", shift)
        self.register_buffer("target_scale", scale)

    def forward(self, rows: torch.Tensor):
        z = self.network((rows - self.input_shift) / self.input_scale)
        if self.task == "regression":
            return z * self.target_scale + self.target_shift
        if self.task == "binary":
            p = torch.sigmoid(z)
            return z, torch.cat([1 - p, p], dim=1)
        return z, torch.softmax(z, dim=1)


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
    """Write ``run`` (a run folder or a loaded :class:`TrainedModel`) as ONNX or TorchScript at ``path``.

    The file takes raw float32 rows and applies the run's scaling itself (see this module's
    docstring for the output contract). After writing, the file is run on the run's test part
    (or on ``rows``, raw rows you pass; or, when neither exists, on 1,000 seeded random rows in
    the training range) and compared with netfit's own predictions; on any disagreement the file
    is removed and :class:`~netfit.NetfitError` raised.
    """
    from .loading import load

    if format not in FORMATS:
        raise NetfitError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path).expanduser()
    if path.is_dir():
        raise NetfitError(f"{path} is a folder; give the path of a file to write")
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
    wrapper = RawRowsNetwork(model).eval()
    metadata = _metadata(model)
    data = _onnx_bytes(wrapper, model, metadata) if format == "onnx" else _torchscript_bytes(wrapper, model, metadata)
    save_file(path, data)
    try:
        difference = _check(path, format, model, check_rows)
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
    if encoder is None:
        return
    # Category lists, vocabularies and tokenisation run in Python on Arrow columns, not as tensor ops.
    encoded = [f"{c.name} ({c.kind})" for c in encoder.columns if c.kind != "numeric"]
    why = (f"its columns {', '.join(encoded)} are encoded in Python before the network" if encoded else
           "its missing cells are filled in Python before the network")
    raise NetfitError(f"this run cannot be exported: {why}, which the exported graph cannot do; train on the numeric "
                      "columns only, or preprocess the columns outside the model and train on the result")


def _check_rows(model: TrainedModel, rows: Any, data_dir: str | Path | None) -> tuple[np.ndarray, str]:
    """Raw float32 rows to check the file on, and where they came from."""
    from .evaluation import TestPartUnavailable, load_test_part

    width = model.preparation.input_size
    if rows is not None:
        found, where = np.asarray(rows), "the rows given"
    else:
        try:
            found, where = np.asarray(load_test_part(model, Path(data_dir) if data_dir else None).X), \
                "the run's test part"
        except TestPartUnavailable:
            found, where = _random_rows(model), "random rows in the training range"
    found = found.reshape(len(found), -1) if found.ndim > 2 else found
    if found.ndim != 2 or found.shape[1] != width or len(found) == 0 or found.dtype.kind not in "biuf":
        raise NetfitError(f"rows to check the export on must be numbers, shape (rows, {width}); got "
                          f"{found.dtype} of shape {found.shape}")
    return found.astype(np.float32), where


def _random_rows(model: TrainedModel) -> np.ndarray:
    """Seeded rows where the training rows lay: mean +- std per feature, pixels 0..255, else N(0, 1)."""
    prep, generator = model.preparation, np.random.default_rng(0)
    shape = (_CHECK_ROWS, prep.input_size)
    if prep.input_scaler.method == "divide_by_255" or prep.image is not None:
        return generator.integers(0, 256, shape).astype(np.float32)
    if prep.input_scaler.method == "standardize":
        return (prep.input_scaler.shift + prep.input_scaler.scale * generator.standard_normal(shape)).astype(np.float32)
    return generator.standard_normal(shape).astype(np.float32)


def _metadata(model: TrainedModel) -> dict[str, str]:
    prep = model.preparation
    features = prep.feature_names or [f"f{i}" for i in range(prep.input_size)]
    return {"netfit.version": __version__, "netfit.task": prep.task, "netfit.input": "rows",
            "netfit.outputs": json.dumps(_OUTPUTS[prep.task]), "netfit.feature_names": json.dumps(features),
            "netfit.classes": json.dumps(prep.classes), "netfit.target_names": json.dumps(prep.target_names)}


def _example(model: TrainedModel) -> torch.Tensor:
    return torch.zeros(_EXPORT_BATCH, model.preparation.input_size)


def _onnx_bytes(wrapper: RawRowsNetwork, model: TrainedModel, metadata: dict[str, str]) -> bytes:
    import onnx

    outputs = _OUTPUTS[model.task]
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
            torch.onnx.export(wrapper, (_example(model),), str(target), input_names=["rows"], output_names=outputs,
                              dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False,
                              verbose=False, report=False)
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
        traced = torch.jit.trace(wrapper, (_example(model),), check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"netfit.json": json.dumps(metadata)})
    return buffer.getvalue()


def run_file(path: Path, format: str, rows: np.ndarray) -> list[np.ndarray]:
    """The outputs of an exported file on float32 ``rows``, as the file's own runtime gives them."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"rows": rows})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path))
        with torch.no_grad():
            out = module(torch.from_numpy(rows))
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def _check(path: Path, format: str, model: TrainedModel, rows: np.ndarray) -> float:
    """Largest difference between the file and netfit on ``rows``; NetfitError if beyond tolerance."""
    outputs = run_file(path, format, rows)
    z = model.logits(rows)
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
