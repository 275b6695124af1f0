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

from .augment import check_augment
from .errors import NetfitError
from .losses import build_loss
from .model import build_network
from .prepare import prepare
from .probe import check_custom_module, has_batchnorm
from .spec import BCE, MSE, CrossEntropy, Spec, load_spec, spec_from_dict
from .splits import PreparedData

__all__ = ["TrainingStart", "start_training", "as_spec", "resolve_device", "resolve_precision", "precision_label",
           "cpu_has_native_bf16"]

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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX-512 BF16 or AMX).

    There bf16 runs the tutorials' layers at about 2.5x fp32's rate; on other CPUs torch emulates
    bf16 through fp32 and it is slower than plain fp32, so ``auto`` must not pick it.
    """
    # torch.cpu's probes are what torch's own kernels dispatch on; /proc/cpuinfo covers a torch without them.
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe() for probe in probes if probe is not None):
        return True
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """``train.precision`` -> the autocast dtype, or None for plain fp32.

    ``auto``: bf16 on a CUDA GPU that has it and on a CPU with native bf16, fp32 elsewhere. Only
    the forward and backward compute runs in bf16: weights, optimizer state and the loss stay fp32.
    """
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    if name == "fp16" and device.type != "cuda":
        raise NetfitError(f'train.precision = "fp16" needs a CUDA device, not {device.type}; use "bf16" or "fp32"')
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def precision_label(name: str, dtype: torch.dtype | None, device: torch.device) -> str:
    """How the run computes, as the start-up line prints it; for ``auto``, why."""
    chosen = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]  # the spec's own names
    if name != "auto" or device.type != "cpu":
        return chosen
    return f"{chosen}: auto, {'native' if dtype is not None else 'no native'} bf16 on this CPU"


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
    check_augment(spec.data.augment, data.image_shape, prep.dataset)
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
