"""Which task a target calls for, on scikit-learn's own tables written as users write them."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import netfit
from netfit import NetfitError
from netfit.cli import main
from netfit.spec import Spec
from netfit.task import infer_task


def write_csv(path: Path, header: list[str], rows) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def diabetes_csv(tmp_path):
    """scikit-learn's diabetes table with its whole-number progression score as the last column."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes(scaled=False)
    return write_csv(tmp_path / "diabetes.csv", [*d.feature_names, "progression"],
                     [[*row, int(t)] for row, t in zip(d.data, d.target)])


@pytest.fixture
def linnerud_csv(tmp_path):
    from sklearn.datasets import load_linnerud

    d = load_linnerud()
    return write_csv(tmp_path / "linnerud.csv", [*d.feature_names, *d.target_names],
                     [[*map(int, row), *map(int, t)] for row, t in zip(d.data, d.target)])


@pytest.fixture
def iris_csv(tmp_path):
    from sklearn.datasets import load_iris

    d = load_iris()
    return write_csv(tmp_path / "iris.csv", [*d.feature_names, "species"],
                     [[*row, int(t)] for row, t in zip(d.data, d.target)])


def test_whole_number_regression_targets_train_as_regression_and_say_why(capsys, diabetes_csv, tmp_path):
    code = main(["train", "--set", f"data.path={diabetes_csv}", "--set", "data.target=progression",
                 "--set", "data.test_fraction=0.2", "--set", "model.hidden=[32]", "--set", "train.epochs=30",
                 "--out", str(tmp_path / "runs"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    first = err.splitlines()[0] if err else out.splitlines()[0]
    assert first.startswith("netfit: regression (inferred: ")
    assert "distinct integer targets in 354 rows; set train.task to change)" in first
    metrics = json.loads(out.splitlines()[-1])["metrics"]
    assert "test_r2" in metrics and "test_accuracy" not in metrics
    assert metrics["test_r2"] > 0.3  # a real regression, not 347 classes scoring 0.0


def test_linnerud_weight_is_regression_on_18_rows(linnerud_csv):
    spec = {"data": {"path": str(linnerud_csv), "target": "Weight", "val_fraction": 0.1},
            "model": {"hidden": [8]}, "train": {"epochs": 2}}
    run = netfit.fit(spec, out=None, progress=None)
    assert run.model.task == "regression" and run.model.preparation.output_size == 1


def test_few_whole_number_labels_are_classes(iris_csv):
    run = netfit.fit({"data": {"path": str(iris_csv), "target": "species"}, "model": {"hidden": [8]},
                      "train": {"epochs": 2}}, out=None, progress=None)
    assert run.model.task == "classification" and run.model.classes == ["0", "1", "2"]
    assert "3 distinct integer targets in 150 rows" in run.model.preparation.task_reason


def _task(y, **train):
    return infer_task(Spec(train=train), np.asarray(y))


@pytest.mark.parametrize("y, task", [
    (np.repeat(np.arange(10), 50), "classification"),         # digit ids
    (np.repeat(np.arange(100), 6), "classification"),         # CIFAR-100 style ids, 6 rows each
    (np.repeat([3, 4, 5, 6, 7, 8], 40), "classification"),    # wine quality: few values, many rows each
    (np.repeat([-1, 1], 30), "classification"),               # two values are two classes
    (np.array([0.0, 1.0] * 30), "classification"),            # labels saved as floats
    (np.array(["cat", "dog", "cat"]), "classification"),      # text
    (np.array([True, False, True]), "classification"),
    (np.arange(200) % 150 + 25, "regression"),                # scores: fewer than 2 rows per value
    (np.repeat(np.arange(18, 91), 30), "regression"),         # ages: many values that are not class ids
    (np.linspace(0, 1, 40), "regression"),                    # real values
    (np.random.default_rng(0).normal(size=(30, 3)), "regression"),  # several columns
])
def test_the_task_follows_the_targets(y, task):
    assert _task(y)[0] == task


def test_the_ambiguous_middle_is_refused_naming_both_choices():
    y = np.repeat([1, 2, 4, 5, 7, 9, 12, 15], 3)  # 8 values, 3 rows each, not class ids
    with pytest.raises(NetfitError, match=r"8 distinct integer targets in 24 rows could be class ids or quantities.*"
                                          r"train.task=classification.*train.task=regression"):
        _task(y)


def test_the_spec_decides_when_it_says(diabetes_csv):
    assert _task([1, 2, 3, 4] * 10, task="regression") == ("regression", "set in train.task")
    assert _task([0.5, 1.5] * 10, loss="cross_entropy")[0] == "classification"


def test_the_default_spec_lets_the_task_be_set(capsys, diabetes_csv, tmp_path):
    # The no-spec default and `netfit init` no longer pin cross_entropy, so --set train.task works.
    code = main(["train", "--set", f"data.path={diabetes_csv}", "--set", "data.target=progression",
                 "--set", "train.task=regression", "--set", "train.epochs=1", "--set", "model.hidden=[8]",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    starter = tmp_path / "starter.toml"
    assert main(["init", str(starter)]) == 0
    code = main(["train", str(starter), "--set", f"data.path={diabetes_csv}", "--set", "data.target=progression",
                 "--set", "train.task=regression", "--set", "train.epochs=1", "--set", "model.hidden=[8]",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err


def test_a_single_class_is_refused(tmp_path):
    X = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises(NetfitError, match=r"single value 1 in all \d+ training rows"):
        netfit.fit({"train": {"epochs": 1}}, X, np.ones(40, dtype=np.int64), out=None, progress=None)
    with pytest.raises(NetfitError, match="single value 'spam'"):
        netfit.fit({"train": {"epochs": 1}}, X, np.array(["spam"] * 40), out=None, progress=None)


def test_labels_that_are_not_ids_come_back_as_given():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    signs = np.where(y == 1, 1, -1)
    run = netfit.fit({"model": {"hidden": [16]}, "train": {"epochs": 3}}, X, signs, out=None, progress=None)
    assert run.model.classes == ["-1", "1"] and run.model.preparation.output_size == 2
    assert set(run.predict(X).tolist()) <= {-1, 1}
    assert run.metrics["val_accuracy"] > 0.8


def test_a_constant_target_from_an_object_column_is_named_as_a_plain_value():
    # pandas hands object columns over as numpy scalars inside an object array: the message shows 0.0, not np.float64(0.0).
    from netfit.task import refuse_constant_target

    with pytest.raises(NetfitError, match=r"single value 0\.0 in all 5"):
        refuse_constant_target(np.array([np.float64(0.0)] * 5, dtype=object), ["y"])
