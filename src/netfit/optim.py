"""Optimizers by name, built from a validated ``train.optimizer`` entry."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from .registry import Registry
from .spec import SGD, Adam, AdamW, RMSprop

__all__ = ["OPTIMIZERS", "build_optimizer"]

# name -> factory(params, options, lr, weight_decay) -> optimizer
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def _sgd(params, options: SGD, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=options.momentum, nesterov=options.nesterov,
                           weight_decay=weight_decay)


@OPTIMIZERS.register("adam")
def _adam(params, options: Adam, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, betas=options.betas, eps=options.eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params, options: AdamW, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, betas=options.betas, eps=options.eps, weight_decay=weight_decay)


@OPTIMIZERS.register("rmsprop")
def _rmsprop(params, options: RMSprop, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=lr, alpha=options.alpha, momentum=options.momentum, eps=options.eps,
                               weight_decay=weight_decay)


def build_optimizer(params: Iterable[torch.nn.Parameter], options, lr: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer for a validated ``train.optimizer`` entry."""
    return OPTIMIZERS.get(options.name)(params, options, lr, weight_decay)
