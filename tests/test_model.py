"""Contract tests over every registered activation, loss and optimizer, and the network's shape."""

import typing

import pytest
import torch
from torch import nn

from netfit import build_model
from netfit.losses import LOSSES, build_loss
from netfit.model import ACTIVATION_LAYERS, build_network, layer_table
from netfit.optim import OPTIMIZERS, build_optimizer
from netfit.spec import ACTIVATIONS, LossSpec, ModelSpec, OptimizerSpec, spec_from_dict


def _union_names(annotated) -> set[str]:
    union = typing.get_args(annotated)[0]
    return {typing.get_args(m.model_fields["name"].annotation)[0] for m in typing.get_args(union)}


def test_every_spec_choice_has_an_implementation_and_back():
    assert set(ACTIVATIONS) == set(ACTIVATION_LAYERS.names())
    assert _union_names(LossSpec) == set(LOSSES.names())
    assert _union_names(OptimizerSpec) == set(OPTIMIZERS.names())


def test_network_is_named_blocks_returning_logits():
    net = build_network(ModelSpec(hidden=[512, 256], batchnorm=True, dropout=0.2), 784, 10)
    assert isinstance(net, nn.Sequential)
    assert [name for name, _ in net.named_children()] == ["hidden1", "hidden2", "output"]
    assert [n for n, _ in net.hidden1.named_children()] == ["linear", "batchnorm", "activation", "dropout"]
    out = net.eval()(torch.randn(5, 784))
    assert out.shape == (5, 10)
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))  # logits, not probabilities
    params = sum(p.numel() for p in build_network(ModelSpec(), 784, 10).parameters())
    assert params == 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("init", ["default", "kaiming", "xavier"])
def test_every_activation_and_init_trains_a_step(activation, init):
    torch.manual_seed(0)
    net = build_network(ModelSpec(hidden=[16, 8], activation=activation, init=init, batchnorm=True), 6, 3)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_takes_logits_and_targets(name):
    spec = spec_from_dict({"data": {"dataset": "digits"}, "train": {"loss": name}})
    outputs = {"cross_entropy": 4, "bce": 1}.get(name, 2)
    logits = torch.randn(8, outputs, requires_grad=True)
    if name == "cross_entropy":
        y = torch.randint(0, 4, (8,))
    elif name == "bce":
        y = torch.randint(0, 2, (8, 1)).float()
    else:
        y = torch.randn(8, 2)
    loss = build_loss(spec.train.loss, y, outputs)(logits, y)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_balanced_class_weights_follow_training_counts():
    spec = spec_from_dict({"data": {"dataset": "digits"},
                           "train": {"loss": {"name": "cross_entropy", "class_weights": "balanced"}}})
    y = torch.tensor([0, 0, 0, 1])
    weight = build_loss(spec.train.loss, y, 2).weight
    assert weight[1] / weight[0] == pytest.approx(3.0)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_lowers_the_loss(name):
    torch.manual_seed(0)
    spec = spec_from_dict({"data": {"dataset": "digits"}, "train": {"optimizer": name}})
    net = build_network(ModelSpec(hidden=[16]), 4, 1)
    x = torch.randn(64, 4)
    y = x.sum(dim=1, keepdim=True)
    opt = build_optimizer(net.parameters(), spec.train.optimizer, 1e-2, 0.0)
    first = nn.functional.mse_loss(net(x), y).item()
    for _ in range(50):
        opt.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    assert nn.functional.mse_loss(net(x), y).item() < first


def test_build_model_from_spec_with_fixed_widths():
    net = build_model({"model": {"input": 10, "output": 3, "hidden": [7]}})
    assert net(torch.randn(2, 10)).shape == (2, 3)


def test_layer_table_lists_shapes_and_parameters():
    rows = layer_table(build_network(ModelSpec(hidden=[32]), 20, 4), 20)
    assert rows[0] == ("hidden1.linear", "Linear", (1, 32), 20 * 32 + 32)
    assert rows[-1] == ("output", "Linear", (1, 4), 32 * 4 + 4)


def test_custom_module_is_imported_only_when_the_spec_names_it():
    net = build_network(ModelSpec(module="custom_module:TinyNet", kwargs={"width": 5}), 64, 10)
    assert type(net).__name__ == "TinyNet" and net.body[0].out_features == 5
