"""scikit-learn estimators over :func:`netfit.fit`: ``NetfitClassifier`` and ``NetfitRegressor``.

>>> from sklearn.model_selection import GridSearchCV
>>> from netfit.sklearn import NetfitClassifier
>>> search = GridSearchCV(NetfitClassifier(epochs=20), {"hidden": [(16,), (64,)], "lr": [1e-3, 1e-2]})  # doctest: +SKIP

The parameters are flat, grid-searchable names for spec fields; ``fit`` builds a spec from them, so the
spec stays the one place where values are checked. This module imports scikit-learn (about a second),
which is why ``import netfit`` does not import it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from safetensors.torch import load as load_tensors
from safetensors.torch import save as dump_tensors
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .api import fit as netfit_fit
from .errors import NetfitError
from .model import build_network, load_weights
from .preparation import Preparation
from .spec import Spec, spec_from_dict
from .trained import TrainedModel

__all__ = ["NetfitClassifier", "NetfitRegressor", "InvalidParameterError"]


class InvalidParameterError(NetfitError, ValueError):
    """A parameter or training problem seen through the scikit-learn face.

    Still a :class:`~netfit.errors.NetfitError`, and also a ``ValueError``: scikit-learn's
    tools and checks expect bad parameters and unusable data to raise ``ValueError``.
    """


class _NetfitEstimator(BaseEstimator):
    """What both estimators share: parameters -> spec, training, prediction and pickling."""

    _task = ""  # the spec's train.task, set by each subclass

    def __init__(self, hidden: tuple[int, ...] = (512, 256), activation: str = "relu", dropout: float = 0.0,
                 batchnorm: bool = False, lr: float = 1e-3, optimizer: str = "adam", weight_decay: float = 0.0,
                 batch_size: int = 64, epochs: int = 10, val_fraction: float = 0.0,
                 scaling: str = "standardize", random_state: Any = 0, device: str = "cpu") -> None:
        # scikit-learn's contract: __init__ stores, fit validates (clone and set_params rely on it).
        self.hidden = hidden
        self.activation = activation
        self.dropout = dropout
        self.batchnorm = batchnorm
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.val_fraction = val_fraction
        self.scaling = scaling
        self.random_state = random_state
        self.device = device

    def _spec(self) -> Spec:
        """The spec these parameters describe, checked by netfit's own spec validation."""
        hidden = [self.hidden] if isinstance(self.hidden, (int, np.integer)) else list(self.hidden)
        raw = {
            "model": {"hidden": hidden, "activation": self.activation, "dropout": self.dropout,
                      "batchnorm": self.batchnorm},
            # The caller owns the rows: no test part is cut off, and validation only when asked for.
            "data": {"val_fraction": self.val_fraction, "test_fraction": 0.0, "split_seed": self._seed(),
                     "scaling": self.scaling},
            "train": {"task": self._task, "optimizer": self.optimizer, "lr": self.lr,
                      "weight_decay": self.weight_decay, "batch_size": self.batch_size, "epochs": self.epochs,
                      "seed": self._seed(), "device": self.device},
        }
        try:
            return spec_from_dict(raw, source=f"{type(self).__name__} parameters")
        except NetfitError as err:
            raise InvalidParameterError(str(err)) from None

    def _seed(self) -> int:
        # An int is used as it is (random_state=3 trains as train.seed = 3); None or a RandomState
        # draws one, as scikit-learn's convention has it. One seed drives weights, shuffling and split.
        if isinstance(self.random_state, (int, np.integer)) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _train(self, spec: Spec, X: np.ndarray, y: np.ndarray) -> None:
        try:
            run = netfit_fit(spec, X, y, out=None, progress=None)
        except NetfitError as err:
            if isinstance(err, InvalidParameterError):
                raise
            raise InvalidParameterError(str(err)) from err
        self.model_ = run.model
        self.history_ = run.history

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")  # set last in fit, so a fit that failed half way is not fitted

    def _logits(self, X: Any) -> Any:
        check_is_fitted(self)
        # reset=False checks the width and column names against those seen by fit, in sklearn's words.
        X = validate_data(self, X, reset=False, dtype=np.float32)
        return self.model_.logits(X)

    # Pickling (n_jobs, joblib.dump): the network travels as safetensors bytes with the spec and the
    # preparation as plain dicts, so unpickling builds netfit's own network and never a pickled module.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: BaseEstimator may hand back __dict__ itself
        model = state.pop("model_", None)
        if model is not None:
            weights = {k: v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()}
            state["_netfit_model"] = {"spec": model.spec.to_dict(), "preparation": model.preparation.to_dict(),
                                      "weights": dump_tensors(weights)}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        saved = state.pop("_netfit_model", None)
        super().__setstate__(state)
        if saved is not None:
            spec = spec_from_dict(saved["spec"], source="pickled estimator spec")
            prep = Preparation.from_dict(saved["preparation"], source="pickled estimator preparation")
            network = build_network(spec.model, prep.input_size, prep.output_size, None, prep.layout)
            load_weights(network, load_tensors(saved["weights"]), "pickled estimator")
            self.model_ = TrainedModel(network, spec, prep)


class NetfitClassifier(ClassifierMixin, _NetfitEstimator):
    """A netfit network as a scikit-learn classifier (softmax over ``classes_``).

    Parameters map onto the spec: ``hidden`` -> model.hidden, ``activation``, ``dropout`` and
    ``batchnorm`` -> model.*, ``lr``, ``optimizer``, ``weight_decay``, ``batch_size``, ``epochs``,
    ``device`` -> train.*, ``val_fraction`` and ``scaling`` -> data.*, ``random_state`` -> train.seed
    and data.split_seed. Fitted: ``classes_``, ``n_features_in_``, ``feature_names_in_`` (for
    tables with column names), ``history_`` (netfit's per-epoch record) and ``model_`` (a
    :class:`netfit.TrainedModel`).
    """

    _task = "classification"

    def fit(self, X: Any, y: Any) -> "NetfitClassifier":
        """Train a new network on ``X`` (numbers, rows x features) and labels ``y``; returns self."""
        spec = self._spec()  # parameters first: a bad one is named before the data is looked at
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        # Labels become ids 0..K-1 here so that any labels sklearn allows (text, bools, floats such as
        # 1.0) come back exactly as given, as classes_[id], and netfit always sees a plain K-class task.
        self.classes_, ids = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise InvalidParameterError(f"{type(self).__name__} needs at least 2 classes in y, got 1 class "
                                        f"({self.classes_[0]!r}); there is nothing to tell apart")
        self._train(spec, X, ids.astype(np.int64))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (rows, len(classes_)), columns in the order of ``classes_``."""
        logits = self._logits(X)  # checks fitted-ness before model_ is read
        return self.model_.proba_from_logits(logits).astype(np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row, as a label of ``classes_``."""
        # argmax of the logits is the argmax of predict_proba: the two always agree.
        ids = self._logits(X).argmax(dim=1).numpy()  # fitted-ness is checked here, before classes_ is read
        return self.classes_[ids]


class NetfitRegressor(RegressorMixin, _NetfitEstimator):
    """A netfit network as a scikit-learn regressor; ``y`` may have several columns (one output each).

    Parameters and fitted attributes are those of :class:`NetfitClassifier`, without ``classes_``.
    Targets are standardized on the training rows and predictions given back in ``y``'s units.
    """

    _task = "regression"

    def fit(self, X: Any, y: Any) -> "NetfitRegressor":
        """Train a new network on ``X`` and numeric targets ``y`` (one or several columns); returns self."""
        spec = self._spec()  # parameters first: a bad one is named before the data is looked at
        X, y = validate_data(self, X, y, dtype=np.float32, multi_output=True, y_numeric=True)
        if len(y) < 2:  # said in sklearn's words; netfit would call one row a constant target
            raise InvalidParameterError(f"{type(self).__name__} needs at least 2 samples, got n_samples = {len(y)}")
        self._train(spec, X, np.asarray(y, dtype=np.float32))
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values: shape (rows,) for one target, (rows, targets) for several."""
        logits = self._logits(X)  # checks fitted-ness before model_ is read
        return self.model_.predictions_from_logits(logits).astype(np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # netfit trains one output per target column
        return tags
