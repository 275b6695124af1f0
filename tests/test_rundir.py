"""Run directories: complete, self-describing, verified on load, never unpickled."""

import json

import numpy as np
import pytest
import torch

import netfit
from netfit import NetfitError

SPEC = {"model": {"hidden": [16]}, "data": {"val_fraction": 0.25, "test_fraction": 0.25},
        "train": {"epochs": 3, "batch_size": 16}}


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)).astype(np.float32) * [1, 10, 100, 0.1, 1]
    y = (X[:, 0] + X[:, 1] / 10 > 0).astype(np.int64)
    return X, y


def test_loaded_model_predicts_exactly_like_the_trained_one(tmp_path):
    X, y = _data()
    run = netfit.fit(SPEC, X, y, out=tmp_path, progress=None)
    loaded = netfit.load(run.run_dir)
    assert np.array_equal(loaded.predict_proba(X), run.model.predict_proba(X))
    assert np.array_equal(loaded.predict(X), run.predict(X))
    assert loaded.metrics == pytest.approx(run.metrics)
    info = json.loads((run.run_dir / "run.json").read_text())
    assert info["spec"]["model"]["hidden"] == [16]
    assert set(info["versions"]) >= {"netfit", "torch", "numpy", "python"}
    scaler = info["preparation"]["input_scaler"]
    assert scaler["method"] == "standardize" and len(scaler["shift"]) == 5


def test_scaling_is_fitted_on_training_rows_only(tmp_path):
    X, y = _data()
    X[:, 2] = np.arange(len(X))  # a feature whose mean differs between any two subsets
    run = netfit.fit(SPEC, X, y, out=None, progress=None)
    from netfit.data import split_rows

    keep, _ = split_rows(len(X), 0.25, 0)  # test rows first, as prepare does
    keep2, _ = split_rows(len(keep), 0.25, 0)
    train_rows = X[keep][keep2]
    assert run.model.preparation.input_scaler.shift[2] == pytest.approx(train_rows[:, 2].mean(), rel=1e-5)
    assert run.model.preparation.input_scaler.shift[2] != pytest.approx(X[:, 2].mean(), rel=1e-3)


def test_text_labels_come_back_as_text(tmp_path):
    X, y = _data()
    labels = np.array(["cat", "dog"])[y]
    run = netfit.fit(SPEC, X, labels, out=tmp_path, progress=None)
    loaded = netfit.load(run.run_dir)
    assert loaded.classes == ["cat", "dog"]
    assert set(loaded.predict(X[:20]).tolist()) <= {"cat", "dog"}


def test_regression_predictions_are_in_target_units(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3)).astype(np.float32)
    y = 1000 + 50 * X[:, 0] - 20 * X[:, 1]
    spec = {"model": {"hidden": [32]}, "data": {"test_fraction": 0.2},
            "train": {"epochs": 30, "lr": 1e-2, "loss": "mse"}}
    run = netfit.fit(spec, X, y, out=tmp_path, progress=None)
    assert run.metrics["test_r2"] > 0.9
    assert abs(np.mean(netfit.load(run.run_dir).predict(X)) - 1000) < 20


def test_edited_run_json_is_refused_and_a_resealed_edit_still_must_fit(tmp_path):
    from netfit.storage import SEAL_KEY, dump_sealed_json

    X, y = _data()
    run = netfit.fit(SPEC, X, y, out=tmp_path, progress=None)
    info_path = run.run_dir / "run.json"
    info = json.loads(info_path.read_text())
    info["spec"]["model"]["hidden"] = [32]
    info_path.write_text(json.dumps(info))
    with pytest.raises(NetfitError, match="does not match its own hash"):
        netfit.load(run.run_dir)
    # Even with its seal recomputed, a spec that no longer fits the weights is refused.
    info.pop(SEAL_KEY)
    info_path.write_bytes(dump_sealed_json(info))
    with pytest.raises(NetfitError, match="do not fit"):
        netfit.load(run.run_dir)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_files_are_refused_before_use(tmp_path, damage):
    X, y = _data()
    run = netfit.fit(SPEC, X, y, out=tmp_path, progress=None)
    weights = run.run_dir / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "flip":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 1
        weights.write_bytes(bytes(data))
    else:
        weights.unlink()
    with pytest.raises(NetfitError, match="hash|bytes|missing"):
        netfit.load(run.run_dir)


def test_weights_file_is_safetensors_not_pickle(tmp_path):
    X, y = _data()
    run = netfit.fit(SPEC, X, y, out=tmp_path, progress=None)
    from safetensors.torch import load_file

    state = load_file(str(run.run_dir / "model.safetensors"))
    assert set(state) == set(run.model.network.state_dict())
    assert not list(run.run_dir.glob("*.pt")) and not list(run.run_dir.glob("*.pkl"))


def test_custom_module_run_needs_the_class_passed_explicitly(tmp_path):
    from custom_module import TinyNet

    X, y = _data()
    spec = {**SPEC, "model": {"module": "custom_module:TinyNet", "kwargs": {"inputs": 5, "classes": 2}}}
    run = netfit.fit(spec, X, y, out=tmp_path, progress=None)
    with pytest.raises(NetfitError, match="module=YourClass"):
        netfit.load(run.run_dir)
    loaded = netfit.load(run.run_dir, module=TinyNet)
    assert np.array_equal(loaded.predict(X), run.predict(X))


def test_not_a_run_folder(tmp_path):
    with pytest.raises(NetfitError, match="not a netfit run"):
        netfit.load(tmp_path)
    with pytest.raises(NetfitError, match="does not exist"):
        netfit.load(tmp_path / "nope")


def test_run_files_get_the_mode_any_new_file_gets(tmp_path):
    import os
    import stat

    X, y = _data()
    previous = os.umask(0o022)
    try:
        run = netfit.fit(SPEC, X, y, out=tmp_path, progress=None)
    finally:
        os.umask(previous)
    modes = {str(p.relative_to(run.run_dir)): stat.S_IMODE(p.stat().st_mode) for p in run.run_dir.rglob("*")}
    assert {m for name, m in modes.items() if (run.run_dir / name).is_file()} == {0o644}, modes
    assert {m for name, m in modes.items() if (run.run_dir / name).is_dir()} == {0o755}, modes
