"""Hyperparameter search: the spec's ``[tune]`` table, explored with Optuna.

Every trial is an ordinary ``netfit.fit`` run, saved under ``<study>/trials/``, so any trial can be
evaluated, reported, exported or resumed like a run from ``netfit train``. Optuna's TPE sampler
(seeded from ``train.seed``) proposes values; a median pruner, fed each epoch's validation figure
through a callback, ends hopeless trials early. The study lives in a journal file inside the study
folder (Optuna's file storage, safe for several processes on one machine), or in the database that
``storage`` names. Reopening the folder continues the study.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .callbacks import Callback, Training
from .errors import NetfitError
from .history import EpochRecord, metric_name
from .progress import Progress, ProgressTarget
from .spec import Spec, TuneRange, apply_overrides, spec_from_dict, toml_value, with_absolute_paths
from .storage import write_atomic

__all__ = ["tune", "TuneResult", "PruningCallback", "trial_spec"]

_STUDY_FILE = "study.json"  # the study's name and storage, so that --resume needs only the folder
_JOURNAL_FILE = "journal.log"


@dataclass
class TuneResult:
    """What a study found: every trial, the best one, and where its spec was written."""

    study_dir: Path
    study_name: str
    metric: str
    direction: str  # "maximize" or "minimize"
    trials: list[dict[str, Any]] = field(default_factory=list)  # number, state, value, params, run_dir
    best_value: float | None = None
    best_params: dict[str, Any] | None = None
    best_run_dir: Path | None = None
    best_spec_path: Path | None = None  # None when no trial completed
    report_path: Path | None = None  # STUDY/report.html, once written

    def to_dict(self) -> dict[str, Any]:
        return {"study_dir": str(self.study_dir), "study_name": self.study_name, "metric": self.metric,
                "direction": self.direction, "trials": self.trials, "best_value": self.best_value,
                "best_params": self.best_params,
                "best_run_dir": None if self.best_run_dir is None else str(self.best_run_dir),
                "best_spec": None if self.best_spec_path is None else str(self.best_spec_path),
                "report": None if self.report_path is None else str(self.report_path)}


class PruningCallback(Callback):
    """Reports each epoch's validation figure to an Optuna trial and ends the run when Optuna prunes it."""

    syncs_every_epoch = True  # the pruner must see every epoch's figure as it happens, not at the next print

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric = trial, metric
        self.pruned = False

    def on_epoch_end(self, training: Training, record: EpochRecord) -> None:
        value = record.val_loss if self.metric == "val_loss" else record.val_metric
        if value is None or not math.isfinite(value):
            return  # Optuna refuses NaN reports; a non-finite run is the loop's own business (train.on_nonfinite)
        self.trial.report(value, record.epoch)
        if self.trial.should_prune():
            self.pruned = True
            training.stop_reason = (f"pruned by optuna after epoch {record.epoch}: {self.metric} {value:.4g} "
                                    "is behind the other trials")


def trial_spec(spec: Spec, values: dict[str, Any]) -> Spec:
    """The spec with the ``[tune]`` table removed and ``values`` (dotted key -> value) written in."""
    raw = spec.to_dict()
    raw.pop("tune", None)
    # The same path as --set, so a key means here exactly what it means on the command line.
    overrides = [f"{key}={toml_value(value)}" for key, value in values.items()]
    return spec_from_dict(apply_overrides(raw, overrides), source="tune")


def _check_space(spec: Spec) -> dict[str, TuneRange]:
    """Refuse a space whose keys are not spec fields or whose ends are not values the field takes."""
    if spec.tune is None:
        raise NetfitError("the spec has no [tune] table; add one, e.g. [tune.space] "
                          '"train.lr" = { low = 1e-4, high = 1e-2, log = true }')
    space = spec.tune.space
    if not space:
        raise NetfitError("[tune.space] is empty; name at least one spec field to search, e.g. "
                          '"train.lr" = { low = 1e-4, high = 1e-2, log = true }')
    if spec.data.val_fraction == 0:
        raise NetfitError("tune compares trials on validation rows, and data.val_fraction is 0; set it above 0")
    for key, rng in space.items():
        if key.split(".")[0] == "tune":
            raise NetfitError(f"tune.space: {key!r} searches the search itself; name model.*, data.* or train.* keys")
        # Both ends of a range and every choice must be values the field accepts: a bad key or a range
        # outside the field's limits fails now, in one line, not in trial 7 after an hour.
        for value in _ends(rng):
            try:
                trial_spec(spec, {key: value})
            except NetfitError as err:
                raise NetfitError(f"tune.space {key!r} = {value!r}: {str(err).removeprefix('tune: ')}") from None
    return space


def _storage_note(url: str | None) -> dict[str, Any]:
    # study.json is a plain file next to the runs: a database password never goes into it.
    parts = urlsplit(url) if url else None
    if parts is None or parts.password is None:
        return {"storage": url, "storage_password": False}
    host = parts.netloc.rpartition("@")[2]
    return {"storage": urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}")), "storage_password": True}


def _space_dict(space: dict[str, TuneRange]) -> dict[str, Any]:
    return {key: rng.model_dump(mode="json") for key, rng in space.items()}


def _ends(rng: TuneRange) -> list[Any]:
    if rng.choices is not None:
        return list(rng.choices)
    if rng.int:
        return [int(rng.low), int(rng.high)]
    return [rng.low, rng.high]


def _as_json(rng: TuneRange) -> bool:
    # Optuna's choices must be scalars: lists (model.hidden) and tables go in as their JSON text.
    return rng.choices is not None and not all(c is None or isinstance(c, (bool, int, float, str))
                                               for c in rng.choices)


def _suggest(trial: Any, key: str, rng: TuneRange) -> Any:
    if rng.choices is not None:
        if not _as_json(rng):
            return trial.suggest_categorical(key, rng.choices)
        return json.loads(trial.suggest_categorical(key, [json.dumps(c) for c in rng.choices]))
    if rng.int:
        return trial.suggest_int(key, int(rng.low), int(rng.high), log=rng.log)
    return trial.suggest_float(key, rng.low, rng.high, log=rng.log)


def _decode(params: dict[str, Any], space: dict[str, TuneRange]) -> dict[str, Any]:
    # The inverse of _suggest's JSON text for list choices, so best.toml holds the real values.
    return {key: json.loads(value) if key in space and _as_json(space[key]) else value
            for key, value in params.items()}


def _import_optuna():
    try:
        import optuna
    except ImportError:
        raise NetfitError("netfit tune needs Optuna; install it with: pip install 'netfit[tune]'") from None
    return optuna


def tune(spec: Spec | dict[str, Any] | str | Path, trials: int | None = None, out: str | Path = "runs",
         storage: str | None = None, study_name: str | None = None, *, resume: str | Path | None = None,
         pruner: Any = None, progress: ProgressTarget = sys.stdout) -> TuneResult:
    """Search the spec's ``[tune.space]`` with Optuna and write the best spec to ``<study>/best.toml``.

    ``trials`` (default ``tune.trials``) is the number of finished trials (completed or pruned) the
    study should hold: a resumed study runs only the ones still missing. The study folder is
    ``out/<study_name>``, or ``resume``, an existing study folder to continue. ``storage`` is a
    database URL for Optuna (default: a journal file in the study folder). ``pruner`` replaces the
    default ``optuna.pruners.MedianPruner``. ``progress`` is handed to every trial's ``fit``.
    """
    optuna = _import_optuna()
    from .api import fit
    from .start import as_spec

    spec = with_absolute_paths(as_spec(spec))
    space = _check_space(spec)
    wanted = trials if trials is not None else spec.tune.trials
    if wanted < 1:
        raise NetfitError(f"--trials {wanted}: give at least 1")

    if resume is not None:
        study_dir = Path(resume)
        if not (study_dir / _STUDY_FILE).is_file():
            raise NetfitError(f"--resume {study_dir}: not a study folder (no {_STUDY_FILE}); give the folder "
                              "`netfit tune` printed")
        saved = json.loads((study_dir / _STUDY_FILE).read_text())
        study_name = saved["study_name"]
        if storage is None and saved.get("storage_password"):
            raise NetfitError(f"--resume {study_dir}: the study is in {saved['storage']}, whose password is not kept "
                              "in the study folder; pass --storage URL again")
        storage = storage or saved["storage"]
        if saved.get("space") != _space_dict(space):
            # TPE learns from the earlier trials' params: another space would mix two searches in one study.
            raise NetfitError(f"--resume {study_dir}: the spec's [tune.space] differs from the study's; resume with "
                              "the same space, or start a new study")
    else:
        study_name = study_name or f"tune-{time.strftime('%Y%m%d-%H%M%S')}"
        if not study_name or study_name in (".", "..") or not all(c.isalnum() or c in "-_." for c in study_name):
            raise NetfitError(f"study name {study_name!r}: it names a folder under --out, so use letters, digits, "
                              "'-', '_' and '.' only")
        study_dir = Path(out) / study_name
        if (study_dir / _STUDY_FILE).exists():
            raise NetfitError(f"study folder {study_dir} exists; continue it with --resume {study_dir}, or choose "
                              "another study name")
        study_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(study_dir / _STUDY_FILE, json.dumps({"study_name": study_name, **_storage_note(storage),
                                                          "space": _space_dict(space)}).encode())

    metric = spec.tune.metric
    direction = "minimize" if metric == "val_loss" else "maximize"  # accuracy and R^2: higher is better
    if storage is None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        storage = JournalStorage(JournalFileBackend(str(study_dir / _JOURNAL_FILE)))
    # netfit prints its own lines per trial, and a failed trial's error goes into the summary table,
    # not as the traceback Optuna would log.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        study_name=study_name, storage=storage, load_if_exists=True, direction=direction,
        sampler=optuna.samplers.TPESampler(seed=spec.train.seed),
        pruner=pruner if pruner is not None else optuna.pruners.MedianPruner(n_startup_trials=2))
    _fail_stale(study, optuna)

    def objective(trial) -> float:
        values = {key: _suggest(trial, key, rng) for key, rng in space.items()}
        callback = PruningCallback(trial, metric if metric != "auto" else "val_metric")
        try:
            run = fit(trial_spec(spec, values), out=study_dir / "trials", progress=progress, callbacks=[callback])
        except NetfitError as err:
            # A diverged trial (lr too high) fails alone; the study goes on (optimize's catch, below).
            trial.set_user_attr("error", str(err))
            raise
        trial.set_user_attr("run_dir", str(run.run_dir))
        name = metric if metric != "auto" else metric_name(run.model.task)
        trial.set_user_attr("metric", name)
        if callback.pruned:
            raise optuna.TrialPruned(f"trial {trial.number} pruned")
        return float(run.metrics[name])

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    remaining = wanted - len(study.get_trials(deepcopy=False, states=finished))
    if remaining > 0:
        before = len(study.get_trials(deepcopy=False))
        study.optimize(objective, n_trials=remaining, catch=(NetfitError,))
        ran = study.get_trials(deepcopy=False)[before:]
        if ran and all(t.state == optuna.trial.TrialState.FAIL for t in ran):
            # Every trial failing is the spec's problem (missing data, say), not bad luck: say it once.
            raise NetfitError(f"every trial failed; trial {ran[0].number}: {ran[0].user_attrs.get('error', 'failed')}")
    result = _summarise(study, spec, space, study_dir, metric, direction, optuna)
    _write_study_report(result, space, Progress(progress))
    return result


def _write_study_report(result: TuneResult, space: dict[str, TuneRange], reporter: Progress) -> None:
    from .tune_report import write_study_report

    # The trials and best.toml are saved by now: a page that cannot be drawn costs the page, not the study.
    try:
        result.report_path = write_study_report(result.to_dict(), _space_dict(space))
        reporter.note(f"netfit: study report: {result.report_path}")
    except NetfitError as err:
        reporter.note(f"netfit: warning: the study is saved, but its report was not written ({err})")


def _fail_stale(study: Any, optuna: Any) -> None:
    # A trial still RUNNING when a study opens was left by a process that died (netfit runs one worker
    # per study), so it will never finish: mark it failed, or it would be counted as running forever.
    # Several workers on one study would need Optuna's heartbeat instead, which journal storage lacks.
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)


def _summarise(study: Any, spec: Spec, space: dict[str, TuneRange], study_dir: Path, metric: str, direction: str,
               optuna: Any) -> TuneResult:
    rows = [{"number": t.number, "state": t.state.name.lower(), "value": t.value,
             "params": _decode(t.params, space), "run_dir": t.user_attrs.get("run_dir"),
             "error": t.user_attrs.get("error")}
            for t in study.get_trials(deepcopy=False)]
    named = [t.user_attrs["metric"] for t in study.get_trials(deepcopy=False) if "metric" in t.user_attrs]
    result = TuneResult(study_dir, study.study_name, named[0] if named else metric, direction, rows)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        result.best_value, result.best_params = best.value, _decode(best.params, space)
        result.best_run_dir = Path(best.user_attrs["run_dir"])
        result.best_spec_path = study_dir / "best.toml"
        write_atomic(result.best_spec_path, trial_spec(spec, result.best_params).to_toml().encode())
    return result


def summary_table(result: TuneResult) -> str:
    """The trials as a fixed-width table, best marked with ``*``."""
    lines = [f"{'trial':>5}  {'state':<8}  {result.metric:>12}  params"]
    best_number = next((r["number"] for r in result.trials if r["value"] == result.best_value
                        and r["state"] == "complete"), None) if result.best_value is not None else None
    for r in result.trials:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in r["params"].items())
        mark = "*" if r["number"] == best_number else " "
        error = f"  ({r['error']})" if r.get("error") else ""
        lines.append(f"{r['number']:>4}{mark}  {r['state']:<8}  {value:>12}  {params}{error}")
    return "\n".join(lines)
