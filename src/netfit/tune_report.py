"""The study's page: ``STUDY/report.html``, the search of ``netfit tune`` drawn for a person to look at.

It shows the figure each trial reached in the order the trials ran with the best so far, every
trial's validation curve (a pruned trial's stops where the pruner ended it), the figure against
each searched field (is the best learning rate at the edge of the range?), and a table of the
trials, each linked to its own run report.

The page is drawn from the study's summary (the dict ``TuneResult.to_dict`` gives, which
``netfit tune --json`` prints) and from the trials' run folders. The folders are untrusted data:
only folders inside ``STUDY/trials`` are read, each through ``read_run``, which verifies its
files; one that fails to read is left out of the curves and the page says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NetfitError
from .htmlpage import escape, figure, kv_table, page, table
from .report import REPORT, Curves, read_curves
from .rundir import read_run
from .storage import write_atomic

__all__ = ["write_study_report"]


def write_study_report(study: dict[str, Any], space: dict[str, dict[str, Any]]) -> Path:
    """Write ``<study_dir>/report.html`` from the study's summary and its ``[tune.space]``; return its path.

    ``study``: ``TuneResult.to_dict()``. ``space``: each searched key's range or choices, as the
    spec's ``[tune.space]`` holds them (``low``/``high``/``log`` or ``choices``).
    """
    from . import plots

    study_dir = Path(study["study_dir"])
    metric = study["metric"]
    trials = study["trials"]
    curves, unreadable = _trial_curves(study_dir, trials, metric)
    figures = [_reached(t, curves, metric) for t in trials]
    best = _best_number(study)
    sections = [_header(study, trials, unreadable)]
    if trials:
        states = [t["state"] for t in trials]
        search = [figure("search", plots.search_plot([t["number"] for t in trials], figures, states, metric,
                                                     study["direction"] == "maximize"),
                         "each trial's figure in the order the trials ran, and the best so far")]
        if curves:
            search.append(figure("curves", plots.trial_curves_plot(
                [(n, c.epoch, _column(c, metric)) for n, c in sorted(curves.items())], best, metric),
                "every trial's validation figure per epoch"))
        parameters = [_parameter(key, rng, trials) for key, rng in space.items()]
        sections.append(f"<section><h2>The search</h2><div class=figs>{''.join(search)}</div>"
                        "<h3>The figure against each searched field</h3>"
                        + figure("parameters", plots.parameter_plots(parameters, figures, states, metric),
                                 "each trial's figure against the value it drew for each field")
                        + "<p class=sub>Dots: completed trials. Crosses: pruned trials, at the last epoch they "
                          "reported. A best value at the edge of a range says the range should move.</p></section>")
    sections.append(_trials_table(study_dir, trials, figures, best, metric))
    path = study_dir / REPORT
    try:
        write_atomic(path, page(f"netfit study {study['study_name']}", sections).encode("utf-8"))
    except OSError as err:
        raise NetfitError(f"cannot write {path} ({err.strerror or err}); make the study folder writable") from None
    return path


def _trial_curves(study_dir: Path, trials: list[dict[str, Any]], metric: str) -> tuple[dict[int, Curves], list[int]]:
    """Each trial's metrics.csv, read from its verified run folder; and the trials whose folder failed to read."""
    inside = (study_dir / "trials").resolve()
    curves, unreadable = {}, []
    for t in trials:
        if not t.get("run_dir"):
            continue  # a failed trial may have no run folder
        folder = Path(t["run_dir"])
        try:
            if folder.resolve().parent != inside:
                raise NetfitError(f"{folder} is not inside {inside}")
            curves[t["number"]] = read_curves(read_run(folder))
        except NetfitError:
            unreadable.append(t["number"])
    return curves, unreadable


def _column(curves: Curves, metric: str) -> np.ndarray:
    return curves.val_loss if metric == "val_loss" else curves.val_metric


def _reached(trial: dict[str, Any], curves: dict[int, Curves], metric: str) -> float:
    """The figure a trial reached: its value when complete, else the last epoch its run reported."""
    if trial["state"] == "complete" and trial["value"] is not None:
        return float(trial["value"])
    if trial["number"] in curves:
        values = _column(curves[trial["number"]], metric)
        finite = values[np.isfinite(values)]
        if finite.size:
            return float(finite[-1])
    return float("nan")


def _best_number(study: dict[str, Any]) -> int | None:
    if study["best_value"] is None:
        return None
    return next((t["number"] for t in study["trials"] if t["state"] == "complete"
                 and t["value"] == study["best_value"]), None)


def _parameter(key: str, rng: dict[str, Any], trials: list[dict[str, Any]]):
    from .plots import Parameter

    drawn = [t["params"].get(key) for t in trials]
    if rng.get("choices") is not None:
        # Choices may be lists (model.hidden): the same JSON text labels the axis and places each trial.
        return Parameter(key, [None if v is None else json.dumps(v) for v in drawn], False,
                         [json.dumps(c) for c in rng["choices"]])
    return Parameter(key, drawn, bool(rng.get("log")), None)


def _header(study: dict[str, Any], trials: list[dict[str, Any]], unreadable: list[int]) -> str:
    counts = {state: sum(t["state"] == state for t in trials) for state in ("complete", "pruned", "fail", "running")}
    best = study["best_value"]
    tiles = [(f"{best:.4g}" if best is not None else "none", f"best {study['metric']} ({study['direction']})"),
             (str(counts["complete"]), "completed"), (str(counts["pruned"]), "pruned"), (str(counts["fail"]), "failed")]
    if counts["running"]:
        tiles.append((str(counts["running"]), "running"))
    items = [("study folder", escape(study["study_dir"])), ("best spec", escape(study["best_spec"] or "none yet"))]
    if study["best_params"]:
        items.append(("best values", "<br>".join(f"<code>{escape(k)} = {escape(json.dumps(v))}</code>"
                                                 for k, v in study["best_params"].items())))
    note = ""
    if unreadable:
        note = (f"<p class=note>The run folders of trials {', '.join(map(str, unreadable))} could not be read "
                "(damaged or moved): their curves are left out.</p>")
    tile_html = "".join(f"<div class=tile><b>{escape(v)}</b><span>{escape(k)}</span></div>" for v, k in tiles)
    return (f"<section><h1>Study {escape(study['study_name'])}</h1>"
            f"<p class=sub>netfit tune: {len(trials)} trials, compared on {escape(study['metric'])} of the "
            f"validation rows.</p><div class=tiles>{tile_html}</div>{kv_table(items)}{note}</section>")


def _short(value: Any) -> str:
    # Four significant digits read at a glance; best.toml and the summary keep the exact values.
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


def _trials_table(study_dir: Path, trials: list[dict[str, Any]], figures: list[float], best: int | None,
                  metric: str) -> str:
    keys = sorted({k for t in trials for k in t["params"]})
    rows = []
    for t, reached in zip(trials, figures):
        name = Path(t["run_dir"]).name if t.get("run_dir") else None
        run = escape(name) if name else ""
        if name and (study_dir / "trials" / name / REPORT).is_file():
            run = f'<a href="trials/{escape(name)}/{REPORT}">{escape(name)}</a>'
        value = "" if np.isnan(reached) else f"{reached:.4g}" + ("" if t["state"] == "complete" else " (last)")
        state = escape(t["state"]) + (" *" if t["number"] == best else "")
        if t.get("error"):
            state += f"<br><small>{escape(t['error'])}</small>"
        rows.append([str(t["number"]), state, value]
                    + [escape(_short(t["params"][k])) if k in t["params"] else "" for k in keys] + [run])
    return ("<section><h2>Trials</h2><p class=sub>* the best trial. Each run folder is an ordinary run: "
            "<code>netfit evaluate</code>, <code>export</code> and <code>report</code> take it.</p>"
            + table(["trial", "state", metric, *keys, "run"], rows, numeric_from=2) + "</section>")
