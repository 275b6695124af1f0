"""Loss functions by name. Every loss takes the network's logits, never probabilities."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .errors import NetfitError
from .registry import Registry
from .spec import BCE, MSE, L1, CrossEntropy, Huber

__all__ = ["LOSSES", "build_loss"]

# name -> factory(options, training targets, number of outputs) -> loss module
LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")


@LOSSES.register("cross_entropy")
def _cross_entropy(options: CrossEntropy, y_train: torch.Tensor, outputs: int) -> nn.Module:
    # CrossEntropyLoss applies log-softmax itself: feeding it softmax outputs would squash gradients.
    weight = None
    if options.class_weights == "balanced":
        counts = torch.bincount(y_train, minlength=outputs).float()
        weight = counts.sum() / (outputs * counts.clamp(min=1))
    elif options.class_weights is not None:
        if len(options.class_weights) != outputs:
            raise NetfitError(f"train.loss.class_weights has {len(options.class_weights)} weights but there are "
                              f"{outputs} classes; give one weight per class")
        weight = torch.tensor(options.class_weights, dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=options.label_smoothing)


@LOSSES.register("bce")
def _bce(options: BCE, y_train: torch.Tensor, outputs: int) -> nn.Module:
    # BCEWithLogitsLoss fuses the sigmoid for numerical stability (no log(0) for confident logits).
    pos_weight = None if options.pos_weight is None else torch.tensor([options.pos_weight])
    return nn.BCEWithLogitsLoss(pos_weight=pos_weight)


@LOSSES.register("mse")
def _mse(options: MSE, y_train: torch.Tensor, outputs: int) -> nn.Module:
    return nn.MSELoss()


@LOSSES.register("l1")
def _l1(options: L1, y_train: torch.Tensor, outputs: int) -> nn.Module:
    return nn.L1Loss()


@LOSSES.register("huber")
def _huber(options: Huber, y_train: torch.Tensor, outputs: int) -> nn.Module:
    return nn.HuberLoss(delta=options.delta)


def build_loss(options, y_train: torch.Tensor, outputs: int) -> nn.Module:
    """The loss module for a validated ``train.loss`` entry."""
    return LOSSES.get(options.name)(options, y_train, outputs)
