"""Hyperparameter search: the spec's ``[tune]`` table, explored with Optuna.

Every trial is an ordinary ``netfit.fit`` run, saved under ``<study>/trials/``, so any trial can be
evaluated, reported, exported or resumed like a run from ``netfit train``. Optuna's TPE sampler
(seeded from ``train.seed``) proposes values; a median pruner, fed each epoch's validation figure
through a callback, ends hopeless trials early. The study lives in a journal file inside the study
folder (Optuna's file storage, safe for several processes on one machine), or in the database that
``storage`` names. Reopening the folder continues the study. With ``workers`` above 1, that many
processes run trials on the one study side by side; a trial whose process died is failed (process ids
for the journal file, Optuna's heartbeat for a database) and run again by the others.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import socket
import sys
import threading
import time
import warnings
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
        self.run_dir: Path | None = None  # the trial's run folder, once training starts

    def on_run_start(self, training: Training) -> None:
        self.run_dir = training.run_dir
        # The task is known only once the data is read: tune.metric = "val_r2" on a classification
        # trained every trial to the end and then stopped the study with an internal KeyError.
        if self.metric not in ("val_loss", "val_metric", training.metric_name):
            raise NetfitError(f"tune.metric = {self.metric!r} is not a figure of a {training.task} run, which "
                              f"reports {training.metric_name} and val_loss; set tune.metric to one of those or "
                              '"auto"')

    def on_epoch_end(self, training: Training, record: EpochRecord) -> None:
        value = record.val_loss if self.metric == "val_loss" else record.val_metric
        if value is None or not math.isfinite(value):
            return  # Optuna refuses NaN reports; a non-finite run is the loop's own business (train.on_nonfinite)
        self.trial.report(value, record.epoch)
        # After the last epoch the run is whole: pruning it then would only discard a finished result.
        if record.epoch < training.spec.train.epochs and self.trial.should_prune():
            self.pruned = True
            training.stop_reason = (f"pruned by optuna after epoch {record.epoch}: {self.metric} {value:.4g} "
                                    "is behind the other trials")


def trial_spec(spec: Spec, values: dict[str, Any]) -> Spec:
    """The spec with the ``[tune]`` table removed and ``values`` (dotted key -> value) written in."""
    # The fields the spec sets, not every default: --set applies to the file as written, and
    # "train.optimizer.name" = sgd on top of adam's filled-in betas would be refused as sgd's unknown key.
    raw = spec.model_dump(mode="json", exclude_unset=True)
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


def tune(spec: Spec | dict[str, Any] | str | Path | None, trials: int | None = None, out: str | Path = "runs",
         storage: str | None = None, study_name: str | None = None, *, resume: str | Path | None = None,
         workers: int = 1, pruner: Any = None, progress: ProgressTarget = sys.stdout,
         heartbeat: int = 10) -> TuneResult:
    """Search the spec's ``[tune.space]`` with Optuna and write the best spec to ``<study>/best.toml``.

    ``trials`` (default ``tune.trials``) is the number of finished trials (completed or pruned) the
    study should hold: a resumed study runs only the ones still missing. The study folder is
    ``out/<study_name>``, or ``resume``, an existing study folder to continue (``spec`` None: the
    spec the study started from, kept in the folder). ``storage`` is a
    database URL for Optuna (default: a journal file in the study folder). ``workers`` processes
    run trials side by side on this machine (1: in this process). A new study's first trial is the
    spec as written, when its values lie inside the space. ``pruner`` replaces the default
    ``optuna.pruners.MedianPruner`` (from the 6th trial, once a trial has run half the spec's
    epochs). ``progress`` receives every trial's lines. ``heartbeat`` is the
    seconds between a database trial's heartbeats; one silent for three of them is failed.
    """
    optuna = _import_optuna()
    from .start import as_spec

    saved = _read_study_file(Path(resume)) if resume is not None else None
    if spec is None:
        if saved is None:
            raise NetfitError("give a spec with a [tune] table, or --resume STUDY_DIR to continue a study")
        if saved["spec"] is None:
            raise NetfitError(f"--resume {resume}: this study does not keep its spec (an older netfit made it); "
                              "give the spec file too: netfit tune SPEC --resume STUDY_DIR")
        # The spec the study started from, as it was (paths already absolute): validated like any spec.
        spec = spec_from_dict(saved["spec"], source=f"{Path(resume) / _STUDY_FILE} (spec)")
    spec = with_absolute_paths(as_spec(spec))
    space = _check_space(spec)
    wanted = trials if trials is not None else spec.tune.trials
    if wanted < 1:
        raise NetfitError(f"--trials {wanted}: give at least 1")
    if workers < 1:
        raise NetfitError(f"--workers {workers}: give at least 1")
    if heartbeat < 1:
        raise NetfitError(f"heartbeat {heartbeat}: give a whole number of seconds, at least 1")

    if saved is not None:
        study_dir = Path(resume)
        study_name = saved["study_name"]
        if storage is None and saved["storage_password"]:
            raise NetfitError(f"--resume {study_dir}: the study is in {saved['storage']}, whose password is not kept "
                              "in the study folder; pass --storage URL again")
        storage = storage or saved["storage"]
        if saved["space"] != _space_dict(space):
            # TPE learns from the earlier trials' params: another space would mix two searches in one study.
            raise NetfitError(f"--resume {study_dir}: the spec's [tune.space] differs from the study's; resume with "
                              "the same space, or start a new study")
        backend = _open_storage(storage, study_dir, heartbeat, optuna)
    else:
        study_name = study_name or f"tune-{time.strftime('%Y%m%d-%H%M%S')}"
        if not _plain_name(study_name):
            raise NetfitError(f"study name {study_name!r}: it names a folder under --out, so use letters, digits, "
                              "'-', '_' and '.' only")
        study_dir = Path(out) / study_name
        if (study_dir / _STUDY_FILE).exists():
            raise NetfitError(f"study folder {study_dir} exists; continue it with --resume {study_dir}, or choose "
                              "another study name")
        # The database is reached before the folder is made: a bad URL leaves nothing half-made behind.
        backend = _open_storage(storage, None, heartbeat, optuna) if storage is not None else None
        study_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(study_dir / _STUDY_FILE, json.dumps({"study_name": study_name, **_storage_note(storage),
                                                          "space": _space_dict(space),
                                                          "spec": spec.to_dict()}).encode())
        backend = backend or _open_storage(None, study_dir, heartbeat, optuna)

    metric = spec.tune.metric
    direction = "minimize" if metric == "val_loss" else "maximize"  # accuracy and R^2: higher is better
    # netfit prints its own lines per trial, and a failed trial's error goes into the summary table,
    # not as the traceback Optuna would log.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        study_name=study_name, storage=backend, load_if_exists=True, direction=direction,
        pruner=pruner if pruner is not None else _default_pruner(spec, optuna))
    _fail_stale(study, optuna, at_open=True)
    first = len(study.get_trials(deepcopy=False))
    study.sampler = _sampler(spec, first, 0, optuna)
    if first == 0 and (baseline := _baseline(spec, space)) is not None:
        # Trial 0 is the spec as written, so the search can only match or beat it on validation.
        study.enqueue_trial(baseline, user_attrs={"baseline": True})

    remaining = wanted - len(study.get_trials(deepcopy=False, states=_finished(optuna)))
    if remaining > 0:
        job = {"spec": spec.model_dump(mode="json", exclude_unset=True), "study_dir": str(study_dir),
               "study_name": study_name, "storage": storage,
               "heartbeat": heartbeat, "pruner": pruner, "wanted": wanted, "first": first, "budget": remaining}
        if workers == 1:
            _work(job, study, progress, optuna)
        else:
            _run_workers(job, workers, study, progress, optuna)
        ran = study.get_trials(deepcopy=False)[first:]
        if ran and all(t.state == optuna.trial.TrialState.FAIL and "error" in t.user_attrs for t in ran) \
                and not any(t.user_attrs.get("died") for t in ran):
            # Every trial failing is the spec's problem (missing data, say), not bad luck: say it once.
            raise NetfitError(f"every trial failed; trial {ran[0].number}: {ran[0].user_attrs['error']}")
    result = _summarise(study, spec, space, study_dir, metric, direction, optuna)
    _write_study_report(result, space, Progress(progress))
    return result


def _read_study_file(study_dir: Path) -> dict[str, Any]:
    """``STUDY/study.json``, checked: a study folder is data anyone may have edited, like a run folder."""
    path = study_dir / _STUDY_FILE
    if not path.is_file():
        raise NetfitError(f"--resume {study_dir}: not a study folder (no {_STUDY_FILE}); give the folder "
                          "`netfit tune` printed")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        name = saved["study_name"]
        if not isinstance(name, str) or not _plain_name(name):
            raise ValueError(f"study_name {name!r}")
        if not (saved.get("storage") is None or isinstance(saved["storage"], str)):
            raise ValueError("storage is not a URL")
        if not isinstance(saved.get("storage_password", False), bool) or not isinstance(saved["space"], dict):
            raise ValueError("storage_password or space has the wrong type")
        if not isinstance(saved.get("spec", {}), dict):
            raise ValueError("spec is not a table")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise NetfitError(f"{path} cannot be read ({err}); the study folder was damaged: start a new study") from None
    # Studies made before the spec was kept in study.json have none: then the spec must be given.
    return {"storage": None, "storage_password": False, "spec": None, **saved}


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and all(c.isalnum() or c in "-_." for c in name)


def _write_study_report(result: TuneResult, space: dict[str, TuneRange], reporter: Progress) -> None:
    from .tune_report import write_study_report

    # The trials and best.toml are saved by now: a page that cannot be drawn costs the page, not the study.
    try:
        result.report_path = write_study_report(result.to_dict(), _space_dict(space))
        reporter.note(f"netfit: study report: {result.report_path}")
    except NetfitError as err:
        reporter.note(f"netfit: warning: the study is saved, but its report was not written ({err})")


def _sampler(spec: Spec, session: int, worker: int, optuna: Any) -> Any:
    """TPE, seeded from ``train.seed``, the trials the study held when this session began, and the worker.

    One seed for all would repeat draws: TPE starts from random trials, so a resumed session
    re-proposed the first session's values (trial 3 of a resumed study was trial 1 again), and two
    workers that see the same finished trials would propose the same ones.
    """
    import numpy as np

    return optuna.samplers.TPESampler(seed=int(np.random.SeedSequence([spec.train.seed, session, worker])
                                               .generate_state(1)[0]))


def _default_pruner(spec: Spec, optuna: Any) -> Any:
    """Optuna's median pruner, judging a trial only once it has run half the spec's epochs.

    An early epoch's figure says little about the last one: on Fashion-MNIST at 5 epochs, pruning
    from epoch 1 ended 17 of 20 trials on differences of a few tenths of a point, cosine schedules
    and larger batches (slow starters) first. The first 5 trials (Optuna's default) run in full,
    so the median has something to stand on.
    """
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=spec.train.epochs // 2)


def _finished(optuna: Any) -> tuple:
    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _open_storage(url: str | None, study_dir: Path | None, heartbeat: int, optuna: Any) -> Any:
    """The study's storage: the journal file in ``study_dir``, or the database ``url`` names, connected now."""
    if url is None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(study_dir / _JOURNAL_FILE)))
    import sqlalchemy.exc

    shown = _storage_note(url)["storage"]
    password = urlsplit(url).password if "://" in url else None
    try:
        # A database study may have workers on several machines, where a process id says nothing: Optuna's
        # heartbeat (a timestamp per running trial, renewed every `heartbeat` seconds) is what tells a live
        # trial from one whose process died, on any machine.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since Optuna 2.9
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat)
    except ImportError as err:
        why = (f"its database driver is not installed ({err.__cause__ or err}); for postgresql:// run pip install "
               "'netfit[tune-postgres]', for another database install the driver SQLAlchemy uses for it")
    except sqlalchemy.exc.NoSuchModuleError:
        why = (f"unknown database kind {url.partition('://')[0]!r}; use e.g. postgresql://USER:PASSWORD@HOST/DB "
               "or sqlite:///FILE.db")
    except sqlalchemy.exc.ArgumentError:
        why = "not a database URL; use e.g. postgresql://USER:PASSWORD@HOST/DB or sqlite:///FILE.db"
    except sqlalchemy.exc.SQLAlchemyError as err:
        detail = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        if password:
            detail = detail.replace(password, "***")  # drivers should not echo it; in case one does
        if url.startswith("sqlite:"):
            # sqlite:///runs/x.db is a path relative to the working folder; four slashes make it absolute.
            file = url.partition(":///")[2] or url
            why = (f"cannot open the database file {str(Path(file).absolute())!r} ({detail}); check that its folder "
                   "exists (sqlite:///FILE is relative to the working folder, sqlite:////FILE absolute)")
        else:
            why = f"cannot reach the database ({detail}); check the host, port, user and database name"
    raise NetfitError(f"--storage {shown}: {why}")


def _baseline(spec: Spec, space: dict[str, TuneRange]) -> dict[str, Any] | None:
    """The spec's own values as Optuna params, or None when any of them lies outside the space."""
    params, written = {}, spec.to_dict()
    for key, rng in space.items():
        value: Any = written
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if rng.choices is not None:
            if value not in rng.choices:
                return None
            params[key] = json.dumps(value) if _as_json(rng) else value
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not rng.low <= value <= rng.high \
                or (rng.int and value != int(value)):
            return None
        else:
            params[key] = int(value) if rng.int else float(value)
    return params


# ----------------------------------------------------------------------------- running trials


def _work(job: dict[str, Any], study: Any, progress: ProgressTarget, optuna: Any) -> None:
    """Run trials one at a time until the study holds ``job["wanted"]`` finished trials.

    A trial that fails with an error counts against this session's budget (the trials still missing
    when it began), so a spec whose trials all fail stops; one whose process died does not, and is
    run again. When the trials other workers are running would reach the count, this worker waits
    for them rather than start a trial too many; two workers deciding at the same moment can still
    both start one, so a study ends with at most ``workers - 1`` finished trials above the count.
    """
    running = optuna.trial.TrialState.RUNNING
    stopped: list[BaseException] = []  # a stop that came after the trial's run was saved: raised once it is told
    objective = _objective(spec_from_dict(job["spec"], source="tune"), Path(job["study_dir"]), progress, optuna,
                           stopped)
    while True:
        _fail_stale(study, optuna, at_open=False)
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in _finished(optuna) for t in trials)
        # A WAITING trial (trial 0, the spec as written, enqueued) is not spent yet: counted, a study of
        # --trials 1 ended at once with nothing run.
        spent = sum(t.state != optuna.trial.TrialState.WAITING
                    and not (t.state == optuna.trial.TrialState.FAIL and ("error" not in t.user_attrs
                                                                          or t.user_attrs.get("died")))
                    for t in trials[job["first"]:])
        # Only trials a netfit worker owns can still finish; one left by a bare ask() never will.
        in_flight = sum(t.state == running and "worker" in t.user_attrs for t in trials)
        if finished >= job["wanted"] or spent >= job["budget"]:
            return
        if finished + in_flight >= job["wanted"]:
            time.sleep(0.5)  # another worker's trial may yet fail, or its worker die: look again
            continue
        study.optimize(objective, n_trials=1, catch=(NetfitError,), callbacks=[_trial_line(progress)])
        if stopped:
            raise stopped[0]


def _record_run(trial: Any, metric: str, run_dir: Path, task: str) -> str:
    """Note the trial's run folder and the metric it is judged on (tune.metric, or the task's own); return that name."""
    name = metric if metric != "auto" else metric_name(task)
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("metric", name)
    return name


def _objective(spec: Spec, study_dir: Path, progress: ProgressTarget, optuna: Any, stopped: list[BaseException]):
    from .api import fit
    from .rundir import is_finished, read_run

    space, metric = spec.tune.space, spec.tune.metric

    def objective(trial) -> float:
        # Who runs this trial, so that another process can tell a live trial from one whose process died.
        trial.set_user_attr("worker", _this_process())
        values = {key: _suggest(trial, key, rng) for key, rng in space.items()}
        what = " (the spec as written)" if trial.user_attrs.get("baseline") else ""
        _say(progress, f"trial {trial.number}{what}: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()))
        callback = PruningCallback(trial, metric if metric != "auto" else "val_metric")
        try:
            run = fit(trial_spec(spec, values), out=study_dir / "trials", progress=progress, callbacks=[callback])
        except NetfitError as err:
            # A diverged trial (lr too high) fails alone; the study goes on (optimize's catch).
            trial.set_user_attr("error", str(err))
            raise
        except KeyboardInterrupt as stop:
            # Ctrl-C (or the tune process's SIGTERM) while a saved run's report is drawn: the run is whole,
            # so the trial counts, and the stop takes effect once Optuna has been told.
            if callback.run_dir is None or not is_finished(callback.run_dir) or callback.pruned:
                raise
            stopped.append(stop)
            saved = read_run(callback.run_dir)
            return float(saved.metrics[_record_run(trial, metric, callback.run_dir, saved.preparation.task)])
        name = _record_run(trial, metric, run.run_dir, run.model.task)
        if callback.pruned:
            raise optuna.TrialPruned(f"trial {trial.number} pruned")
        return float(run.metrics[name])

    return objective


def _trial_line(progress: ProgressTarget):
    def line(study: Any, trial: Any) -> None:
        figure = "" if trial.value is None else f" {trial.user_attrs.get('metric', 'value')} {trial.value:.4g}"
        error = f": {trial.user_attrs['error']}" if "error" in trial.user_attrs else ""
        _say(progress, f"trial {trial.number} {trial.state.name.lower()}{figure}{error}")

    return line


def _say(progress: ProgressTarget, line: str) -> None:
    if progress == "logging":
        from .progress import LOGGER

        LOGGER.info(line)
    elif progress is not None:
        print(line, file=progress, flush=True)


def _run_workers(job: dict[str, Any], count: int, study: Any, progress: ProgressTarget, optuna: Any) -> None:
    """Run ``count`` worker processes on the study and wait for them; SIGINT or SIGTERM stops them all.

    Workers are separate Python processes (not threads: a trial holds the GIL between torch calls),
    each given its own share of this process's cores, so ``fit`` gives each as many torch threads
    as it has cores. A worker that dies (killed, out of memory) leaves its trial to be failed by the
    others, which carry on to the count; the study fails only when every worker is gone before it.
    """
    import subprocess

    from .errors import TrainingInterrupted
    from .signals import EXIT_CODES, stop_on_signals

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    env = dict(os.environ)
    # The workers import this very netfit, wherever it was imported from.
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1])]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    procs, relays, lock = [], [], threading.Lock()
    try:
        for i in range(count):
            share = cores[i * len(cores) // count:(i + 1) * len(cores) // count] or [cores[i % len(cores)]]
            proc = subprocess.Popen(
                [sys.executable, "-u", "-c", "from netfit.tuning import _worker_main; _worker_main()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE if progress is not None else subprocess.DEVNULL,
                env=env, start_new_session=True,  # a Ctrl-C reaches this process, which stops them in order
                preexec_fn=_die_with_parent)
            # The job goes through stdin, not the command line, where `ps` would show a storage password.
            # Pickled because it carries the caller's pruner object; the bytes only ever travel this pipe
            # from this process to its own child, never through a file another person could write.
            proc.stdin.write(pickle.dumps({**job, "index": i, "cores": share, "quiet": progress is None}))
            proc.stdin.close()
            procs.append(proc)
            if progress is not None:
                relay = threading.Thread(target=_relay, args=(proc.stdout, f"[worker {i + 1}] ", progress, lock),
                                         daemon=True)
                relay.start()
                relays.append(relay)
        with stop_on_signals() as stop:
            stopping_since, seen_dead = None, set()
            while any(p.poll() is None for p in procs):
                dead_now = {i for i, p in enumerate(procs) if p.returncode not in (None, 0)} - seen_dead
                if dead_now and stopping_since is None:
                    _fail_stale(study, optuna, at_open=False)  # now, not when a busy worker next looks
                    seen_dead |= dead_now
                if stop.requested and stopping_since is None:
                    stopping_since = time.monotonic()
                    for p in procs:
                        if p.poll() is None:
                            p.terminate()  # each worker's fit writes a checkpoint, fails its trial, exits
                if stopping_since is not None and time.monotonic() - stopping_since > 60:
                    break  # the finally below kills what is left
                time.sleep(0.2)
            if stop.requested:
                raise TrainingInterrupted(f"tune stopped by {stop.name}; continue with --resume {job['study_dir']}",
                                          EXIT_CODES[stop.signum])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for relay in relays:
            relay.join(timeout=5)
    _fail_stale(study, optuna, at_open=False)  # the trials of workers that died last
    dead = [p.returncode for p in procs if p.returncode != 0]
    finished = len(study.get_trials(deepcopy=False, states=_finished(optuna)))
    if dead and finished < job["wanted"]:
        raise NetfitError(f"{len(dead)} of {count} workers died (exit codes {', '.join(map(str, dead))}) with "
                          f"{finished} of {job['wanted']} trials finished; see the messages above, then continue with "
                          f"--resume {job['study_dir']}")


def _relay(stream: Any, prefix: str, progress: ProgressTarget, lock: threading.Lock) -> None:
    # One thread per worker, so that a quiet worker never holds up another's lines.
    for raw in stream:
        with lock:
            _say(progress, prefix + raw.decode(errors="replace").rstrip("\n"))


def _die_with_parent() -> None:
    # Runs in the new worker before Python starts: on Linux the kernel sends it SIGTERM when the tune
    # process dies, even by SIGKILL, so no worker outlives it. Elsewhere workers end with the study.
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _worker_main() -> None:
    """A worker process: reads its job from stdin and runs trials until the study is done."""
    import torch

    from .errors import TrainingInterrupted

    job = pickle.load(sys.stdin.buffer)

    def stop(signum, frame):
        # The tune process asks its workers to stop with SIGTERM. Inside fit, fit's own handler takes it
        # (checkpoint, then TrainingInterrupted); anywhere else this one: Optuna fails the trial, we exit.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, job["cores"])  # fit gives torch one thread per core this process may use
    torch.set_num_threads(len(job["cores"]))
    optuna = _import_optuna()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = spec_from_dict(job["spec"], source="tune")
    try:
        storage = _open_storage(job["storage"], Path(job["study_dir"]), job["heartbeat"], optuna)
        study = optuna.load_study(
            study_name=job["study_name"], storage=storage, sampler=_sampler(spec, job["first"], job["index"], optuna),
            pruner=job["pruner"] if job["pruner"] is not None else _default_pruner(spec, optuna))
        _work(job, study, None if job["quiet"] else sys.stdout, optuna)
    except TrainingInterrupted as interrupted:  # SIGTERM from the tune process: the trial is failed, exit quietly
        sys.exit(interrupted.exit_code)
    except KeyboardInterrupt:
        sys.exit(143)
    except NetfitError as err:  # the database gone away, say: one line, as the CLI would print it
        print(f"netfit: error: {err}", file=sys.stderr)
        sys.exit(2)


# ----------------------------------------------------------------------------- trials whose process died


def _this_process() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _started(os.getpid())}


def _started(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), or None when it is gone or exited.

    A pid alone can be reused by a later process; pid and start time together name one process.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after "(comm)", which may hold spaces: state is field 3
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie has exited; field 22 is starttime


def _alive(owner: dict[str, Any]) -> bool:
    if Path("/proc/self/stat").exists():
        return owner.get("started") is not None and _started(owner["pid"]) == owner["started"]
    try:
        os.kill(owner["pid"], 0)  # no /proc (macOS): existence only
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _fail_stale(study: Any, optuna: Any, at_open: bool) -> None:
    """Mark FAIL the RUNNING trials whose process died, so they are neither waited for nor counted.

    Database storage: Optuna's heartbeat decides (see ``_open_storage``). Journal file (one machine):
    a trial records its host, pid and process start time when it starts, and a trial of this host
    whose process is gone is failed. A trial with no record yet is failed only when the study opens,
    before this tune starts any worker: later it may be a live worker's trial a moment after it began.
    """
    from optuna.storages.journal import JournalStorage

    if not isinstance(study._storage, JournalStorage):  # a database (Optuna wraps RDBStorage in a cache)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since Optuna 2.9
            optuna.storages.fail_stale_trials(study)
        return
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = t.user_attrs.get("worker")
        if owner is None and at_open:
            why = "its process stopped before it began training"
        elif owner is not None and owner["host"] == host and not _alive(owner):
            why = f"its process (pid {owner['pid']}) died mid-trial"
        else:
            continue  # alive, or on another host, where this process cannot tell
        try:
            study._storage.set_trial_user_attr(t._trial_id, "error", why)
            study._storage.set_trial_user_attr(t._trial_id, "died", True)
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker marked it first


def _summarise(study: Any, spec: Spec, space: dict[str, TuneRange], study_dir: Path, metric: str, direction: str,
               optuna: Any) -> TuneResult:
    rows = [{"number": t.number, "state": t.state.name.lower(), "value": t.value,
             "params": _decode(t.params, space), "run_dir": t.user_attrs.get("run_dir"),
             "error": t.user_attrs.get("error") or _stopped(t, optuna), "baseline": bool(t.user_attrs.get("baseline"))}
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


def _stopped(trial: Any, optuna: Any) -> str | None:
    # A failed trial with no error of its own was stopped from outside: a signal, or a lost heartbeat.
    return "stopped mid-trial" if trial.state == optuna.trial.TrialState.FAIL else None


def summary_table(result: TuneResult) -> str:
    """The trials as a fixed-width table, best marked with ``*``."""
    lines = [f"{'trial':>5}  {'state':<8}  {result.metric:>12}  params"]
    best_number = next((r["number"] for r in result.trials if r["value"] == result.best_value
                        and r["state"] == "complete"), None) if result.best_value is not None else None
    for r in result.trials:
        value = "" if r["value"] is None else f"{r['value']:.4g}"
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in r["params"].items())
        mark = "*" if r["number"] == best_number else " "
        error = f"  ({r['error']})" if r.get("error") else ""
        written = "  (the spec as written)" if r.get("baseline") else ""
        lines.append(f"{r['number']:>4}{mark}  {r['state']:<8}  {value:>12}  {params}{written}{error}")
    return "\n".join(lines)
