"""Streaming training rows from Parquet: the same preparation as a resident run, every row once an
epoch, exact resumes, evaluation in chunks, and clear refusals of what cannot be streamed."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits

import netfit
import netfit.progress
from netfit.cli import main
from netfit.checkpoint import list_checkpoints, read_checkpoint
from netfit.streaming import ParquetRows, StreamedRows

TRAIN = {"epochs": 3, "batch_size": 32, "seed": 3}


def _parquet(path, X, y, target="target", row_group_size=100, **extra):
    columns = {f"f{i}": X[:, i].astype(np.float32) for i in range(X.shape[1])}
    pq.write_table(pa.table({**columns, **extra, target: y}), path, row_group_size=row_group_size)
    return path


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    X, y = load_digits(return_X_y=True)
    folder = tmp_path_factory.mktemp("digits")
    np.savez(folder / "digits.npz", X=X.astype(np.float32), y=y)
    return _parquet(folder / "digits.parquet", X, y), folder / "digits.npz"


def _streamed(path, **data):
    return {"path": str(path), "target": "target", "streaming": True, "chunk_rows": 128, "shuffle_window": 3, **data}


def test_streamed_and_resident_runs_prepare_the_same_task_classes_and_scaler(digits):
    parquet, npz = digits
    spec = {"model": {"hidden": [32]}, "train": {**TRAIN, "epochs": 1}}
    streamed = netfit.fit({**spec, "data": _streamed(parquet)}, out=None, progress=None).model.preparation
    resident = netfit.fit({**spec, "data": {"path": str(npz)}}, out=None, progress=None).model.preparation
    assert (streamed.task, streamed.classes, streamed.labels, streamed.output_size) == \
        (resident.task, resident.classes, resident.labels, resident.output_size)
    np.testing.assert_allclose(streamed.input_scaler.shift, resident.input_scaler.shift, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(streamed.input_scaler.scale, resident.input_scaler.scale, rtol=1e-6)


def test_a_streamed_regression_standardizes_its_targets_as_a_resident_one(tmp_path):
    X, y = load_diabetes(return_X_y=True)
    parquet = _parquet(tmp_path / "diabetes.parquet", X, y)
    np.savez(tmp_path / "diabetes.npz", X=X.astype(np.float32), y=y)
    spec = {"model": {"hidden": [16]}, "train": {**TRAIN, "epochs": 1}}
    streamed = netfit.fit({**spec, "data": _streamed(parquet)}, out=None, progress=None).model.preparation
    resident = netfit.fit({**spec, "data": {"path": str(tmp_path / "diabetes.npz")}}, out=None,
                          progress=None).model.preparation
    assert streamed.task == resident.task == "regression"
    np.testing.assert_allclose(streamed.target_scaler.shift, resident.target_scaler.shift, rtol=1e-6)
    np.testing.assert_allclose(streamed.input_scaler.scale, resident.input_scaler.scale, rtol=1e-6)


def test_a_streamed_run_learns_digits_as_well_as_a_resident_one(digits):
    parquet, npz = digits
    spec = {"model": {"hidden": [64]}, "train": {**TRAIN, "epochs": 8}}
    streamed = netfit.fit({**spec, "data": _streamed(parquet)}, out=None, progress=None)
    resident = netfit.fit({**spec, "data": {"path": str(npz)}}, out=None, progress=None)
    assert streamed.metrics["val_accuracy"] > 0.93
    assert abs(streamed.metrics["val_accuracy"] - resident.metrics["val_accuracy"]) < 0.04


def _ids_file(tmp_path, rows, row_group_size):
    X = np.arange(rows, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    return ParquetRows(_parquet(tmp_path / "ids.parquet", X, np.arange(rows) % 2, row_group_size=row_group_size),
                       "target")


@pytest.mark.parametrize("rows, batch_size", [(1000, 32), (1001, 50), (999, 1000)])
def test_every_training_row_is_seen_exactly_once_per_epoch(tmp_path, rows, batch_size):
    source = _ids_file(tmp_path, rows, row_group_size=70)
    part = np.sort(np.random.default_rng(0).choice(rows, size=rows - 97, replace=False))  # validation rows out
    streamed = StreamedRows(source, part, chunk_rows=64, window=3)
    full, rest = divmod(len(part), batch_size)
    rest = rest if rest > 1 else 0
    generator = torch.Generator().manual_seed(0)
    orders = []
    for _ in range(2):
        seen_x, seen_ids = [], []
        for x, ids in streamed.epoch(generator).batches(0, batch_size, full, rest):
            seen_x.append(x[:, 0]), seen_ids.append(ids)
        ids, x = torch.cat(seen_ids).numpy(), torch.cat(seen_x).numpy()
        np.testing.assert_array_equal(x, part[ids])  # each batch row is the file row its number says
        assert len(ids) == full * batch_size + rest and len(np.unique(ids)) == len(ids)
        orders.append(ids)
    assert not np.array_equal(orders[0], orders[1])  # a fresh order every epoch
    assert len(orders[0]) >= len(part) - 1  # nothing but a single trailing row is left out


def test_a_resumed_epoch_draws_the_same_batches_and_reads_no_chunk_it_skips(tmp_path):
    source = _ids_file(tmp_path, 2000, row_group_size=64)
    streamed = StreamedRows(source, np.arange(2000), chunk_rows=64, window=4)
    state = torch.Generator().manual_seed(7).get_state()
    whole = list(streamed.epoch(torch.Generator().set_state(state)).batches(0, 25, 80, 0))
    reads = []
    real_read = source.read
    source.read = lambda start, stop: reads.append(start) or real_read(start, stop)
    resumed_generator = torch.Generator().set_state(state)
    tail = list(streamed.epoch(resumed_generator).batches(60, 25, 80, 0))
    for (x, ids), (x2, ids2) in zip(whole[60:], tail, strict=True):
        assert torch.equal(x, x2) and torch.equal(ids, ids2)
    # Steps 60.. are rows 1500..1999 of the epoch: windows 6 to 8 of 4 chunks each, not the file's 32 chunks.
    assert len(reads) == 3 * 4
    whole_generator = torch.Generator().set_state(state)
    list(streamed.epoch(whole_generator).batches(0, 25, 80, 0))
    assert torch.equal(whole_generator.get_state(), resumed_generator.get_state())  # the next epoch agrees


def test_a_streamed_run_stopped_by_sigterm_mid_epoch_resumes_to_the_same_weights(tmp_path, digits, cut_at_step):
    parquet, _ = digits
    spec = {"model": {"hidden": [32]}, "train": {**TRAIN, "epochs": 2, "checkpoint_every": 1},
            "data": _streamed(parquet)}
    reference = netfit.fit(spec, out=tmp_path / "whole", progress=None)
    run_dir = cut_at_step(spec, tmp_path / "cut", 70)  # epoch 2 (51 steps an epoch), step 19
    state = read_checkpoint(list_checkpoints(run_dir)[-1]).training_state()
    assert (state.epochs_done, state.steps_into_epoch) == (1, 19)
    resumed = netfit.resume(run_dir, progress=None)
    for name, tensor in reference.model.network.state_dict().items():
        assert torch.equal(tensor, resumed.model.network.state_dict()[name]), name
    # The epoch's loss is summed in two parts across the resume: equal up to float rounding, as when resident.
    assert resumed.metrics.pop("train_loss") == pytest.approx(reference.metrics.pop("train_loss"), rel=1e-6)
    assert resumed.metrics == reference.metrics


def test_evaluate_and_predict_on_a_streamed_run(tmp_path, digits, capsys):
    parquet, _ = digits
    X, y = load_digits(return_X_y=True)
    test = _parquet(tmp_path / "test.parquet", X[:300], y[:300])
    run = netfit.fit({"model": {"hidden": [32]}, "train": TRAIN, "data": _streamed(parquet, test_path=str(test))},
                     out=tmp_path / "runs", progress=None)
    assert main(["evaluate", str(run.run_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metrics"]["test_accuracy"] == pytest.approx(run.metrics["test_accuracy"])
    assert main(["evaluate", str(run.run_dir), "--data", str(test), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["accuracy"] == pytest.approx(run.metrics["test_accuracy"])
    predicted = netfit.load(run.run_dir).predict(X[:300].astype(np.float32))
    assert np.mean(predicted.astype(int) == y[:300]) == pytest.approx(run.metrics["test_accuracy"])


def test_streaming_a_csv_or_a_table_with_text_columns_is_refused_in_one_line(tmp_path, capsys):
    X, y = load_digits(return_X_y=True)
    csv = tmp_path / "digits.csv"
    csv.write_text("a,b,target\n" + "".join(f"{r[0]},{r[1]},{t}\n" for r, t in zip(X, y)))
    mixed = _parquet(tmp_path / "mixed.parquet", X[:, :4], y, color=np.array(["red", "blue"] * 898 + ["red"]))
    for path, says in ((csv, "is not one"), (mixed, "column 'color' is string")):
        code = main(["train", "--set", f"data.path={path}", "--set", "data.target=target",
                     "--set", "data.streaming=true", "--out", str(tmp_path / "runs"), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and says in err, err


def test_a_table_with_text_columns_that_fits_is_held_in_memory_when_streaming_is_auto(tmp_path):
    X, y = load_digits(return_X_y=True)
    mixed = _parquet(tmp_path / "mixed.parquet", X[:, :4], y, color=np.array(["red", "blue"] * 898 + ["red"]))
    spec = {"data": {"path": str(mixed), "target": "target"}, "model": {"hidden": [8]}, "train": {"epochs": 1}}
    run = netfit.fit(spec, out=None, progress=None)
    assert run.model.preparation.encoder.describe() == "4 numeric, 1 categorical (color: 2 values)"
