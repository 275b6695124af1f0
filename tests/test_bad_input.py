"""Bad input through real processes: exit code 2, one line on stderr, bounded memory, nothing changed on disk.

Each case of CASES writes a bad file into its own folder and runs ``python -m netfit`` there, as a
user would. The contract checked for every case (issue 8):

- exit code 2 and exactly one line on stderr, without a traceback, holding the case's words;
- a peak resident memory (from ``os.wait4``) below the bound measured by ``memory_bound``: a
  reader that inflated a gzip bomb or read /dev/zero would pass it;
- an end before ``_TIMEOUT_S``: a FIFO that blocked would hang, and the test kills it instead;
- every file in the case's folder and in the shared run folder hashed the same before and after.

The cases run two at a time (the machine this suite targets has two cores), so the file stays
well under a minute although every process imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="os.wait4's ru_maxrss in kilobytes is Linux's")

_TIMEOUT_S = 90  # far above the few seconds a refusal takes, on a busy two-core machine too
# Room above the memory of a process that fails at once: every case's file is a few kB, while the
# gzip bomb inflates to 200 MB and /dev/zero never ends.
_HEADROOM = 150 << 20


class Outcome(NamedTuple):
    code: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    peak_rss: int  # bytes
    seconds: float


def _netfit(argv: list[str], cwd: Path, logs: Path) -> Outcome:
    """Run ``python -m netfit ARGV`` in ``cwd`` and reap it with os.wait4, for its peak memory."""
    logs.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(logs / "stdout", "w+b") as out, open(logs / "stderr", "w+b") as err:
        process = subprocess.Popen([sys.executable, "-m", "netfit", *argv], cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=err, env=dict(os.environ))
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() - start > _TIMEOUT_S:
                process.kill()
                _, status, usage = os.wait4(process.pid, 0)
                process.returncode, code = os.waitstatus_to_exitcode(status), None
                break
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        return Outcome(code, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                       usage.ru_maxrss * 1024, time.monotonic() - start)


def _tree(*folders: Path) -> dict[str, str]:
    """Every entry under ``folders``: regular files by content hash, anything else (a FIFO, a link) by kind."""
    found = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                path = Path(root) / name
                mode = os.lstat(path).st_mode
                if stat.S_ISREG(mode):
                    found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
                else:
                    found[str(path)] = stat.filemode(mode)  # never opened: a FIFO would block
    return found


# ----------------------------------------------------------------------------- bad files


def _train(path: Path | str, *sets: str) -> list[str]:
    return ["train", "--set", f"data.path={json.dumps(str(path))}", *(f"--set={item}" for item in sets), "--quiet"]


def _write(folder: Path, name: str, content: bytes) -> Path:
    (folder / name).write_bytes(content)
    return folder / name


def _npy_header(shape: tuple, size: int = 80) -> bytes:
    """A version 1.0 .npy header of ``size`` bytes claiming float64 of ``shape``."""
    text = repr({"descr": "<f8", "fortran_order": False, "shape": shape}).encode("latin-1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", size - 10) + text + b" " * (size - 11 - len(text)) + b"\n"


def _idx_header(*shape: int) -> bytes:
    return bytes([0, 0, 8, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def _utf16_without_bom(d: Path, run: Path) -> list[str]:
    return _train(_write(d, "t.csv", "a,b,y\n1,2,0\n3,4,1\n".encode("utf-16-le")), "data.target=y")


def _latin1_in_header(d: Path, run: Path) -> list[str]:
    return _train(_write(d, "t.csv", "caf\xe9,b,y\n1,2,0\n3,4,1\n".encode("latin-1")), "data.target=y")


def _latin1_in_row(d: Path, run: Path) -> list[str]:
    return _train(_write(d, "t.csv", "a,b,y\n1,2,0\n3,4,caf\xe9\n".encode("latin-1")), "data.target=y")


def _random_bytes(d: Path, run: Path) -> list[str]:
    noise = np.random.default_rng(8).integers(0, 256, 64 << 10, dtype=np.uint8).tobytes()
    return _train(_write(d, "noise.csv", noise), "data.target=y")


def _npy_claiming_2_to_the_40(d: Path, run: Path) -> list[str]:
    return _train(_write(d, "lie.npy", _npy_header((2**40,)) + bytes(36)))


def _npz_member_claiming_2_to_the_40(d: Path, run: Path) -> list[str]:
    with zipfile.ZipFile(d / "lie.npz", "w") as archive:
        archive.writestr("X.npy", _npy_header((2**40,)) + bytes(36))
        archive.writestr("y.npy", _npy_header((2**40,)) + bytes(36))
    return _train(d / "lie.npz")


def _npz_with_empty_X(d: Path, run: Path) -> list[str]:
    np.savez(d / "empty.npz", X=np.zeros((0, 28, 28), np.uint8), y=np.zeros(0, np.int64))
    return _train(d / "empty.npz")


def _npy_of_zero_rows(d: Path, run: Path) -> list[str]:
    np.save(d / "zero.npy", np.zeros((0, 5)))
    return _train(d / "zero.npy")


def _idx_of_zero_images(d: Path, run: Path) -> list[str]:
    _write(d, "train-labels-idx1-ubyte", _idx_header(0))
    return _train(_write(d, "train-images-idx3-ubyte", _idx_header(0, 28, 28)))


def _idx_gzip_bomb(d: Path, run: Path) -> list[str]:
    # A header declaring 10 images of 28x28, then 200 MB of zeros: 200 kB on disk, written a megabyte at a time.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    with open(d / "bomb-images-idx3-ubyte.gz", "wb") as out:
        out.write(compressor.compress(_idx_header(10, 28, 28)))
        for _ in range(200):
            out.write(compressor.compress(zeros))
        out.write(compressor.flush())
    return _train(d / "bomb-images-idx3-ubyte.gz")


def _fifo(d: Path, run: Path) -> list[str]:
    os.mkfifo(d / "rows.csv")
    return _train(d / "rows.csv", "data.target=y")


def _dev_zero(format: str) -> Callable[[Path, Path], list[str]]:
    return lambda d, run: _train("/dev/zero", f"data.format={format}", "data.target=y")


def _symlink_loop(d: Path, run: Path) -> list[str]:
    (d / "loop.csv").symlink_to(d / "loop.csv")
    return _train(d / "loop.csv", "data.target=y")


def _three_dimensional_labels(d: Path, run: Path) -> list[str]:
    np.savez(d / "d.npz", X=np.zeros((8, 4)), y=np.zeros((8, 2, 2)))
    return _train(d / "d.npz")


def _headerless_with_header_on(d: Path, run: Path) -> list[str]:
    return _train(_write(d, "t.csv", b"1,2,0\n3,4,1\n5,6,0\n"), "data.target=y")


def _predict_header_only(d: Path, run: Path) -> list[str]:
    header = ",".join(f"pixel_{i}_{j}" for i in range(8) for j in range(8))  # the digits run's 64 columns
    return ["predict", str(run), str(_write(d, "new.csv", f"{header}\n".encode()))]


def _parquet_fifo(d: Path, run: Path) -> list[str]:
    os.mkfifo(d / "rows.parquet")  # the streaming check reads a Parquet footer: it must not wait on a FIFO
    return ["train", "--set", f"data.path={d / 'rows.parquet'}", "--set", "data.target=y"]


def _predict_fifo(d: Path, run: Path) -> list[str]:
    os.mkfifo(d / "new.csv")
    return ["predict", str(run), str(d / "new.csv")]


def _predict_dev_zero(d: Path, run: Path) -> list[str]:
    return ["predict", str(run), "/dev/zero", "--format", "npy"]


# ----------------------------------------------------------------------------- specs, models and targets


def _spec(d: Path, text: str) -> list[str]:
    return ["train", str(_write(d, "spec.toml", text.encode())), "--quiet"]


def _spec_nested_arrays(d: Path, run: Path) -> list[str]:
    return _spec(d, "[model]\nkwargs = {a = " + "[" * 3000 + "]" * 3000 + "}\n")


def _spec_nested_tables(d: Path, run: Path) -> list[str]:
    return _spec(d, "[" + ".".join(["a"] * 3000) + "]\nx = 1\n")


def _spec_symlink_loop(d: Path, run: Path) -> list[str]:
    (d / "spec.toml").symlink_to(d / "spec.toml")
    return ["train", str(d / "spec.toml")]


def _spec_fifo(d: Path, run: Path) -> list[str]:
    os.mkfifo(d / "spec.toml")
    return ["train", str(d / "spec.toml")]


def _digits(*sets: str) -> Callable[[Path, Path], list[str]]:
    return lambda d, run: ["train", "--set", "data.dataset=digits", *(f"--set={item}" for item in sets), "--quiet"]


def _npz(X: np.ndarray, y: np.ndarray, *sets: str) -> Callable[[Path, Path], list[str]]:
    def argv(d: Path, run: Path) -> list[str]:
        np.savez(d / "data.npz", X=X, y=y)
        return _train(d / "data.npz", *sets)
    return argv


_ROWS = np.random.default_rng(1).normal(size=(24, 3))


# ----------------------------------------------------------------------------- outputs and runs


def _predict_into_the_run(d: Path, run: Path) -> list[str]:
    np.save(d / "rows.npy", np.zeros((2, 64)))
    return ["predict", str(run), str(d / "rows.npy"), "-o", str(run / "model.safetensors"), "--force"]


def _predict_over_a_file(d: Path, run: Path) -> list[str]:
    np.save(d / "rows.npy", np.zeros((2, 64)))
    return ["predict", str(run), str(d / "rows.npy"), "-o", str(_write(d, "mine.csv", b"mine\n"))]


def _train_into_the_run(d: Path, run: Path) -> list[str]:
    return ["train", "--set", "data.dataset=digits", "--out", str(run), "--quiet"]


def _schema_over_a_file(d: Path, run: Path) -> list[str]:
    return ["schema", "-o", str(_write(d, "schema.json", b"mine\n"))]


class Case(NamedTuple):
    name: str
    argv: Callable[[Path, Path], list[str]]  # (the case's folder, the trained run) -> netfit's arguments
    words: tuple[str, ...]  # what the one line on stderr must say


ENCODING_FIX = 'set data.encoding (--encoding on evaluate and predict; e.g. "latin-1" or "cp1252"), or save the file as UTF-8'

CASES = [
    # ------------------------------------------------------------------------- data files
    Case("csv-utf16-without-bom", _utf16_without_bom, ("not UTF-8 text", "NUL", '"utf-16-le"', ENCODING_FIX)),
    Case("csv-latin1-byte-in-header", _latin1_in_header, ("byte 0xE9 at line 1, column 4", ENCODING_FIX)),
    Case("csv-latin1-byte-in-row", _latin1_in_row, ("byte 0xE9 at line 3", ENCODING_FIX)),
    Case("csv-random-bytes", _random_bytes, ("not UTF-8 text", ENCODING_FIX)),
    Case("csv-headerless-with-header-on", _headerless_with_header_on,
         ("looks like data, not column names", "data.header = false")),
    Case("npy-116-bytes-claiming-2**40", _npy_claiming_2_to_the_40,
         ("header claims 8.8 TB", "36 bytes after its header", "truncated")),
    Case("npz-member-claiming-2**40", _npz_member_claiming_2_to_the_40, ("claims 8.8 TB", "archive declares 36 bytes")),
    Case("npz-empty-X", _npz_with_empty_X, ("no rows", "(0, 28, 28)")),
    Case("npy-of-shape-0x5", _npy_of_zero_rows, ("no rows", "(0, 5)")),
    Case("npz-3d-labels", _three_dimensional_labels, ("one value per row or one row of values per row", "(8, 2, 2)")),
    Case("idx-zero-images", _idx_of_zero_images, ("no rows", "0 images", "(0, 28, 28)")),
    Case("idx-gzip-bomb", _idx_gzip_bomb, ("expands beyond the 7856 bytes its header declares",)),
    Case("fifo-as-data-path", _fifo, ("FIFO", "not a regular file")),
    Case("parquet-fifo-as-data-path", _parquet_fifo, ("FIFO", "not a regular file")),
    Case("dev-zero-as-npy", _dev_zero("npy"), ("/dev/zero", "character device")),
    Case("dev-zero-as-csv", _dev_zero("csv"), ("/dev/zero", "character device")),
    Case("symlink-loop-as-data-path", _symlink_loop, ("symlink loop",)),
    Case("predict-header-only-csv", _predict_header_only, ("no rows", "header")),
    Case("predict-fifo", _predict_fifo, ("FIFO", "not a regular file")),
    Case("predict-dev-zero", _predict_dev_zero, ("/dev/zero", "character device")),
    # ------------------------------------------------------------------------- specs, models and targets
    Case("spec-nested-3000-arrays", _spec_nested_arrays, ("nested more than 32 levels",)),
    Case("spec-nested-3000-tables", _spec_nested_tables, ("nested more than 32 levels",)),
    Case("spec-symlink-loop", _spec_symlink_loop, ("spec file", "symlink loop")),
    Case("spec-fifo", _spec_fifo, ("spec file", "FIFO")),
    Case("hidden-width-1e9", _digits("model.hidden=[1000000000]"), ("parameters", "would need", "TB of memory")),
    Case("hidden-width-2**63", _digits("model.hidden=[9223372036854775807]"), ("model.hidden[0]",)),
    Case("epochs-2**63-1", _digits("train.epochs=9223372036854775807"), ("train.epochs", "1000000")),
    Case("seed-beyond-32-bits", _digits("train.seed=4294967296"), ("train.seed",)),
    Case("split-seed-negative", _digits("data.split_seed=-1"), ("data.split_seed",)),
    Case("batchnorm-with-batches-of-one", _digits("model.batchnorm=true", "train.batch_size=1"),
         ("BatchNorm needs at least 2 rows",)),
    Case("two-rows-one-left-to-train", _npz(_ROWS[:2], np.array([0, 1]), "data.val_fraction=0.5",
                                             "model.batchnorm=true"), ("single value", "1 training rows")),
    Case("single-class", _npz(_ROWS, np.zeros(24, np.int64)), ("single value 0", "nothing to learn")),
    Case("ambiguous-whole-numbers", _npz(_ROWS, np.repeat([1, 2, 4, 5, 7, 9, 12, 15], 3)),
         ("could be class ids or quantities", "train.task=classification", "train.task=regression")),
    # ------------------------------------------------------------------------- outputs and runs
    Case("predict-into-the-run", _predict_into_the_run, ("inside run folder",)),
    Case("predict-over-an-existing-file", _predict_over_a_file, ("already exists", "--force")),
    Case("schema-over-an-existing-file", _schema_over_a_file, ("already exists", "--force")),
    Case("train-out-inside-a-run", _train_into_the_run, ("inside run folder", "a run never holds another")),
]


# ----------------------------------------------------------------------------- files that must train


def _csv_text(header: str | None) -> str:
    rows = np.random.default_rng(0).normal(size=(60, 2)).round(3)
    lines = [f"{a},{b},{a - b},{a * 2},{int(a + b > 0)}\n" for a, b in rows]
    return "".join([f"{header}\n" if header else "", *lines])


def _train_small(path: Path, *sets: str) -> list[str]:
    return [*_train(path, "model.hidden=[4]", "train.epochs=1", *sets), "--json"]


def _utf16_with_bom(d: Path) -> list[str]:
    return _train_small(_write(d, "t.csv", _csv_text("a,b,c,d,y").encode("utf-16")), "data.target=y")


def _latin1_with_data_encoding(d: Path) -> list[str]:
    return _train_small(_write(d, "t.csv", _csv_text("caf\xe9,b,c,d,y").encode("latin-1")), "data.target=y",
                        "data.encoding=latin-1")


def _headerless_with_header_off(d: Path) -> list[str]:
    return _train_small(_write(d, "t.csv", _csv_text(None).encode()), "data.header=false", "data.target=f4")


GOOD = [
    ("csv-utf16-with-bom", _utf16_with_bom),
    ("csv-latin1-with-data-encoding", _latin1_with_data_encoding),
    ("csv-headerless-with-header-off", _headerless_with_header_off),
]


# ----------------------------------------------------------------------------- running them


class Ran(NamedTuple):
    outcome: Outcome
    before: dict[str, str]  # _tree of the case's folder and the shared run, before and after
    after: dict[str, str]
    folder: Path


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict[str, Ran]:
    """Every case of CASES and GOOD, run two processes at a time, after training the run predict needs."""
    workspace = tmp_path_factory.mktemp("bad-input")
    shared = workspace / "shared"
    shared.mkdir()
    trained = _netfit(["train", "--set", "data.dataset=digits", "--set", "model.hidden=[8]", "--set",
                       "train.epochs=1", "--out", "runs", "--quiet", "--json"], shared, workspace / "log" / "shared")
    assert trained.code == 0, trained.stderr
    run = shared / json.loads(trained.stdout)["run_dir"]

    def one(name: str, argv: Callable[[Path], list[str]], folder_of_runs: bool = True) -> Ran:
        folder = workspace / "cases" / name
        folder.mkdir(parents=True)
        if folder_of_runs:
            (folder / "runs").mkdir()  # as after a user's first run: a refused input must add nothing to it
        arguments = argv(folder)
        before = _tree(folder, run)
        outcome = _netfit(arguments, folder, workspace / "log" / name)
        return Ran(outcome, before, _tree(folder, run), folder)

    jobs = [(case.name, lambda d, case=case: case.argv(d, run)) for case in CASES] + GOOD
    jobs.append(("no-folder-of-runs", lambda d: _headerless_with_header_on(d, run), False))
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([job[0] for job in jobs], pool.map(lambda job: one(*job), jobs)))


@pytest.fixture(scope="module")
def memory_bound(ran) -> int:
    """``_HEADROOM`` above the smallest peak of all cases: a process that imports netfit and refuses at once."""
    return min(result.outcome.peak_rss for result in ran.values()) + _HEADROOM


# ----------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(case, ran, memory_bound):
    outcome, before, after, _ = ran[case.name]
    assert outcome.code is not None, f"still running after {_TIMEOUT_S} s: it hangs"
    lines = outcome.stderr.strip().splitlines()
    assert outcome.code == 2, outcome.stderr
    assert len(lines) == 1, outcome.stderr
    assert "Traceback" not in outcome.stderr and lines[0].startswith("netfit: error: ")
    assert outcome.peak_rss < memory_bound, f"peak {outcome.peak_rss / 1e6:.0f} MB, bound {memory_bound / 1e6:.0f} MB"
    assert after == before
    for word in case.words:
        assert word in lines[0], f"{word!r} not in: {lines[0]}"


@pytest.mark.parametrize("name", [name for name, _ in GOOD])
def test_csv_that_says_how_to_read_it_trains(ran, name):
    outcome, _, _, folder = ran[name]
    assert outcome.code == 0, outcome.stderr
    assert "Traceback" not in outcome.stderr
    result = json.loads(outcome.stdout)
    assert (folder / result["run_dir"]).is_dir() and "val_accuracy" in result["metrics"]


def test_refused_training_does_not_create_the_folder_of_runs(ran):
    outcome, before, after, _ = ran["no-folder-of-runs"]
    assert outcome.code == 2, outcome.stderr
    assert after == before
