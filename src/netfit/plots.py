"""The run report's figures, each drawn by matplotlib and returned as PNG bytes.

Figures are made with ``matplotlib.figure.Figure`` on an Agg canvas: no display, no pyplot and
its global figure registry, so drawing a report never opens a window or leaks memory between
reports. matplotlib costs about half a second to import, so only the report imports this module.
Every text drawn here may come from a run folder (class names, column names): math rendering is
off, so a name with a ``$`` is drawn as written instead of failing to parse as TeX.
"""

from __future__ import annotations

import io
from typing import NamedTuple, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

__all__ = ["DPI", "Png", "line_plot", "bar_plot", "confusion_plot", "image_grid", "roc_plot", "pr_plot",
           "scatter_plots", "residual_plots", "search_plot", "trial_curves_plot", "parameter_plots", "Parameter"]

# 80 dpi keeps a 6-inch figure at 480 pixels: sharp on a page 1,000 pixels wide and about 20-40 kB
# a figure, so a report of a dozen figures stays well under a megabyte.
DPI = 80
_STYLE = {"text.parse_math": False, "font.size": 9, "axes.titlesize": 10, "axes.grid": True, "grid.alpha": 0.3,
          "axes.spines.top": False, "axes.spines.right": False, "figure.facecolor": "white"}
_TRAIN, _VAL, _ACCENT = "#1f77b4", "#ff7f0e", "#2ca02c"


class Png(NamedTuple):
    """A figure's PNG bytes and its size in pixels, so the page can reserve the space before decoding."""

    data: bytes
    width: int
    height: int


def _figure(width_in: float, height_in: float) -> Figure:
    figure = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> Png:
    buffer = io.BytesIO()
    # No "Software" tag: the same run gives the same bytes with any matplotlib version.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    width, height = (int(round(v)) for v in figure.get_size_inches() * DPI)
    return Png(buffer.getvalue(), width, height)


def line_plot(x: Sequence[float], series: dict[str, Sequence[float]], title: str, ylabel: str,
              kept_epoch: int | None = None) -> Png:
    """Lines of y against epochs, one per named series; NaN entries (no value that epoch) are gaps.

    ``kept_epoch``: the epoch whose weights the run kept (early stopping restored it), marked by a line.
    """
    with rc_context(_STYLE):
        figure = _figure(6, 3.4)
        axes = figure.add_subplot()
        for (name, values), color in zip(series.items(), (_TRAIN, _VAL, _ACCENT)):
            # Markers too: a run of one epoch is one point, which a line alone would not show.
            axes.plot(x, values, marker="o", markersize=3, color=color, label=name)
        if kept_epoch is not None:
            axes.axvline(kept_epoch, color="grey", linestyle=":", linewidth=1.2, label=f"kept: epoch {kept_epoch}")
        axes.set(title=title, xlabel="epoch", ylabel=ylabel)
        axes.xaxis.get_major_locator().set_params(integer=True)
        if len(series) > 1 or kept_epoch is not None:
            axes.legend()
        return _png(figure)


def bar_plot(x: Sequence[float], values: Sequence[float], title: str, ylabel: str) -> Png:
    with rc_context(_STYLE):
        figure = _figure(6, 3.4)
        axes = figure.add_subplot()
        axes.bar(x, values, color=_TRAIN)
        axes.set(title=title, xlabel="epoch", ylabel=ylabel)
        axes.xaxis.get_major_locator().set_params(integer=True)
        return _png(figure)


def confusion_plot(matrix: np.ndarray, classes: list[str]) -> Png:
    """The confusion matrix as counts, rows true class, columns predicted, shaded by share of the row."""
    n = len(classes)
    size = min(9.0, max(4.5, 0.45 * n + 2))
    with rc_context({**_STYLE, "axes.grid": False}):
        figure = _figure(size, size)
        axes = figure.add_subplot()
        totals = matrix.sum(axis=1, keepdims=True)
        # Shaded by share of the true class, so a rare class's mistakes show as plainly as a common one's.
        share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
        image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
        figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class")
        labels = [_short(c) for c in classes]
        if n <= 40:
            axes.set_xticks(range(n), labels, rotation=90 if max(map(len, labels)) > 3 else 0)
            axes.set_yticks(range(n), labels)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if matrix[i, j]:
                        axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                                  color="white" if share[i, j] > 0.5 else "black")
        axes.set(title="Confusion matrix (test part)", xlabel="predicted class", ylabel="true class")
        return _png(figure)


def image_grid(images: np.ndarray, captions: list[str], columns: int = 8, ink_dark: bool = False) -> Png:
    """Small images (n, height, width[, 3]) uint8 with a caption above each.

    Grey images are drawn as their pixels are (0 black, 255 white); ``ink_dark`` draws high values
    dark instead, as MNIST-style digits (ink stored as 255) are shown on paper.
    """
    rows = -(-len(images) // columns)
    with rc_context({**_STYLE, "axes.grid": False}):
        figure = _figure(columns * 1.1, rows * 1.35)
        for k, (image, caption) in enumerate(zip(images, captions)):
            axes = figure.add_subplot(rows, columns, k + 1)
            axes.imshow(image, cmap=("gray_r" if ink_dark else "gray") if image.ndim == 2 else None, vmin=0, vmax=255,
                        interpolation="nearest")
            axes.set_title(caption, fontsize=7)
            axes.set_axis_off()
        return _png(figure)


def roc_plot(fpr: np.ndarray, tpr: np.ndarray, area: float, positive: str) -> Png:
    with rc_context(_STYLE):
        figure = _figure(4.8, 4.2)
        axes = figure.add_subplot()
        axes.plot(fpr, tpr, color=_TRAIN, label=f"ROC, AUC {area:.3f}")
        axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
        axes.set(title=f"ROC curve (positive: {_short(positive)})", xlabel="false positive rate",
                 ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
        axes.legend(loc="lower right")
        return _png(figure)


def pr_plot(recall: np.ndarray, precision: np.ndarray, area: float, base_rate: float, positive: str) -> Png:
    with rc_context(_STYLE):
        figure = _figure(4.8, 4.2)
        axes = figure.add_subplot()
        axes.plot(recall, precision, color=_VAL, drawstyle="steps-post", label=f"PR, AUC {area:.3f}")
        axes.axhline(base_rate, color="grey", linestyle="--", linewidth=1, label=f"chance ({base_rate:.2f})")
        axes.set(title=f"Precision-recall (positive: {_short(positive)})", xlabel="recall", ylabel="precision",
                 xlim=(0, 1), ylim=(0, 1.01))
        axes.legend(loc="lower left")
        return _png(figure)


def scatter_plots(truth: np.ndarray, predicted: np.ndarray, names: list[str]) -> Png:
    """Predicted against actual, one panel per target, with the line a perfect model would lie on."""
    with rc_context(_STYLE):
        figure = _figure(4.2 * len(names), 4.0)
        for k, name in enumerate(names):
            axes = figure.add_subplot(1, len(names), k + 1)
            t, p = truth[:, k], predicted[:, k]
            low, high = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
            axes.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
            axes.scatter(t, p, s=8, alpha=0.5, color=_TRAIN, edgecolors="none")
            axes.set(title=f"{_short(name)}: predicted vs actual", xlabel="actual", ylabel="predicted")
        return _png(figure)


def residual_plots(truth: np.ndarray, predicted: np.ndarray, names: list[str]) -> Png:
    """Residuals (actual - predicted) against the prediction, one panel per target."""
    with rc_context(_STYLE):
        figure = _figure(4.2 * len(names), 3.4)
        for k, name in enumerate(names):
            axes = figure.add_subplot(1, len(names), k + 1)
            axes.axhline(0, color="grey", linestyle="--", linewidth=1)
            axes.scatter(predicted[:, k], truth[:, k] - predicted[:, k], s=8, alpha=0.5, color=_VAL,
                         edgecolors="none")
            axes.set(title=f"{_short(name)}: residuals", xlabel="predicted", ylabel="actual - predicted")
        return _png(figure)


def search_plot(numbers: Sequence[int], values: Sequence[float], states: Sequence[str], metric: str,
                maximize: bool) -> Png:
    """A study's trials in the order they started: each trial's figure and the best so far.

    ``values``: the completed trials' figure, or a pruned trial's last reported one (NaN when a
    trial has none, as a failed trial); ``states``: "complete", "pruned", "fail", ...
    """
    numbers, values = np.asarray(numbers), np.asarray(values, dtype=np.float64)
    complete = np.array([s == "complete" for s in states])
    pruned = np.array([s == "pruned" for s in states])
    with rc_context(_STYLE):
        figure = _figure(6, 3.6)
        axes = figure.add_subplot()
        axes.scatter(numbers[complete], values[complete], s=22, color=_TRAIN, label="completed", zorder=3)
        axes.scatter(numbers[pruned], values[pruned], s=22, marker="x", color=_VAL,
                     label="pruned (last epoch reported)", zorder=3)
        # The best so far counts completed trials only: a pruned trial's figure is from an unfinished run.
        best, line = np.nan, []
        for value, done in zip(values, complete):
            if done and (np.isnan(best) or (value > best if maximize else value < best)):
                best = value
            line.append(best)
        axes.step(numbers, line, where="post", color=_ACCENT, label="best so far")
        failed = ~complete & ~pruned
        for number in numbers[failed]:
            axes.axvline(number, color="#d62728", alpha=0.25, linewidth=3)
        if failed.any():
            axes.plot([], [], color="#d62728", alpha=0.25, linewidth=3, label="failed")
        axes.set(title="The search, trial by trial", xlabel="trial", ylabel=metric)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.legend(fontsize=8)
        return _png(figure)


def trial_curves_plot(curves: Sequence[tuple[int, np.ndarray, np.ndarray]], best: int | None, metric: str) -> Png:
    """Every trial's validation figure per epoch (trial number, epochs, values); the best trial drawn on top."""
    with rc_context(_STYLE):
        figure = _figure(6, 3.6)
        axes = figure.add_subplot()
        for number, epochs, values in curves:
            if number != best:  # markers too: a trial pruned after one epoch is a single point
                axes.plot(epochs, values, color="grey", alpha=0.45, linewidth=1, marker="o", markersize=2)
        for number, epochs, values in curves:
            if number == best:
                axes.plot(epochs, values, color=_TRAIN, linewidth=2, marker="o", markersize=3,
                          label=f"best: trial {number}")
        axes.plot([], [], color="grey", alpha=0.45, label="other trials (a pruned one stops early)")
        axes.set(title="Validation curves of every trial", xlabel="epoch", ylabel=metric)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.legend(fontsize=8)
        return _png(figure)


class Parameter(NamedTuple):
    """One searched spec field: the value each trial drew, and how to lay the axis out."""

    name: str
    values: list  # numbers for a range; for choices, the choice each trial drew as text
    log: bool
    choices: list[str] | None  # the choices' labels in the spec's order, or None for a range


def parameter_plots(parameters: Sequence[Parameter], figures: Sequence[float], states: Sequence[str],
                    metric: str) -> Png:
    """The trials' figure against each searched field, one panel per field, three to a row."""
    columns = min(3, len(parameters))
    rows = -(-len(parameters) // columns)
    figures = np.asarray(figures, dtype=np.float64)
    complete = np.array([s == "complete" for s in states])
    with rc_context(_STYLE):
        figure = _figure(3.4 * columns, 2.9 * rows)
        for k, parameter in enumerate(parameters):
            axes = figure.add_subplot(rows, columns, k + 1)
            if parameter.choices is not None:
                position = {label: i for i, label in enumerate(parameter.choices)}
                x = np.array([position.get(v, np.nan) for v in parameter.values], dtype=np.float64)
                axes.set_xticks(range(len(parameter.choices)), [_short(c, 14) for c in parameter.choices],
                                rotation=30 if max(map(len, parameter.choices)) > 6 else 0)
                axes.set_xlim(-0.5, len(parameter.choices) - 0.5)
            else:
                x = np.array([np.nan if v is None else float(v) for v in parameter.values], dtype=np.float64)
                if parameter.log:
                    axes.set_xscale("log")
                    # The log formatter writes TeX ($10^{-3}$), which this style draws as written: plain numbers.
                    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                    axes.xaxis.set_minor_formatter(NullFormatter())
            axes.scatter(x[complete], figures[complete], s=16, color=_TRAIN)
            axes.scatter(x[~complete], figures[~complete], s=16, marker="x", color=_VAL)
            axes.set(title=_short(parameter.name, 32), ylabel=metric if k % columns == 0 else None)
        return _png(figure)


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
