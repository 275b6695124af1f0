"""Learning-rate schedules, as one table of per-step rates computed before training.

A table rather than a scheduler object: every engine reads the rate of step ``t`` from the same
numbers (the eager engine as a Python float, the CUDA-graph engine from a device tensor inside the
captured step), so the engines cannot drift apart, and the rate costs no host work per step.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .errors import NetfitError
from .registry import Registry
from .spec import ConstantSchedule, CosineSchedule, OneCycleSchedule, StepSchedule, WarmupSchedule

__all__ = ["SCHEDULES", "MAX_STEPS", "lr_table"]

# name -> factory(options, base lr, steps per epoch, total steps) -> rate of each step
SCHEDULES: Registry[Callable[..., np.ndarray]] = Registry("schedule")


def _with_warmup(rates: np.ndarray, warmup_steps: int) -> np.ndarray:
    # Linear warm-up from lr/warmup_steps up to the schedule's own rate: large early steps on
    # freshly initialised weights are what makes high learning rates diverge.
    if warmup_steps > 0:
        ramp = np.arange(1, warmup_steps + 1) / warmup_steps
        rates[:warmup_steps] *= ramp[: len(rates)]
    return rates


@SCHEDULES.register("constant")
def _constant(options: ConstantSchedule, lr: float, steps_per_epoch: int, total: int) -> np.ndarray:
    return np.full(total, lr)


@SCHEDULES.register("warmup")
def _warmup(options: WarmupSchedule, lr: float, steps_per_epoch: int, total: int) -> np.ndarray:
    return _with_warmup(np.full(total, lr), round(options.warmup_epochs * steps_per_epoch))


@SCHEDULES.register("step")
def _step(options: StepSchedule, lr: float, steps_per_epoch: int, total: int) -> np.ndarray:
    epoch = np.arange(total) // steps_per_epoch
    rates = lr * options.gamma ** (epoch // options.step_epochs)
    return _with_warmup(rates.astype(np.float64), round(options.warmup_epochs * steps_per_epoch))


@SCHEDULES.register("cosine")
def _cosine(options: CosineSchedule, lr: float, steps_per_epoch: int, total: int) -> np.ndarray:
    warmup = min(round(options.warmup_epochs * steps_per_epoch), total)
    # The floor is reached just after the last step, so no step is spent at the lowest rate.
    t = np.clip((np.arange(total) - warmup) / max(total - warmup, 1), 0.0, 1.0)
    floor = lr * options.min_lr_ratio
    rates = floor + (lr - floor) * 0.5 * (1.0 + np.cos(math.pi * t))
    return _with_warmup(rates, warmup)


@SCHEDULES.register("one_cycle")
def _one_cycle(options: OneCycleSchedule, lr: float, steps_per_epoch: int, total: int) -> np.ndarray:
    # Up from lr/div_factor to lr over pct_start of the run, then down to that start/final_div_factor,
    # both halves cosine-shaped, with the peak on the same step as torch's OneCycleLR.
    peak_step = max(round(options.pct_start * total) - 1, 1)
    start = lr / options.div_factor
    end = start / options.final_div_factor
    t = np.arange(total, dtype=np.float64)
    up = np.clip(t / peak_step, 0.0, 1.0)
    down = np.clip((t - peak_step) / max(total - 1 - peak_step, 1), 0.0, 1.0)
    rising = start + (lr - start) * 0.5 * (1.0 - np.cos(math.pi * up))
    falling = end + (lr - end) * 0.5 * (1.0 + np.cos(math.pi * down))
    return np.where(t <= peak_step, rising, falling)


# The table costs 8 bytes a step: 50 million steps (400 MB) is days of training on a CPU and
# hours on a GPU, far beyond any run netfit is meant for, and far below running out of memory.
MAX_STEPS = 50_000_000


def lr_table(options, lr: float, steps_per_epoch: int, epochs: int) -> np.ndarray:
    """The learning rate of every step of the run, float64, ``steps_per_epoch * epochs`` long."""
    total = max(steps_per_epoch * epochs, 1)
    if total > MAX_STEPS:
        raise NetfitError(f"train.epochs = {epochs} with {steps_per_epoch} steps per epoch is {total:,} steps, more "
                          f"than the {MAX_STEPS:,} netfit plans for one run; lower train.epochs or raise "
                          "train.batch_size")
    return SCHEDULES.get(options.name)(options, lr, steps_per_epoch, total)
