"""Reading data files (netfit.data.formats) and refusing bad arrays (netfit.data.checks)."""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np
import pytest

from netfit.data import check_arrays, read_table
from netfit.data.formats import FORMATS, infer_format, read_file, read_idx, read_idx_dir, read_idx_pair
from netfit.errors import NetfitError

# Digits per class in the real MNIST test set (LeCun et al.).
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _images(n: int = 6, rows: int = 4, cols: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, rows, cols), dtype=np.uint8)


# ----------------------------------------------------------------------------- IDX


def test_shipped_sample_is_the_real_mnist_test_set():
    folder = resources.files("netfit.data") / "mnist-t10k"
    with resources.as_file(folder) as path:
        X, y = read_idx_pair(path / "t10k-images-idx3-ubyte.gz", path / "t10k-labels-idx1-ubyte.gz")
    assert X.shape == (10_000, 784) and X.dtype == np.uint8
    assert y.dtype == np.int64
    assert np.bincount(y).tolist() == MNIST_TEST_COUNTS
    assert X.min() == 0 and X.max() == 255
    assert X.flags.writeable  # torch.from_numpy warns about read-only arrays


@pytest.mark.parametrize("gzipped", [True, False])
def test_idx_reads_gzip_and_raw_alike(tmp_path, write_idx, gzipped):
    images = _images()
    labels = np.arange(6, dtype=np.uint8)
    X, y = read_idx_pair(write_idx(tmp_path / "a-images-idx3-ubyte", images, gzipped),
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
     ("train-images-idx3-ubyte", "idx"), ("a.idx", "idx")],
)
def test_format_is_inferred_from_the_name(tmp_path, name, format):
    assert infer_format(tmp_path / name) == format


def test_unknown_suffix_lists_formats_and_says_set_data_format(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(NetfitError, match=r"data.xlsx.*idx, csv, npz, npy.*set data.format"):
        read_table(path)


def test_missing_file(tmp_path):
    with pytest.raises(NetfitError, match="data file '.*nope.csv' does not exist"):
        read_table(tmp_path / "nope.csv", target="y")


def test_every_format_is_registered():
    assert FORMATS.names() == ["idx", "csv", "npz", "npy"]


# ----------------------------------------------------------------------------- CSV


def _csv(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_numeric_table(tmp_path):
    path = _csv(tmp_path, "a, b ,label\n1,2.5,0\n-3,4e1,1\n\n")
    table = read_file(path, target="label")
    np.testing.assert_array_equal(table.X, [[1.0, 2.5], [-3.0, 40.0]])
    assert table.X.dtype == np.float64
    assert table.y.dtype == np.float64 and table.y.tolist() == [0.0, 1.0]
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


@pytest.mark.parametrize("cell", ["", "NA", "nan", " NaN "])
def test_csv_missing_value_names_line_and_column(tmp_path, cell):
    path = _csv(tmp_path, f"a,b,y\n1,2,0\n3,4,1\n5,{cell},1\n")
    with pytest.raises(NetfitError, match=r"missing value at line 4 \(data row 3\), column 'b'"):
        read_table(path, target="y")


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


def test_data_messages_are_one_line(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,0\n3,abc,1\n")
    with pytest.raises(NetfitError) as err:
        read_table(path, target="y")
    assert "\n" not in str(err.value)


def test_idx_gzip_of_the_real_sample_decompresses_to_idx_bytes():
    # Guards the byte-for-byte copy: the shipped gzip holds 16 header + 10,000*784 pixel bytes.
    content = (resources.files("netfit.data") / "mnist-t10k" / "t10k-images-idx3-ubyte.gz").read_bytes()
    assert len(gzip.decompress(content)) == 16 + 10_000 * 784


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
