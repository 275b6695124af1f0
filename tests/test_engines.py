"""Engines on the CPU: chosen once, same trajectory, deliberate host syncs, recipes in the spec.

The CUDA-graph engine's checks need a GPU: tests/gpu/, run by scripts/gpu-checks.sh.
"""

import numpy as np
import pytest
import torch

import netfit
from netfit import NetfitError
from netfit.step import train_step


def _blobs(n=512, features=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    return (centres[y] + rng.normal(0, 1, size=(n, features))).astype(np.float32), y


def spec(**train):
    return {"model": {"hidden": [32, 16]}, "data": {"val_fraction": 0.25},
            "train": {"epochs": 3, "batch_size": 32, "device": "cpu", **train}}


def test_auto_engine_on_the_cpu_is_eager():
    X, y = _blobs()
    assert netfit.fit(spec(), X, y, out=None, progress=None).history.engine == "eager"


def test_graph_engine_on_the_cpu_is_refused_with_the_fix():
    X, y = _blobs()
    with pytest.raises(NetfitError, match='needs a CUDA device.*"eager"'):
        netfit.fit(spec(engine="graph"), X, y, out=None, progress=None)


def test_compiled_engine_follows_the_eager_trajectory():
    X, y = _blobs()
    curves = {}
    for engine in ("eager", "compile"):
        run = netfit.fit(spec(engine=engine, precision="fp32"), X, y, out=None, progress=None)
        assert run.history.engine == engine
        curves[engine] = [(r.train_loss, r.val_loss) for r in run.history.epochs]
    assert np.allclose(curves["eager"], curves["compile"], rtol=1e-4, atol=1e-6)


def test_losses_are_read_back_once_per_print_interval(monkeypatch):
    X, y = _blobs()
    calls = {"item": 0, "tolist": 0}
    real_item, real_tolist = torch.Tensor.item, torch.Tensor.tolist

    def item(self):
        calls["item"] += 1
        return real_item(self)

    def tolist(self):
        calls["tolist"] += 1
        return real_tolist(self)

    from netfit import api

    def count_training_only(*args, **kwargs):
        monkeypatch.setattr(torch.Tensor, "item", item)
        monkeypatch.setattr(torch.Tensor, "tolist", tolist)
        try:
            return fit_network(*args, **kwargs)
        finally:
            monkeypatch.setattr(torch.Tensor, "item", real_item)
            monkeypatch.setattr(torch.Tensor, "tolist", real_tolist)

    fit_network = api.fit_network
    monkeypatch.setattr(api, "fit_network", count_training_only)
    netfit.fit(spec(epochs=6, print_every=3), X, y, out=None, progress=None)
    # 6 epochs of 12 steps each, figures read at epochs 3 and 6: two syncs in all.
    assert calls == {"item": 0, "tolist": 2}


def test_schedule_reaches_the_optimizer_and_metrics_csv(tmp_path):
    X, y = _blobs()
    run = netfit.fit(spec(epochs=4, schedule={"name": "step", "step_epochs": 1, "gamma": 0.5}, lr=0.08),
                     X, y, out=tmp_path, progress=None)
    assert [r.lr for r in run.history.epochs] == pytest.approx([0.08, 0.04, 0.02, 0.01])
    rows = (run.run_dir / "metrics.csv").read_text().splitlines()[1:]
    assert [float(r.split(",")[4]) for r in rows] == pytest.approx([0.08, 0.04, 0.02, 0.01])


def test_gradient_clipping_bounds_the_step():
    torch.manual_seed(0)
    net = torch.nn.Linear(10, 1)
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    x, y = torch.randn(16, 10) * 100, torch.randn(16, 1) * 100
    train_step(net, torch.nn.MSELoss(), opt, x, y, clip_grad_norm=0.01)
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(net.parameters(), before)))
    assert moved.item() == pytest.approx(0.01, rel=1e-4)


def test_bf16_on_the_cpu_trains():
    X, y = _blobs()
    run = netfit.fit(spec(epochs=5, precision="bf16"), X, y, out=None, progress=None)
    assert run.metrics["val_accuracy"] > 0.9


def test_fp16_needs_cuda():
    X, y = _blobs()
    with pytest.raises(NetfitError, match="fp16.*CUDA"):
        netfit.fit(spec(precision="fp16"), X, y, out=None, progress=None)
