"""Reading data files (netfit.data.formats) and refusing bad arrays (netfit.data.checks)."""

from __future__ import annotations

import gzip
import os
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from importlib import resources

import numpy as np
import pytest

import netfit.files
from netfit.data import check_arrays, load_raw, read_table
from netfit.data.formats import (FORMATS, csv_columns, infer_format, iter_tables, read_file, read_idx, read_idx_dir,
                                 read_idx_pair)
from netfit.errors import NetfitError
from netfit.spec import DataSpec

# Digits per class in the real MNIST test set (LeCun et al.).
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _images(n: int = 6, rows: int = 4, cols: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, rows, cols), dtype=np.uint8)


# ----------------------------------------------------------------------------- IDX


def test_shipped_sample_is_the_real_mnist_test_set():
    folder = resources.files("netfit.data") / "mnist-t10k"
    with resources.as_file(folder) as path:
        X, y, *_, image_shape = read_idx_pair(path / "t10k-images-idx3-ubyte.gz", path / "t10k-labels-idx1-ubyte.gz")
    assert X.shape == (10_000, 784) and X.dtype == np.uint8 and image_shape == (28, 28, 1)
    assert y.dtype == np.int64
    assert np.bincount(y).tolist() == MNIST_TEST_COUNTS
    assert X.min() == 0 and X.max() == 255
    assert X.flags.writeable  # torch.from_numpy warns about read-only arrays


@pytest.mark.parametrize("gzipped", [True, False])
def test_idx_reads_gzip_and_raw_alike(tmp_path, write_idx, gzipped):
    images = _images()
    labels = np.arange(6, dtype=np.uint8)
    X, y, *_ = read_idx_pair(write_idx(tmp_path / "a-images-idx3-ubyte", images, gzipped),
                         write_idx(tmp_path / "a-labels-idx1-ubyte", labels, gzipped))
    assert X.shape == (6, 12) and X.dtype == np.uint8
    np.testing.assert_array_equal(X, images.reshape(6, -1))
    np.testing.assert_array_equal(y, labels)


def test_idx_gzip_is_detected_by_content_not_name(tmp_path, write_idx):
    images = _images()
    path = write_idx(tmp_path / "images.idx", images, gzipped=True)  # gzip inside, no .gz suffix
    np.testing.assert_array_equal(read_idx(path), images)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_other_dtypes_round_trip_big_endian(tmp_path, write_idx, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 10).astype(dtype)
    read = read_idx(write_idx(tmp_path / "x.idx", array, gzipped=False))
    assert read.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(read, array)


def test_truncated_idx_says_expected_and_actual_bytes(tmp_path, write_idx):
    path = write_idx(tmp_path / "t-images-idx3-ubyte", _images(), gzipped=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(NetfitError, match=r"truncated: expected 88 bytes for shape \(6, 4, 3\), got 78") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_gzip_is_named(tmp_path, write_idx):
    path = write_idx(tmp_path / "t-images-idx3-ubyte.gz", _images(100, 28, 28))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(NetfitError, match="truncated gzip"):
        read_idx(path)


def test_idx_with_trailing_bytes_is_damaged(tmp_path, write_idx):
    path = write_idx(tmp_path / "x-images-idx3-ubyte", _images(), gzipped=False)
    path.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(NetfitError, match="damaged: 90 bytes"):
        read_idx(path)


def test_wrong_magic_number_is_refused(tmp_path):
    path = tmp_path / "x-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + bytes(100))
    with pytest.raises(NetfitError, match=r"not an IDX file: magic number 0x12340803.*0x00000803"):
        read_idx(path)


def test_image_and_label_counts_must_agree(tmp_path, write_idx):
    images = write_idx(tmp_path / "x-images-idx3-ubyte.gz", _images(5))
    labels = write_idx(tmp_path / "x-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(NetfitError, match="has 5 images but .* has 4 labels"):
        read_idx_pair(images, labels)


def test_swapped_images_and_labels_are_named(tmp_path, write_idx):
    images = write_idx(tmp_path / "x-images-idx3-ubyte.gz", _images(5))
    labels = write_idx(tmp_path / "x-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(NetfitError, match="swap"):
        read_idx_pair(labels, images)


def test_images_file_finds_its_labels_next_to_it(tmp_path, write_idx):
    images = write_idx(tmp_path / "train-images-idx3-ubyte.gz", _images())
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(6, dtype=np.uint8), gzipped=False)
    X, y = read_table(images)
    assert X.shape == (6, 12)
    assert y.tolist() == list(range(6))


def test_images_file_without_labels_gives_no_targets(tmp_path, write_idx):
    X, y = read_table(write_idx(tmp_path / "new-images-idx3-ubyte.gz", _images()))
    assert X.shape == (6, 12) and y is None


def test_labels_file_as_data_path_is_refused(tmp_path, write_idx):
    with pytest.raises(NetfitError, match="labels, not features"):
        read_table(write_idx(tmp_path / "x-labels-idx1-ubyte.gz", np.zeros(3, np.uint8)))


def test_idx_folder_gives_train_and_test_parts(tmp_path, write_idx):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", _images(6))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(6, dtype=np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", _images(3), gzipped=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(3, dtype=np.uint8), gzipped=False)
    train, test = read_idx_dir(tmp_path)
    assert train.X.shape == (6, 12) and test.X.shape == (3, 12)
    X, y = read_table(tmp_path)  # read_table gives the training part
    assert len(X) == len(y) == 6


def test_idx_folder_missing_half_a_pair(tmp_path, write_idx):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", _images(6))
    with pytest.raises(NetfitError, match="no train-labels-idx1-ubyte"):
        read_idx_dir(tmp_path)


def test_idx_folder_without_idx_files(tmp_path):
    with pytest.raises(NetfitError, match="has no train-images-idx3-ubyte"):
        read_table(tmp_path)


# ----------------------------------------------------------------------------- format inference


@pytest.mark.parametrize(
    "name, format",
    [("a.csv", "csv"), ("a.CSV", "csv"), ("a.npz", "npz"), ("a.npy", "npy"), ("a.gz", "idx"),
     ("train-images-idx3-ubyte", "idx"), ("a.idx", "idx"), ("a.parquet", "parquet"), ("a.PQ", "parquet"),
     ("a.feather", "feather"), ("a.arrow", "feather"), ("a.ipc", "feather")],
)
def test_format_is_inferred_from_the_name(tmp_path, name, format):
    assert infer_format(tmp_path / name) == format


def test_unknown_suffix_lists_formats_and_says_set_data_format(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(NetfitError, match=r"data.xlsx.*idx, csv, parquet, feather, npz, npy.*\.parquet.*\.feather.*set data.format"):
        read_table(path)


def test_missing_file(tmp_path):
    with pytest.raises(NetfitError, match="data file '.*nope.csv' does not exist"):
        read_table(tmp_path / "nope.csv", target="y")


def test_every_format_is_registered():
    assert FORMATS.names() == ["idx", "csv", "parquet", "feather", "npz", "npy", "images"]


# ----------------------------------------------------------------------------- CSV


def _csv(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_numeric_table(tmp_path):
    path = _csv(tmp_path, "a, b ,label\n1,2.5,0\n-3,4e1,1\n\n")
    table = read_file(path, target="label")
    np.testing.assert_array_equal(table.X, [[1.0, 2.5], [-3.0, 40.0]])
    assert table.X.dtype == np.float32 and table.X.flags.c_contiguous
    assert table.y.dtype == np.int64 and table.y.tolist() == [0, 1]  # integer literals stay integers
    assert table.feature_names == ["a", "b"]


def test_csv_target_in_the_middle_and_string_labels(tmp_path):
    path = _csv(tmp_path, "x1,species,x2\n1,setosa,2\n3, virginica ,4\n")
    X, y = read_table(path, target="species")
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    assert y.dtype.kind == "U" and y.tolist() == ["setosa", "virginica"]


def test_csv_without_target_reads_every_column_as_a_feature(tmp_path):
    X, y = read_table(_csv(tmp_path, "a,b\n1,2\n"))
    assert X.shape == (1, 2) and y is None


def test_csv_non_numeric_cell_names_line_row_column_and_text(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,0\n3,abc,1\n")
    with pytest.raises(NetfitError, match=r"non-numeric value 'abc' at line 3 \(data row 2\), column 'b'"):
        read_table(path, target="y")


@pytest.mark.parametrize("cell", ["", "NA", "nan", " NaN ", "N/A", "null", " NA "])
def test_csv_missing_value_is_nan_and_refused_by_row_and_column_unless_imputed(tmp_path, cell):
    path = _csv(tmp_path, f"a,b,y\n1,2,0\n3,4,1\n5,{cell},1\n")
    X, _ = read_table(path, target="y")
    assert X.dtype == np.float32 and np.isnan(X[2, 1]) and not np.isnan(np.delete(X.ravel(), 5)).any()
    with pytest.raises(NetfitError, match=r"the first at row 2, column 1 \('b'\) \(0-based\); fill in or drop those "
                                          r'rows, or train with data.missing.numeric = "impute"'):
        load_raw(DataSpec(path=path, target="y"))


def test_csv_true_false_column_declared_numeric_reads_as_when_inferred(tmp_path):
    # A run declares every column's type, so predict reads a boolean column as declared numeric.
    path = _csv(tmp_path, "a,flag,y\n1,true,0\n3,false,1\n")
    inferred = read_file(path, target="y")
    declared = read_file(path, target="y", column_types={"flag": "numeric"})
    np.testing.assert_array_equal(declared.X, [[1, 1], [3, 0]])
    np.testing.assert_array_equal(declared.X, inferred.X)
    with pytest.raises(NetfitError, match=r"non-numeric value 'abc' at line 3 \(data row 2\), column 'a'; fix the cell "
                                          r'\(data.columns.a = "numeric"'):
        read_file(_csv(tmp_path, "a,y\n1,0\nabc,1\n", "typo.csv"), target="y", column_types={"a": "numeric"})


def test_csv_missing_target_value(tmp_path):
    path = _csv(tmp_path, "a,y\n1,cat\n2,\n")
    with pytest.raises(NetfitError, match=r"missing target value at line 3 \(data row 2\), column 'y'"):
        read_table(path, target="y")


def test_csv_unknown_target_suggests_the_nearest_column(tmp_path):
    path = _csv(tmp_path, "sepal,petal,label\n1,2,0\n")
    with pytest.raises(NetfitError, match=r"no column 'lable'; did you mean 'label'\? columns: sepal, petal, label"):
        read_table(path, target="lable")


def test_csv_ragged_row_names_the_line(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,0\n3,4\n")
    with pytest.raises(NetfitError, match="line 3 has 2 fields but the header has 3"):
        read_table(path, target="y")


def test_csv_empty_file(tmp_path):
    with pytest.raises(NetfitError, match="is empty"):
        read_table(_csv(tmp_path, ""), target="y")


def test_csv_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffa,y\n1,2\n".encode("utf-8"))
    assert read_file(path, target="y").feature_names == ["a"]


# ----------------------------------------------------------------------------- NumPy


def test_npz_with_x_and_y(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.ones((4, 3), np.float32), y=np.array([0, 1, 1, 0], np.uint8))
    X, y = read_table(path)
    assert X.shape == (4, 3) and X.dtype == np.float32
    assert y.dtype == np.int64


def test_npz_alternative_keys_and_missing_y(tmp_path):
    np.savez(tmp_path / "a.npz", features=np.zeros((2, 2)), labels=np.array([1.5, 2.5]))
    X, y = read_table(tmp_path / "a.npz")
    assert y.dtype == np.float64 and y.tolist() == [1.5, 2.5]
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 2)))
    assert read_table(tmp_path / "b.npz")[1] is None


def test_npz_without_features_lists_its_keys(tmp_path):
    np.savez(tmp_path / "d.npz", data=np.zeros((2, 2)))
    with pytest.raises(NetfitError, match=r"no features array: expected key 'X'.*found 'data'"):
        read_table(tmp_path / "d.npz")


def test_npz_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(NetfitError, match="object array"):
        read_table(path)


def test_npy_images_are_flattened_and_stay_uint8(tmp_path):
    np.save(tmp_path / "x.npy", _images(5, 28, 28))
    X, y = read_table(tmp_path / "x.npy")
    assert X.shape == (5, 784) and X.dtype == np.uint8 and y is None


def test_npy_pickled_object_array_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[1, "a"]], dtype=object))
    with pytest.raises(NetfitError, match="object array.*unpickling"):
        read_table(tmp_path / "x.npy")


def test_npy_that_is_not_numpy_is_refused(tmp_path):
    path = _csv(tmp_path, "a,b\n1,2\n", name="x.npy")
    with pytest.raises(NetfitError, match=r"not a NumPy .npy file.*data.format"):
        read_table(path)


# ----------------------------------------------------------------------------- check_arrays


def test_check_arrays_accepts_a_good_table():
    check_arrays(np.zeros((3, 2)), np.array([0, 1, 0]), "t.csv")
    check_arrays(np.zeros((3, 2), np.uint8), None, "images")


def test_nan_and_inf_features_are_counted_and_located():
    X = np.zeros((4, 3))
    X[2, 1] = np.nan
    X[3, 0] = np.inf
    with pytest.raises(NetfitError, match=r"t.csv: 2 NaN or infinite feature value\(s\), the first at row 2, column 1 \('b'\)"):
        check_arrays(X, None, "t.csv", feature_names=["a", "b", "c"])


def test_nan_targets_are_refused():
    with pytest.raises(NetfitError, match=r"1 NaN or infinite target value\(s\), the first at row 1"):
        check_arrays(np.zeros((3, 2)), np.array([0.0, np.nan, 1.0]), "t")


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.zeros((0, 3)), None, "no rows"),
        (np.zeros((3, 0)), None, "no feature columns"),
        (np.zeros(3), None, r"2-D array \(rows, features\), got shape \(3,\)"),
        (np.zeros((3, 2)), np.zeros(2), "3 rows of features but 2 targets"),
    ],
)
def test_check_arrays_refuses_unusable_shapes(X, y, message):
    with pytest.raises(NetfitError, match=message):
        check_arrays(X, y, "data")


def test_check_arrays_refuses_three_dimensional_targets():
    with pytest.raises(NetfitError, match=r"targets must be one value per row or one row of values per row, "
                                          r"got shape \(3, 2, 2\)"):
        check_arrays(np.zeros((3, 2)), np.zeros((3, 2, 2)), "d")


def test_check_arrays_locates_nan_in_two_dimensional_targets():
    y = np.zeros((4, 3))
    y[2, 1] = np.nan
    with pytest.raises(NetfitError, match=r"1 NaN or infinite target value\(s\), the first at row 2, target column 1"):
        check_arrays(np.zeros((4, 2)), y, "d")


def test_check_arrays_refuses_zero_rows_of_images():
    with pytest.raises(NetfitError, match=r"no rows \(shape \(0, 28, 28\)\)"):
        check_arrays(np.zeros((0, 28, 28), np.uint8), None, "d")



def test_data_messages_are_one_line(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,0\n3,abc,1\n")
    with pytest.raises(NetfitError) as err:
        read_table(path, target="y")
    assert "\n" not in str(err.value)


def test_idx_gzip_of_the_real_sample_decompresses_to_idx_bytes():
    # Guards the byte-for-byte copy: the shipped gzip holds 16 header + 10,000*784 pixel bytes.
    content = (resources.files("netfit.data") / "mnist-t10k" / "t10k-images-idx3-ubyte.gz").read_bytes()
    assert len(gzip.decompress(content)) == 16 + 10_000 * 784


# ----------------------------------------------------------------------------- helpers for bad input (issue 8)

_FIX = 'set data.encoding (--encoding on evaluate and predict; e.g. "latin-1" or "cp1252"), or save the file as UTF-8'


def _npy_header(shape: tuple, descr: str = "<f8", size: int = 80) -> bytes:
    """A version 1.0 .npy header of ``size`` bytes, as numpy.save writes it, claiming ``shape``."""
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin-1")
    padding = size - 10 - len(text) - 1
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", size - 10) + text + b" " * padding + b"\n"


def _little_memory(monkeypatch, free: int = 999) -> None:
    monkeypatch.setattr(netfit.files, "available_memory", lambda: free)


# ----------------------------------------------------------------------------- only regular files


def test_fifo_as_data_file_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "rows.csv")
    with pytest.raises(NetfitError, match=r"'.*rows.csv' is a FIFO \(named pipe\), not a regular file"):
        read_file(tmp_path / "rows.csv", target="y")


@pytest.mark.parametrize("format", ["npy", "csv", "npz", "idx", None])
def test_dev_zero_is_refused_as_a_device_whatever_the_format(format):
    with pytest.raises(NetfitError, match="'/dev/zero' is a character device, not a regular file"):
        read_file("/dev/zero", format)


def test_symlink_loop_is_named_before_its_name_is_read_as_a_format(tmp_path):
    (tmp_path / "data").symlink_to(tmp_path / "data")
    with pytest.raises(NetfitError, match="is a symlink loop"):
        read_file(tmp_path / "data")


def test_folder_given_as_a_csv_file_is_refused(tmp_path):
    with pytest.raises(NetfitError, match="is a folder, not a regular file"):
        read_file(tmp_path, "csv", "y")


def test_unreadable_data_file_says_permission_denied(tmp_path, monkeypatch):
    path = _csv(tmp_path, "a,y\n1,2\n")
    path.chmod(0)
    if os.geteuid() == 0:
        # Root opens any file; give it the refusal every other user gets for this one.
        import errno

        import netfit.files

        real_open = os.open

        def refusing_open(name, flags, *args):
            if os.fspath(name) == str(path):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(name))
            return real_open(name, flags, *args)

        monkeypatch.setattr(netfit.files.os, "open", refusing_open)
    with pytest.raises(NetfitError, match="permission denied; check its permissions"):
        read_file(path, target="y")


# ----------------------------------------------------------------------------- NumPy: claims checked first


def test_npy_whose_header_claims_2_to_the_40_elements_is_refused_before_allocating(tmp_path):
    path = tmp_path / "lie.npy"
    path.write_bytes(_npy_header((2**40,)) + bytes(36))
    assert path.stat().st_size == 116
    with pytest.raises(NetfitError, match=r"header claims 8.8 TB .* but the file holds 36 bytes after its header; "
                                          "the file is truncated or not what it claims"):
        read_file(path)


def test_npy_with_bytes_beyond_its_claim_is_damaged(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((3, 2)))
    path.write_bytes(path.read_bytes() + b"\0" * 8)
    with pytest.raises(NetfitError, match="claims 48 bytes .* holds 56 bytes after its header; the file is damaged"):
        read_file(path)


def test_npz_member_claiming_2_to_the_40_elements_is_refused_before_allocating(tmp_path):
    path = tmp_path / "lie.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", _npy_header((2**40,)) + bytes(36))
    with pytest.raises(NetfitError, match=r"lie.npz\['X'\].*header claims 8.8 TB .* archive declares 36 bytes"):
        read_file(path)


def test_npz_member_larger_than_free_memory_is_refused_before_reading(tmp_path, monkeypatch):
    np.savez(tmp_path / "d.npz", X=np.zeros((100, 10)), y=np.zeros(100))
    _little_memory(monkeypatch)
    with pytest.raises(NetfitError, match=r"would need 8.0 kB of memory but only 999 bytes is free"):
        read_file(tmp_path / "d.npz")


def test_npy_larger_than_free_memory_is_refused_whole_but_streams_through_a_memory_map(tmp_path, monkeypatch):
    array = np.arange(1000, dtype=np.float32).reshape(100, 10)
    np.save(tmp_path / "x.npy", array)
    _little_memory(monkeypatch)
    with pytest.raises(NetfitError, match="would need 4.0 kB of memory but only 999 bytes is free"):
        read_file(tmp_path / "x.npy")
    chunks = list(iter_tables(tmp_path / "x.npy", chunk_rows=16))
    assert [len(chunk.X) for chunk in chunks] == [16] * 6 + [4]
    np.testing.assert_array_equal(np.concatenate([chunk.X for chunk in chunks]), array)
    assert all(chunk.X.flags.writeable and not isinstance(chunk.X, np.memmap) for chunk in chunks)


def test_npy_fortran_order_and_big_endian_read_as_saved(tmp_path):
    array = np.asfortranarray(np.arange(24, dtype=">f8").reshape(6, 4))
    np.save(tmp_path / "f.npy", array)
    np.testing.assert_array_equal(read_file(tmp_path / "f.npy").X, array)
    np.testing.assert_array_equal(np.concatenate([t.X for t in iter_tables(tmp_path / "f.npy", chunk_rows=4)]), array)


@pytest.mark.parametrize("make", [
    lambda path: np.savez(path, X=np.zeros((0, 5)), y=np.zeros(0)),
    lambda path: np.savez(path, X=np.array([])),
    lambda path: np.save(path, np.zeros((0, 5))),
    lambda path: np.save(path, np.zeros((0, 28, 28), np.uint8)),
], ids=["empty-npz", "empty-1d-npz", "npy-0x5", "npy-0x28x28"])
def test_numpy_file_without_rows_is_refused(tmp_path, make):
    path = tmp_path / "empty.npz"
    make(path)
    path = next(tmp_path.iterdir())  # np.save adds .npy
    with pytest.raises(NetfitError, match="has no rows"):
        read_file(path)


def test_npy_holding_a_single_value_is_refused(tmp_path):
    np.save(tmp_path / "one.npy", np.float64(3.0))
    with pytest.raises(NetfitError, match="holds a single value, not rows"):
        read_file(tmp_path / "one.npy")


def test_npz_targets_are_one_value_or_one_row_of_values_per_row(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones((5, 3)), y=np.arange(10, dtype=np.float32).reshape(5, 2))
    table = read_file(tmp_path / "d.npz")
    assert table.y.shape == (5, 2) and table.y.dtype == np.float64  # several regression targets
    check_arrays(table.X, table.y, "d.npz")
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 3)), y=np.zeros((4, 2, 2)))
    with pytest.raises(NetfitError, match=r"targets must be one value per row or one row of values per row, "
                                          r"got shape \(4, 2, 2\)"):
        read_file(tmp_path / "d.npz")


def test_npz_text_in_several_target_columns_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones((2, 3)), y=np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(NetfitError, match="several targets per row must be numbers"):
        read_file(tmp_path / "d.npz")


def test_npz_crc_mismatch_is_a_damaged_archive(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.arange(12.0).reshape(3, 4))
    content = bytearray(path.read_bytes())
    content[content.index(b"\x93NUMPY") + 128 + 8] ^= 0xFF  # one data byte, inside the stored member
    path.write_bytes(bytes(content))
    with pytest.raises(NetfitError, match="not a readable .npz archive.*CRC"):
        read_file(path)


# ----------------------------------------------------------------------------- IDX: streamed, bounded


def _gzip_bomb(path, header: bytes, zeros: int) -> None:
    """``header`` followed by ``zeros`` zero bytes, gzip-compressed a megabyte at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    with open(path, "wb") as out:
        out.write(compressor.compress(header))
        for _ in range(zeros >> 20):
            out.write(compressor.compress(block))
        out.write(compressor.flush())


def test_idx_gzip_expanding_beyond_its_header_is_refused_after_one_more_byte(tmp_path):
    path = tmp_path / "bomb-images-idx3-ubyte.gz"
    _gzip_bomb(path, bytes([0, 0, 8, 3]) + struct.pack(">3I", 10, 28, 28), 20 << 20)
    with pytest.raises(NetfitError, match="expands beyond the 7856 bytes its header declares"):
        read_idx(path)


def test_idx_gzip_shorter_than_its_header_declares_is_truncated(tmp_path, write_idx):
    path = tmp_path / "x-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">3I", 10, 28, 28) + bytes(100)))
    with pytest.raises(NetfitError, match=r"truncated: expected 7856 bytes after gunzip .* got 116"):
        read_idx(path)


@pytest.mark.parametrize("gzipped", [True, False])
def test_idx_with_zero_images_is_refused(tmp_path, write_idx, gzipped):
    path = write_idx(tmp_path / "z-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8), gzipped)
    with pytest.raises(NetfitError, match=r"has no rows: its header declares 0 images \(shape \(0, 28, 28\)\)"):
        read_file(path)


def test_idx_header_beyond_free_memory_is_refused_before_reading(tmp_path, write_idx, monkeypatch):
    path = write_idx(tmp_path / "x-images-idx3-ubyte.gz", _images(4, 28, 28))
    _little_memory(monkeypatch)
    with pytest.raises(NetfitError, match=r"IDX shape \(4, 28, 28\)\) would need 3.1 kB of memory"):
        read_idx(path)


def test_idx_labels_that_are_not_one_dimensional_stay_refused(tmp_path, write_idx):
    write_idx(tmp_path / "t-images-idx3-ubyte.gz", _images(4))
    write_idx(tmp_path / "t-labels-idx1-ubyte.gz", np.zeros((4, 2), np.uint8))
    with pytest.raises(NetfitError, match=r"shape \(4, 2\), not 1-D labels"):
        read_file(tmp_path / "t-images-idx3-ubyte.gz")


# ----------------------------------------------------------------------------- CSV: encodings


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_csv_byte_order_mark_decides_the_encoding(tmp_path, encoding):
    path = tmp_path / "t.csv"
    bom = {"utf-16-be": "\ufeff"}.get(encoding, "")  # utf-16/utf-32/utf-8-sig write their own mark
    path.write_bytes((bom + "café,y\n1.5,été\n").encode(encoding))
    table = read_file(path, target="y")
    assert table.feature_names == ["café"] and table.X.tolist() == [[1.5]] and table.y.tolist() == ["été"]


def test_csv_utf16_without_byte_order_mark_names_the_nul_and_the_fix(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("a,y\n1,2\n".encode("utf-16-le"))
    with pytest.raises(NetfitError) as err:
        read_file(path, target="y")
    assert "is not UTF-8 text: line 1, column 2 holds a NUL character" in str(err.value)
    assert 'data.encoding = "utf-16-le"' in str(err.value) and _FIX in str(err.value)
    assert read_file(path, target="y", encoding="utf-16-le").y.tolist() == [2]


@pytest.mark.parametrize("text, where", [
    ("caf\xe9,y\n1,2\n", "byte 0xE9 at line 1, column 4 (byte 3 of the file)"),
    ("a,y\n1,2\n3,caf\xe9\n", "byte 0xE9 at line 3, column 6 (byte 13 of the file)"),
], ids=["header", "row"])
def test_csv_latin1_byte_names_line_column_byte_and_the_fix(tmp_path, text, where):
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(NetfitError) as err:
        read_file(path, target="y")
    assert f"is not UTF-8 text: {where} does not decode; {_FIX}" in str(err.value)
    assert "\n" not in str(err.value)
    assert read_file(path, target="y", encoding="latin-1").X.shape == (len(text.splitlines()) - 1, 1)


def test_csv_bad_byte_after_the_first_megabyte_names_its_line_and_byte(tmp_path):
    # \r\n line ends and two-byte characters, so blocks split lines and characters.
    lines = ["a,y"] + [f"{i},é{i % 7}" for i in range(150_000)]
    content = "\r\n".join(lines).encode("utf-8") + b"\r\n"
    at = content.index(b"\r\n120000,") + 2
    path = tmp_path / "t.csv"
    path.write_bytes(content[:at] + b"\xff" + content[at:])
    with pytest.raises(NetfitError, match=rf"byte 0xFF at line 120002, column 1 \(byte {at} of the file\)"):
        read_file(path, target="y")
    path.write_bytes(content)
    assert read_file(path, target="y").y[-1] == "é" + str(149_999 % 7)


@pytest.mark.parametrize("seed", range(5))
def test_csv_of_random_bytes_is_refused_as_not_text(tmp_path, seed):
    path = tmp_path / "noise.csv"
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(NetfitError, match=f"is not UTF-8 text: .*{re.escape(_FIX)}"):
        read_file(path, target="y")


def test_csv_in_a_declared_encoding_that_does_not_fit_says_which(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("a,y\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(NetfitError, match=r"is not 'ascii' text \(data.encoding\): byte 0xE9 at line 2, column 6"):
        read_file(path, target="y", encoding="ascii")


@pytest.mark.parametrize("encoding", ["base64", "rot13", "no-such-encoding"])
def test_csv_encoding_that_gives_no_text_is_refused(tmp_path, encoding):
    with pytest.raises(NetfitError, match=rf"data.encoding = '{encoding}' is not a text encoding"):
        read_file(_csv(tmp_path, "a,y\n1,2\n"), target="y", encoding=encoding)


# ----------------------------------------------------------------------------- CSV: explicit header


def test_csv_first_row_of_numbers_is_refused_as_data_not_names(tmp_path):
    path = _csv(tmp_path, "1,2,3\n4,5,6\n")
    with pytest.raises(NetfitError, match=r"the first row of '.*data.csv' looks like data, not column names.*"
                                          r"set data.header = false \(--no-header on evaluate/predict\)"):
        read_file(path, target="3")


def test_csv_without_header_names_columns_f0_f1(tmp_path):
    path = _csv(tmp_path, "1,2,3\n4,5,6\n")
    table = read_file(path, target="f2", header=False)
    assert table.feature_names == ["f0", "f1"] and table.X.tolist() == [[1, 2], [4, 5]] and table.y.tolist() == [3, 6]
    assert csv_columns(path, header=False) == ["f0", "f1", "f2"]


def test_csv_without_header_takes_given_names_of_the_same_count(tmp_path):
    path = _csv(tmp_path, "1,2,3\n4,5,6\n")
    table = read_file(path, target="c", header=False, names=["a", "b", "c"])
    assert table.feature_names == ["a", "b"]
    with pytest.raises(NetfitError, match=r"line 1 has 3 fields but 2 column names were given \(a, b\)"):
        read_file(path, header=False, names=["a", "b"])


@pytest.mark.parametrize("header, message", [
    ("a,b,a", r"names column 'a' twice in its header row \(columns 1 and 3\)"),
    ("a,,c", "column 2 of .* has no name in the header row"),
])
def test_csv_duplicate_or_empty_column_names_are_refused(tmp_path, header, message):
    with pytest.raises(NetfitError, match=message):
        read_file(_csv(tmp_path, f"{header}\n1,2,3\n"))


@pytest.mark.parametrize("read", [read_file, lambda path: list(iter_tables(path))], ids=["whole", "chunks"])
def test_csv_with_a_header_but_no_rows_is_refused(tmp_path, read):
    with pytest.raises(NetfitError, match=r"has no rows: only a header row \(a, b, y\)"):
        read(_csv(tmp_path, "a,b,y\n\n"))


# ----------------------------------------------------------------------------- CSV: targets


@pytest.mark.parametrize("cells, dtype", [
    (["25", "-3", "+7", " 346 "], np.int64),
    (["151.0", "25", "2.5", "1e3"], np.float64),
    (["cat", "25", "dog", "2.5"], np.str_),
    (["99999999999999999999", "1"], np.float64),
])
def test_csv_target_is_int64_for_integer_literals_float64_for_numbers_else_text(tmp_path, cells, dtype):
    path = _csv(tmp_path, "a,y\n" + "".join(f"{i},{cell}\n" for i, cell in enumerate(cells)))
    y = read_file(path, target="y").y
    assert y.dtype.type is np.dtype(dtype).type
    assert y.tolist() == [dtype(cell.strip()) if dtype is not np.float64 else float(cell) for cell in cells]


def test_csv_target_type_is_decided_over_the_whole_file_not_its_first_chunk(tmp_path):
    rows = 300_000  # more than one parsing batch of a 2-column file
    path = _csv(tmp_path, "a,y\n" + "1,2\n" * rows + "1,2.5\n")
    y = read_file(path, target="y").y
    assert y.dtype == np.float64 and len(y) == rows + 1 and y[-1] == 2.5


def test_csv_several_targets_give_rows_by_targets_floats(tmp_path):
    path = _csv(tmp_path, "Weight,x,Waist,Pulse\n191,1.5,36,50\n189,2.5,37,52\n")
    table = read_file(path, target=["Weight", "Waist", "Pulse"])
    assert table.y.shape == (2, 3) and table.y.dtype == np.float64
    assert table.y.tolist() == [[191, 36, 50], [189, 37, 52]] and table.feature_names == ["x"]


def test_csv_text_in_one_of_several_targets_is_refused_naming_the_column(tmp_path):
    path = _csv(tmp_path, "a,t1,t2\n1,2,3\n4,5,high\n")
    with pytest.raises(NetfitError, match=r"non-numeric target value 'high' at line 3 \(data row 2\), column 't2'; "
                                          "with several targets"):
        read_file(path, target=["t1", "t2"])


def test_csv_missing_cell_in_one_of_several_targets(tmp_path):
    path = _csv(tmp_path, "a,t1,t2\n1,2,3\n4,NA,6\n")
    with pytest.raises(NetfitError, match=r"missing target value at line 3 \(data row 2\), column 't1'"):
        read_file(path, target=["t1", "t2"])


# ----------------------------------------------------------------------------- CSV: columns by name


def test_csv_features_by_name_are_reordered_and_other_columns_listed(tmp_path):
    path = _csv(tmp_path, "id,petal,label,sepal\n7,2.0,cat,1.0\n8,4.0,dog,3.0\n")
    table = read_file(path, features=["sepal", "petal"])
    assert table.X.tolist() == [[1.0, 2.0], [3.0, 4.0]] and table.feature_names == ["sepal", "petal"]
    assert table.y is None and table.ignored == ("id", "label")
    with_target = read_file(path, target="label", features=["sepal", "petal"])
    assert with_target.y.tolist() == ["cat", "dog"] and with_target.ignored == ("id",)


def test_csv_missing_feature_column_is_named_with_the_nearest(tmp_path):
    path = _csv(tmp_path, "sepal_len,petal,label\n1,2,0\n")
    with pytest.raises(NetfitError, match=r"has no feature column 'sepal'.*did you mean 'sepal_len'\?.*"
                                          r"its columns are sepal_len, petal, label"):
        read_file(path, features=["sepal", "petal"])
    # A run's features come with their types: the missing one is still named as a feature, not as data.columns.
    with pytest.raises(NetfitError, match=r"has no feature column 'sepal'.*add or rename that column"):
        read_file(path, features=["sepal", "petal"], column_types={"sepal": "numeric", "petal": "categorical"})


def test_features_by_name_on_a_file_without_names_must_match_in_number(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    assert read_file(tmp_path / "x.npy", features=["a", "b", "c"]).X.shape == (2, 3)
    with pytest.raises(NetfitError, match="has 3 feature columns but 2 are expected"):
        read_file(tmp_path / "x.npy", features=["a", "b"])


def test_load_raw_reads_a_reordered_test_file_by_column_name(tmp_path):
    (tmp_path / "train.csv").write_text("a,b,y\n1,2,0\n3,4,1\n")
    (tmp_path / "test.csv").write_text("id,y,b,a\n9,1,6,5\n")
    raw = load_raw(DataSpec(path=tmp_path / "train.csv", test_path=tmp_path / "test.csv", target="y"))
    assert raw.X_test.tolist() == [[5.0, 6.0]] and raw.y_test.tolist() == [1] and raw.test_ignored == ("id",)


def test_load_raw_passes_header_encoding_and_several_targets(tmp_path):
    (tmp_path / "t.csv").write_bytes("1,2,3,4\n5,6,7,8\n".encode("latin-1"))
    raw = load_raw(DataSpec(path=tmp_path / "t.csv", header=False, encoding="latin-1", target=["f2", "f3"]))
    assert raw.X_train.tolist() == [[1, 2], [5, 6]] and raw.y_train.tolist() == [[3, 4], [7, 8]]
    assert raw.feature_names == ["f0", "f1"]


# ----------------------------------------------------------------------------- CSV in chunks


def test_iter_tables_gives_the_rows_of_read_file_in_chunks(tmp_path):
    rows = [f"{i},{i * 0.5},{i % 3}" for i in range(1000)]
    path = _csv(tmp_path, "a,b,y\n" + "\n".join(rows) + "\n")
    whole = read_file(path, target="y")
    chunks = list(iter_tables(path, target="y", chunk_rows=300))
    assert [len(chunk.X) for chunk in chunks] == [300, 300, 300, 100]
    np.testing.assert_array_equal(np.concatenate([chunk.X for chunk in chunks]), whole.X)
    np.testing.assert_array_equal(np.concatenate([chunk.y for chunk in chunks]), whole.y)
    assert all(chunk.feature_names == ["a", "b"] for chunk in chunks)


def test_iter_tables_reports_a_bad_cell_in_a_later_chunk_as_read_file_does(tmp_path):
    path = _csv(tmp_path, "a,b\n" + "1,2\n" * 500 + "3,x\n")
    message = r"non-numeric value 'x' at line 502 \(data row 501\), column 'b'"
    with pytest.raises(NetfitError, match=message):
        read_file(path)
    with pytest.raises(NetfitError, match=message):
        list(iter_tables(path, chunk_rows=100))


def test_iter_tables_checks_the_header_before_it_returns(tmp_path):
    with pytest.raises(NetfitError, match="looks like data"):
        iter_tables(_csv(tmp_path, "1,2\n3,4\n"))  # no next() needed: the caller has written nothing yet


def test_csv_too_large_to_read_whole_is_refused_early_but_iterates(tmp_path, monkeypatch):
    path = _csv(tmp_path, "a,b\n" + "1,2\n" * 2000)
    _little_memory(monkeypatch, free=20_000)  # the 16 kB of float32 fit, pyarrow's columns and the array do not
    with pytest.raises(NetfitError, match=r"reading '.*data.csv' whole \(about 16.0 kB of numbers\) would need "
                                          r"32.0 kB of memory but only 20.0 kB is free; predict reads a file in chunks"):
        read_file(path)
    assert sum(len(table.X) for table in iter_tables(path, chunk_rows=500)) == 2000


def _peak_rss_of_child(code: str, *args: str) -> tuple[int, int]:
    """Run ``code`` in a fresh interpreter; its RSS after imports (printed first) and its peak, in bytes."""
    process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    out = process.stdout.read().split()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, out
    return int(out[0]) * 1024, usage.ru_maxrss * 1024  # Linux reports kilobytes


_MEMORY_CHILD = """
import resource, sys
from netfit.data.formats import iter_tables, read_file
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
if sys.argv[2] == "chunks":
    rows = sum(len(table.X) for table in iter_tables(sys.argv[1]))
else:
    rows = len(read_file(sys.argv[1]).X)
print(rows)
"""


@pytest.fixture(scope="module")
def wide_csv(tmp_path_factory):
    """16 MB of one-digit cells: 8 million cells, 64 MB as float64, far more than its text."""
    path = tmp_path_factory.mktemp("big") / "ones.csv"
    row = ",".join("1" if i % 3 else "0" for i in range(32)) + "\n"
    with open(path, "w") as out:
        out.write(",".join(f"c{i}" for i in range(32)) + "\n")
        out.write(row * (16_000_000 // len(row)))
    return path, 8 * 32 * (16_000_000 // len(row))


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in kilobytes is Linux's")
def test_iterating_a_csv_holds_one_chunk_not_the_file(wide_csv):
    path, result_bytes = wide_csv
    before, peak = _peak_rss_of_child(_MEMORY_CHILD, str(path), "chunks")
    # The whole file as float64 is 64 MB; a reader that held it, or its text, would pass 3/4 of it.
    # Iterating holds one parsing batch (~16 MB of Python strings) and one chunk (~16 MB); measured: ~25 MB.
    assert peak - before < result_bytes * 3 // 4, (peak - before) / 1e6


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in kilobytes is Linux's")
def test_reading_a_whole_csv_peaks_at_a_small_multiple_of_its_result(wide_csv):
    path, result_bytes = wide_csv
    before, peak = _peak_rss_of_child(_MEMORY_CHILD, str(path), "whole")
    # Batches and their concatenation are alive together (2x the result), plus one batch of strings;
    # measured: ~2.1x. The reader this replaced kept every cell as a Python string: ~25x.
    assert peak - before < result_bytes * 5 // 2 + (32 << 20), (peak - before) / 1e6



def test_a_csv_separated_by_semicolons_is_named_as_such(tmp_path):
    path = _csv(tmp_path, "a;b;c;label\n1;2;3;0\n4;5;6;1\n")
    with pytest.raises(NetfitError, match="separated by semicolons, but netfit reads comma-separated files"):
        read_file(path, target="label")


# ----------------------------------------------------------------------------- Parquet and Feather


def _iris_files(tmp_path):
    """scikit-learn's iris table (150 rows, 4 numeric columns, species labels) as CSV, Parquet and Feather."""
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq
    from sklearn.datasets import load_iris

    iris = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    species = iris.target_names[iris.target]
    lines = [",".join(names + ["species"])] + [",".join([*(repr(float(v)) for v in row), label])
                                                for row, label in zip(iris.data, species)]
    (tmp_path / "iris.csv").write_text("\n".join(lines) + "\n")
    table = pa.table({**{name: iris.data[:, j] for j, name in enumerate(names)}, "species": species.tolist()})
    pq.write_table(table, tmp_path / "iris.parquet", row_group_size=40)
    feather.write_feather(table, tmp_path / "iris.feather", chunksize=64)
    return iris, names


@pytest.mark.parametrize("name", ["iris.parquet", "iris.feather"])
def test_parquet_and_feather_give_the_rows_of_the_same_csv(tmp_path, name):
    iris, names = _iris_files(tmp_path)
    csv = read_file(tmp_path / "iris.csv", target="species")
    table = read_file(tmp_path / name, target="species")
    assert table.X.dtype == np.float32 and table.X.shape == (150, 4) and table.feature_names == names
    np.testing.assert_array_equal(table.X, csv.X)
    np.testing.assert_array_equal(table.X, iris.data.astype(np.float32))
    assert table.y.tolist() == csv.y.tolist() == iris.target_names[iris.target].tolist()
    chunks = list(iter_tables(tmp_path / name, target="species", chunk_rows=50))  # row groups of 40, batches of 64
    assert [len(chunk.X) for chunk in chunks] == [50, 50, 50]
    np.testing.assert_array_equal(np.concatenate([chunk.X for chunk in chunks]), csv.X)


def test_parquet_features_by_name_and_column_types(tmp_path):
    _, names = _iris_files(tmp_path)
    table = read_file(tmp_path / "iris.parquet", target="species", features=["petal_width", "sepal_length"])
    assert table.feature_names == ["petal_width", "sepal_length"] and table.ignored == ("sepal_width", "petal_length")
    ignored = read_file(tmp_path / "iris.parquet", target="species", column_types={"sepal_width": "ignore"})
    assert ignored.X.shape == (150, 3) and ignored.ignored == ("sepal_width",)
    with pytest.raises(NetfitError, match=r"data.columns names 'petal_widht'.*did you mean 'petal_width'"):
        read_file(tmp_path / "iris.parquet", target="species", column_types={"petal_widht": "ignore"})


def test_parquet_keeps_stored_types_and_refuses_what_is_no_feature(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"n": pa.array([1, 2, None], pa.int64()), "flag": [True, False, True],
                             "city": pa.array(["Oslo", None, "Oslo"]).dictionary_encode(),
                             "tags": [[1], [2], []], "y": [0, 1, 0]}), tmp_path / "mixed.parquet")
    with pytest.raises(NetfitError, match=r"column 'tags' holds list<element: int64> values.*"
                                          r'data.columns.tags = "ignore"'):
        read_file(tmp_path / "mixed.parquet", target="y")
    table = read_file(tmp_path / "mixed.parquet", target="y", column_types={"tags": "ignore"})
    assert isinstance(table.X, pa.Table) and table.X.column_names == ["n", "flag", "city"]
    assert [field.type for field in table.X.schema] == [pa.float32(), pa.float32(), pa.string()]
    assert table.X["n"].to_pylist() == [1.0, 2.0, None] and table.X["city"].to_pylist() == ["Oslo", None, "Oslo"]
    assert table.y.dtype == np.int64 and table.ignored == ("tags",)


def test_truncated_parquet_is_one_line_naming_the_file(tmp_path):
    _iris_files(tmp_path)
    data = (tmp_path / "iris.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(NetfitError, match=r"'.*cut.parquet' is not a readable Parquet file \(.*\); it is damaged, "
                                          "truncated or not Parquet") as err:
        read_file(tmp_path / "cut.parquet", target="species")
    assert "\n" not in str(err.value)


def test_damaged_feather_is_one_line_naming_the_file(tmp_path):
    _iris_files(tmp_path)
    data = (tmp_path / "iris.feather").read_bytes()
    (tmp_path / "cut.feather").write_bytes(data[: len(data) // 2])
    with pytest.raises(NetfitError, match=r"'.*cut.feather' is not a readable Feather or Arrow IPC file") as err:
        read_file(tmp_path / "cut.feather", target="species")
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- text columns and data.columns


def test_csv_with_a_text_column_gives_a_pyarrow_table_in_feature_order(tmp_path):
    import pyarrow as pa

    path = _csv(tmp_path, "rooms,color,zip,price\n3,red,01234,100\n,blue,98765,250\n2,,01234,175\n")
    table = read_file(path, target="price")
    assert isinstance(table.X, pa.Table) and table.X.column_names == ["rooms", "color", "zip"]
    assert table.X.schema.types == [pa.float32(), pa.string(), pa.float32()]  # zip looks like numbers
    assert table.X["rooms"].to_pylist() == [3.0, None, 2.0] and table.X["color"].to_pylist() == ["red", "blue", None]
    assert table.y.tolist() == [100, 250, 175]
    declared = read_file(path, target="price", column_types={"zip": "categorical", "rooms": "ignore"})
    assert declared.X.column_names == ["color", "zip"] and declared.ignored == ("rooms",)
    assert declared.X["zip"].to_pylist() == ["01234", "98765", "01234"]  # leading zeros kept
    chunks = list(iter_tables(path, target="price", column_types={"zip": "categorical"}, chunk_rows=2))
    assert [chunk.X.num_rows for chunk in chunks] == [2, 1]
    assert all(chunk.X.schema.types == [pa.float32(), pa.string(), pa.string()] for chunk in chunks)


def test_numbers_with_a_typo_are_refused_not_read_as_categories(tmp_path):
    rows = "".join(f"{i % 50 + 20},{i % 2}\n" for i in range(399))
    path = _csv(tmp_path, "age,y\n" + rows + "4O,1\n")  # a letter O in data row 400, line 401
    with pytest.raises(NetfitError, match=r"non-numeric value '4O' at line 401 \(data row 400\), column 'age'; fix the "
                                          r'cell, or set data.columns.age = "categorical" if the column holds categories'):
        read_file(path, target="y")
    assert read_file(path, target="y", column_types={"age": "categorical"}).X["age"].to_pylist()[-1] == "4O"
    with pytest.raises(NetfitError, match=r"'4O' at line 401.*data.columns.age = \"numeric\" says it holds numbers"):
        read_file(path, target="y", column_types={"age": "numeric"})


def test_a_text_column_far_down_a_large_csv_is_typed_over_the_whole_file(tmp_path):
    import pyarrow as pa

    # The first megabyte types 'kind' as numbers; a tenth of its cells further down are words.
    rows = [f"{i},{i % 7}" for i in range(200_000)] + [f"{i},{'abcdefg'[i % 7]}" for i in range(200_000, 220_000)]
    path = _csv(tmp_path, "x,kind\n" + "\n".join(rows) + "\n")
    table = read_file(path)
    assert isinstance(table.X, pa.Table) and table.X.schema.types == [pa.float32(), pa.string()]
    assert table.X["kind"][0].as_py() == "0" and table.X["kind"][-1].as_py() == "abcdefg"[219_999 % 7]


def test_wine_csv_and_parquet_agree_and_train_through_the_cli(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import load_wine

    from netfit.cli import main

    wine = load_wine()
    names = [name.replace("/", "_") for name in wine.feature_names]
    pq.write_table(pa.table({**{n: wine.data[:, j] for j, n in enumerate(names)}, "cultivar": wine.target}),
                   tmp_path / "wine.parquet")
    raw = load_raw(DataSpec(path=tmp_path / "wine.parquet", target="cultivar"))
    assert raw.X_train.dtype == np.float32 and raw.X_train.shape == (178, 13) and raw.y_train.dtype == np.int64
    data = (tmp_path / "wine.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[:-100])
    code = main(["train", "--set", f'data.path="{tmp_path / "cut.parquet"}"', "--set", "data.target=cultivar",
                 "--set", "train.epochs=1", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "cut.parquet' is not a readable Parquet file" in err and not (tmp_path / "runs").exists()


def test_csv_text_cells_may_hold_quoted_line_breaks_and_commas(tmp_path):
    path = _csv(tmp_path, 'stars,review\n5,"good, cheap\nwould buy again"\n1,"broke"\n2,abc\n')
    table = read_file(path, target="stars")
    assert table.X["review"].to_pylist() == ["good, cheap\nwould buy again", "broke", "abc"]
    assert table.y.tolist() == [5, 1, 2]
    with pytest.raises(NetfitError, match=r"line 5 has 1 fields but the header has 2"):
        read_file(_csv(tmp_path, 'stars,review\n5,"good\nbad"\n1,x\n3\n', "ragged.csv"), target="stars")
