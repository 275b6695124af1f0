"""netfit tune: the [tune] table, an Optuna study whose trials are run folders, pruning, resume, the CLI."""

import json
import sys

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
