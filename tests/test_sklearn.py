"""The scikit-learn estimators: sklearn's own estimator checks, search, pipelines and pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits, load_iris
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from netfit.errors import NetfitError
from netfit.sklearn import InvalidParameterError, NetfitClassifier, NetfitRegressor

# Small and quick, but able to learn: several checks require a good score on toy problems.
FAST = dict(hidden=(16,), epochs=20, lr=1e-2, batch_size=32)


@parametrize_with_checks([NetfitClassifier(**FAST), NetfitRegressor(**FAST)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_grid_search_tries_every_combination_and_refits_the_best():
    X, y = load_iris(return_X_y=True)
    grid = {"hidden": [(16,), (32,)], "lr": [1e-3, 1e-2]}
    search = GridSearchCV(NetfitClassifier(epochs=10, batch_size=16), grid, cv=3).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.get_params()["hidden"] in [(16,), (32,)]
    # lr=1e-3 for 10 epochs of 6 steps barely moves; 1e-2 learns iris: the search must see the difference.
    assert search.best_params_["lr"] == 1e-2
    assert search.best_score_ > 0.85


def test_grid_search_with_two_worker_processes_matches_one():
    # n_jobs=2 sends the estimator to other processes by pickle; seeded training gives the same scores there.
    X, y = load_iris(return_X_y=True)
    grid = {"hidden": [(8,), (16,)]}
    estimator = NetfitClassifier(epochs=5, lr=1e-2, batch_size=16)
    serial = GridSearchCV(estimator, grid, cv=3).fit(X, y)
    parallel = GridSearchCV(estimator, grid, cv=3, n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(serial.cv_results_["mean_test_score"], parallel.cv_results_["mean_test_score"])


def test_pipeline_with_a_scaler_and_cross_val_score_on_digits():
    X, y = load_digits(return_X_y=True)
    pipe = Pipeline([("scale", StandardScaler()),
                     ("net", NetfitClassifier(hidden=(32,), epochs=5, lr=1e-2, scaling="none"))])
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.min() > 0.85, scores


def test_regressor_learns_diabetes():
    X, y = load_diabetes(return_X_y=True)
    scores = cross_val_score(NetfitRegressor(hidden=(32,), epochs=15, lr=1e-2, batch_size=32), X, y, cv=3)
    assert scores.mean() > 0.35, scores  # sklearn's LinearRegression scores about 0.49 here


def test_pickle_round_trip_predicts_identically_and_holds_no_module():
    X, y = load_iris(return_X_y=True)
    clf = NetfitClassifier(**FAST).fit(X, y)
    blob = pickle.dumps(clf)
    # The network travels as safetensors bytes, not as a pickled torch module.
    assert b"torch.nn" not in blob and b"netfit.model" not in blob
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    assert back.get_params() == clf.get_params()


def test_same_random_state_same_predictions_and_another_differs():
    X, y = load_iris(return_X_y=True)
    a = NetfitClassifier(**FAST, random_state=1).fit(X, y).predict_proba(X)
    b = NetfitClassifier(**FAST, random_state=1).fit(X, y).predict_proba(X)
    c = NetfitClassifier(**FAST, random_state=2).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_labels_come_back_as_given_and_fitted_attributes_are_set():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = NetfitClassifier(**FAST).fit(X, names)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert set(clf.predict(X)) <= set(clf.classes_) and clf.score(X, names) > 0.9
    assert clf.n_features_in_ == 4 and len(clf.history_.epochs) == FAST["epochs"]
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 3)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))


def test_feature_names_are_kept_from_a_table():
    pa = pytest.importorskip("pyarrow")
    X, y = load_iris(return_X_y=True)
    table = pa.table({f"f{i}": X[:, i] for i in range(4)})
    clf = NetfitClassifier(**FAST).fit(table, y)
    assert list(clf.feature_names_in_) == ["f0", "f1", "f2", "f3"]


def test_regressor_with_two_targets_predicts_two_columns():
    X, y = load_diabetes(return_X_y=True)
    Y = np.column_stack([y, -2 * y])
    pred = NetfitRegressor(**FAST).fit(X, Y).predict(X)
    assert pred.shape == (len(X), 2)
    assert np.corrcoef(pred[:, 0], pred[:, 1])[0, 1] < -0.9  # the second column learned its own sign


@pytest.mark.parametrize("params, words", [
    ({"hidden": (0,)}, "hidden"),
    ({"activation": "nope"}, "activation"),
    ({"optimizer": "nadam"}, "optimizer"),
    ({"lr": -1.0}, "lr"),
    ({"val_fraction": 1.5}, "val_fraction"),
])
def test_bad_parameters_raise_netfits_error_that_is_a_value_error(params, words):
    X, y = load_iris(return_X_y=True)
    with pytest.raises(InvalidParameterError, match=words) as caught:
        NetfitClassifier(**params).fit(X, y)
    assert isinstance(caught.value, NetfitError) and isinstance(caught.value, ValueError)
