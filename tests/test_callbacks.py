"""The loop's hooks: which events a callback sees and when, what it may change, and the progress it prints."""

import io
import logging

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import netfit
from netfit.callbacks import Callback
from netfit.progress import Progress


def _digits():
    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


def spec(**train):
    return {"model": {"hidden": [32]}, "data": {"val_fraction": 0.2},
            "train": {"epochs": 4, "batch_size": 64, "device": "cpu", **train}}


class Recorder(Callback):
    """Writes down every event, and the first weight of the network at each epoch's end."""

    def __init__(self, syncs: bool = False) -> None:
        self.syncs_every_epoch = syncs
        self.events: list[tuple] = []

    def on_run_start(self, training):
        self.events.append(("run_start",))

    def on_epoch_start(self, training, epoch):
        self.events.append(("epoch_start", epoch))

    def on_epoch_end(self, training, record):
        weight = next(training.model.parameters()).detach().flatten()[0].item()
        self.events.append(("epoch_end", record.epoch, record.train_loss, weight))

    def on_run_end(self, training):
        self.events.append(("run_end", len(training.history.epochs)))


def test_events_come_in_order_and_records_match_the_history():
    X, y = _digits()
    recorder = Recorder()
    run = netfit.fit(spec(print_every=2), X, y, out=None, progress=None, callbacks=[recorder])
    names = [e[0] for e in recorder.events]
    assert names[0] == "run_start" and names[-1] == "run_end" and recorder.events[-1] == ("run_end", 4)
    assert [e[1] for e in recorder.events if e[0] == "epoch_start"] == [1, 2, 3, 4]
    ends = [e for e in recorder.events if e[0] == "epoch_end"]
    assert [e[1] for e in ends] == [1, 2, 3, 4]
    assert [e[2] for e in ends] == [r.train_loss for r in run.history.epochs]
    # Without syncs_every_epoch, epoch 1's record waits for the read-back at epoch 2's end.
    assert names.index("epoch_end") > [i for i, e in enumerate(recorder.events) if e == ("epoch_start", 2)][0]


def test_a_callback_that_syncs_every_epoch_sees_that_epochs_weights():
    X, y = _digits()
    recorder = Recorder(syncs=True)
    netfit.fit(spec(print_every=10), X, y, out=None, progress=None, callbacks=[recorder])
    seen = [e[3] for e in recorder.events if e[0] == "epoch_end"]
    for epochs in (1, 3):  # the same run cut short at that epoch ends with those weights (CPU, fp32: exact)
        shorter = netfit.fit(spec(epochs=epochs), X, y, out=None, progress=None)
        assert next(shorter.model.network.parameters()).detach().flatten()[0].item() == seen[epochs - 1]
    # Each epoch's event came at its own end, before the next epoch started.
    names = [e[0] for e in recorder.events]
    assert names[1:5] == ["epoch_start", "epoch_end", "epoch_start", "epoch_end"]


def test_a_callback_that_does_not_ask_adds_no_host_sync(monkeypatch):
    X, y = _digits()
    calls = {"tolist": 0}
    real_tolist = torch.Tensor.tolist

    class CountingSyncs(Callback):
        def on_run_start(self, training):
            monkeypatch.setattr(torch.Tensor, "tolist", lambda t: calls.__setitem__("tolist", calls["tolist"] + 1)
                                or real_tolist(t))

        def on_run_end(self, training):
            monkeypatch.setattr(torch.Tensor, "tolist", real_tolist)

    netfit.fit(spec(epochs=6, print_every=3), X, y, out=None, progress=None, callbacks=[CountingSyncs(), Recorder()])
    assert calls["tolist"] == 2  # the read-backs at epochs 3 and 6, as without the recorder


def test_a_callback_ends_the_run_by_saying_why(capsys):
    import sys

    class StopAfterTwo(Callback):
        syncs_every_epoch = True

        def on_epoch_end(self, training, record):
            if record.epoch == 2:
                training.stop_reason = "enough: two epochs"

    X, y = _digits()
    run = netfit.fit(spec(epochs=10), X, y, out=None, progress=sys.stdout, callbacks=[StopAfterTwo()])
    assert len(run.history.epochs) == 2 and run.metrics["epochs"] == 2
    assert "enough: two epochs" in capsys.readouterr().out


def test_a_stop_asked_between_read_backs_keeps_every_epoch_trained(tmp_path):
    # Asked from on_epoch_start, with epochs still waiting on the device (print_every=3, no
    # syncing callback): the epochs trained must be read back, not dropped (an IndexError once).
    class StopInEpochTwo(Callback):
        def on_epoch_start(self, training, epoch):
            if epoch == 2:
                training.stop_reason = "enough: asked in epoch two"

    X, y = _digits()
    run = netfit.fit(spec(epochs=6, print_every=3), X, y, out=None, progress=None, callbacks=[StopInEpochTwo()])
    assert [r.epoch for r in run.history.epochs] == [1, 2] and run.metrics["epochs"] == 2
    saved = netfit.fit(spec(epochs=6, print_every=3, checkpoint_every=0), X, y, out=tmp_path, progress=None,
                       callbacks=[StopInEpochTwo()])
    assert [r.epoch for r in saved.history.epochs] == [1, 2]
    assert (saved.run_dir / "metrics.csv").read_text().count("\n") == 3


def test_run_end_sees_the_restored_best_weights():
    X, y = _digits()
    X[:, :] += np.random.default_rng(0).normal(0, 8, X.shape).astype(np.float32)  # noisy: val loss turns up soon

    class LastWeights(Callback):
        def on_run_end(self, training):
            self.weights = {k: v.clone() for k, v in training.model.state_dict().items()}

    last = LastWeights()
    run = netfit.fit(spec(epochs=40, lr=0.01, early_stopping={"metric": "val_loss", "patience": 2}), X, y,
                     out=None, progress=None, callbacks=[last])
    assert run.history.stopped_early and run.history.best_epoch < len(run.history.epochs)
    for name, value in run.model.network.state_dict().items():
        assert torch.equal(last.weights[name], value)


def test_callbacks_must_be_callbacks():
    X, y = _digits()
    with pytest.raises(TypeError, match="netfit.callbacks.Callback"):
        netfit.fit(spec(epochs=1), X, y, out=None, progress=None, callbacks=[lambda record: None])


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("progress", ["log", "stdout", True])
def test_progress_that_is_no_stream_is_named_before_any_work(progress):
    X, y = _digits()
    with pytest.raises(TypeError, match="progress must be a stream"):
        netfit.fit(spec(), X, y, out=None, progress=progress)


def test_progress_draws_a_bar_on_a_terminal_and_plain_lines_elsewhere():
    X, y = _digits()
    plain = io.StringIO()
    netfit.fit(spec(epochs=2), X, y, out=None, progress=plain)
    text = plain.getvalue()
    assert "\r" not in text and "\x1b" not in text  # a log file gets whole lines only
    lines = [line for line in text.splitlines() if line.startswith("Epoch")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"] and lines[0].endswith(" s)")
    assert "netfit: trained 2 epochs in" in text

    terminal = _Terminal()
    netfit.fit(spec(epochs=2), X, y, out=None, progress=terminal)
    drawn = terminal.getvalue()
    assert "\r" in drawn and "step/s" in drawn  # the bar, with its rate
    assert "Epoch 1/2  loss" in drawn and "Epoch 2/2  loss" in drawn  # the lines, written above it


def test_progress_can_go_through_logging(caplog, capsys):
    X, y = _digits()
    with caplog.at_level(logging.INFO, logger="netfit"):
        netfit.fit(spec(epochs=2), X, y, out=None, progress="logging")
    messages = [r.getMessage() for r in caplog.records if r.name == "netfit"]
    assert any(m.startswith("Epoch 2/2  loss") for m in messages)
    assert any(m.startswith("classification (") for m in messages)  # no "netfit: " twice under %(name)s
    assert capsys.readouterr().out == ""


def test_progress_line_shape():
    from netfit.history import EpochRecord

    line = Progress.line(EpochRecord(3, 0.24123, 0.13012, 0.96123, 1e-3, 1.234), 10, "val_accuracy")
    assert line == "Epoch 3/10  loss 0.2412  val_loss 0.1301  val_acc 0.9612  (1.2 s)"
