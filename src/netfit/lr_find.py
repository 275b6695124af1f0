"""The learning-rate range test (Smith 2015; fastai's and Lightning's ``lr_find``).

The spec's network is trained for a few hundred steps while the learning rate grows
exponentially from ``start_lr`` to ``end_lr``; the loss of every step is recorded and smoothed,
and the sweep stops once the loss diverges. The suggestion is read from the smoothed curve with
fastai's "valley" rule: the longest stretch over which the loss keeps falling, two thirds of the
way into it. The rate at the minimum divided by ten is reported beside it as a second opinion.
Lightning's steepest-slope rule is not offered: a derivative of a noisy curve picks whichever
wiggle is steepest (Lightning issues #1767, #21141).

The test leaves no trace: it trains a copy of the network with an optimizer of its own, draws
its batches from a generator of its own, puts back every global random state it may touch, and
writes no file. ``fit`` after ``lr_find`` is bit for bit the ``fit`` without it.
"""

from __future__ import annotations

import copy
import io
import math
import random
from bisect import bisect_left
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from .start import as_spec, resolve_device, start_training
from .errors import NetfitError
from .optim import build_optimizer
from .splits import Split
from .spec import Spec
from .step import steps_per_epoch, train_step
from .streaming import StreamedRows

__all__ = ["LRFinderResult", "lr_find", "range_test", "smooth", "valley",
           "DEFAULT_START_LR", "DEFAULT_END_LR", "DEFAULT_STEPS"]

DEFAULT_START_LR = 1e-7  # far below any useful rate: the curve starts flat, at the initial loss
DEFAULT_END_LR = 10.0  # far above: every optimizer netfit offers has diverged long before
# The moving average spans about 1 / (1 - BETA) = 50 steps, so the smoothed curve lags the losses
# by 50 steps: over 8 decades of rates that is 1.3 decades at 300 steps, but 4 at fastai's 100.
# On diabetes's 16-row batches 100 steps leave a valley barely above the noise (the loss falls 1.5
# to 3 standard errors of its starting level), 300 steps show one far above it (10 to 11).
DEFAULT_STEPS = 300
BETA = 0.98  # weight of the past in the loss's moving average: about the last 50 steps count
DIVERGED = 4.0  # the sweep stops once the smoothed loss exceeds this multiple of its best
SKIP_START = 0.1  # share of the first steps the rules ignore (see valley)
VALLEY_POSITION = 2 / 3  # how far into the valley the suggestion sits
MIN_DROP = 0.05  # a valley must end at least this share below the initial loss...
# ...and this many standard deviations of the noise below it. Pure noise (Gaussian or skewed like
# small batches' MSE) reaches 5 on 300 steps; the shallowest real valley on the shipped specs, on
# diabetes's 16-row batches, 8 (mnist-mlp: 177). See valley().
MIN_DROP_SIGMAS = 6.0


# ----------------------------------------------------------------------------- the result


@dataclass
class LRFinderResult:
    """The curve of a range test and the rate read from it.

    ``suggestion`` is None when the smoothed loss never fell far enough to call it a valley;
    ``reason`` then says so, and otherwise says where the suggestion was read.
    """

    lrs: np.ndarray  # the rate of every step run
    losses: np.ndarray  # each step's batch loss (the last may be NaN or infinite: the sweep stopped there)
    smoothed: np.ndarray  # the bias-corrected moving average the rules read
    suggestion: float | None
    rule: str  # how ``suggestion`` was read: "valley"
    reason: str
    valley: tuple[float, float] | None  # the rates where the valley starts and ends
    min_loss_lr: float | None  # the rate at the smoothed loss's minimum
    planned_steps: int
    stop_reason: str  # why the sweep ended
    batch_size: int
    spec_lr: float  # the spec's own train.lr, for comparison
    schedule: str  # the spec's schedule: what train.lr means there

    @property
    def steps(self) -> int:
        return len(self.lrs)

    @property
    def min_loss_rule(self) -> float | None:
        """The rate at the smoothed minimum divided by 10: the older rule of thumb, reported beside the valley."""
        return None if self.min_loss_lr is None else self.min_loss_lr / 10

    def apply(self, spec: Spec) -> Spec:
        """A copy of ``spec`` with ``train.lr`` set to the suggestion.

        In every schedule netfit has, ``train.lr`` is the highest rate the run reaches (one_cycle's
        peak, the rate warm-up climbs to, the rate step and cosine decay from), so the suggestion
        becomes that peak, as fastai passes its suggestion to ``fit_one_cycle`` as ``lr_max``.
        """
        if self.suggestion is None:
            raise NetfitError(f"lr-find has no rate to apply: {self.reason}")
        return spec.model_copy(update={"train": spec.train.model_copy(update={"lr": self.suggestion})})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: non-finite losses (where the sweep diverged) become None."""
        def numbers(values: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in values.tolist()]

        return {"suggestion": self.suggestion, "rule": self.rule, "reason": self.reason,
                "valley": list(self.valley) if self.valley else None, "min_loss_lr": self.min_loss_lr,
                "min_loss_lr_over_10": self.min_loss_rule, "spec_lr": self.spec_lr, "schedule": self.schedule,
                "steps": self.steps, "planned_steps": self.planned_steps, "batch_size": self.batch_size,
                "stop_reason": self.stop_reason, "lrs": numbers(self.lrs), "losses": numbers(self.losses),
                "smoothed": numbers(self.smoothed)}

    def summary(self) -> str:
        """A few lines for a person: the suggestion and its rule, the second opinion, how the sweep ran."""
        lines = [f"suggested lr {self.suggestion:.3g} ({self.reason})" if self.suggestion is not None
                 else f"no suggestion: {self.reason}"]
        if self.min_loss_lr is not None:
            lines.append(f"minimum-loss rule: {self.min_loss_rule:.3g} (smoothed loss lowest at {self.min_loss_lr:.3g}, "
                         "divided by 10)")
        lines.append(f"{self.steps} of {self.planned_steps} steps at batch {self.batch_size}, lr {self.lrs[0]:.3g} to "
                     f"{self.lrs[-1]:.3g}; {self.stop_reason}")
        peak = "" if self.schedule == "constant" else f", the peak of its {self.schedule} schedule"
        lines.append(f"the spec's train.lr is {self.spec_lr:.3g}{peak}")
        return "\n".join(lines)

    def save_plot(self, path: str | Path) -> None:
        """The smoothed loss against the rate (log scale) with the suggestion marked, written atomically.

        The file's suffix picks the format: .png, .svg or .pdf.
        """
        from matplotlib.figure import Figure

        from .storage import save_file

        kind = plot_format(path)

        # A Figure of its own, not pyplot: no global figure state and no GUI backend to choose.
        figure = Figure(figsize=(6.4, 4.0), layout="constrained")
        axes = figure.subplots()
        axes.plot(self.lrs, np.where(np.isfinite(self.smoothed), self.smoothed, np.nan), color="C0",
                  label="smoothed loss")
        axes.set_xscale("log")
        finite = self.smoothed[np.isfinite(self.smoothed)]
        finite = finite[int(len(finite) * SKIP_START):]
        if len(finite):
            # Scaled to what the rules read: the diverging tail, and the first steps' average of a few
            # batches, run off the chart, else the descent that matters would look flat.
            low, high = float(finite.min()), float(finite[:int(np.argmin(finite)) + 1].max())
            margin = 0.1 * (high - low) or 0.1 * abs(high) or 1.0
            axes.set_ylim(low - margin, high + margin)
        axes.set_xlabel("learning rate")
        axes.set_ylabel("training loss (smoothed)")
        if self.valley is not None:
            axes.axvspan(*self.valley, color="C0", alpha=0.08, label="valley")
        if self.suggestion is not None:
            axes.axvline(self.suggestion, color="C3", label=f"suggestion {self.suggestion:.3g} ({self.rule})")
        if self.min_loss_rule is not None:
            axes.axvline(self.min_loss_rule, color="C7", linestyle=":", label=f"minimum / 10: {self.min_loss_rule:.3g}")
        axes.axvline(self.spec_lr, color="C2", linestyle="--", label=f"spec's train.lr {self.spec_lr:.3g}")
        axes.legend(fontsize="small")
        buffer = io.BytesIO()
        figure.savefig(buffer, format=kind, dpi=100)
        save_file(Path(path).expanduser(), buffer.getvalue())


PLOT_FORMATS = ("png", "svg", "pdf")


def plot_format(path: str | Path) -> str:
    """The plot's format from its file's suffix, or a one-line error naming the ones there are."""
    kind = Path(path).suffix.lower().removeprefix(".")
    if kind not in PLOT_FORMATS:
        raise NetfitError(f"{path}: a plot is written as {', '.join('.' + k for k in PLOT_FORMATS)}; name the file "
                          "with one of these suffixes")
    return kind


# ----------------------------------------------------------------------------- the sweep


def lr_find(spec: Spec | dict[str, Any] | str | Path, X: Any = None, y: Any = None, *,
            start_lr: float = DEFAULT_START_LR, end_lr: float = DEFAULT_END_LR,
            steps: int = DEFAULT_STEPS) -> LRFinderResult:
    """Run the learning-rate range test on the spec's network and data and suggest a ``train.lr``.

    The network starts from the initial weights ``fit`` would give it (same ``train.seed``) and
    trains with the spec's optimizer, loss, batch size, gradient clipping and precision; the
    spec's schedule is replaced by the sweep. Batches are drawn as training draws them, a fresh
    shuffle every pass; a training set smaller than ``steps`` batches is cycled. Nothing is
    written and no global random state changes. ``X`` and ``y`` replace the spec's data, as in
    :func:`netfit.fit`.
    """
    spec = as_spec(spec)
    if not 0 < start_lr < end_lr:
        raise NetfitError(f"lr_find needs 0 < start_lr < end_lr, got {start_lr:g} and {end_lr:g}")
    if steps < 10:
        raise NetfitError(f"lr_find needs at least 10 steps to draw a curve, got steps={steps}")
    with _random_states_kept(resolve_device(spec.train.device)):
        start = start_training(spec, X, y)
        train = start.data.train
        if isinstance(train.X, StreamedRows):
            raise NetfitError("lr_find reads the training rows in memory, but this data is streamed from disk; "
                              "run it on a sample that fits (data.streaming = false on a smaller file)")
        lrs = np.geomspace(start_lr, end_lr, steps)
        recipe = spec.train
        # A fresh optimizer on a copy: the network ``start_training`` built stays at its initial weights.
        network = copy.deepcopy(start.network)
        optimizer = build_optimizer(network.parameters(), recipe.optimizer, start_lr, recipe.weight_decay)
        losses, stop_reason = range_test(network, start.loss_fn, optimizer, train.to(start.device), lrs,
                                         recipe.batch_size, recipe.seed, recipe.clip_grad_norm, start.autocast_dtype)
    return _read_curve(lrs[:len(losses)], np.asarray(losses, dtype=np.float64), steps, stop_reason,
                       min(recipe.batch_size, len(train)), recipe.lr, recipe.schedule.name)


def range_test(network: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, train: Split,
               lrs: np.ndarray, batch_size: int, seed: int, clip_grad_norm: float | None = None,
               autocast_dtype: torch.dtype | None = None) -> tuple[list[float], str]:
    """Train ``network`` in place, one ``train_step`` per rate of ``lrs``, until the loss diverges.

    Returns every step's batch loss and why the sweep ended. ``train`` is on the network's device.
    """
    device = train.y.device
    grad_scaler = torch.amp.GradScaler(device.type) if autocast_dtype == torch.float16 else None
    batches = _cycled_batches(len(train), batch_size, torch.Generator(device=device).manual_seed(seed), device)
    network.train()
    losses: list[float] = []
    average, best = _MovingAverage(), math.inf
    for lr in lrs:
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        rows = next(batches)
        loss, finite = train_step(network, loss_fn, optimizer, train.inputs(rows), train.y.index_select(0, rows),
                                  clip_grad_norm, autocast_dtype, grad_scaler)
        # A host sync every step, on purpose: the sweep must stop at the step where the loss
        # diverges, and a few hundred syncs cost far less than the steps themselves.
        value, ok = torch.stack([loss.float(), finite.float()]).tolist()
        losses.append(value if ok else math.inf)
        if not (ok and math.isfinite(value)):
            return losses, f"stopped at lr {lr:.3g}: the loss or gradients became NaN or infinite"
        smoothed = average.add(value)
        if smoothed > DIVERGED * best:
            return losses, f"stopped at lr {lr:.3g}: the smoothed loss passed {DIVERGED:g}x its lowest"
        best = min(best, smoothed)
    return losses, f"reached lr {lrs[-1]:.3g} without the loss diverging"


def _cycled_batches(rows: int, batch_size: int, generator: torch.Generator,
                    device: torch.device) -> Iterator[torch.Tensor]:
    """Row indices of batch after batch, as an epoch of training draws them, reshuffled every pass."""
    full, rest = steps_per_epoch(rows, batch_size)
    size = min(batch_size, rows)
    while True:
        order = torch.randperm(rows, generator=generator, device=device)
        for i in range(full + (rest > 0)):
            yield order[i * size:i * size + (size if i < full else rest)]


@contextmanager
def _random_states_kept(device: torch.device):
    """Put back torch's (CPU and the device's), NumPy's and Python's global random states on exit."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    if device.type == "cpu":
        forked = torch.random.fork_rng(devices=[])
    else:
        index = device.index if device.index is not None else 0
        forked = torch.random.fork_rng(devices=[index], device_type=device.type)
    try:
        with forked:
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


# ----------------------------------------------------------------------------- reading the curve


class _MovingAverage:
    """The exponential moving average with bias correction, as Adam corrects its moments.

    Without the correction the average starts at 0 and needs ~1/(1-beta) steps to climb to the
    loss; with it, every value is a proper weighted mean of the losses so far.
    """

    def __init__(self, beta: float = BETA) -> None:
        self.beta, self.average, self.count = beta, 0.0, 0

    def add(self, value: float) -> float:
        self.count += 1
        self.average = self.beta * self.average + (1 - self.beta) * value
        return self.average / (1 - self.beta ** self.count)


def smooth(losses: np.ndarray, beta: float = BETA) -> np.ndarray:
    """The bias-corrected moving average of ``losses`` at every step: the curve the rules read."""
    average = _MovingAverage(beta)
    return np.array([average.add(float(value)) for value in losses])


def valley(losses: np.ndarray) -> tuple[int, int, int] | None:
    """fastai's valley rule on a sweep's per-step losses: the longest decreasing stretch of the
    smoothed curve, and a point 2/3 into it. Returns its (start, end, suggested) step indices, or
    None when the curve holds no valley.

    The stretch is the longest strictly decreasing subsequence of the smoothed losses, not the
    longest run of adjacent falling points: one bump would cut a run in two, while the
    subsequence steps over it. The first tenth of the sweep is left out: there the moving average
    rests on a handful of batches, and a lucky first batch would open a valley.

    Noise on a flat curve always holds some decreasing subsequence, so a valley must also end
    clearly below the initial loss (the mean batch loss over the first fifth of the sweep, whose
    rates are far too small to change the network): by ``MIN_DROP`` of it, and by
    ``MIN_DROP_SIGMAS`` standard deviations of the difference between that mean and one smoothed
    value, for the batch-to-batch noise measured on the sweep itself.
    """
    losses = np.asarray(losses, dtype=np.float64)
    skip = int(len(losses) * SKIP_START)
    curve = smooth(losses)[skip:]
    if len(curve) < 3:
        return None
    start, end = _longest_decreasing(curve)
    first = max(1, len(losses) // 5)
    initial = float(losses[:first].mean())
    # The batch losses' standard deviation from successive differences (robust to the curve's own
    # trend and to the diverging tail), then that of (mean of ``first`` losses - one smoothed value).
    sigma = 1.4826 * float(np.median(np.abs(np.diff(losses)))) / math.sqrt(2)
    noise = sigma * math.sqrt(1 / first + (1 - BETA) / (1 + BETA))
    if end <= start or initial - curve[end] < max(MIN_DROP * abs(initial), MIN_DROP_SIGMAS * noise):
        return None
    return skip + start, skip + end, skip + start + round(VALLEY_POSITION * (end - start))


def _longest_decreasing(curve: np.ndarray) -> tuple[int, int]:
    """First and last index of a longest strictly decreasing subsequence (patience sorting, n log n)."""
    tails: list[float] = []  # tails[k]: the least negated value ending a decreasing subsequence of length k+1
    ends: list[int] = []  # the index of that value
    previous = [-1] * len(curve)
    for i, value in enumerate(-np.asarray(curve, dtype=np.float64)):
        k = bisect_left(tails, value)
        previous[i] = ends[k - 1] if k else -1
        if k == len(tails):
            tails.append(value)
            ends.append(i)
        else:
            tails[k], ends[k] = value, i
    first = last = ends[-1]
    while previous[first] >= 0:
        first = previous[first]
    return first, last


def _read_curve(lrs: np.ndarray, losses: np.ndarray, planned: int, stop_reason: str, batch_size: int,
                spec_lr: float, schedule: str) -> LRFinderResult:
    finite = np.isfinite(losses)
    count = int(np.argmin(finite)) if not finite.all() else len(losses)  # a non-finite loss can only be last
    smoothed = np.full(len(losses), np.nan)
    smoothed[:count] = smooth(losses[:count])
    skip = int(count * SKIP_START)
    suggestion = valley_lrs = min_loss_lr = None
    if count - skip < 3:
        reason = (f"the loss diverged after {len(losses)} steps, at lr {lrs[-1]:.3g}, too early to read a curve; "
                  "lower start_lr, or look for bad rows or unscaled inputs")
    else:
        min_loss_lr = _significant(lrs[skip + int(np.argmin(smoothed[skip:count]))])
        found = valley(losses[:count])
        if found is None:
            reason = ("the smoothed loss never fell clearly below its initial level (by more than its noise and "
                      f"{MIN_DROP:.0%}), so the curve has no valley to read (see the plot); the network may not be "
                      "learning from this data (check the targets and the inputs' scaling), or start_lr is already "
                      "too high")
        else:
            start, end, at = found
            suggestion = _significant(lrs[at])
            valley_lrs = (float(lrs[start]), float(lrs[end]))
            reason = (f"valley rule: {VALLEY_POSITION:.0%} into the longest descent of the smoothed loss, "
                      f"lr {valley_lrs[0]:.3g} to {valley_lrs[1]:.3g}")
    return LRFinderResult(lrs, losses, smoothed, suggestion, "valley", reason, valley_lrs, min_loss_lr, planned,
                          stop_reason, batch_size, spec_lr, schedule)


def _significant(rate: float) -> float:
    # Three significant digits: the rule is not more precise than that, and a spec written with the
    # suggestion reads lr = 0.00228, not lr = 0.0022758459260747866.
    return float(f"{rate:.3g}")
