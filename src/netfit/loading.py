"""Loading a finished run as a TrainedModel, after verifying every file; no code is imported on a run's say-so."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .errors import NetfitError
from .model import build_network, import_module_class, load_weights
from .rundir import read_run
from .spec import Spec
from .trained import TrainedModel

__all__ = ["load", "custom_module"]


def load(path: str | Path, module: type[nn.Module] | None = None, trust_module: bool = False) -> TrainedModel:
    """Load a run directory as a :class:`TrainedModel`, after verifying every file's hash.

    Nothing is unpickled and no code is imported on the run's say-so: a run trained with a
    custom ``model.module`` needs that class passed as ``module``, or ``trust_module=True`` to
    import the class the run names (only for runs you trust).
    """
    files = read_run(path)
    spec, prep = files.spec, files.preparation
    module = custom_module(spec, module, trust_module, Path(path), "loading")
    network = build_network(spec.model, prep.input_size, prep.output_size, module, prep.layout)
    load_weights(network, files.state_dict, files.path)
    return TrainedModel(network, spec, prep, files.metrics, files.path)


def custom_module(spec: Spec, module: type[nn.Module] | None, trusted: bool, run_dir: Path,
                   doing: str) -> type[nn.Module] | None:
    """The class for a run's own ``model.module``: the one passed, or imported only when trusted."""
    if spec.model.module is None or module is not None:
        return module
    if not trusted:
        raise NetfitError(f"run {str(run_dir)!r} uses your own module {spec.model.module!r}; {doing} never imports "
                          "code named in a run folder: pass --trust-module if you trust this run (in Python: "
                          "module=YourClass or trust_module=True)")
    return import_module_class(spec.model.module)
