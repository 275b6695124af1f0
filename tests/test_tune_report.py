"""The study page of netfit tune: drawn by a real browser, every trial listed and linked, honest about damaged trials."""

import json
import shutil

import pytest

pytest.importorskip("optuna")

from netfit import tune
from netfit.report import REPORT
from netfit.tune_report import write_study_report

from browser import assert_drawn, browser_figures

STUDY_FIGURES = {"fig-search", "fig-curves", "fig-parameters"}
EVIL = "<img src=x onerror=alert(3)>"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    spec = {"data": {"dataset": "digits"}, "model": {"hidden": [16]}, "train": {"epochs": 3, "batch_size": 128},
            "tune": {"trials": 5, "space": {"train.lr": {"low": 1e-3, "high": 3e-2, "log": True},
                                            "model.hidden": {"choices": [[16], [32, 16]]},
                                            "model.dropout": {"low": 0.0, "high": 0.3}}}}
    return tune(spec, out=tmp_path_factory.mktemp("study"), study_name="digits", progress=None)


def test_the_study_page_lists_and_links_every_trial(study):
    assert study.report_path == study.study_dir / REPORT
    text = study.report_path.read_text(encoding="utf-8")
    assert len(study.trials) == 5
    for trial in study.trials:
        name = trial["run_dir"].rsplit("/", 1)[-1]
        # Each trial's row links to that trial's own run report, which exists.
        assert f'href="trials/{name}/{REPORT}"' in text
        assert (study.study_dir / "trials" / name / REPORT).is_file()
    assert f"{study.best_value:.4g}" in text
    assert "complete *" in text  # the best trial is marked
    for key in ("train.lr", "model.hidden", "model.dropout"):
        assert key in text
    assert json.loads(json.dumps(study.to_dict()))["report"] == str(study.report_path)


def test_a_real_browser_draws_the_search(study, tmp_path):
    page = tmp_path / REPORT
    shutil.copy(study.report_path, page)
    assert_drawn(browser_figures(page, tmp_path), STUDY_FIGURES)


def test_a_damaged_or_foreign_trial_folder_is_left_out_and_named(study, tmp_path):
    summary = study.to_dict()
    summary["study_dir"] = str(tmp_path / "copy")
    shutil.copytree(study.study_dir, tmp_path / "copy")
    trials = summary["trials"]
    # Trial 0's folder edited after the fact: its metrics.csv no longer matches run.json's hash.
    first = tmp_path / "copy" / "trials" / trials[0]["run_dir"].rsplit("/", 1)[-1]
    (first / "metrics.csv").write_text("epoch,train_loss\n1,0\n")
    # Trial 1 names a folder outside the study: never read, however valid it is.
    trials[1]["run_dir"] = str(study.study_dir / "trials" / trials[1]["run_dir"].rsplit("/", 1)[-1])
    for t in trials[2:]:
        t["run_dir"] = str(tmp_path / "copy" / "trials" / t["run_dir"].rsplit("/", 1)[-1])
    trials[0]["run_dir"] = str(first)
    trials[2]["params"]["model.hidden"] = EVIL  # strings from the journal are escaped like any other
    text = write_study_report(summary, {"train.lr": {"low": 1e-3, "high": 3e-2, "log": True},
                                        "model.hidden": {"choices": [[16], [32, 16]]},
                                        "model.dropout": {"low": 0.0, "high": 0.3}}).read_text(encoding="utf-8")
    assert "trials 0, 1 could not be read" in text
    assert EVIL not in text and "&lt;img src=x" in text


def test_a_study_with_failed_trials_still_gets_a_page(tmp_path):
    summary = {"study_dir": str(tmp_path), "study_name": "s", "metric": "val_accuracy", "direction": "maximize",
               "trials": [{"number": 0, "state": "fail", "value": None, "params": {"train.lr": 5.0},
                           "run_dir": None, "error": "the loss became NaN at step 3"}],
               "best_value": None, "best_params": None, "best_run_dir": None, "best_spec": None, "report": None}
    text = write_study_report(summary, {"train.lr": {"low": 1e-3, "high": 10.0, "log": True}}).read_text()
    assert "the loss became NaN at step 3" in text and "none yet" in text
