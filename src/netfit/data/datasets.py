"""Built-in datasets by name: ``load_builtin("fashion-mnist")``.

Every entry of DATASETS is a loader ``load(data_dir, download) -> RawData``; registering one is
all it takes to make it a valid ``data.dataset`` and to put it under the dataset tests.

The IDX datasets (mnist, fashion-mnist, kmnist) are looked for, in this order, in ``data_dir``,
in ``$NETFIT_DATA_DIR``, in ``/usr/share/datasets/<name>/`` and in the download cache
``${NETFIT_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/netfit}/<name>/``; the first folder holding
all four files wins. Failing that, they are downloaded into the cache.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import NetfitError
from ..registry import Registry
from .download import MirrorsUnreachable, download_files
from .formats import find_idx_file, idx_images, idx_labels, parse_idx, read_idx_pair
from .rawdata import RawData
from .split import split_rows
from .table import image_shape_of

__all__ = ["DATASETS", "IDX_FILES", "SYSTEM_DATA_DIRS", "load_builtin", "cache_root", "search_folders"]

Loader = Callable[[Path | None, bool], RawData]

DATASETS: Registry[Loader] = Registry("dataset")

# The four files of an MNIST-style dataset, as published (gzip); the raw names without .gz work too.
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# Where distributions install datasets (Debian's dataset-fashion-mnist puts it under here).
SYSTEM_DATA_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)

# Built-in train/test splits use their own fixed seed, not data.split_seed: a dataset's test
# part must be the same in every run, or test scores of two runs could not be compared.
_FIXED_SPLIT_SEED = 20_240_601
_BUILTIN_TEST_FRACTION = 0.2

_SAMPLE_SHA256 = {
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

_DIGIT_NAMES = [str(digit) for digit in range(10)]
_FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot"]
_KMNIST_NAMES = ["お", "き", "す", "つ", "な", "は", "ま", "や", "れ", "を"]


def load_builtin(name: str, data_dir: str | Path | None = None, download: bool = True) -> RawData:
    """Load the built-in dataset ``name`` (one of ``DATASETS.names()``).

    ``data_dir`` is a folder holding the IDX files of mnist, fashion-mnist or kmnist (the files
    directly, or in a subfolder named after the dataset); ``download`` allows fetching missing
    files into the cache. Datasets that need neither ignore them.
    """
    loader = DATASETS.get(name)
    return loader(Path(data_dir).expanduser() if data_dir is not None else None, download)


def cache_root() -> Path:
    """The download cache: $NETFIT_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/netfit."""
    override = os.environ.get("NETFIT_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "netfit"


def search_folders(name: str, data_dir: Path | None) -> list[Path]:
    """The folders searched for dataset ``name``, in order; the last one is the download cache."""
    folders: list[Path] = []
    for base in (data_dir, os.environ.get("NETFIT_DATA_DIR") or None):
        if base is not None:
            base = Path(base).expanduser()
            folders += [base, base / name]
    folders += [system / name for system in SYSTEM_DATA_DIRS]
    folders.append(cache_root() / name)
    return list(dict.fromkeys(folders))  # an explicit data_dir may equal NETFIT_DATA_DIR


# ----------------------------------------------------------------------------- shipped sample


@DATASETS.register("mnist-sample")
def _load_mnist_sample(data_dir: Path | None, download: bool) -> RawData:
    """The 10,000 MNIST test digits shipped with netfit, split 8,000 train / 2,000 test."""
    images = parse_idx(_sample_bytes("t10k-images-idx3-ubyte.gz"), "mnist-sample images")
    X = idx_images(images, "mnist-sample")
    y = idx_labels(parse_idx(_sample_bytes("t10k-labels-idx1-ubyte.gz"), "mnist-sample labels"), "mnist-sample")
    train, test = split_rows(len(y), _BUILTIN_TEST_FRACTION, _FIXED_SPLIT_SEED)
    return RawData("mnist-sample", X[train], y[train], X[test], y[test], kind="image", class_names=_DIGIT_NAMES,
                   image_shape=image_shape_of(images))


def _sample_bytes(filename: str) -> bytes:
    location = f"netfit/data/mnist-t10k/{filename}"
    try:
        content = (resources.files(__package__) / "mnist-t10k" / filename).read_bytes()
    except FileNotFoundError:
        raise NetfitError(f"the shipped sample file {location} is missing; reinstall netfit") from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != _SAMPLE_SHA256[filename]:
        raise NetfitError(
            f"the shipped sample file {location} is damaged (sha256 {digest}, expected {_SAMPLE_SHA256[filename]}); "
            "reinstall netfit, e.g. pip install --force-reinstall netfit"
        )
    return content


# ----------------------------------------------------------------------------- scikit-learn tables


@DATASETS.register("digits")
def _load_digits(data_dir: Path | None, download: bool) -> RawData:
    """scikit-learn's 1,797 8x8 digits (pixel values 0..16, so a table, not 0..255 images), 20% test."""
    from sklearn.datasets import load_digits  # here, not at the top: importing sklearn takes about a second

    bunch = load_digits()
    train, test = split_rows(len(bunch.target), _BUILTIN_TEST_FRACTION, _FIXED_SPLIT_SEED)
    X, y = bunch.data, bunch.target.astype(np.int64)
    return RawData("digits", X[train], y[train], X[test], y[test], kind="table", class_names=_DIGIT_NAMES,
                   feature_names=list(bunch.feature_names))


@DATASETS.register("diabetes")
def _load_diabetes(data_dir: Path | None, download: bool) -> RawData:
    """scikit-learn's diabetes regression table, unscaled: 442 patients, 10 features, 20% test."""
    from sklearn.datasets import load_diabetes  # here, not at the top: importing sklearn takes about a second

    bunch = load_diabetes(scaled=False)
    train, test = split_rows(len(bunch.target), _BUILTIN_TEST_FRACTION, _FIXED_SPLIT_SEED)
    X, y = bunch.data, bunch.target.astype(np.float64)
    return RawData("diabetes", X[train], y[train], X[test], y[test], kind="table",
                   feature_names=list(bunch.feature_names))


# ----------------------------------------------------------------------------- IDX datasets


def _idx_dataset(name: str, class_names: list[str]) -> Loader:
    """A loader for an MNIST-style dataset: its official 60,000 / 10,000 split from local files or a download."""

    def load(data_dir: Path | None, download: bool) -> RawData:
        folders = search_folders(name, data_dir)
        for folder in folders:
            files = _idx_set_in(folder)
            if files is not None:
                return _read_idx_set(name, files, class_names)
        cache = folders[-1]
        missing = [filename for filename in IDX_FILES if find_idx_file(cache, filename.removesuffix(".gz")) is None]
        if not download:
            raise NetfitError(_not_found(name, missing, folders, "downloading is off (data.download = false)"))
        try:
            download_files(name, missing, cache)
        except MirrorsUnreachable as err:
            raise NetfitError(_not_found(name, missing, folders, f"the download failed ({err.reason})")) from None
        return _read_idx_set(name, _idx_set_in(cache), class_names)

    load.__doc__ = f"{name}: 60,000 training and 10,000 test images, 28x28 uint8, from local IDX files or a download."
    return load


def _idx_set_in(folder: Path) -> dict[str, Path] | None:
    found = {filename: find_idx_file(folder, filename.removesuffix(".gz")) for filename in IDX_FILES}
    return None if None in found.values() else found


def _read_idx_set(name: str, files: dict[str, Path], class_names: list[str]) -> RawData:
    train = read_idx_pair(files["train-images-idx3-ubyte.gz"], files["train-labels-idx1-ubyte.gz"])
    test = read_idx_pair(files["t10k-images-idx3-ubyte.gz"], files["t10k-labels-idx1-ubyte.gz"])
    return RawData(name, train.X, train.y, test.X, test.y, kind="image", class_names=class_names,
                   image_shape=train.image_shape)


def _not_found(name: str, missing: list[str], folders: list[Path], reason: str) -> str:
    return (
        f"dataset {name!r} not found: missing {', '.join(missing)}; {reason}; searched {', '.join(map(str, folders))}; "
        "put the files in one of these folders, or pass --data-dir DIR / set NETFIT_DATA_DIR"
    )


DATASETS.register("mnist", _idx_dataset("mnist", _DIGIT_NAMES))
DATASETS.register("fashion-mnist", _idx_dataset("fashion-mnist", _FASHION_NAMES))
DATASETS.register("kmnist", _idx_dataset("kmnist", _KMNIST_NAMES))
