"""Checks of a user's own ``model.module`` against its data and loss, before the first step.

netfit's own layers fit the data and return logits by construction; a module the user wrote may
not. The first PyTorch tutorial's network ends in ``softmax`` and feeds that to
``CrossEntropyLoss``, which applies log-softmax itself: it trains, only worse, and nothing says
why. So a custom module is run once, in eval mode and without gradients, on training rows and on
noise (a logits network answers noise with rows that are not probabilities; a softmax network
cannot), and refused with a message that explains the mistake. A module that does not take the
data's width, or whose output does not fit the task, is refused here too, with the widths named,
instead of failing inside the first step with a matrix-shape error.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import NetfitError
from .preparation import Preparation

__all__ = ["check_custom_module", "has_batchnorm"]

_PROBE_ROWS = 256
_NOISE_SCALE = 3.0  # inputs are standardized, so this reaches well past the training rows
_TOLERANCE = 1e-3


def has_batchnorm(network: nn.Module) -> bool:
    """Whether any layer normalises over the batch (it cannot train on a batch of one row)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in network.modules())


@torch.no_grad()
def check_custom_module(network: nn.Module, name: str, rows: torch.Tensor, preparation: Preparation,
                        loss_name: str, allow_probabilities: bool) -> None:
    """Refuse a custom module that cannot take ``rows`` (scaled training inputs on its device), whose
    output does not fit the task, or that returns probabilities where the loss wants logits.

    Nothing is changed: eval mode (no BatchNorm statistics updated, no dropout drawn), no
    gradients, and the noise comes from a generator of its own, so the run's random stream is the
    one it would have been without the check.
    """
    width, outputs = preparation.input_size, preparation.output_size
    was_training = network.training
    network.eval()
    try:
        real = _forward(network, name, rows, width)
        noise = torch.randn(_PROBE_ROWS, width, generator=torch.Generator().manual_seed(0)) * _NOISE_SCALE
        out = torch.cat([real, _forward(network, name, noise.to(rows.device), width)]).float()
    finally:
        network.train(was_training)
    if out.shape[1:] != (outputs,):
        what = {"classification": f"{outputs} classes", "binary": "a binary task (one logit)",
                "regression": f"{outputs} target{'s' if outputs > 1 else ''}"}[preparation.task]
        raise NetfitError(f"model.module {name!r} returns outputs of shape {tuple(out.shape)} for {len(out)} rows, "
                          f"but {what} needs (rows, {outputs}); make its last layer output {outputs} values")
    if allow_probabilities:
        return
    if loss_name == "cross_entropy" and (out >= 0).all() and ((out.sum(dim=1) - 1).abs() <= _TOLERANCE).all():
        raise NetfitError(
            f"model.module {name!r} returns probabilities (every row is non-negative and sums to 1, even for noise): "
            "it ends in softmax, but cross_entropy applies log-softmax itself, so softmax would be applied twice "
            "and the network would learn worse (the first PyTorch tutorial's mistake); return the last Linear "
            "layer's output (logits) instead, or set model.allow_probability_outputs = true if you mean it")
    if loss_name == "bce" and ((out >= 0) & (out <= 1)).all():
        raise NetfitError(
            f"model.module {name!r} returns values inside [0, 1] for every row, even for noise: it ends in sigmoid, "
            "but bce applies the sigmoid itself (BCEWithLogitsLoss), so it would be applied twice; return the last "
            "Linear layer's output (a logit) instead, or set model.allow_probability_outputs = true if you mean it")


def _forward(network: nn.Module, name: str, x: torch.Tensor, width: int) -> torch.Tensor:
    try:
        out = network(x)
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        linear = next((m for m in network.modules() if isinstance(m, nn.Linear)), None)
        takes = f" (its first Linear layer takes {linear.in_features})" if linear is not None else ""
        raise NetfitError(f"model.module {name!r} cannot take rows of {width} features{takes}: {first}; build it "
                          f"for {width} inputs (model.kwargs), or check data.target and the data's columns") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or len(out) != len(x):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise NetfitError(f"model.module {name!r} returns {shape} for a batch of {len(x)} rows; it must return "
                          "one row of outputs per input row, shape (rows, outputs)")
    return out
