"""train.log: the live metrics.csv and TensorBoard event files, read back and compared with metrics.csv."""

from __future__ import annotations

import csv
import io
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from torch.nn import functional as F

import netfit
from netfit.callbacks import Training
from netfit.errors import NetfitError
from netfit.history import EpochRecord, History, TrainingState, metrics_csv
from netfit.loggers import LOGGERS, CsvLogger, TensorBoardLogger, check_loggers, confusion_matrix, loggers_for
from netfit.model import build_network
from netfit.prepare import prepare
from netfit.spec import LOGS, apply_overrides, spec_from_dict

BOTH = ["csv", "tensorboard"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # A network this small trains fastest on one thread, and far faster on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _spec(**train):
    train = {"log": BOTH, "lr": 0.05, "batch_size": 256, "epochs": 6, "seed": 0, **train}
    return spec_from_dict({"data": {"dataset": "digits"}, "model": {"hidden": [32], "dropout": 0.3},
                           "train": train})


def _training(spec, run_dir: Path | None, say=None) -> Training:
    data = prepare(spec)
    prep = data.preparation
    torch.manual_seed(0)
    network = build_network(spec.model, prep.input_size, prep.output_size)
    return Training(model=network, loss_fn=torch.nn.CrossEntropyLoss(),
                    optimizer=torch.optim.SGD(network.parameters(), lr=spec.train.lr),
                    train=data.train, val=data.val, spec=spec, task=prep.task, device=torch.device("cpu"),
                    run_dir=run_dir, classes=prep.classes, say=say or (lambda line: None),
                    history=History(metric_name="val_accuracy"))


def _epoch(training: Training, epoch: int) -> EpochRecord:
    """One real epoch of SGD and its validation figures, as the loop would record them."""
    start = time.perf_counter()
    model, train = training.model, training.train
    model.train()
    total = 0.0
    for rows in torch.randperm(len(train)).split(training.spec.train.batch_size):
        loss = training.loss_fn(model(train.inputs(rows)), train.y[rows])
        training.optimizer.zero_grad()
        loss.backward()
        training.optimizer.step()
        total += loss.item() * len(rows)
    model.eval()
    with torch.no_grad():
        logits = model(training.val.inputs(slice(None)))
    val_loss = F.cross_entropy(logits, training.val.y).item()
    accuracy = (logits.argmax(1) == training.val.y).float().mean().item()
    return EpochRecord(epoch, total / len(train), val_loss, accuracy, training.spec.train.lr,
                       time.perf_counter() - start)


def _events(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def _assert_scalars_match_csv(events: EventAccumulator, csv_text: str) -> None:
    """Every figure of metrics.csv is the scalar of its column's name at step = epoch, and nothing else."""
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert rows, "metrics.csv has no rows"
    columns = [c for c in rows[0] if c != "epoch"]
    for column in columns:
        logged = {e.step: e.value for e in events.Scalars(column)}
        expected = {int(row["epoch"]): float(row[column]) for row in rows if row[column] != ""}
        assert sorted(logged) == sorted(expected), column
        for step, value in expected.items():
            # The CSV holds 6 significant digits (4 decimals for seconds), the event file float32.
            assert logged[step] == pytest.approx(value, rel=1e-5, abs=1e-4), (column, step)


def _hparams(events: EventAccumulator) -> dict[str, object]:
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {key: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
            for key, value in info.hparams.items()}


def test_the_registry_implements_exactly_the_logs_a_spec_may_name():
    assert LOGGERS.names() == list(LOGS)
    assert [type(c) for c in loggers_for(_spec(), None)] == [CsvLogger, TensorBoardLogger]
    assert loggers_for(_spec(log=[]), None) == []


def test_event_files_hold_every_figure_of_metrics_csv_and_the_csv_is_live(tmp_path):
    spec = _spec(early_stopping={"metric": "val_accuracy", "patience": 10})
    training = _training(spec, tmp_path)
    callbacks = loggers_for(spec, tmp_path)
    for callback in callbacks:
        callback.on_run_start(training)
    records = []
    for read_back in ([1, 2], [3], [4, 5, 6]):  # records arrive in batches, at each read-back
        batch = [_epoch(training, epoch) for epoch in read_back]
        for record in batch:
            training.history.epochs.append(record)
            for callback in callbacks:
                callback.on_epoch_end(training, record)
        records += batch
        live = (tmp_path / "metrics.csv").read_bytes().decode()
        assert live == metrics_csv(records, "val_accuracy")  # every epoch read back so far, in the final format
    training.history.best_epoch = 4  # as if early stopping had restored epoch 4: not the last one
    for callback in callbacks:
        callback.on_run_end(training)

    events = _events(tmp_path / "tensorboard")
    _assert_scalars_match_csv(events, (tmp_path / "metrics.csv").read_text())
    assert set(events.Tags()["scalars"]) == {"train_loss", "val_loss", "val_accuracy", "lr", "epoch_time_s",
                                             "hparam/train_loss", "hparam/val_loss", "hparam/val_accuracy"}

    # HParams: the spec's choices, and the figures of the epoch whose weights the model ends with.
    hparams = _hparams(events)
    assert hparams["lr"] == pytest.approx(0.05) and hparams["batch_size"] == 256 and hparams["epochs"] == 6
    assert hparams["optimizer"] == "adam" and hparams["hidden"] == "32" and hparams["activation"] == "relu"
    assert hparams["dropout"] == pytest.approx(0.3) and hparams["seed"] == 0
    kept = records[training.history.best_epoch - 1]
    final = events.Scalars("hparam/val_accuracy")
    assert [(e.step, e.value) for e in final] == [(kept.epoch, pytest.approx(kept.val_metric))]
    assert events.Scalars("hparam/train_loss")[0].value == pytest.approx(kept.train_loss)


def test_confusion_matrix_image_is_the_final_model_in_eval_mode(tmp_path):
    spec = _spec()
    training = _training(spec, tmp_path)
    logger = TensorBoardLogger(tmp_path)
    logger.on_run_start(training)
    for epoch in (1, 2):
        logger.on_epoch_end(training, _epoch(training, epoch))
    training.model.train()  # as the loop leaves it; the matrix must not see Dropout
    logger.on_run_end(training)
    assert training.model.training, "the model's mode is given back"

    training.model.eval()
    with torch.no_grad():
        predicted = training.model(training.val.inputs(slice(None))).argmax(1).numpy()
    expected = sk_confusion_matrix(training.val.y.numpy(), predicted, labels=range(10))
    training.model.train()
    assert (confusion_matrix(training.model, training.val, "classification", torch.device("cpu")) == expected).all()

    images = _events(tmp_path / "tensorboard").Images("confusion_matrix/val")
    assert [image.step for image in images] == [2]
    assert images[0].encoded_image_string.startswith(b"\x89PNG")
    assert images[0].width > 300 and images[0].height > 300


def test_binary_confusion_matrix_reads_the_one_logit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    spec = spec_from_dict({"model": {"hidden": [8]}, "train": {"task": "binary"}})
    data = prepare(spec, X, y)
    network = build_network(spec.model, 3, 1)
    with torch.no_grad():
        predicted = (network(data.val.inputs(slice(None))) > 0).long().reshape(-1).numpy()
    truth = data.val.y.long().reshape(-1).numpy()
    matrix = confusion_matrix(network, data.val, "binary", torch.device("cpu"))
    assert (matrix == sk_confusion_matrix(truth, predicted, labels=[0, 1])).all()


def test_a_resume_shows_each_epoch_once_with_the_figures_it_kept(tmp_path):
    spec = _spec()
    first = _training(spec, tmp_path)
    callbacks = loggers_for(spec, tmp_path)
    for callback in callbacks:
        callback.on_run_start(first)
    records = [_epoch(first, epoch) for epoch in range(1, 6)]
    for record in records:
        for callback in callbacks:
            callback.on_epoch_end(first, record)
    # Killed after epoch 5 with the last checkpoint at epoch 3: no on_run_end; 4 and 5 run again.
    time.sleep(1.1)  # event files are ordered by the second they were opened in
    resumed = _training(spec, tmp_path)
    resumed.history.epochs = records[:3]
    resumed.state = TrainingState(epochs_done=3, history=records[:3])
    callbacks = loggers_for(spec, tmp_path)
    for callback in callbacks:
        callback.on_run_start(resumed)
    again = [_epoch(resumed, epoch) for epoch in (4, 5, 6)]
    for record in again:
        for callback in callbacks:
            callback.on_epoch_end(resumed, record)
    for callback in callbacks:
        callback.on_run_end(resumed)

    kept = records[:3] + again
    assert (tmp_path / "metrics.csv").read_bytes().decode() == metrics_csv(kept, "val_accuracy")
    events = _events(tmp_path / "tensorboard")
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2, 3, 4, 5, 6]
    _assert_scalars_match_csv(events, metrics_csv(kept, "val_accuracy"))


def test_a_finished_runs_sealed_metrics_csv_is_left_alone_while_it_trains_further(tmp_path):
    sealed = "epoch,train_loss\n1,0.5\n"
    (tmp_path / "metrics.csv").write_text(sealed)
    (tmp_path / "run.json").write_text("{}")  # what makes a run finished
    training = _training(_spec(log=["csv"]), tmp_path)
    logger = CsvLogger(tmp_path)
    logger.on_run_start(training)
    logger.on_epoch_end(training, _epoch(training, 1))
    assert (tmp_path / "metrics.csv").read_text() == sealed


def test_a_run_that_is_not_saved_logs_nothing_and_says_so_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    said = []
    spec = _spec()
    training = _training(spec, None, say=said.append)
    callbacks = loggers_for(spec, None)
    for callback in callbacks:
        callback.on_run_start(training)
    for epoch in (1, 2):
        record = _epoch(training, epoch)
        for callback in callbacks:
            callback.on_epoch_end(training, record)
    for callback in callbacks:
        callback.on_run_end(training)
    assert len(said) == 1 and "not saved" in said[0] and "TensorBoard" in said[0]
    assert list(tmp_path.iterdir()) == []


def test_missing_tensorboard_is_refused_in_one_line_naming_the_extra(monkeypatch):
    # As in an environment without the package: `import tensorboard` fails inside torch's module.
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    for name in [m for m in sys.modules if m.startswith("torch.utils.tensorboard")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(NetfitError) as err:
        check_loggers(_spec())
    message = str(err.value)
    assert "\n" not in message and "pip install 'netfit[tensorboard]'" in message and "train.log" in message
    check_loggers(_spec(log=["csv"]))  # the default log needs nothing more
    with pytest.raises(NetfitError, match=r"netfit\[tensorboard\]"):
        TensorBoardLogger(Path("unused")).on_run_start(None)


@pytest.mark.parametrize(("log", "problem"), [
    (["tensorbord"], "unknown log 'tensorbord'; did you mean 'tensorboard'?"),
    (["csv", "csv"], "'csv' is listed twice"),
    (["wandb"], "unknown log 'wandb'; choose from: csv, tensorboard"),
    ("csv, tensorboard", "unknown log 'csv, tensorboard'"),
    (True, "train.log = True: Input should be a valid list"),
])
def test_train_log_refuses_what_it_cannot_do(log, problem):
    with pytest.raises(NetfitError, match="^spec: train.log") as err:
        spec_from_dict({"train": {"log": log}})
    assert problem in str(err.value)


def test_train_log_defaults_to_csv_and_takes_one_name_from_the_command_line():
    assert spec_from_dict({}).train.log == ["csv"]
    assert spec_from_dict(apply_overrides({}, ["train.log=tensorboard"])).train.log == ["tensorboard"]
    both = spec_from_dict({"train": {"log": BOTH}})
    assert spec_from_dict(tomllib.loads(both.to_toml())) == both


def test_fit_writes_event_files_that_hold_metrics_csv(tmp_path):
    """End to end: needs the loop to add loggers_for(spec, run_dir) to its callbacks."""
    spec = _spec(epochs=3, print_every=2, checkpoint_every=0)
    run = netfit.fit(spec, out=tmp_path, progress=None)
    assert (run.run_dir / "tensorboard").is_dir(), "no RUN/tensorboard/: the loop did not run loggers_for(spec, run_dir)"
    events = _events(run.run_dir / "tensorboard")
    _assert_scalars_match_csv(events, (run.run_dir / "metrics.csv").read_text())
    assert [image.step for image in events.Images("confusion_matrix/val")] == [3]
    assert _hparams(events)["hidden"] == "32"
    assert events.Scalars("hparam/val_accuracy")[0].value == pytest.approx(run.metrics["val_accuracy"], abs=1e-6)
