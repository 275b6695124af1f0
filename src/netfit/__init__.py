"""netfit: define, train, evaluate and ship feed-forward networks from a small TOML spec.

>>> import netfit
>>> run = netfit.fit({"data": {"dataset": "mnist-sample"}, "train": {"epochs": 3}})  # doctest: +SKIP
>>> run.metrics["test_accuracy"]  # doctest: +SKIP
"""

from .api import Run, build_model, fit, load, resume
from .errors import NetfitError, TrainingInterrupted
from .exporter import export
from .lr_find import LRFinderResult, lr_find
from .spec import Spec, load_spec
from .trained import TrainedModel
from .tuning import TuneResult, tune
from .version import __version__

__all__ = ["Spec", "load_spec", "fit", "resume", "load", "build_model", "lr_find", "LRFinderResult", "Run",
           "TrainedModel", "export", "tune", "TuneResult", "NetfitError", "TrainingInterrupted", "__version__"]
