"""spec -> a plain ``torch.nn.Module`` that users can take into their own code.

The network is an ``nn.Sequential`` of named blocks::

    hidden1: Linear -> [BatchNorm1d] -> activation -> [Dropout]
    hidden2: ...
    output:  Linear

A table with categorical or text columns (``features.InputLayout`` not plain) gets the same
network with a :class:`TableInput` as ``hidden1.linear`` (or ``output`` when there is no hidden
layer): one Linear over [dense columns | category embeddings | bag of words], the bag part held as
an ``nn.EmbeddingBag`` so a batch of sparse rows is never densified.

It returns logits. Softmax or sigmoid is applied only when probabilities are asked for, because
the losses (cross-entropy, BCE-with-logits) fold it in with a numerically stable log-sum-exp.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import NetfitError
from .features import InputLayout, TableBatch
from .files import require_memory
from .registry import Registry
from .spec import ModelSpec

__all__ = ["ACTIVATION_LAYERS", "TableInput", "build_network", "import_module_class", "load_weights", "parameter_count", "count_parameters",
           "layer_table"]

ACTIVATION_LAYERS: Registry[Callable[[], nn.Module]] = Registry("activation")
ACTIVATION_LAYERS.register("relu", nn.ReLU)
ACTIVATION_LAYERS.register("leaky_relu", nn.LeakyReLU)
ACTIVATION_LAYERS.register("gelu", nn.GELU)
ACTIVATION_LAYERS.register("silu", nn.SiLU)
ACTIVATION_LAYERS.register("tanh", nn.Tanh)
ACTIVATION_LAYERS.register("sigmoid", nn.Sigmoid)

# Gain names torch.nn.init understands for each activation (gelu and silu are close to relu).
_INIT_NONLINEARITY = {"relu": "relu", "leaky_relu": "leaky_relu", "gelu": "relu", "silu": "relu",
                      "tanh": "tanh", "sigmoid": "sigmoid"}


class TableInput(nn.Module):
    """The first Linear layer of a table network, reading a :class:`~netfit.features.TableBatch`.

    Mathematically ``Linear(layout.width, out)`` over the row [dense | embeddings | bag of words]:
    ``dense`` holds the weights of the dense part and the embeddings, ``bag`` (an EmbeddingBag
    summing per-sample-weighted rows of its weight) those of the bag of words. Both start as one
    such Linear would, uniform in +-1/sqrt(layout.width), so init and learning rates behave alike.
    """

    def __init__(self, layout: InputLayout, out_features: int) -> None:
        super().__init__()
        self.layout = layout
        self.embeddings = nn.ModuleList(nn.Embedding(codes, width, padding_idx=0) for codes, width in layout.embeddings)
        with warnings.catch_warnings():
            # A text-only table has no dense input: the Linear still holds the layer's bias, and
            # torch's warning that initialising its empty weight does nothing is noise to a user.
            warnings.filterwarnings("ignore", "Initializing zero-element tensors", UserWarning)
            self.dense = nn.Linear(layout.dense + sum(width for _, width in layout.embeddings), out_features)
        self.bag = nn.EmbeddingBag(layout.vocabulary, out_features, mode="sum") if layout.vocabulary else None
        bound = 1 / math.sqrt(max(layout.width, 1))
        nn.init.uniform_(self.dense.weight, -bound, bound)
        nn.init.uniform_(self.dense.bias, -bound, bound)
        if self.bag is not None:
            nn.init.uniform_(self.bag.weight, -bound, bound)

    def forward(self, batch: TableBatch) -> torch.Tensor:
        parts = [batch.dense] + [embedding(batch.codes[:, i]) for i, embedding in enumerate(self.embeddings)]
        out = self.dense(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
        if self.bag is not None:
            out = out + self.bag(batch.bag_indices, batch.bag_offsets, per_sample_weights=batch.bag_weights)
        return out


def build_network(model: ModelSpec, input_size: int, output_size: int, module: type | None = None,
                  layout: InputLayout | None = None) -> nn.Module:
    """Build the network a ``[model]`` section describes, for resolved input and output widths.

    ``layout`` (a table with embedded categories or text) puts a :class:`TableInput` first; its
    ``width`` is then the input width.

    A spec with ``module = "package.module:ClassName"`` builds the user's own class with
    ``kwargs``: ``module`` when the caller passes the class, else imported here. Callers import
    only for a spec the user gave them, never for one read from a run folder.
    """
    if model.module is not None:
        cls = module if module is not None else import_module_class(model.module)
        return _construct_custom(cls, model)
    table = layout is not None and not layout.plain
    if table:
        input_size = layout.width
    parameters = parameter_count(model, input_size, output_size) + (
        sum(codes * width for codes, width in layout.embeddings) if table else 0)
    # Weights, gradients and up to two optimizer moments, in float32: refused here rather than by
    # the allocator, whose message would be a C++ stack trace.
    require_memory(parameters * 4 * 4, f"the network's {parameters:,} parameters with their gradients and "
                   "optimizer state", "use smaller model.hidden widths")
    blocks: list[tuple[str, nn.Module]] = []
    width = input_size

    def linear(fan_in: int, fan_out: int) -> nn.Module:
        first = not blocks
        return TableInput(layout, fan_out) if first and table else nn.Linear(fan_in, fan_out)

    for i, size in enumerate(model.hidden, start=1):
        layers: list[tuple[str, nn.Module]] = [("linear", linear(width, size))]
        if model.batchnorm:
            layers.append(("batchnorm", nn.BatchNorm1d(size)))
        layers.append(("activation", ACTIVATION_LAYERS.get(model.activation)()))
        if model.dropout > 0:
            layers.append(("dropout", nn.Dropout(model.dropout)))
        blocks.append((f"hidden{i}", nn.Sequential(OrderedDict(layers))))
        width = size
    blocks.append(("output", linear(width, output_size)))
    network = nn.Sequential(OrderedDict(blocks))
    _initialise(network, model)
    return network


def _construct_custom(cls: type, model: ModelSpec) -> nn.Module:
    try:
        network = cls(**model.kwargs)
    except TypeError as err:
        raise NetfitError(f"model.module {model.module!r} could not be built with model.kwargs "
                          f"{model.kwargs}: {err}; fix model.kwargs") from None
    if not isinstance(network, nn.Module):
        raise NetfitError(f"model.module {model.module!r} built a {type(network).__name__}, not a torch.nn.Module")
    return network


def import_module_class(reference: str) -> type:
    """Import ``"package.module:ClassName"``; a user error if either part is missing."""
    module_name, _, class_name = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise NetfitError(f"model.module: cannot import {module_name!r} ({err}); check the name and that "
                          "its folder is on PYTHONPATH") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise NetfitError(f"model.module: {module_name!r} has no class {class_name!r}")
    return cls


def _initialise(network: nn.Module, model: ModelSpec) -> None:
    if model.init == "default":
        return
    nonlinearity = _INIT_NONLINEARITY[model.activation]
    for name, module in network.named_modules():
        if isinstance(module, TableInput):
            _initialise_table_input(module, model.init, "linear" if name == "output" else nonlinearity)
        if not isinstance(module, nn.Linear) or name.endswith(".dense"):
            continue
        # The output layer feeds the loss directly, so it gets the linear gain.
        act = "linear" if name == "output" else nonlinearity
        if model.init == "kaiming":
            nn.init.kaiming_normal_(module.weight, nonlinearity=act)
        else:
            nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain(act))
        nn.init.zeros_(module.bias)


def _initialise_table_input(layer: TableInput, init: str, act: str) -> None:
    # As for one Linear over the whole row: the fan-in is the layout's full width, not each part's.
    fan_in, fan_out = layer.layout.width, layer.dense.out_features
    gain = nn.init.calculate_gain(act)
    if init == "kaiming":
        bound = math.sqrt(3.0) * gain / math.sqrt(fan_in)
    else:
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    weights = [layer.dense.weight] + ([layer.bag.weight] if layer.bag is not None else [])
    for weight in weights:
        nn.init.uniform_(weight, -bound, bound)
    nn.init.zeros_(layer.dense.bias)


def parameter_count(model: ModelSpec, input_size: int, output_size: int) -> int:
    """Parameters of netfit's own network for these widths, counted from the spec (nothing is built)."""
    widths = [input_size, *model.hidden, output_size]
    count = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
    return count + (2 * sum(model.hidden) if model.batchnorm else 0)


def count_parameters(network: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


@torch.no_grad()
def layer_table(network: nn.Module, input_size: int, layout: InputLayout | None = None) -> list[tuple[str, str, tuple[int, ...], int]]:
    """(name, layer type, output shape, parameters) for each leaf layer, from a forward pass of one row."""
    rows: list[tuple[str, str, tuple[int, ...], int]] = []
    hooks = []
    for name, module in network.named_modules():
        if len(list(module.children())) == 0:
            def record(mod, _inp, out, name=name):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
                rows.append((name, type(mod).__name__, shape,
                             sum(p.numel() for p in mod.parameters(recurse=False))))
            hooks.append(module.register_forward_hook(record))
    was_training = network.training
    network.eval()  # BatchNorm cannot run train mode on a batch of one
    try:
        network(_one_row(input_size, layout))
    finally:
        network.train(was_training)
        for h in hooks:
            h.remove()
    return rows


def _one_row(input_size: int, layout: InputLayout | None) -> torch.Tensor | TableBatch:
    """A row of zeros in the form the network reads."""
    if layout is None or layout.plain:
        return torch.zeros(1, input_size)
    empty = torch.zeros(0, dtype=torch.long)
    return TableBatch(torch.zeros(1, layout.dense), torch.zeros(1, len(layout.embeddings), dtype=torch.long),
                      empty, torch.zeros(1, dtype=torch.long), torch.zeros(0))


def load_weights(network: nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """Put saved weights into ``network``, or say in one line which of them do not fit it."""
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        lines = str(err).strip().splitlines()
        raise NetfitError(f"{source}: the weights do not fit the network its spec describes "
                          f"({lines[1].strip() if len(lines) > 1 else lines[0]})") from None
