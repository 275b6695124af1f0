"""Shared fixtures."""

from __future__ import annotations

import os

# scikit-learn's estimator checks test array-API dispatch with NumPy inputs only when SciPy was
# imported with this set; without it they skip, and netfit.sklearn would be checked less than the
# issue promises. It must be set before anything imports SciPy.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import gzip
import signal
import struct
from pathlib import Path

import numpy as np
import pytest

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def fashion_mnist() -> Path:
    """Debian's Fashion-MNIST folder; fails, saying why, when the package is not installed.

    scripts/test.sh installs it (as root, or with password-less sudo); elsewhere install it by hand.
    """
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST is not installed in {FASHION_MNIST}: run `sudo apt-get install "
                    "dataset-fashion-mnist` (scripts/test.sh does it when it runs as root or with sudo)",
                    pytrace=False)
    return FASHION_MNIST


@pytest.fixture
def cut_at_step(monkeypatch):
    """``cut_at_step(spec, out, step) -> run folder``: train ``spec`` under ``out``, sending this process
    SIGTERM during the ``step``-th training step of the run (1-based, counted across epochs); the run
    stops there with a checkpoint of that exact position, as a user's Ctrl-C or a scheduler's kill."""
    import netfit
    import netfit.progress

    def cut(spec, out: Path, step: int) -> Path:
        steps = []
        real_advance = netfit.progress.Progress.advance

        def advance(self, done):
            steps.append(done)
            if len(steps) == step:
                os.kill(os.getpid(), signal.SIGTERM)
            real_advance(self, done)

        monkeypatch.setattr(netfit.progress.Progress, "advance", advance)
        try:
            with pytest.raises(netfit.TrainingInterrupted):
                netfit.fit(spec, out=out, progress=None)
        finally:
            monkeypatch.setattr(netfit.progress.Progress, "advance", real_advance)
        (run_dir,) = out.iterdir()
        return run_dir

    return cut


_IDX_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
                   np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


@pytest.fixture
def write_idx():
    """``write_idx(path, array, gzipped=True) -> path``: write ``array`` as an IDX file, as MNIST's are."""

    def write(path: Path, array: np.ndarray, gzipped: bool = True) -> Path:
        header = bytes([0, 0, _IDX_TYPE_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
        content = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
        path.write_bytes(gzip.compress(content) if gzipped else content)
        return path

    return write
