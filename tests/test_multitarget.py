"""Several regression targets at once: trained, reported (R^2 one way everywhere) and predicted."""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import r2_score

import netfit
from netfit.cli import main


def _linnerud():
    from sklearn.datasets import load_linnerud

    d = load_linnerud()
    return d.data, d.target, list(d.feature_names), list(d.target_names)


SPEC = {"model": {"hidden": [16]}, "data": {"val_fraction": 0.25},
        "train": {"epochs": 20, "optimizer": {"name": "sgd", "momentum": 0.9}, "lr": 0.01}}


def test_an_npz_with_three_targets_trains_and_predicts_three_columns(capsys, tmp_path):
    X, Y, _, _ = _linnerud()
    np.savez(tmp_path / "linnerud.npz", X=X, y=Y.astype(np.int64))
    code = main(["train", "--set", f"data.path={tmp_path / 'linnerud.npz'}", "--set", "model.hidden=[8]",
                 "--set", "train.epochs=3", "--out", str(tmp_path / "runs"), "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    run_dir = json.loads(out)["run_dir"]
    np.save(tmp_path / "rows.npy", X[:5])
    assert main(["predict", run_dir, str(tmp_path / "rows.npy"), "-o", str(tmp_path / "pred.csv")]) == 0
    rows = list(csv.reader((tmp_path / "pred.csv").open()))
    assert rows[0] == ["target_0", "target_1", "target_2"]
    assert len(rows) == 6 and all(len(r) == 3 for r in rows[1:])
    assert all(float(v) == float(v) for r in rows[1:] for v in r)  # numbers, not text lists


def test_r2_is_the_same_figure_per_epoch_and_at_the_end(tmp_path):
    X, Y, _, _ = _linnerud()
    run = netfit.fit(SPEC, X, Y, out=None, progress=None)
    from netfit.data import split_rows

    _, held = split_rows(len(X), 0.25, 0)
    expected = r2_score(Y[held], run.model.predict(X[held]))  # scikit-learn, uniform average, target units
    assert run.metrics["val_r2"] == pytest.approx(expected, abs=1e-5)
    assert run.history.epochs[-1].val_metric == pytest.approx(expected, abs=1e-4)


def test_evaluate_reports_r2_per_target(tmp_path):
    X, Y, _, names = _linnerud()
    run = netfit.fit(SPEC, X, Y, out=tmp_path, progress=None)
    report = run.model.evaluate(X, Y)
    assert [t["target"] for t in report["per_target"]] == ["target_0", "target_1", "target_2"]
    per_target = r2_score(Y, run.model.predict(X), multioutput="raw_values")
    assert [t["r2"] for t in report["per_target"]] == pytest.approx(per_target.tolist(), abs=1e-5)
    assert report["r2"] == pytest.approx(per_target.mean(), abs=1e-5)
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    predicted = run.model.predict(X)
    assert report["mae"] == pytest.approx(mean_absolute_error(Y, predicted), rel=1e-5)
    rmse = np.sqrt(mean_squared_error(Y, predicted, multioutput="raw_values")).mean()  # root_mean_squared_error
    assert report["rmse"] == pytest.approx(rmse, rel=1e-5)


def test_evaluate_prints_each_target(capsys, tmp_path):
    X, Y, _, _ = _linnerud()
    run = netfit.fit(SPEC, X, Y, out=tmp_path, progress=None)
    np.savez(tmp_path / "all.npz", X=X, y=Y)
    assert main(["evaluate", str(run.run_dir), "--data", str(tmp_path / "all.npz")]) == 0
    out = capsys.readouterr().out
    assert "(averaged over targets)" in out
    assert [line.split()[0] for line in out.splitlines()[-3:]] == ["target_0", "target_1", "target_2"]


def test_several_targets_cannot_be_classes():
    X, Y, _, _ = _linnerud()
    with pytest.raises(netfit.NetfitError, match="3 columns.*several target columns are for regression"):
        netfit.fit({**SPEC, "train": {"task": "classification", "epochs": 1}}, X, Y.astype(np.int64), out=None,
                   progress=None)
