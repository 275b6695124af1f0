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
