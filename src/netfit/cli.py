"""The ``netfit`` command: a thin face over the Python API.

The CLI turns arguments into a spec (``--set`` writes into the same fields a TOML file does)
and calls ``fit``, ``load`` and friends. User errors become one line on stderr and exit code 2;
``--debug`` shows the traceback instead. Anything else is a bug and exits with 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import NetfitError, TrainingInterrupted
from .spec import DATA_FORMATS

__all__ = ["main"]

EXIT_OK, EXIT_BUG, EXIT_USER = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process ended by SIGPIPE


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2), like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise NetfitError(f"{self.prog}: {message} (see {self.prog} --help)")


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show full tracebacks for errors")

    # How to read a CSV handed to evaluate or predict; both default to what the run was trained with.
    columns = argparse.ArgumentParser(add_help=False)
    columns.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                         help="whether the CSV's first row names its columns (default: as the run's data.header); "
                              "with --no-header, a file of exactly the run's feature columns is read in their order")
    columns.add_argument("--encoding", help="text encoding of the CSV (default: the run's data.encoding; a "
                                            "byte-order mark decides, else UTF-8)")

    parser = _Parser(prog="netfit", parents=[common],
                     description="Define, train, evaluate and ship feed-forward networks from a TOML spec.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("train", parents=[common], help="train a network and save a new run directory",
                       description="Train the spec's network. With no SPEC: the tutorials' MNIST network "
                                   "(784-512-256-10, ReLU, cross-entropy, Adam at 1e-3, batch 64) on mnist-sample.")
    p.add_argument("spec", nargs="?", type=Path, help="TOML spec file (default: the tutorials' MNIST network)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field, e.g. --set train.lr=3e-4 --set model.hidden=[256,128]")
    p.add_argument("--out", type=Path, help="folder that receives the run (default: runs)")
    p.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue RUN from its latest checkpoint; --set may change train.epochs and train.lr only")
    p.add_argument("--data-dir", type=Path, help="folder with IDX files for mnist, fashion-mnist, kmnist")
    p.add_argument("--json", action="store_true", help="print one JSON object (run_dir, metrics) on stdout")
    p.add_argument("--quiet", action="store_true", help="print no per-epoch lines")
    p.add_argument("--trust-module", action="store_true",
                   help="with --resume: import the custom model.module the run names (only for runs you trust)")

    p = sub.add_parser("evaluate", parents=[common, columns],
                       help="report a run's metrics on its test rows or other data")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--data", type=Path, help="labelled data file, or folder of class subfolders of images, to evaluate "
                                             "on (default: the run's test part)")
    p.add_argument("--format", choices=DATA_FORMATS, help="--data format (default: from the suffix)")
    p.add_argument("--data-dir", type=Path, help="folder with IDX files for mnist, fashion-mnist, kmnist")
    p.add_argument("--json", action="store_true", help="print one JSON object (run_dir, metrics, report)")
    p.add_argument("--trust-module", action="store_true",
                   help="import the custom model.module the run names (only for runs you trust)")

    p = sub.add_parser("predict", parents=[common, columns], help="predict labels (or values) for new rows or images")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("input", type=Path, nargs="+",
                   help="rows to predict: CSV, Parquet, Feather, .npy, .npz or IDX images; for a run trained on an "
                        "image folder, image files or folders of them (the CSV then starts with a path column)")
    p.add_argument("-o", "--output", type=Path, help="write a CSV here instead of to stdout")
    p.add_argument("--force", action="store_true", help="replace the -o file if it exists")
    p.add_argument("--proba", action="store_true", help="add one probability column per class")
    p.add_argument("--format", choices=DATA_FORMATS, help="input format (default: from the suffix)")
    p.add_argument("--trust-module", action="store_true",
                   help="import the custom model.module the run names (only for runs you trust)")

    p = sub.add_parser("summary", parents=[common], help="layer table with output shapes and parameter counts")
    p.add_argument("target", type=Path, help="a TOML spec or a run directory")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field")
    p.add_argument("--trust-module", action="store_true",
                   help="for a run: import the custom model.module it names (only for runs you trust)")

    p = sub.add_parser("report", parents=[common], help="write a run's report.html again (plots, metrics, spec)",
                       description="Write the run's report page (learning curves, confusion matrix or residuals, "
                                   "worst mistakes, spec, environment) to RUN/report.html, or to -o FILE.")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("-o", "--output", type=Path, help="write the page here instead of RUN/report.html")
    p.add_argument("--force", action="store_true", help="replace the -o file if it exists")
    p.add_argument("--data-dir", type=Path, help="folder with IDX files for mnist, fashion-mnist, kmnist")
    p.add_argument("--trust-module", action="store_true",
                   help="import the custom model.module the run names, to show its predictions (runs you trust)")

    p = sub.add_parser("lr-find", parents=[common], help="suggest a learning rate with a range test",
                       description="Train the spec's network for a few hundred steps while the learning rate grows "
                                   "from 1e-7 to 10, and suggest train.lr from where the loss falls fastest "
                                   "(fastai's valley rule). Writes nothing unless asked (-o, --apply).")
    p.add_argument("spec", type=Path, help="TOML spec file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field, e.g. --set train.batch_size=128")
    p.add_argument("--apply", type=Path, metavar="OUT.toml",
                   help="write a copy of the spec with train.lr set to the suggestion (the spec itself is never changed)")
    p.add_argument("-o", "--output", type=Path, metavar="PLOT.png",
                   help="plot the loss against the rate: .png, .svg or .pdf")
    p.add_argument("--force", action="store_true", help="replace the --apply or -o file if it exists")
    p.add_argument("--json", action="store_true", help="print one JSON object (suggestion, rule, the curve)")

    p = sub.add_parser("export", parents=[common, columns],
                       help="write a run as an ONNX, TorchScript or torch.export file that reads raw rows",
                       description="Write the run's network with its input scaling and one-hot encoding inside "
                                   "(raw float32 rows and int64 category codes in; logits and probabilities, or "
                                   "predictions in the targets' units, out), then run the file on the run's test "
                                   "rows and remove it unless it agrees with netfit.")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript", "pt2"),
                   help="file format (pt2: torch.export)")
    p.add_argument("-o", "--output", type=Path,
                   help="file to write (default: the run folder's name with .onnx, .pt or .pt2, in this folder)")
    p.add_argument("--force", action="store_true", help="replace the -o file if it exists")
    p.add_argument("--rows", type=Path, metavar="FILE",
                   help="raw rows to check the file on: .npy, or a CSV, Parquet or Feather file read as predict "
                        "reads it (default: the run's test part, else 1,000 seeded random rows in the training "
                        "range)")
    p.add_argument("--data-dir", type=Path, help="folder with IDX files for mnist, fashion-mnist, kmnist")
    p.add_argument("--trust-module", action="store_true",
                   help="import the custom model.module the run names (only for runs you trust)")

    p = sub.add_parser("tune", parents=[common], help="search the spec's [tune.space] with Optuna, one run per trial",
                       description="Run an Optuna study over the spec's [tune] table; every trial is a run folder "
                                   "under OUT/STUDY/trials, and the best spec is written to OUT/STUDY/best.toml.")
    p.add_argument("spec", type=Path, nargs="?",
                   help="TOML spec file with a [tune] table (with --resume: default, the spec the study started from)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field before the search, e.g. --set train.epochs=5")
    p.add_argument("--trials", type=int, help="finished trials the study should hold (default: tune.trials)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="folder that receives the study (default: runs)")
    p.add_argument("--name", dest="study_name", help="study name and folder name (default: tune-<time>)")
    p.add_argument("--storage", metavar="URL", help="a database URL for Optuna (default: a journal file in the "
                                                     "study folder)")
    p.add_argument("--resume", type=Path, metavar="STUDY_DIR", help="continue the study in STUDY_DIR")
    p.add_argument("--workers", type=int, default=1, metavar="K",
                   help="run K trials at a time, each in its own process on this machine (default: 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object (trials, best) on stdout")
    p.add_argument("--quiet", action="store_true", help="print no per-epoch lines")

    p = sub.add_parser("init", parents=[common], help="write an annotated starter spec")
    p.add_argument("path", nargs="?", type=Path, default=Path("netfit.toml"), help="where (default: netfit.toml)")
    p.add_argument("--force", action="store_true", help="replace an existing file")

    p = sub.add_parser("schema", parents=[common], help="print the spec's JSON Schema (for editors)")
    p.add_argument("-o", "--output", type=Path, help="write it to this file")
    p.add_argument("--force", action="store_true", help="replace the -o file if it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``netfit`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = _build_parser().parse_args(argv)
        if args.command is None:
            _build_parser().print_help()
            return EXIT_USER
        with _warnings_as_notes():
            code = _COMMANDS[args.command](args)
        sys.stdout.flush()  # here, so that a reader gone away is caught below rather than at exit
        return code
    except TrainingInterrupted as stop:
        if _rank() == 0:  # under torchrun every rank stops; rank 0 wrote the checkpoint and says so
            print(f"netfit: {stop}", file=sys.stderr)
        return stop.exit_code
    except NetfitError as err:
        if debug:
            traceback.print_exc()
        print(f"netfit: {_rank_tag()}error: {err}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("netfit: interrupted", file=sys.stderr)
        return 130
    except MemoryError as err:
        # What netfit can size, it checks before allocating; this is what it could not (a copy of a
        # split, say, under a memory limit): the machine's limit, not a bug.
        if debug:
            traceback.print_exc()
        print(f"netfit: error: out of memory ({str(err).strip() or type(err).__name__}); the data or the network "
              "does not fit: stream a Parquet file (data.streaming = true), use smaller model.hidden or "
              "train.batch_size, or a machine with more memory", file=sys.stderr)
        return EXIT_USER
    except BrokenPipeError:
        # The reader went away (`netfit evaluate RUN | head -2`): stop quietly, as Unix tools do, and
        # point stdout at /dev/null so the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as err:  # a bug in netfit, not the user's input
        if debug:
            traceback.print_exc()
        print(f"netfit: {_rank_tag()}internal error: {type(err).__name__}: {err} (rerun with --debug for the "
              "traceback and report it)", file=sys.stderr)
        return EXIT_BUG


def _rank() -> int:
    from .distributed import launched_rank  # here: a command that prints nothing of it does not import torch

    return launched_rank()


def _rank_tag() -> str:
    """Under torchrun with several ranks, which rank a line comes from (every rank prints its own errors)."""
    from .distributed import launched, launched_rank

    return f"rank {launched_rank()}: " if launched() and int(os.environ["WORLD_SIZE"]) > 1 else ""


@contextmanager
def _warnings_as_notes():
    """netfit's own warnings as one ``netfit: warning:`` line on stderr each, not Python's two-line form."""
    import warnings

    from .errors import UnseenValuesWarning

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UnseenValuesWarning):
            print(f"netfit: warning: {message}", file=sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UnseenValuesWarning)
        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = previous


# ----------------------------------------------------------------------------- commands


def _train(args: argparse.Namespace) -> int:
    from .api import fit, resume
    from .spec import apply_overrides, default_spec_dict, load_spec, spec_from_dict

    overrides = list(args.overrides)
    # With --json, stdout carries only the JSON object; progress goes to stderr.
    progress = None if args.quiet else (sys.stderr if args.json else sys.stdout)
    if args.resume is not None:
        if args.out is not None:
            raise NetfitError("--out does not apply with --resume: the run continues in its own folder")
        changes = _resume_changes(overrides)
        spec = load_spec(args.spec, overrides) if args.spec is not None else None
        run = resume(args.resume, spec=spec, data_dir=args.data_dir, progress=progress,
                     trust_module=args.trust_module, **changes)
    else:
        if args.trust_module:
            raise NetfitError("--trust-module is for --resume (and evaluate, predict, summary of a run): a spec you "
                              "train names its own model.module")
        if args.data_dir is not None:
            overrides.append(f"data.data_dir={json.dumps(str(args.data_dir))}")
        if args.spec is not None:
            spec = load_spec(args.spec, overrides)
        else:
            spec = spec_from_dict(apply_overrides(default_spec_dict(), overrides), source="default spec")
        run = fit(spec, out=args.out or Path("runs"), progress=progress)
    if _rank() != 0:  # under torchrun rank 0 saved the run and prints it
        return EXIT_OK
    if args.json:
        prep = run.model.preparation
        print(json.dumps({"run_dir": str(run.run_dir), "task": prep.task, "task_reason": prep.task_reason,
                          "metrics": run.metrics}))
    else:
        print(_metrics_line(run.metrics))
        print(f"saved run to {run.run_dir}")
    return EXIT_OK


_RESUME_KEYS = {"train.epochs": "epochs", "train.lr": "lr"}


def _resume_changes(overrides: list[str]) -> dict[str, Any]:
    """``--set`` on a resume: train.epochs and train.lr only, anything else would change the run."""
    from .spec import apply_overrides

    changes = {}
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key not in _RESUME_KEYS:
            raise NetfitError(f"--set {key} cannot change a run being resumed: only train.epochs and train.lr "
                              "may change; start a new run to change anything else")
        value = apply_overrides({"train": {}}, [item])["train"][key.split(".", 1)[1]]
        changes[_RESUME_KEYS[key]] = value
    return changes


def _evaluate(args: argparse.Namespace) -> int:
    model = _load_model(args.run, args.trust_module)
    from .streaming import PARQUET_SUFFIXES, streamed_file_report, streamed_test_report, streams

    if args.data is not None and (args.format == "parquet" or args.data.suffix.lower() in PARQUET_SUFFIXES):
        report, source = streamed_file_report(model, args.data), str(args.data)  # read in chunks, never whole
    elif args.data is not None:
        table, source = _labelled_rows(model, args)
        report = model.evaluate(table.X, table.y)
    else:
        # A streamed run's test part is streamed again; None: not the rows it recorded, checked below.
        report = streamed_test_report(model, args.data_dir) if streams(model.spec) else None
        report, source = report or _evaluate_test_part(model, args.data_dir), "the run's test part"
    prefix = "test_" if args.data is None else ""
    metrics = {f"{prefix}{k}": v for k, v in report.items() if isinstance(v, (int, float)) and k != "rows"}
    if args.json:
        print(json.dumps({"run_dir": str(args.run), "data": source, "metrics": metrics, "report": report}))
    else:
        print(_format_report(report, model.task, source))
    return EXIT_OK


def _labelled_rows(model, args: argparse.Namespace):
    """The rows of ``--data`` with their targets, and how to name them: an IDX folder gives its test part."""
    from .data import Table, read_file
    from .data.formats import infer_format, read_idx_dir

    source = str(args.data)
    if _reads_images(model, args.format, [args.data]):
        from .data.images import read_image_folder

        images = read_image_folder(args.data, geometry=model.preparation.image)
        table = Table(images.X, images.y)
    elif args.data.is_dir() and (args.format or infer_format(args.data)) == "idx":
        train, test = read_idx_dir(args.data)
        # A folder is a whole dataset: its t10k part, not the rows a run of it was trained on.
        table, source = (test, f"{args.data} (t10k part)") if test is not None else (train, f"{args.data} (train part)")
    else:
        table = read_file(args.data, args.format, model.spec.data.target, **_columns_as_trained(model, args, args.data))
    if table.y is None:
        raise NetfitError(f"{args.data} has no targets to evaluate against; give a labelled file")
    _note_ignored(table.ignored)
    _check_rows(model, table.X, table.y, source)
    return table, source


def _evaluate_test_part(model, data_dir: Path | None) -> dict[str, Any]:
    from .evaluation import load_test_part

    part = load_test_part(model, data_dir)
    return model.evaluate(part.X, part.y)


def _predict(args: argparse.Namespace) -> int:
    model = _load_model(args.run, args.trust_module)
    if args.proba and model.task == "regression":
        raise NetfitError("--proba is for classification runs; this run does regression")
    if args.output is not None:
        _check_output_path(args.output, args.force)
    columns = _PredictionColumns(model, args.proba)
    if _reads_images(model, args.format, args.input):
        chunks, header = _image_chunks(model, args.input), ["path"] + columns.header
    elif len(args.input) > 1:
        raise NetfitError(f"predict reads one data file, got {len(args.input)}; several files are for runs "
                          "trained on an image folder")
    else:
        chunks, header = ((None, X) for X in _feature_chunks(model, args, args.input[0])), columns.header
    rows = 0
    source = str(args.input[0]) if len(args.input) == 1 else "input"
    # Chunk by chunk: a file larger than memory is read, predicted and written a slice at a time.
    with _csv_output(args.output) as writer, _unseen_values_summed(source):
        for paths, X in chunks:
            predicted = columns.rows(model.logits(X, source=source, first_row=rows))
            if rows == 0:  # after the first chunk is predicted: a refused file writes nothing
                writer.writerow(header)
            writer.writerows(predicted if paths is None else [[str(p), *r] for p, r in zip(paths, predicted)])
            rows += len(X)
        if rows == 0:
            raise NetfitError(f"{args.input[0]} has no rows to predict; give a file with data rows")
    if args.output is not None:
        print(f"wrote {rows} predictions to {args.output}", file=sys.stderr)
    return EXIT_OK


class _PredictionColumns:
    """The CSV columns ``predict`` writes: the prediction (one column per target for several
    targets), the class name when classes have names, and one probability per class on request."""

    def __init__(self, model, proba: bool) -> None:
        self.model, self.proba = model, proba
        prep = model.preparation
        self.names = (model.task != "regression" and prep.labels == "ids"
                      and model.classes != [str(i) for i in range(len(model.classes))])
        if model.task == "regression" and prep.output_size > 1:
            self.header = list(prep.target_names or [f"target_{i}" for i in range(prep.output_size)])
        else:
            self.header = ["prediction"] + (["label"] if self.names else [])
        if proba:
            self.header += [f"proba_{c}" for c in model.classes]

    def rows(self, z) -> list[list[Any]]:
        prediction = self.model.predictions_from_logits(z)
        values = prediction if prediction.ndim == 2 else prediction[:, None]
        # float32 values are written at their own precision (175.91202), not as the float64 that
        # holds them (175.91201782226562).
        columns: list[list[Any]] = [[str(v) for v in values[:, j]] if values.dtype == np.float32
                                    else values[:, j].tolist() for j in range(values.shape[1])]
        if self.names:
            columns.append([self.model.classes[int(i)] for i in prediction])
        if self.proba:
            proba = self.model.proba_from_logits(z)
            columns += [[f"{p:.6f}" for p in proba[:, j]] for j in range(proba.shape[1])]
        return [list(row) for row in zip(*columns)]


def _feature_chunks(model, args: argparse.Namespace, path: Path):
    """Raw feature rows of ``path``, a chunk at a time, checked as training rows were."""
    from .data import iter_tables

    start = 0
    for table in iter_tables(path, args.format, **_columns_as_trained(model, args, path)):
        if start == 0:
            _note_ignored(table.ignored)
        if len(table.X):
            _check_rows(model, table.X, None, str(path), start)
        start += len(table.X)
        yield table.X


def _check_rows(model, X, y, source: str, first_row: int = 0) -> None:
    """Refuse rows the run cannot read; a table of named columns is checked by the run's column encoder."""
    from .data import check_arrays

    if isinstance(X, np.ndarray):
        check_arrays(X.reshape(len(X), -1), y, source, missing_allowed=model.preparation.encoder is not None,
                     first_row=first_row)


@contextmanager
def _unseen_values_summed(source: str):
    """One warning for the whole file, not one per chunk, with each column's count of unseen values."""
    import warnings

    from .errors import UnseenValuesWarning

    totals: dict[str, int] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnseenValuesWarning)
        try:
            yield
        finally:
            for warning in caught:
                if isinstance(warning.message, UnseenValuesWarning):
                    for name, count in warning.message.counts.items():
                        totals[name] = totals.get(name, 0) + count
                else:
                    warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    if totals:
        warnings.warn(UnseenValuesWarning(source, totals), stacklevel=1)


_IMAGE_CHUNK = 1024  # images decoded at a time: bounded memory for folders of any size


def _reads_images(model, format: str | None, paths: list[Path]) -> bool:
    """Whether ``paths`` are images; refused unless the run was trained on an image folder."""
    from .data.formats import infer_format

    trained_on_images = model.preparation.image is not None
    if format is not None:
        images = format == "images"
    else:  # a folder given to an image run is images, even an empty one (refused later, as such)
        images = all((trained_on_images and p.is_dir()) or infer_format(p) == "images" for p in paths)
    if images and not trained_on_images:
        raise NetfitError(f"this run was trained on {model.preparation.dataset}, not on an image folder, so it "
                          "cannot read image files; give rows in the format it was trained on")
    return images


def _image_chunks(model, paths: list[Path]):
    """(files, uint8 rows) of the images at ``paths``, read as the run's training images were."""
    from .data.images import list_images, read_images

    files, _ = list_images(paths)
    for start in range(0, len(files), _IMAGE_CHUNK):
        part = files[start:start + _IMAGE_CHUNK]
        yield part, read_images(part, model.preparation.image)[0]


def _columns_as_trained(model, args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """How to read a file's columns for a run: by the names it was trained on, with its header and encoding.

    A CSV is matched by header name (reordered columns are put back in order, a missing one is
    refused, others are ignored). A file without a header row (``--no-header``, or a run trained
    on one) that has exactly the run's feature columns is read by position, in the run's order.
    """
    from .data import csv_columns
    from .data.formats import infer_format

    data = model.spec.data
    header = data.header if args.header is None else args.header
    encoding = args.encoding or data.encoding
    features = model.preparation.feature_names
    # Each column read as the run read it: with an encoder, a text column stays text even where a
    # chunk of the new file happens to hold only numbers.
    encoder = model.preparation.encoder
    types = {c.name: c.kind for c in encoder.columns} if encoder is not None else data.columns
    options: dict[str, Any] = {"header": header, "encoding": encoding,
                               "features": tuple(features) if features else None, "column_types": types or None}
    if not header and features and (args.format or infer_format(path)) == "csv":
        width = len(csv_columns(path, header=False, encoding=encoding))
        trained_headerless = not data.header and features == [f"f{i}" for i in range(len(features))]
        if width == len(features):
            options["names"] = tuple(features)
        elif not trained_headerless:  # the f0, f1, ... names of a headerless run line up by themselves
            raise NetfitError(f"{path} has {width} columns and no header row; without a header a file must hold "
                              f"exactly the run's {len(features)} feature columns in order "
                              f"({', '.join(features[:6])}{', ...' if len(features) > 6 else ''}): drop the other "
                              "columns, or add a header row naming them")
    return options


def _note_ignored(columns: tuple[str, ...]) -> None:
    if columns:
        print(f"netfit: ignoring {len(columns)} column{'s' if len(columns) > 1 else ''} the model does not use: "
              f"{', '.join(columns)}", file=sys.stderr)


@contextmanager
def _csv_output(path: Path | None):
    """A csv writer on stdout, or on a temporary file that replaces ``path`` only when all went well."""
    if path is None:
        yield csv.writer(sys.stdout)
        return
    from .storage import atomic_file

    target = path.expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target, "w", newline="", encoding="utf-8") as file:
            yield csv.writer(file)
    except OSError as err:
        raise NetfitError(f"cannot write {path} ({err.strerror or err}); choose a writable folder") from None


def _summary(args: argparse.Namespace) -> int:
    from .model import build_network, count_parameters, layer_table

    if args.target.is_dir():
        model = _load_model(args.target, args.trust_module)
        network, spec, input_size = model.network, model.spec, model.preparation.input_size
        layout = model.preparation.layout
    else:
        from .prepare import resolve_widths
        from .spec import load_spec

        spec = load_spec(args.target, args.overrides)
        input_size, output_size, layout = resolve_widths(spec)
        # A custom module is imported here because the user's own spec names it.
        network = build_network(spec.model, input_size, output_size, layout=layout)
    rows = layer_table(network, input_size, layout)
    name_w = max(len("layer"), *(len(r[0]) for r in rows))
    type_w = max(len("type"), *(len(r[1]) for r in rows))
    print(f"{'layer':<{name_w}}  {'type':<{type_w}}  {'output shape':<14}  {'params':>10}")
    print(f"{'input':<{name_w}}  {'':<{type_w}}  {str(('batch', input_size)):<14}  {0:>10,}")
    for name, kind, shape, params in rows:
        shown = str(("batch",) + tuple(shape[1:]))
        print(f"{name:<{name_w}}  {kind:<{type_w}}  {shown:<14}  {params:>10,}")
    print(f"total trainable parameters: {count_parameters(network):,}")
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    if args.output is not None:
        _check_output_path(args.output, args.force)
    path = write_report(args.run, output=args.output, data_dir=args.data_dir, trust_module=args.trust_module)
    print(f"wrote {path}")
    return EXIT_OK


def _lr_find(args: argparse.Namespace) -> int:
    from .lr_find import lr_find, plot_format
    from .spec import load_spec, with_absolute_paths

    spec = load_spec(args.spec, args.overrides)
    if args.output is not None:
        plot_format(args.output)
    outputs = [path for path in (args.apply, args.output) if path is not None]
    for path in outputs:  # before the sweep: a refused path costs nothing
        _check_output_path(path, args.force)
        if path.expanduser().resolve() == args.spec.expanduser().resolve():  # a link to the spec too
            raise NetfitError(f"{path} is the spec lr-find reads; it is never replaced: write to another path")
    if len(outputs) == 2 and args.apply.expanduser().resolve() == args.output.expanduser().resolve():
        raise NetfitError(f"--apply and -o both name {args.apply}; give two different paths")
    result = lr_find(spec)
    if args.output is not None:  # written even without a suggestion: the plot shows why there is none
        result.save_plot(args.output)
    if args.apply is not None:
        # Data paths made absolute: the new file may sit in another folder than the spec it copies.
        _write_atomic(args.apply, with_absolute_paths(result.apply(spec)).to_toml())
    if args.json:
        print(json.dumps({**result.to_dict(), "plot": str(args.output) if args.output else None,
                          "applied": str(args.apply) if args.apply else None}))
        return EXIT_OK
    print(result.summary())
    if args.output is not None:
        print(f"wrote the plot to {args.output}")
    if args.apply is not None:
        print(f"wrote {args.apply} with train.lr = {result.suggestion:.3g}; train it with: netfit train {args.apply}")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from .exporter import FORMATS, export

    if not args.run.is_dir():
        raise NetfitError(f"run {str(args.run)!r} does not exist or is not a folder; pass the folder `netfit train` "
                          "created")
    output = args.output or Path(args.run.resolve().name + FORMATS[args.format])
    _check_output_path(output, args.force)
    model = _load_model(args.run, args.trust_module)
    rows = None if args.rows is None else _export_check_rows(model, args)
    result = export(model, args.format, output, force=args.force, rows=rows, data_dir=args.data_dir)
    print(result.summary())
    return EXIT_OK


def _export_check_rows(model, args: argparse.Namespace):
    """The rows of ``--rows``: a .npy array as it is, any other file read as ``predict`` reads it (by column name)."""
    from .data import read_file

    if args.rows.suffix.lower() == ".npy":
        if not args.rows.is_file():
            raise NetfitError(f"--rows {args.rows}: give an existing file of raw rows (.npy, CSV, Parquet or Feather)")
        try:
            return np.load(args.rows, allow_pickle=False)  # never unpickle a file named on the command line
        except (OSError, ValueError) as err:
            raise NetfitError(f"--rows {args.rows}: cannot read it as a .npy array ({err})") from None
    # export's --format names the file to write, not the data's format, which comes from the suffix here.
    as_data = argparse.Namespace(**{**vars(args), "format": None})
    table = read_file(args.rows, None, None, **_columns_as_trained(model, as_data, args.rows))
    _note_ignored(table.ignored)
    _check_rows(model, table.X, None, str(args.rows))
    return table.X


def _init(args: argparse.Namespace) -> int:
    from .starter import STARTER_SPEC

    _check_output_path(args.path, args.force)
    _write_atomic(args.path, STARTER_SPEC)
    print(f"wrote {args.path}; train it with: netfit train {args.path}")
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from .spec import spec_json_schema

    text = json.dumps(spec_json_schema(), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        _check_output_path(args.output, args.force)
        _write_atomic(args.output, text)
    return EXIT_OK


def _tune(args: argparse.Namespace) -> int:
    from .spec import load_spec
    from .tuning import summary_table, tune

    if args.resume is not None and args.study_name is not None:
        raise NetfitError("--name does not apply with --resume: the study keeps its name")
    progress = None if args.quiet else (sys.stderr if args.json else sys.stdout)
    if args.spec is None and args.resume is None:
        raise NetfitError("give a spec file with a [tune] table, e.g. netfit tune configs/fashion-mnist.toml, "
                          "or --resume STUDY_DIR to continue a study")
    if args.spec is None and args.overrides:
        raise NetfitError("--set needs the spec file: netfit tune SPEC --resume STUDY_DIR --set KEY=VALUE")
    spec = load_spec(args.spec, args.overrides) if args.spec is not None else None
    result = tune(spec, trials=args.trials, out=args.out, storage=args.storage,
                  study_name=args.study_name, resume=args.resume, workers=args.workers, progress=progress)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(summary_table(result))
        if result.best_spec_path is not None:
            print(f"best {result.metric} {result.best_value:.4g}: trial run {result.best_run_dir}")
            print(f"saved best spec to {result.best_spec_path}")
    if result.best_spec_path is None:
        print("netfit: no trial completed (all pruned or failed), so no best spec was written", file=sys.stderr)
        return 1
    return EXIT_OK


_COMMANDS = {"train": _train, "evaluate": _evaluate, "predict": _predict, "summary": _summary, "report": _report,
             "lr-find": _lr_find, "export": _export, "init": _init, "schema": _schema,
             "tune": _tune}


# ----------------------------------------------------------------------------- helpers


def _load_model(run: Path, trust_module: bool):
    from .api import load

    return load(run, trust_module=trust_module)


def _check_output_path(path: Path, force: bool) -> None:
    """Refuse to write over a run's files (ever) or over an existing file (without --force)."""
    from .files import refuse_special_output
    from .rundir import enclosing_run

    target = path.expanduser().absolute()
    run = enclosing_run(target.parent)
    if run is not None:
        raise NetfitError(f"{path} is inside run folder {str(run)!r}; netfit never writes over a run's "
                          "files: choose a path outside it")
    if target.is_dir():
        raise NetfitError(f"{path} is a folder; give the path of a file to write")
    refuse_special_output(target)
    if target.exists() and not force:
        raise NetfitError(f"{path} already exists; choose another path or pass --force to replace it")


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: the old file survives any failure."""
    from .storage import save_file

    save_file(path, text.encode("utf-8"))


_SHOWN = ("test_accuracy", "val_accuracy", "test_macro_f1", "test_r2", "test_rmse", "test_mae", "val_r2",
          "val_rmse")


def _metrics_line(metrics: dict[str, float]) -> str:
    parts = [f"{k} {metrics[k]:.4f}" for k in _SHOWN if k in metrics]
    return "  ".join(parts) if parts else f"train_loss {metrics['train_loss']:.4f}"


def _format_report(report: dict[str, Any], task: str, source: str) -> str:
    lines = [f"evaluated on {source} ({report['rows']} rows)"]
    if task == "regression":
        lines.append(f"MAE {report['mae']:.4f}  RMSE {report['rmse']:.4f}  R^2 {report['r2']:.4f}"
                     + ("  (averaged over targets)" if "per_target" in report else ""))
        targets = report.get("per_target", [])
        width = max([6] + [len(t["target"]) for t in targets])
        if targets:
            lines.append(f"{'target':<{width}}  {'MAE':>10}  {'RMSE':>10}  {'R^2':>8}")
        lines += [f"{t['target']:<{width}}  {t['mae']:10.4f}  {t['rmse']:10.4f}  {t['r2']:8.4f}" for t in targets]
        return "\n".join(lines)
    lines.append(f"accuracy {report['accuracy']:.4f}  macro F1 {report['macro_f1']:.4f}")
    width = max(5, *(len(c["class"]) for c in report["per_class"]))
    lines.append(f"{'class':<{width}}  precision  recall      f1  support")
    for c in report["per_class"]:
        lines.append(f"{c['class']:<{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:6.4f}  "
                     f"{c['support']:7d}")
    lines.append("confusion matrix (rows: true class, columns: predicted class)")
    cell = max(4, len(str(max(max(r) for r in report["confusion"]))) + 1)
    for c, row in zip(report["per_class"], report["confusion"]):
        lines.append(f"{c['class']:<{width}} " + "".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
