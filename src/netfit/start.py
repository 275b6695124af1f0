"""What a training of a spec starts from: the spec read, the device and precision resolved, the
data prepared, the network built at its seeded initial weights, and its loss.

``fit`` and the learning-rate finder both start here, so the finder sweeps the very network
``fit`` would train.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import NetfitError
from .losses import build_loss
from .model import build_network
from .prepare import prepare
from .probe import check_custom_module, has_batchnorm
from .spec import BCE, MSE, CrossEntropy, Spec, load_spec, spec_from_dict
from .splits import PreparedData

__all__ = ["TrainingStart", "start_training", "as_spec", "resolve_device", "resolve_precision"]

_DEFAULT_LOSS = {"classification": CrossEntropy(name="cross_entropy"), "binary": BCE(name="bce"),
                 "regression": MSE(name="mse")}


def as_spec(spec: Spec | dict[str, Any] | str | Path) -> Spec:
    """A validated Spec from a Spec, a plain dict, or the path of a TOML file."""
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, dict):
        return spec_from_dict(spec)
    if isinstance(spec, (str, Path)):
        return load_spec(spec)
    raise TypeError(f"spec must be a Spec, a dict or a path, not {type(spec).__name__}")


def resolve_device(name: str) -> torch.device:
    """``train.device`` -> a torch device; "auto" picks CUDA, then MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NetfitError('train.device = "cuda" but this torch sees no CUDA GPU; use "auto" or "cpu"')
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise NetfitError('train.device = "mps" but MPS is not available here; use "auto" or "cpu"')
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """``train.precision`` -> the autocast dtype, or None for plain fp32."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if name == "fp16" and device.type != "cuda":
        raise NetfitError(f'train.precision = "fp16" needs a CUDA device, not {device.type}; use "bf16" or "fp32"')
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


@dataclass
class TrainingStart:
    """What a training of a spec starts from: the device, the prepared data, the network at its
    initial weights, the loss and the compute precision.

    ``fit`` trains from them (``api._train``), and the learning-rate finder sweeps from them.
    """

    spec: Spec
    device: torch.device
    data: PreparedData
    network: nn.Module
    loss_fn: nn.Module
    autocast_dtype: torch.dtype | None


_DEFAULT_LOSS = {"classification": CrossEntropy(name="cross_entropy"), "binary": BCE(name="bce"),
                 "regression": MSE(name="mse")}


def start_training(spec: Spec, X: Any = None, y: Any = None, module: type[nn.Module] | None = None) -> TrainingStart:
    """Prepare the data and build the network (seeded by ``train.seed``, as ``fit`` seeds it) and its loss.

    Seeds torch's global generator: a caller that must leave it as it was saves it around this call.
    """
    device = resolve_device(spec.train.device)
    data = prepare(spec, X, y)
    prep = data.preparation
    autocast_dtype = resolve_precision(spec.train.precision, device)
    torch.manual_seed(spec.train.seed)  # initial weights and dropout masks
    network = build_network(spec.model, prep.input_size, prep.output_size, module, prep.layout).to(device)
    loss_options = spec.train.loss or _DEFAULT_LOSS[prep.task]
    _check_network(network, spec, data, loss_options.name, device)
    loss_fn = build_loss(loss_options, data.train.y, prep.output_size).to(device)
    return TrainingStart(spec, device, data, network, loss_fn, autocast_dtype)


def _check_network(network: nn.Module, spec: Spec, data: PreparedData, loss_name: str, device: torch.device) -> None:
    """Refuse, before the first step, a network that cannot train on this data with this loss."""
    prep = data.preparation
    if spec.model.module is not None:
        rows = data.train.inputs(slice(0, 256)).to(device)
        check_custom_module(network, spec.model.module, rows, prep, loss_name, spec.model.allow_probability_outputs)
    batch = min(spec.train.batch_size, len(data.train))
    if batch < 2 and has_batchnorm(network):
        why = ("train.batch_size = 1" if spec.train.batch_size < 2 else
               f"there is only {len(data.train)} training row")
        raise NetfitError(f"BatchNorm needs at least 2 rows in every training batch, but {why}; add rows (or lower "
                          "data.val_fraction), raise train.batch_size, or turn model.batchnorm off")
