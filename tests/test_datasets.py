"""Built-in datasets (netfit.data.datasets), load_raw and split_rows."""

from __future__ import annotations

import numpy as np
import pytest

from netfit.data import DATASETS, RawData, load_builtin, load_raw, split_rows
from netfit.data import datasets
from netfit.errors import NetfitError
from netfit.spec import DataSpec

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def no_outside_data(tmp_path, monkeypatch):
    """Keep lookups to tmp_path: no NETFIT_DATA_DIR, no system folders, an empty cache, no network."""
    monkeypatch.delenv("NETFIT_DATA_DIR", raising=False)
    monkeypatch.setenv("NETFIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIRS", ())


def _write_idx_set(folder, write_idx, gzipped=True, n_train=12, n_test=5):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gzipped else ""
    for part, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{part}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gzipped)
        write_idx(folder / f"{part}-labels-idx1-ubyte{suffix}", (np.arange(n) % 10).astype(np.uint8), gzipped)
    return folder


# ----------------------------------------------------------------------------- registry


def test_registered_datasets():
    assert DATASETS.names() == ["mnist-sample", "digits", "diabetes", "mnist", "fashion-mnist", "kmnist"]


def test_unknown_dataset_suggests_the_nearest_name():
    with pytest.raises(NetfitError, match=r"unknown dataset 'fashion_mnist' \(did you mean 'fashion-mnist'\?\)"):
        load_builtin("fashion_mnist")


# ----------------------------------------------------------------------------- mnist-sample


def test_mnist_sample_is_split_8000_2000_deterministically():
    first = load_builtin("mnist-sample")
    np.random.seed(123)  # the split must not depend on global random state
    second = load_builtin("mnist-sample")
    assert first.X_train.shape == (8000, 784) and first.X_test.shape == (2000, 784)
    assert first.X_train.dtype == np.uint8 and first.kind == "image"
    assert first.class_names == [str(d) for d in range(10)]
    np.testing.assert_array_equal(first.y_test, second.y_test)
    np.testing.assert_array_equal(first.X_test, second.X_test)
    all_labels = np.concatenate([first.y_train, first.y_test])
    assert np.bincount(all_labels).tolist() == MNIST_TEST_COUNTS


def test_damaged_sample_is_refused(monkeypatch):
    monkeypatch.setitem(datasets._SAMPLE_SHA256, "t10k-labels-idx1-ubyte.gz", "0" * 64)
    with pytest.raises(NetfitError, match=r"t10k-labels-idx1-ubyte.gz is damaged.*reinstall netfit"):
        load_builtin("mnist-sample")


# ----------------------------------------------------------------------------- scikit-learn tables


def test_digits():
    raw = load_builtin("digits")
    assert raw.X_train.shape == (1438, 64) and raw.X_test.shape == (359, 64)
    assert raw.kind == "table" and raw.X_train.max() == 16
    assert raw.y_train.dtype == np.int64 and set(raw.y_train) == set(range(10))


def test_diabetes():
    raw = load_builtin("diabetes")
    assert raw.X_train.shape == (354, 10) and raw.X_test.shape == (88, 10)
    assert raw.y_train.dtype == np.float64 and raw.kind == "table"
    assert raw.feature_names == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert raw.X_train[:, 0].max() > 1  # unscaled ages, not sklearn's scaled version


# ----------------------------------------------------------------------------- IDX datasets


def test_fashion_mnist_from_the_system_folder(monkeypatch, tmp_path, fashion_mnist):
    # Debian's dataset-fashion-mnist installs it here; CI installs the package too.
    monkeypatch.delenv("NETFIT_DATA_DIR", raising=False)
    monkeypatch.setenv("NETFIT_CACHE_DIR", str(tmp_path / "cache"))
    raw = load_builtin("fashion-mnist", download=False)
    assert raw.X_train.shape == (60_000, 784) and raw.X_test.shape == (10_000, 784)
    assert raw.X_train.dtype == np.uint8 and raw.kind == "image"
    assert np.bincount(raw.y_train).tolist() == [6000] * 10
    assert np.bincount(raw.y_test).tolist() == [1000] * 10
    assert raw.class_names[0] == "T-shirt/top" and raw.class_names[9] == "Ankle boot"


@pytest.mark.parametrize("subfolder", [False, True])
def test_idx_dataset_from_data_dir(tmp_path, write_idx, no_outside_data, subfolder):
    data_dir = tmp_path / "data"
    _write_idx_set(data_dir / "kmnist" if subfolder else data_dir, write_idx)
    raw = load_builtin("kmnist", data_dir=data_dir, download=False)
    assert raw.X_train.shape == (12, 784) and raw.X_test.shape == (5, 784)
    assert raw.class_names[0] == "お"


def test_idx_dataset_from_env_with_raw_file_names(tmp_path, write_idx, no_outside_data, monkeypatch):
    _write_idx_set(tmp_path / "env" / "mnist", write_idx, gzipped=False)
    monkeypatch.setenv("NETFIT_DATA_DIR", str(tmp_path / "env"))
    raw = load_builtin("mnist", download=False)
    assert len(raw.y_train) == 12 and raw.name == "mnist"


def test_explicit_data_dir_comes_before_env(tmp_path, write_idx, no_outside_data, monkeypatch):
    _write_idx_set(tmp_path / "env", write_idx, n_train=7)
    _write_idx_set(tmp_path / "mine", write_idx, n_train=9)
    monkeypatch.setenv("NETFIT_DATA_DIR", str(tmp_path / "env"))
    assert len(load_builtin("mnist", data_dir=tmp_path / "mine").y_train) == 9


def test_missing_idx_dataset_without_download_says_where_it_looked(tmp_path, no_outside_data):
    with pytest.raises(NetfitError) as err:
        load_builtin("mnist", data_dir=tmp_path / "mine", download=False)
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message and "downloading is off" in message
    assert str(tmp_path / "mine") in message and str(tmp_path / "cache" / "mnist") in message
    assert "--data-dir DIR" in message and "NETFIT_DATA_DIR" in message and "\n" not in message


def test_damaged_local_file_is_named(tmp_path, write_idx, no_outside_data):
    folder = _write_idx_set(tmp_path / "data", write_idx)
    broken = folder / "t10k-images-idx3-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:-20])
    with pytest.raises(NetfitError, match="t10k-images-idx3-ubyte.gz' is a truncated gzip"):
        load_builtin("mnist", data_dir=folder, download=False)


# ----------------------------------------------------------------------------- load_raw


def test_load_raw_builtin():
    raw = load_raw(DataSpec(dataset="digits"))
    assert isinstance(raw, RawData) and raw.name == "digits"


def test_load_raw_csv_with_test_fraction(tmp_path):
    rows = "\n".join(f"{i},{i * 2},{'cat' if i % 2 else 'dog'}" for i in range(20))
    (tmp_path / "pets.csv").write_text("a,b,kind\n" + rows + "\n")
    spec = DataSpec(path=tmp_path / "pets.csv", target="kind", test_fraction=0.25, split_seed=3)
    raw = load_raw(spec)
    assert raw.name == "pets.csv" and raw.kind == "table" and raw.feature_names == ["a", "b"]
    assert raw.X_train.shape == (15, 2) and raw.X_test.shape == (5, 2)
    assert raw.y_train.dtype.kind == "U"
    again = load_raw(spec)
    np.testing.assert_array_equal(raw.X_test, again.X_test)
    rows_seen = sorted(raw.X_train[:, 0].tolist() + raw.X_test[:, 0].tolist())
    assert rows_seen == list(range(20))


def test_load_raw_csv_without_target_lists_the_columns(tmp_path):
    (tmp_path / "t.csv").write_text("x,y,price\n1,2,3\n")
    with pytest.raises(NetfitError, match=r"data.target is not set.*--set data.target=price \(columns: x, y, price\)"):
        load_raw(DataSpec(path=tmp_path / "t.csv"))


def test_load_raw_csv_with_test_path(tmp_path):
    (tmp_path / "train.csv").write_text("a,b,y\n1,2,0.5\n3,4,1.5\n")
    (tmp_path / "test.csv").write_text("a,b,y\n5,6,2.5\n")
    raw = load_raw(DataSpec(path=tmp_path / "train.csv", test_path=tmp_path / "test.csv", target="y"))
    assert raw.X_test.tolist() == [[5.0, 6.0]] and raw.y_test.tolist() == [2.5]


def test_load_raw_refuses_a_test_file_missing_a_training_column(tmp_path):
    # A reordered test file is read by name (test_data_formats); a missing column is refused by name.
    (tmp_path / "train.csv").write_text("a,b,y\n1,2,0\n")
    (tmp_path / "test.csv").write_text("b,c,y\n5,6,1\n")
    with pytest.raises(NetfitError, match="test.csv.* has no feature column 'a'"):
        load_raw(DataSpec(path=tmp_path / "train.csv", test_path=tmp_path / "test.csv", target="y"))


def test_load_raw_idx_folder_is_an_image_dataset_with_its_t10k_part(tmp_path, write_idx):
    folder = _write_idx_set(tmp_path / "idx", write_idx)
    raw = load_raw(DataSpec(path=folder))
    assert raw.kind == "image" and raw.X_train.shape == (12, 784) and raw.X_test.shape == (5, 784)


def test_load_raw_npy_has_no_targets(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    with pytest.raises(NetfitError, match="no targets to train on.*numpy.savez"):
        load_raw(DataSpec(path=tmp_path / "x.npy"))


def test_load_raw_checks_the_arrays(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.array([[1.0, np.inf], [2.0, 3.0]]), y=np.array([0, 1]))
    with pytest.raises(NetfitError, match=r"d.npz: 1 NaN or infinite feature value\(s\), the first at row 0, column 1"):
        load_raw(DataSpec(path=tmp_path / "d.npz"))


def test_load_raw_empty_csv_table(tmp_path):
    (tmp_path / "e.csv").write_text("a,y\n")
    with pytest.raises(NetfitError, match="has no rows"):
        load_raw(DataSpec(path=tmp_path / "e.csv", target="y"))


# ----------------------------------------------------------------------------- split_rows


def test_split_rows_is_a_deterministic_partition():
    keep, held = split_rows(100, 0.15, seed=7)
    assert len(held) == 15 and len(keep) == 85
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(100))
    again_keep, again_held = split_rows(100, 0.15, seed=7)
    np.testing.assert_array_equal(held, again_held)
    assert not np.array_equal(held, split_rows(100, 0.15, seed=8)[1])


def test_split_rows_rounds_and_allows_zero():
    assert len(split_rows(442, 0.2, seed=0)[1]) == 88
    keep, held = split_rows(10, 0.0, seed=0)
    assert len(keep) == 10 and len(held) == 0


def test_split_rows_may_hold_out_everything_of_a_tiny_table():
    keep, held = split_rows(1, 0.6, seed=0)
    assert len(keep) == 0 and held.tolist() == [0]


def test_load_raw_test_fraction_that_leaves_no_training_rows(tmp_path):
    (tmp_path / "one.csv").write_text("a,y\n1,2\n")
    with pytest.raises(NetfitError, match=r"data.test_fraction = 0.6 holds out all 1 rows of one.csv; lower"):
        load_raw(DataSpec(path=tmp_path / "one.csv", target="y", test_fraction=0.6))
