"""netfit tune: the [tune] table, an Optuna study whose trials are run folders, pruning, resume, the CLI."""

import glob
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

import netfit
from netfit.cli import main
from netfit.errors import NetfitError
from netfit.spec import spec_from_dict
from netfit import tune
from netfit.tuning import summary_table
from optuna.storages.journal import JournalFileBackend, JournalStorage


def small_spec(trials=4, **space):
    space = space or {"train.lr": {"low": 1e-3, "high": 3e-2, "log": True},
                      "model.hidden": {"choices": [[16], [24, 16]]}}
    return {"data": {"dataset": "digits"}, "model": {"hidden": [16]},
            "train": {"epochs": 2, "batch_size": 128},
            "tune": {"trials": trials, "space": space}}


def bad(spec, **kwargs):
    with pytest.raises(NetfitError) as err:
        tune(spec, progress=None, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------- the [tune] table


def test_specs_without_tune_table_are_unchanged_and_a_tune_table_round_trips(tmp_path):
    assert "tune" not in spec_from_dict({}).to_dict()
    spec = spec_from_dict(small_spec())
    path = tmp_path / "s.toml"
    path.write_text(spec.to_toml())
    assert netfit.load_spec(path) == spec  # the dotted keys of tune.space survive TOML


@pytest.mark.parametrize("space, words", [
    ({"train.lrr": {"low": 1e-3, "high": 1e-2}}, ["train.lrr", "did you mean 'train.lr'"]),
    ({"model.hiden": {"choices": [[16]]}}, ["model.hiden", "did you mean 'model.hidden'"]),
    ({"train.lr": {"low": 1e-2, "high": 1e-3}}, ["tune.space.train.lr", "must be below high"]),
    ({"train.lr": {"low": 0, "high": 1e-3, "log": True}}, ["log range needs low > 0"]),
    ({"model.dropout": {"low": 0.1, "high": 1.5}}, ["model.dropout", "1.5"]),
    ({"train.batch_size": {"low": 16, "high": 256}}, ["train.batch_size", "integer"]),
    ({"train.lr": {"lo": 1e-3}}, ["did you mean 'tune.space.train.lr.low'"]),
])
def test_a_bad_space_is_refused_in_one_line_naming_the_key(tmp_path, space, words):
    message = bad(small_spec(**{}) | {"tune": {"space": space}}, out=tmp_path)
    for word in words:
        assert word in message
    assert not list(tmp_path.iterdir())  # refused before any study folder or trial


def test_no_tune_table_and_no_validation_rows_are_refused(tmp_path):
    assert "no [tune] table" in bad({"data": {"dataset": "digits"}}, out=tmp_path)
    no_val = small_spec()
    no_val["data"]["val_fraction"] = 0.0
    assert "val_fraction" in bad(no_val, out=tmp_path)


# ----------------------------------------------------------------------------- a study


def test_a_study_runs_its_trials_as_run_folders_and_writes_the_best_spec(tmp_path):
    result = tune(small_spec(trials=4), out=tmp_path, study_name="s", progress=None,
                  pruner=optuna.pruners.NopPruner())
    assert [t["state"] for t in result.trials] == ["complete"] * 4
    run_dirs = sorted((tmp_path / "s" / "trials").iterdir())
    assert len(run_dirs) == 4 and sorted(t["run_dir"] for t in result.trials) == [str(d) for d in run_dirs]
    for t in result.trials:  # each trial's value is its own run's validation accuracy
        assert t["value"] == pytest.approx(netfit.load(t["run_dir"]).metrics["val_accuracy"])
    assert result.metric == "val_accuracy"
    assert result.best_value == max(t["value"] for t in result.trials)
    best = netfit.load_spec(result.best_spec_path)
    assert best.tune is None  # the best spec trains as it stands
    assert best.train.lr == result.best_params["train.lr"]
    assert best.model.hidden == result.best_params["model.hidden"]
    # The run that scored best was trained with exactly that spec.
    assert netfit.load(result.best_run_dir).spec.model_dump() == best.model_dump()


def test_val_loss_is_minimised(tmp_path):
    spec = small_spec(trials=3, **{"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}})
    spec["tune"]["metric"] = "val_loss"
    result = tune(spec, out=tmp_path, study_name="s", progress=None, pruner=optuna.pruners.NopPruner())
    assert result.direction == "minimize" and result.metric == "val_loss"
    assert result.best_value == min(t["value"] for t in result.trials)


def test_the_pruner_ends_trials_through_the_epoch_callback(tmp_path):
    # Accuracy is never above 2, so this pruner prunes every trial at its first epoch.
    spec = small_spec(trials=2)
    spec["train"]["epochs"] = 3
    result = tune(spec, out=tmp_path, study_name="s", progress=None,
                  pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    assert [t["state"] for t in result.trials] == ["pruned", "pruned"]
    for t in result.trials:
        assert netfit.load(t["run_dir"]).metrics["epochs"] == 1  # stopped after epoch 1 of 3
    assert result.best_spec_path is None and not (tmp_path / "s" / "best.toml").exists()


def test_a_trial_that_ran_all_its_epochs_is_never_pruned(tmp_path):
    # The same pruner on one-epoch trials: the run is whole before the pruner could end it, so it counts.
    spec = small_spec(trials=2)
    spec["train"]["epochs"] = 1
    result = tune(spec, out=tmp_path, study_name="s", progress=None,
                  pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    assert [t["state"] for t in result.trials] == ["complete", "complete"]


def test_the_default_pruner_waits_for_five_trials_and_half_the_epochs():
    from netfit.spec import spec_from_dict
    from netfit.tuning import _default_pruner

    pruner = _default_pruner(spec_from_dict(small_spec() | {"train": {"epochs": 10}}), optuna)
    assert (pruner._n_startup_trials, pruner._n_warmup_steps) == (5, 5)


def test_a_diverged_trial_fails_alone_and_a_study_where_all_fail_is_refused(tmp_path):
    spec = small_spec(**{"train.lr": {"choices": [1e-2, 1e9]}})
    spec["train"]["optimizer"] = "sgd"  # SGD at lr 1e9 reaches inf within the first epoch
    result = tune(spec, out=tmp_path, study_name="s", progress=None, pruner=optuna.pruners.NopPruner())
    by_lr = {t["params"]["train.lr"]: t for t in result.trials}
    assert by_lr[1e9]["state"] == "fail" and "NaN or infinite" in by_lr[1e9]["error"]
    assert by_lr[1e-2]["state"] == "complete" and result.best_params == {"train.lr": 1e-2}
    assert "NaN or infinite" in summary_table(result)
    spec["tune"]["space"] = {"train.lr": {"choices": [1e9]}}
    assert "every trial failed" in bad(spec, out=tmp_path, trials=2)


def test_resume_continues_counting_and_fails_a_trial_left_running(tmp_path):
    spec = small_spec(trials=2, **{"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}})
    first = tune(spec, out=tmp_path, study_name="s", progress=None, pruner=optuna.pruners.NopPruner())
    study_dir = first.study_dir
    # A process killed mid-trial leaves that trial RUNNING in the journal.
    storage = JournalStorage(JournalFileBackend(str(study_dir / "journal.log")))
    optuna.load_study(study_name="s", storage=storage).ask()
    with pytest.raises(NetfitError, match="--resume"):
        tune(spec, out=tmp_path, study_name="s", progress=None)
    second = tune(spec, trials=4, resume=study_dir, progress=None, pruner=optuna.pruners.NopPruner())
    states = [t["state"] for t in second.trials]
    assert states == ["complete", "complete", "fail", "complete", "complete"]
    assert second.trials[:2] == first.trials  # the earlier trials are kept, not rerun
    assert len(list((study_dir / "trials").iterdir())) == 4
    other = small_spec(trials=2, **{"train.lr": {"low": 1e-3, "high": 1e-1, "log": True}})
    assert "differs from the study's" in bad(other, resume=study_dir)
    # Asking for no more than the study holds runs nothing.
    third = tune(spec, trials=4, resume=study_dir, progress=None)
    assert third.trials == second.trials


def test_resume_needs_only_the_study_folder_and_refuses_a_damaged_one(tmp_path, capsys):
    spec = small_spec(trials=1, **{"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}})
    first = tune(spec, out=tmp_path, study_name="s", progress=None)
    # The CLI, as after a Ctrl-C: the folder alone continues the study, with the spec it started from.
    assert main(["tune", "--resume", str(first.study_dir), "--trials", "2", "--quiet", "--json"]) == 0
    assert [t["state"] for t in json.loads(capsys.readouterr().out)["trials"]] == ["complete", "complete"]
    assert main(["tune", "--quiet"]) == 2
    assert "or --resume STUDY_DIR" in capsys.readouterr().err
    study_file = first.study_dir / "study.json"
    saved = json.loads(study_file.read_text())
    for damage, words in [("{not json", "cannot be read"),
                          (json.dumps({**saved, "study_name": "../../elsewhere"}), "study_name"),
                          (json.dumps({**saved, "space": ["train.lr"]}), "wrong type"),
                          (json.dumps({k: v for k, v in saved.items() if k != "spec"}), "give the spec file too")]:
        study_file.write_text(damage)
        message = bad(None, resume=first.study_dir)
        assert words in message and "\n" not in message


def test_a_stop_after_the_trial_run_was_saved_keeps_the_trial(tmp_path, monkeypatch):
    # Ctrl-C while the first trial's report is drawn: its run folder is whole, so the trial counts.
    import netfit.api

    write_report, calls = netfit.api._write_report, []

    def interrupted(*args):
        calls.append(args)
        write_report(*args)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(netfit.api, "_write_report", interrupted)
    spec = small_spec(trials=2, **{"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}})
    with pytest.raises(KeyboardInterrupt):
        tune(spec, out=tmp_path, study_name="s", progress=None, pruner=optuna.pruners.NopPruner())
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "s" / "journal.log")))
    (kept,) = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert kept.state == optuna.trial.TrialState.COMPLETE
    assert kept.value == netfit.load(kept.user_attrs["run_dir"]).metrics["val_accuracy"]
    resumed = tune(None, resume=tmp_path / "s", progress=None, pruner=optuna.pruners.NopPruner())
    assert [t["state"] for t in resumed.trials] == ["complete", "complete"]


def test_a_resumed_session_draws_new_values(tmp_path):
    # TPE starts from random draws: with the first session's seed, the resume re-proposed its values.
    spec = small_spec(trials=2, **{"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}})
    first = tune(spec, out=tmp_path, study_name="s", progress=None, pruner=optuna.pruners.NopPruner())
    resumed = tune(None, trials=4, resume=first.study_dir, progress=None, pruner=optuna.pruners.NopPruner())
    drawn = [t["params"]["train.lr"] for t in resumed.trials]
    assert len(drawn) == 4 and len(set(drawn)) == 4, drawn


def test_missing_optuna_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    assert "pip install 'netfit[tune]'" in bad(small_spec(), out=tmp_path)


# ----------------------------------------------------------------------------- the CLI


def test_cli_tune_prints_a_table_or_one_json_object(tmp_path, capsys):
    path = tmp_path / "spec.toml"
    path.write_text(spec_from_dict(small_spec(trials=2)).to_toml())
    code = main(["tune", str(path), "--out", str(tmp_path / "runs"), "--name", "s", "--quiet", "--trials", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "trial  state" in out and "saved best spec to" in out
    code = main(["tune", str(path), "--resume", str(tmp_path / "runs" / "s"), "--trials", "3", "--json", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0
    data = json.loads(captured.out)
    assert len(data["trials"]) == 3 and data["best_spec"].endswith("best.toml")


@pytest.mark.parametrize("argv, words", [
    (["tune", "missing.toml"], "does not exist"),
    (["tune", "{spec}", "--trials", "0"], "at least 1"),
    (["tune", "{spec}", "--workers", "0"], "--workers 0: give at least 1"),
    (["tune", "{plain}"], "no [tune] table"),
    (["tune", "{spec}", "--resume", "{tmp}"], "not a study folder"),
    (["tune", "{spec}", "--name", "../up"], "study name '../up'"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    spec, plain = tmp_path / "spec.toml", tmp_path / "plain.toml"
    spec.write_text(spec_from_dict(small_spec()).to_toml())
    plain.write_text('[data]\ndataset = "digits"\n')
    argv = [a.format(spec=spec, plain=plain, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("netfit: error:") and words in err


def test_storage_url_keeps_the_study_in_that_database(tmp_path):
    # SQLite stands in for the PostgreSQL URL here: the same RDB path through Optuna, no server needed.
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    spec = small_spec(trials=2, **{"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}})
    first = tune(spec, out=tmp_path / "runs", study_name="s", storage=url, progress=None)
    assert not (first.study_dir / "journal.log").exists()
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 2
    second = tune(spec, trials=3, resume=first.study_dir, progress=None)  # the URL is remembered
    assert len(second.trials) == 3 and len(optuna.load_study(study_name="s", storage=url).trials) == 3


def test_a_storage_password_is_not_written_into_the_study_folder(tmp_path):
    from netfit.tuning import _storage_note

    note = _storage_note("postgresql://tuner:s3cret@db.example:5432/studies")
    assert note == {"storage": "postgresql://tuner:***@db.example:5432/studies", "storage_password": True}
    assert _storage_note(None) == {"storage": None, "storage_password": False}
    study = tmp_path / "s"
    study.mkdir()
    (study / "study.json").write_text(json.dumps({"study_name": "s", "space": {}, **note}))
    assert "pass --storage URL again" in bad(small_spec(), resume=study)



def test_a_bad_or_unreachable_storage_url_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    spec = small_spec()
    assert "unknown database kind 'postgre'" in bad(spec, out=tmp_path, study_name="s", storage="postgre://u:pw@h/x")
    assert "not a database URL" in bad(spec, out=tmp_path, study_name="s", storage="studies.db")
    refused = bad(spec, out=tmp_path, study_name="s", storage="postgresql://nobody:s3cret@127.0.0.1:1/x")
    assert refused.startswith("--storage postgresql://nobody:***@127.0.0.1:1/x: cannot reach the database")
    assert "s3cret" not in refused
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    missing = bad(spec, out=tmp_path, study_name="s", storage="postgresql://u@127.0.0.1/x")
    assert "driver is not installed" in missing and "pip install 'netfit[tune-postgres]'" in missing
    # sqlite:/// is relative to the working folder: the message names the file it tried and the 4th slash.
    relative = "sqlite:///" + str(tmp_path / "no" / "x.db").lstrip("/")  # three slashes: meant absolute
    nowhere = bad(spec, out=tmp_path, study_name="s", storage=relative)
    assert "cannot open the database file" in nowhere and "sqlite:////FILE absolute" in nowhere
    assert not list(tmp_path.iterdir())  # no study folder was begun
    path = tmp_path / "spec.toml"
    path.write_text(spec_from_dict(spec).to_toml())
    argv = ["tune", str(path), "--out", str(tmp_path / "runs"), "--name", "s", "--storage", "postgre://u@h/x"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown database kind" in err and not (tmp_path / "runs" / "s").exists()


# ----------------------------------------------------------------------------- trial 0: the spec as written


def test_a_new_study_begins_with_the_spec_as_written(tmp_path):
    spec = small_spec(trials=3)
    spec["train"]["lr"] = 0.005
    result = tune(spec, out=tmp_path, study_name="s", progress=None, pruner=optuna.pruners.NopPruner())
    first = result.trials[0]
    assert first["baseline"] and first["params"] == {"train.lr": 0.005, "model.hidden": [16]}
    assert not any(t["baseline"] for t in result.trials[1:])
    assert netfit.load(first["run_dir"]).spec.train.lr == 0.005
    assert "(the spec as written)" in summary_table(result).splitlines()[1]
    # The spec's best can only be matched or beaten: the search holds it.
    assert result.best_value >= first["value"]
    # Resuming adds no second baseline.
    more = tune(spec, trials=4, resume=result.study_dir, progress=None, pruner=optuna.pruners.NopPruner())
    assert [t["baseline"] for t in more.trials] == [True, False, False, False]


def test_a_metric_of_the_other_task_fails_each_trial_before_training_in_one_line(tmp_path):
    # val_r2 on a classification trained every trial to its end, then a KeyError stopped tune with exit 1.
    spec = small_spec(trials=2)
    spec["tune"]["metric"] = "val_r2"
    message = bad(spec, out=tmp_path, study_name="s")
    assert "every trial failed" in message and "tune.metric = 'val_r2' is not a figure of a classification run" \
        in message and "val_accuracy" in message
    assert list((tmp_path / "s" / "trials").iterdir()) == []  # stopped before any run folder was saved


def test_a_study_of_one_trial_runs_the_spec_as_written(tmp_path):
    # The enqueued trial 0 was counted as spent while still waiting: --trials 1 ran nothing and exited 1.
    result = tune(small_spec(trials=1), out=tmp_path, study_name="s", progress=None)
    assert [(t["state"], t["baseline"]) for t in result.trials] == [("complete", True)]
    assert result.best_spec_path.exists()


def test_no_baseline_when_a_spec_value_lies_outside_the_space(tmp_path):
    spec = small_spec(trials=2)
    spec["train"]["lr"] = 0.5  # above the range's 3e-2
    result = tune(spec, out=tmp_path, study_name="s", progress=None, pruner=optuna.pruners.NopPruner())
    assert not any(t["baseline"] for t in result.trials)
    assert all(t["params"]["train.lr"] <= 3e-2 for t in result.trials)


def test_searching_an_optimizer_name_drops_the_other_optimizers_defaults(tmp_path):
    # As --set train.optimizer.name=sgd does: adam's filled-in betas are not carried into an sgd trial
    # (they were, and every sgd value was refused as "unknown key 'train.optimizer.betas'").
    spec = small_spec(trials=2, **{"train.optimizer.name": {"choices": ["adam", "sgd"]}})
    result = tune(spec, out=tmp_path, study_name="s", progress=None, pruner=optuna.pruners.NopPruner())
    assert [t["state"] for t in result.trials] == ["complete", "complete"]
    names = {netfit.load(t["run_dir"]).spec.train.optimizer.name for t in result.trials}
    assert names == {"adam", "sgd"}


def test_searched_data_paths_are_relative_to_the_spec_file(tmp_path, monkeypatch):
    # The spec's own data.path is read relative to the file; its searched values were read relative
    # to the working folder, so every trial failed with "does not exist" from anywhere else.
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "a.csv").write_text("x,y\n" + "".join(f"{i % 7},{i % 3}\n" for i in range(60)))
    (folder / "spec.toml").write_text(
        '[data]\npath = "a.csv"\ntarget = "y"\n[model]\nhidden = [4]\n[train]\nepochs = 1\n'
        '[tune]\ntrials = 1\n[tune.space]\n"data.path" = { choices = ["a.csv"] }\n')
    monkeypatch.chdir(tmp_path)
    result = tune(netfit.load_spec(folder / "spec.toml"), out=tmp_path / "runs", study_name="s", progress=None)
    assert result.trials[0]["state"] == "complete" and result.trials[0]["baseline"]
    assert result.trials[0]["params"] == {"data.path": str(folder / "a.csv")}


# ----------------------------------------------------------------------------- several workers, real processes

SRC = Path(netfit.__file__).resolve().parents[1]
RUNNING = optuna.trial.TrialState.RUNNING
FAIL = optuna.trial.TrialState.FAIL
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def slow_spec(trials):
    # About two seconds a trial on one core: long enough to be caught mid-trial.
    return {"data": {"dataset": "digits"}, "model": {"hidden": [64]}, "train": {"epochs": 12, "batch_size": 16},
            "tune": {"trials": trials, "space": {"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}}}}


def launch(args):
    """A new Python process that imports this netfit, with its output captured."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def launch_cli(tmp_path, spec, *args):
    path = tmp_path / "spec.toml"
    path.write_text(spec_from_dict(spec).to_toml())
    return launch(["-m", "netfit", "tune", str(path), "--out", str(tmp_path / "runs"), "--quiet", *args])


def journal_trials(study_dir, name="s"):
    storage = JournalStorage(JournalFileBackend(str(study_dir / "journal.log")))
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def wait_for(trials, wanted, proc, timeout=120):
    """Poll ``trials()`` until ``wanted(trials)`` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            found = wanted(trials())
        except (KeyError, FileNotFoundError, ValueError):
            found = None  # the study is not made yet
        if found:
            return found
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"timed out: {proc.communicate()}")


def owned_running(trials):
    return [t for t in trials if t.state == RUNNING and "worker" in t.user_attrs]


def gone(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X")
    except OSError:
        return True


def children(pid):
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(Path(stat).parent.name))
    return found


def test_two_workers_share_one_study(tmp_path):
    spec = small_spec(trials=4, **{"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}})
    spec["train"]["epochs"] = 10  # a second or so a trial, so that neither worker runs them all
    lines = io.StringIO()
    result = tune(spec, out=tmp_path, study_name="s", workers=2, progress=lines, pruner=optuna.pruners.NopPruner())
    trials = journal_trials(result.study_dir)
    finished = [t for t in trials if t.state in FINISHED]
    assert 4 <= len(finished) <= 5  # two workers starting at one moment may run one trial too many
    pids = {t.user_attrs["worker"]["pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids  # both worker processes ran trials, this one none
    assert [t["number"] for t in result.trials] == [t.number for t in trials]
    assert result.best_spec_path.is_file() and netfit.load_spec(result.best_spec_path).tune is None
    text = lines.getvalue()
    assert "[worker 1] trial" in text and "[worker 2] trial" in text and "Epoch 10/10" in text


def test_a_killed_worker_fails_its_trial_and_the_other_reaches_the_count(tmp_path):
    proc = launch_cli(tmp_path, slow_spec(3), "--name", "s", "--workers", "2")
    study_dir = tmp_path / "runs" / "s"
    victim = wait_for(lambda: journal_trials(study_dir), owned_running, proc)[0]
    os.kill(victim.user_attrs["worker"]["pid"], signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    trials = journal_trials(study_dir)
    killed = trials[victim.number]
    assert killed.state == FAIL and "died mid-trial" in killed.user_attrs["error"]
    assert len([t for t in trials if t.state in FINISHED]) >= 3
    assert "died mid-trial" in out and (study_dir / "best.toml").is_file()


def test_resume_after_the_whole_tune_was_killed_fails_the_dead_trials(tmp_path):
    spec = slow_spec(3)
    proc = launch_cli(tmp_path, spec, "--name", "s", "--workers", "2")
    study_dir = tmp_path / "runs" / "s"
    wait_for(lambda: journal_trials(study_dir), owned_running, proc)
    for pid in children(proc.pid):  # the workers first: killed first, the tune could not stop them cleanly
        os.kill(pid, signal.SIGKILL)
    proc.kill()
    proc.communicate()
    left = owned_running(journal_trials(study_dir))
    assert left
    spec["train"]["epochs"] = 2  # the space must stay; the trials left to run may be quick
    result = tune(spec, resume=study_dir, progress=None)
    states = {t["number"]: t for t in result.trials}
    for t in left:
        assert states[t.number]["state"] == "fail" and "died mid-trial" in states[t.number]["error"]
    assert len([t for t in result.trials if t["state"] in ("complete", "pruned")]) >= 3
    assert not owned_running(journal_trials(study_dir))


def test_sigterm_stops_the_workers_and_fails_their_trials(tmp_path):
    proc = launch_cli(tmp_path, slow_spec(4), "--name", "s", "--workers", "2")
    study_dir = tmp_path / "runs" / "s"
    running = wait_for(lambda: journal_trials(study_dir), lambda ts: len(owned_running(ts)) == 2 and owned_running(ts),
                       proc)
    workers = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "--resume" in err and "Traceback" not in err
    assert all(gone(pid) for pid in workers)  # no worker outlives the tune
    trials = journal_trials(study_dir)
    assert all(trials[t.number].state == FAIL for t in running)  # failed by their workers as they stopped


# ----------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on a free port of 127.0.0.1 (trust auth), stopped after the tests."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    found = found or [p for p in [shutil.which("initdb")] if p]
    if not found:
        pytest.fail("PostgreSQL's server (initdb, pg_ctl) is not installed: run scripts/system-packages.sh "
                    "(Debian: apt-get install postgresql)")
    bin_dir = Path(found[-1]).parent
    # initdb refuses to run as root: the Debian package's postgres user runs the server then.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="netfit-pg-"))  # not under pytest's tmp: postgres must reach it
    if as_user:
        shutil.chown(root, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run([*as_user, bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync",
                    "-E", "UTF8"], check=True, capture_output=True)
    subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-l", root / "log", "-w", "start",
                    "-o", f"-h 127.0.0.1 -p {port} -k {root} -F"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_a_postgresql_study_with_two_workers_fails_a_killed_trial_by_heartbeat_and_resumes(tmp_path, postgres_url):
    spec = slow_spec(3)
    out = tmp_path / "runs"
    proc = launch(["-c", f"import netfit; netfit.tune({spec!r}, out={str(out)!r}, study_name='pg', "
                         f"storage={postgres_url!r}, workers=2, progress=None, heartbeat=1)"])

    def trials():
        return optuna.load_study(study_name="pg", storage=postgres_url).get_trials(deepcopy=False)

    victim = wait_for(trials, owned_running, proc)[0]
    os.kill(victim.user_attrs["worker"]["pid"], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    killed = trials()[victim.number]
    assert killed.state == FAIL  # the other worker saw its heartbeat stop
    assert len([t for t in trials() if t.state in FINISHED]) >= 3
    assert not (out / "pg" / "journal.log").exists() and (out / "pg" / "best.toml").is_file()
    held = len([t for t in trials() if t.state in FINISHED])
    spec["train"]["epochs"] = 2
    result = tune(spec, trials=held + 1, resume=out / "pg", progress=None)  # the URL is remembered
    assert len([t for t in result.trials if t["state"] in ("complete", "pruned")]) >= held + 1
    assert result.trials[victim.number]["error"] == "stopped mid-trial"
