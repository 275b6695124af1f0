"""The run report: one static HTML page per run, ``RUN/report.html``, to look at rather than read.

The page shows the learning curves (loss, validation metric, learning rate, epoch times) from
``metrics.csv``; the network's answers on the run's test part (a confusion matrix, per-class
precision, recall and F1, the most confused pairs, the worst mistakes, shown as pictures when the
rows are images, and ROC and precision-recall curves for two classes; or, for a regression,
predicted against actual and the residuals, in the targets' units); and the spec, the data, the
parameter count, the environment and where the files are.

The page is self-contained (see :mod:`netfit.htmlpage`): it opens anywhere, offline.
A run folder is untrusted data: the run is read only through ``read_run`` and ``load``, which
verify every file, and every string from it is escaped before it enters the page.
``report.html`` is not listed in ``run.json``: it is derived from the listed files, can be
rebuilt at any time (``netfit report RUN``), and writing it never touches them.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NetfitError
from .evaluation import Predictions, TestPartUnavailable, load_test_part, predict_rows, predict_split
# Short names: nearly every line of the page below escapes a value or embeds a figure.
from .htmlpage import escape as _e, figure as _figure, kv_table as _pairs, page, table as _table
from .rundir import INFO, METRICS, WEIGHTS, RunFiles, read_run
from .storage import read_verified, write_atomic

__all__ = ["REPORT", "write_report", "Curves", "read_curves"]

REPORT = "report.html"
_MISTAKES = 16  # worst mistakes shown: two rows of pictures
_PAIRS = 10  # most confused pairs listed
_POINTS = 5000  # scatter points drawn at most: more cost bytes and show nothing new
_TARGETS = 4  # regression targets drawn at most, side by side


@dataclass
class Curves:
    epoch: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray  # NaN where there was no validation part
    val_metric: np.ndarray
    metric_name: str  # "val_accuracy" or "val_r2"
    lr: np.ndarray
    epoch_time_s: np.ndarray


def write_report(run_dir: str | Path, model=None, rows: Any = None, *, output: str | Path | None = None,
                 data_dir: str | Path | None = None, trust_module: bool = False) -> Path:
    """Write the report page of the finished run ``run_dir`` and return its path.

    ``model``: the run's :class:`~netfit.trained.TrainedModel` when it is already loaded (else the
    run is loaded here, verified). ``rows``: the test rows to show predictions on, when they are at
    hand: raw ``(X, y)`` as ``model.evaluate`` takes them, or the encoded test
    :class:`~netfit.splits.Split` training holds; when None, the run's test part is read again
    from its data (``data_dir``: where a built-in dataset's IDX files now live) and used only if it
    is unchanged. If there are no rows to use, or the run uses your own ``model.module`` and
    ``trust_module`` is False, the page says why in one line and shows everything else.
    ``output``: where to write (default ``run_dir/report.html``), replaced atomically.
    """
    run_dir = Path(run_dir)
    files = read_run(run_dir)
    history = read_curves(files)
    missing = None
    if model is None:
        model, missing = _load(files, trust_module)
    predictions, parts = None, {}
    if model is not None:
        predictions, parts, missing = _predictions(model, rows, data_dir)
    text = _render(files, history, model, predictions, missing, parts)
    target = Path(output).expanduser() if output is not None else run_dir / REPORT
    try:
        write_atomic(target, text.encode("utf-8"))
    except OSError as err:
        raise NetfitError(f"cannot write {target} ({err.strerror or err}); choose a writable file with -o FILE") \
            from None
    return target


# ----------------------------------------------------------------------------- reading the run


def read_curves(files: RunFiles) -> Curves:
    """metrics.csv, its bytes checked against run.json's record of them before they are parsed."""
    source = files.path / METRICS
    data = read_verified(source, files.info["files"][METRICS], files.path / INFO)
    try:
        table = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        header, body = table[0], table[1:]
        if header[:3] != ["epoch", "train_loss", "val_loss"] or header[4:] != ["lr", "epoch_time_s"]:
            raise ValueError(f"unexpected columns {header}")
        columns = np.array([[float(v) if v != "" else math.nan for v in row] for row in body],
                           dtype=np.float64).reshape(len(body), 6).T
    except (ValueError, IndexError, UnicodeDecodeError) as err:
        raise NetfitError(f"{source} cannot be read ({err}); the run folder was damaged: train it again") from None
    return Curves(columns[0].astype(int), columns[1], columns[2], columns[3], header[3], columns[4], columns[5])


def _load(files: RunFiles, trust_module: bool):
    """The run's model, or None and why: a run's own module is imported only when it is trusted."""
    from .loading import load

    if files.spec.model.module is not None and not trust_module:
        return None, (f"the run uses your own module {files.spec.model.module!r}, and netfit imports code named "
                      "in a run folder only when you trust it (netfit report RUN --trust-module)")
    return load(files.path, trust_module=trust_module), None


def _predictions(model, rows: Any, data_dir: str | Path | None) -> tuple[Predictions | None, dict[str, int], str | None]:
    """Predictions on the test rows given, else on the run's test part read again; or why there are none."""
    from .splits import Split
    from .streaming import streams

    if isinstance(rows, Split):
        return predict_split(model, rows, "the test part"), {"test": len(rows)}, None
    if rows is not None:
        X, y = rows
        predictions = predict_rows(model, X, y, "the test rows")
        return predictions, {"test": len(predictions)}, None
    if streams(model.spec):
        return None, {}, ("this run streams its data from disk and the report does not read it again "
                          "(netfit evaluate RUN reports its test metrics)")
    try:
        part = load_test_part(model, Path(data_dir) if data_dir is not None else None)
    except TestPartUnavailable as err:
        return None, {}, err.reason
    except NetfitError as err:  # the data is gone or unreadable: the page is still worth having
        return None, {}, str(err)
    predictions = predict_rows(model, part.X, part.y, part.source)
    return predictions, {"train": part.train_rows, "validation": part.val_rows, "test": len(part.y)}, None


# ----------------------------------------------------------------------------- the page


def _render(files: RunFiles, history: Curves, model, predictions: Predictions | None, missing: str | None,
            parts: dict[str, int]) -> str:
    from . import plots

    prep, info = files.preparation, files.info
    title = f"netfit run {files.path.name}"
    sections = [_header(files, history, model, missing),
                _training(history, plots, _kept_epoch(files))]
    if predictions is not None:
        sections.append(_classification(predictions, model, plots) if prep.task != "regression"
                        else _regression(predictions, prep, plots))
    sections += [_model_section(files, model), _data_section(files, parts), _environment(info),
                 _files_section(files)]
    return page(title, sections)




def _header(files: RunFiles, history: Curves, model, missing: str | None) -> str:
    prep, metrics = files.preparation, files.metrics
    shown = [("test_accuracy", "test accuracy"), ("test_macro_f1", "test macro F1"), ("val_accuracy", "val accuracy"),
             ("test_r2", "test R²"), ("test_rmse", "test RMSE"), ("test_mae", "test MAE"), ("val_r2", "val R²")]
    tiles = [(f"{metrics[key]:.4f}", label) for key, label in shown if key in metrics]
    kept = _kept_epoch(files)
    tiles += [(str(len(history.epoch)), "epochs")] + ([(str(kept), "kept epoch (best)")] if kept else [])
    tiles += [(f"{_parameters(files, model)[0]:,}", "parameters"),
              (f"{np.nansum(history.epoch_time_s):.1f} s", "training time")]
    tiles_html = "".join(f"<div class=tile><b>{_e(v)}</b><span>{_e(k)}</span></div>" for v, k in tiles)
    note = f'<p class="note" id="missing">Predictions are not shown: {_e(missing)}.</p>' if missing else ""
    return (f"<section><h1>{_e(files.path.name)}</h1><p class=sub>{_e(prep.task)} on {_e(prep.dataset)} "
            f"({_e(prep.task_reason)}), trained {_e(files.info.get('created', ''))}</p>"
            f"<div class=tiles>{tiles_html}</div>{note}</section>")


def _kept_epoch(files: RunFiles) -> int | None:
    """The epoch whose weights the run ended with, when early stopping restored an earlier one."""
    training = files.info["training"]
    best = training.get("best_epoch")
    restored = files.spec.train.early_stopping is not None and best is not None
    return best if restored and best != training["epochs_run"] else None


def _training(history: Curves, plots, kept: int | None) -> str:
    if len(history.epoch) == 0:
        return "<section><h2>Training</h2><p>metrics.csv holds no epochs.</p></section>"
    x = history.epoch
    loss = {"train": history.train_loss}
    if not np.all(np.isnan(history.val_loss)):
        loss["validation"] = history.val_loss
    figures = [_figure("loss", plots.line_plot(x, loss, "Loss", "loss", kept_epoch=kept), "loss per epoch")]
    note = ""
    metric = history.metric_name.removeprefix("val_").replace("r2", "R²")
    if np.all(np.isnan(history.val_metric)):
        note = "<p class=sub>No validation part (data.val_fraction = 0): no validation curves.</p>"
    else:
        figures.append(_figure("metric", plots.line_plot(x, {"validation": history.val_metric}, f"Validation {metric}",
                                                         metric, kept_epoch=kept), f"validation {metric}"))
    figures.append(_figure("lr", plots.line_plot(x, {"lr": history.lr}, "Learning rate (end of epoch)", "lr"),
                           "learning rate per epoch"))
    figures.append(_figure("time", plots.bar_plot(x, history.epoch_time_s, "Time per epoch", "seconds"),
                           "seconds per epoch"))
    return f"<section><h2>Training</h2>{note}<div class=figs>{''.join(figures)}</div></section>"


def _classification(p: Predictions, model, plots) -> str:
    from .metrics import classification_report

    classes = model.classes
    report = classification_report(p.truth, p.predicted, classes)
    matrix = np.asarray(report["confusion"], dtype=np.int64)
    parts = [f"<section><h2>Predictions on {_e(p.source)}</h2><p class=sub>{len(p):,} rows: accuracy "
             f"{report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}</p>",
             '<div class=figs>', _figure("confusion", plots.confusion_plot(matrix, classes), "confusion matrix")]
    rows = [[_e(c["class"]), f"{c['precision']:.3f}", f"{c['recall']:.3f}",
             f"<span class=bar style='width:{60 * c['f1']:.0f}px'></span>{c['f1']:.3f}", f"{c['support']:,}"]
            for c in report["per_class"]]
    parts.append("<div><h3>Per class</h3>" + _table(["class", "precision", "recall", "F1", "support"], rows)
                 + _confused_pairs(matrix, classes) + "</div></div>")
    if len(classes) == 2:  # two classes, from a bce or a two-output cross-entropy network alike
        parts.append(f"<div class=figs>{_binary_curves(p, classes, plots)}</div>")
    parts.append(_worst_mistakes(p, classes, model.preparation, plots))
    parts.append("</section>")
    return "".join(parts)


def _binary_curves(p: Predictions, classes: list[str], plots) -> str:
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    positive = p.truth == 1
    if positive.all() or not positive.any():
        return "<p class=sub>ROC and precision-recall curves need both classes in the test part.</p>"
    fpr, tpr, _ = roc_curve(p.truth, p.proba[:, 1])
    precision, recall, _ = precision_recall_curve(p.truth, p.proba[:, 1])
    return (_figure("roc", plots.roc_plot(fpr, tpr, auc(fpr, tpr), classes[1]), "ROC curve")
            + _figure("pr", plots.pr_plot(recall, precision, auc(recall, precision), float(positive.mean()),
                                          classes[1]), "precision-recall curve"))


def _confused_pairs(matrix: np.ndarray, classes: list[str]) -> str:
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:_PAIRS]
    totals = matrix.sum(axis=1)
    rows = [[_e(classes[i]), _e(classes[j]), f"{off[i, j]:,}", f"{off[i, j] / totals[i]:.1%}"]
            for i, j in zip(*np.unravel_index(order, off.shape)) if off[i, j] > 0]
    if not rows:
        return "<h3>Most confused pairs</h3><p class=sub>No mistakes on these rows.</p>"
    return ("<h3>Most confused pairs</h3>"
            + _table(["true class", "predicted as", "rows", "share of the true class"], rows, numeric_from=2))


def _worst_mistakes(p: Predictions, classes: list[str], prep, plots) -> str:
    """The wrong answers the network was surest of: mislabelled rows, or what it has not learnt."""
    wrong = np.flatnonzero(p.predicted != p.truth)
    if len(wrong) == 0:
        return ""
    confidence = p.proba[wrong, p.predicted[wrong]]
    worst = wrong[np.argsort(-confidence, kind="stable")[:_MISTAKES]]
    heading = (f"<h3>Worst mistakes</h3><p class=sub>The {len(worst)} wrong answers given with the highest "
               f"probability, of {len(wrong):,} wrong in all.</p>")
    shape = _image_shape(prep)
    # An image folder's files are drawn as they look; IDX digits (ink stored as 255) as ink on paper.
    if shape is not None and p.pixels is not None:
        images = p.pixels[worst].reshape(len(worst), *shape)
        captions = [f"#{i}: {classes[p.truth[i]]}→{classes[p.predicted[i]]} {p.proba[i, p.predicted[i]]:.0%}"
                    for i in worst]
        return heading + _figure("mistakes", plots.image_grid(images, captions, ink_dark=prep.image is None), "worst mistakes")
    rows = [[f"{i:,}", _e(classes[p.truth[i]]), _e(classes[p.predicted[i]]), f"{p.proba[i, p.predicted[i]]:.3f}",
             f"{p.proba[i, p.truth[i]]:.3f}"] for i in worst]
    return heading + _table(["row of the part", "true class", "predicted", "probability given",
                             "probability of the true class"], rows, numeric_from=3)


def _image_shape(prep) -> tuple[int, ...] | None:
    """How a row of pixels is drawn: an image folder's saved geometry, or square grey IDX digits."""
    if prep.image is not None:
        g = prep.image
        return (g.height, g.width) if g.channels == 1 else (g.height, g.width, g.channels)
    side = math.isqrt(prep.input_size)
    # IDX datasets (MNIST and its kin) are uint8 pixels scaled by 255, in rows of side x side.
    if prep.input_scaler.method == "divide_by_255" and side * side == prep.input_size and prep.encoder is None:
        return (side, side)
    return None


def _regression(p: Predictions, prep, plots) -> str:
    from .metrics import regression_report

    names = prep.target_names or [f"target_{i}" for i in range(p.truth.shape[1])]
    report = regression_report(p.truth, p.predicted, names)
    shown = list(range(min(_TARGETS, len(names))))
    rows_note = ""
    index = np.arange(len(p))
    if len(p) > _POINTS:
        index = np.sort(np.random.default_rng(0).choice(len(p), _POINTS, replace=False))
        rows_note = f" ({_POINTS:,} of them drawn, chosen at random)"
    truth, predicted = p.truth[index][:, shown], p.predicted[index][:, shown]
    drawn = [names[k] for k in shown]
    per_target = report.get("per_target") or [{"target": names[0], **{k: report[k] for k in ("mae", "rmse", "r2")}}]
    table = _table(["target", "MAE", "RMSE", "R²"], [[_e(t["target"]), f"{t['mae']:.4g}", f"{t['rmse']:.4g}",
                                                      f"{t['r2']:.4f}"] for t in per_target])
    more = (f"<p class=sub>The first {len(shown)} of {len(names)} targets are drawn.</p>"
            if len(names) > len(shown) else "")
    return (f"<section><h2>Predictions on {_e(p.source)}</h2><p class=sub>{len(p):,} rows{rows_note}, in the "
            f"targets' own units: MAE {report['mae']:.4g}, RMSE {report['rmse']:.4g}, R² {report['r2']:.4f}</p>"
            f"{table}{more}<div class=figs>"
            + _figure("scatter", plots.scatter_plots(truth, predicted, drawn), "predicted against actual")
            + _figure("residuals", plots.residual_plots(truth, predicted, drawn), "residuals")
            + "</div></section>")


def _parameters(files: RunFiles, model) -> tuple[int, str]:
    from .model import count_parameters

    if model is not None:
        return count_parameters(model.network), "trainable parameters"
    # Without the network (a module not imported): every value in the weights file, buffers included.
    return sum(t.numel() for t in files.state_dict.values()), "values in model.safetensors (buffers included)"


def _model_section(files: RunFiles, model) -> str:
    spec = files.spec
    count, what = _parameters(files, model)
    if spec.model.module is not None:
        shape = f"your own module <code>{_e(spec.model.module)}</code>"
    else:
        widths = [files.preparation.input_size, *spec.model.hidden, files.preparation.output_size]
        shape = _e("-".join(str(w) for w in widths) + f", {spec.model.activation}"
                   + (", batchnorm" if spec.model.batchnorm else "")
                   + (f", dropout {spec.model.dropout}" if spec.model.dropout else ""))
    return ("<section><h2>Model and spec</h2>"
            + _pairs([("network", shape), (what, f"{count:,}")])
            + f"<h3>Spec</h3><pre>{_e(spec.to_toml())}</pre></section>")


def _data_section(files: RunFiles, parts: dict[str, int]) -> str:
    prep, data = files.preparation, files.spec.data
    source = data.dataset or data.path or "in-memory arrays"
    items = [("data", _e(source))]
    if data.test_path:
        items.append(("test file", _e(data.test_path)))
    items.append(("task", _e(f"{prep.task} ({prep.task_reason})")))
    parts = files.info["training"].get("rows") or parts  # recorded by training; older runs: counted on reading
    if parts:
        items.append(("rows", _e(", ".join(f"{n:,} {name}" for name, n in parts.items()))))
    if prep.classes is not None:
        shown = ", ".join(prep.classes[:50]) + (f", ... ({len(prep.classes)} in all)" if len(prep.classes) > 50 else "")
        items.append((f"classes ({len(prep.classes)})", _e(shown)))
    if prep.image is not None:
        items.append(("images", _e(prep.image.describe())))
    if prep.feature_names:
        names = prep.feature_names
        items.append((f"columns ({len(names)})", _e(", ".join(names[:40]) + (", ..." if len(names) > 40 else ""))))
    else:
        items.append(("input width", f"{prep.input_size:,}"))
    if prep.encoder is not None:
        items.append(("column encoding", _e(prep.encoder.describe())))
    if prep.target_names:
        items.append(("target", _e(", ".join(prep.target_names))))
    items.append(("scaling", _e(prep.input_scaler.method)))
    return f"<section><h2>Data</h2>{_pairs(items)}</section>"


def _environment(info: dict[str, Any]) -> str:
    training = info["training"]
    items = [(name, _e(version)) for name, version in info["versions"].items()]
    items += [("device", _e(training["device"])), ("engine", _e(training["engine"])),
              ("epochs run", _e(training["epochs_run"])),
              ("best epoch", _e(training["best_epoch"] if training["best_epoch"] is not None else "-")),
              ("stopped early", _e("yes" if training["stopped_early"] else "no"))]
    return f"<section><h2>Environment</h2>{_pairs(items)}</section>"


def _files_section(files: RunFiles) -> str:
    folder = files.path.absolute()
    items = [("run folder", f"<code>{_e(folder)}</code>"),
             (WEIGHTS, "the weights the run kept (safetensors)"), (METRICS, "one row per epoch"),
             (INFO, "spec, preparation, metrics, versions, file hashes"),
             ("checkpoints/", _e(", ".join(c.path.name for c in files.checkpoints) or "none")),
             (REPORT, "this page: rebuild it with <code>netfit report RUN</code>")]
    return f"<section><h2>Files</h2>{_pairs(items)}</section>"
