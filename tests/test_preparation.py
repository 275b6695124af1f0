"""A saved preparation is untrusted data: every field, and how the fields fit, is checked when read."""

import copy

import numpy as np
import pytest
import torch

import netfit
from netfit import NetfitError
from netfit.preparation import Preparation


@pytest.fixture(scope="module")
def saved():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    run = netfit.fit({"model": {"hidden": [8]}, "train": {"epochs": 1}}, X, y, out=None, progress=None)
    return run.model.preparation.to_dict()


def test_a_saved_preparation_reads_back_as_itself(saved):
    assert Preparation.from_dict(copy.deepcopy(saved)).to_dict() == saved


@pytest.mark.parametrize("edit, words", [
    (lambda p: p.update(task="banana"), ["task = 'banana'"]),
    (lambda p: p.update(classes=["x"]), ["classes has 1 entries", "3"]),
    (lambda p: p["input_scaler"].update(shift=[0.0, 1.0]), ["input_scaler", "2 and 4 values", "needs 4"]),
    (lambda p: p["input_scaler"].update(scale=[1.0, 1.0, 0.0, 1.0]), ["scale finite and positive"]),
    (lambda p: p.update(input_size="4"), ["input_size = '4'"]),
    (lambda p: p.update(output_size=10**12), ["output_size"]),
    (lambda p: p.update(surprise=1), ["surprise"]),
    (lambda p: p.pop("classes"), ["classes"]),
    (lambda p: p.update(labels="integers", classes=["setosa", "versicolor", "virginica"]), ["whole numbers"]),
    (lambda p: p.update(feature_names=["a"]), ["feature_names has 1 names but input_size is 4"]),
    (lambda p: p.update(test_sha256="not a hash"), ["test_sha256"]),
    (lambda p: p.update(feature_names=["a", "a", "b", "c"]), ["column 'a' twice"]),
    (lambda p: p.update(feature_names=["a", "b", "c", "species"], target_names=["species"]),
     ["column 'species' twice"]),
    (lambda p: p["target_scaler"].update(method="standardize", shift=[0.0], scale=[1.0]),
     ["target_scaler", "does not apply to a classification run"]),
])
def test_a_crafted_preparation_is_refused_naming_the_field(saved, edit, words):
    raw = copy.deepcopy(saved)
    edit(raw)
    with pytest.raises(NetfitError) as err:
        Preparation.from_dict(raw, source="run.json")
    message = str(err.value)
    assert message.startswith("run.json: ") and "\n" not in message
    assert all(w in message for w in words), message


def test_a_preparation_that_is_not_a_table_is_refused():
    for raw in (None, [], "text", 3):
        with pytest.raises(NetfitError, match="run.json"):
            Preparation.from_dict(raw, source="run.json")


def test_predict_scales_raw_rows_as_the_training_rows_were():
    # Columns far from zero and of very different sizes: without the saved scaling at predict time
    # the network would see numbers it never saw in training.
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    X = X * np.array([1.0, 100.0, 0.01, 1.0]) + np.array([1000.0, 0.0, -50.0, 0.0])
    model = netfit.fit({"model": {"hidden": [16]}, "train": {"epochs": 40, "lr": 0.01}}, X, y,
                       out=None, progress=None).model
    scaler = model.preparation.input_scaler
    assert scaler.method == "standardize"
    with torch.no_grad():
        by_hand = model.network(torch.from_numpy(scaler.transform(X))).argmax(dim=1).numpy()
        unscaled = model.network(torch.from_numpy(X.astype(np.float32))).argmax(dim=1).numpy()
    np.testing.assert_array_equal(model.predict(X), by_hand)
    assert (model.predict(X) == y).mean() > 0.9
    assert (unscaled == y).mean() < 0.8  # the check above would catch a predict that skipped scaling
