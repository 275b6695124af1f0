"""The training loop's guarantees: determinism, fresh shuffles, train/eval modes, early stopping."""

import numpy as np
import pytest
import torch

import netfit
from netfit.splits import Split
from netfit.callbacks import Training
from netfit.scaling import Scaler
from netfit.spec import Spec
from netfit.train import fit_network


def _blobs(n=600, features=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    X = centres[y] + rng.normal(0, 1, size=(n, features))
    return X.astype(np.float32), y


SMALL = {"model": {"hidden": [32, 16], "batchnorm": True, "dropout": 0.3},
         "data": {"val_fraction": 0.2, "test_fraction": 0.2}, "train": {"epochs": 4, "batch_size": 32}}


def test_same_spec_and_seed_give_bit_identical_weights():
    X, y = _blobs()
    a = netfit.fit(SMALL, X, y, out=None, progress=None).model.network.state_dict()
    b = netfit.fit(SMALL, X, y, out=None, progress=None).model.network.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = dict(SMALL, train={**SMALL["train"], "seed": 1})
    c = netfit.fit(other, X, y, out=None, progress=None).model.network.state_dict()
    assert not torch.equal(a["output.weight"], c["output.weight"])


def test_every_epoch_draws_a_fresh_permutation(monkeypatch):
    seen = []
    real = torch.randperm

    def spy(n, generator=None, **kw):
        order = real(n, generator=generator, **kw)
        seen.append(order.clone())
        return order

    monkeypatch.setattr(torch, "randperm", spy)
    X, y = _blobs()
    netfit.fit(SMALL, X, y, out=None, progress=None)
    assert len(seen) == 4
    assert all(not torch.equal(seen[0], s) for s in seen[1:])


def test_steps_run_in_train_mode_and_validation_in_eval_mode():
    modes = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            modes.append(self.training)
            return x

    net = torch.nn.Sequential(torch.nn.Linear(4, 2), Recorder())
    split = Split(torch.randn(64, 4), torch.randint(0, 2, (64,)), Scaler("none"))
    spec = Spec(train={"epochs": 2, "batch_size": 32})
    fit_network(Training(net, torch.nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1), split, split,
                         spec, "classification", torch.device("cpu")))
    # Per epoch: two training steps (train mode), then one validation batch (eval mode).
    assert modes == [True, True, False, True, True, False]


def test_predictions_are_deterministic_despite_dropout_and_batchnorm():
    X, y = _blobs()
    model = netfit.fit(SMALL, X, y, out=None, progress=None).model
    assert np.array_equal(model.predict_proba(X[:50]), model.predict_proba(X[:50]))
    # BatchNorm in eval mode: a row's prediction does not depend on the other rows in the batch.
    assert np.allclose(model.predict_proba(X[:1]), model.predict_proba(X[:50])[:1], atol=1e-6)


def test_early_stopping_stops_and_restores_the_best_epoch():
    X, y = _blobs(n=300, seed=3)
    spec = {"model": {"hidden": [64]}, "data": {"val_fraction": 0.3},
            "train": {"epochs": 200, "lr": 0.05, "batch_size": 16,
                      "early_stopping": {"metric": "val_loss", "patience": 3}}}
    run = netfit.fit(spec, X, y, out=None, progress=None)
    history = run.history
    assert history.stopped_early and len(history.epochs) < 200
    best = min(history.epochs, key=lambda r: r.val_loss)
    assert history.best_epoch == best.epoch
    assert run.metrics["val_loss"] == pytest.approx(best.val_loss, rel=1e-5)
    assert run.metrics["train_loss"] == best.train_loss  # the restored epoch's, like every other figure


def test_progress_lines_follow_print_every(capsys):
    import sys

    X, y = _blobs()
    spec = dict(SMALL, train={**SMALL["train"], "epochs": 5, "print_every": 2})
    netfit.fit(spec, X, y, out=None, progress=sys.stdout)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("Epoch")]
    assert [l.split()[1] for l in lines] == ["2/5", "4/5", "5/5"]
    assert "loss" in lines[0] and "val_acc" in lines[0]


def test_a_diverging_run_stops_with_a_named_cause():
    X, y = _blobs()
    X[0, 0] = 1e30
    spec = {"model": {"hidden": [8]}, "data": {"val_fraction": 0, "scaling": "none"},
            "train": {"epochs": 2, "lr": 1e3, "optimizer": "sgd"}}
    with pytest.raises(netfit.NetfitError, match="NaN or infinite at epoch 1, step .* learning rate too high"):
        netfit.fit(spec, X, y, out=None, progress=None)


def test_arrays_and_a_spec_that_names_data_are_refused_together():
    X, y = _blobs(n=60)
    with pytest.raises(netfit.NetfitError, match="got X and y and a spec whose data is 'digits'"):
        netfit.fit({"data": {"dataset": "digits"}}, X, y, out=None, progress=None)


def test_every_step_trains_at_the_rate_the_schedule_gives_it():
    # A warm-up over 1,000 epochs keeps the first epoch's rates below lr / 1000: its weights barely
    # move. Were the scheduled rate never written into the optimizer, they would move as far as
    # with the constant rate.
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    base = {"model": {"hidden": [16]}, "data": {"val_fraction": 0.0},
            "train": {"epochs": 1, "optimizer": "sgd", "lr": 0.1, "batch_size": 16, "seed": 3}}
    torch.manual_seed(3)  # what fit seeds before it builds the network: the same initial weights
    initial = torch.nn.utils.parameters_to_vector(netfit.build_model(base, 4, 3).parameters()).detach()

    def distance(schedule):
        spec = {**base, "train": {**base["train"], "schedule": schedule}}
        network = netfit.fit(spec, X, y, out=None, progress=None).model.network
        return float((torch.nn.utils.parameters_to_vector(network.parameters()).detach() - initial).norm())

    constant = distance("constant")
    warming = distance({"name": "warmup", "warmup_epochs": 1000.0})
    assert constant > 0.05 and warming < constant / 200, (warming, constant)
