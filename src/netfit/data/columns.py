"""Which columns of a file with named columns (CSV, Parquet, Feather) are features, targets or ignored.

The caller says it with ``ReadOptions``: ``target`` (one column or several), ``features`` (these
columns in this order, else every other column) and ``column_types`` (``data.columns``: a column
declared "ignore" is skipped; "numeric", "categorical" and "text" say how a feature is read).
Every name is checked against the file's columns here, once per file, so that a misspelt name is
refused with the nearest real one before any row is read.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import NetfitError
from ..registry import nearest
from .table import ReadOptions

__all__ = ["Columns", "plan_columns", "unique_names", "listing", "separator_hint"]


class Columns(NamedTuple):
    """The columns a reader reads, by name, and what each feature was declared to be."""

    features: list[str]  # in the order of Table.X
    targets: list[str]
    multi: bool  # data.target is a list: y is (rows, targets), numbers only
    ignored: tuple[str, ...]  # in file order: neither features nor targets
    declared: dict[str, str]  # feature name -> "numeric", "categorical" or "text", from column_types

    @property
    def selected(self) -> list[str]:
        """Every column to read: features, then targets."""
        return self.features + self.targets


def plan_columns(names: list[str], options: ReadOptions, source: str) -> Columns:
    """The features, targets and ignored columns of a file whose columns are ``names``."""
    for target in options.targets:
        if target not in names:
            hint = nearest(target, names)
            did_you_mean = f"did you mean {hint!r}? " if hint else ""
            # Read for a trained run (evaluate, a test file): the target is the run's, not a setting to change.
            fix = ("give a file with that column (evaluate needs the labels; netfit predict takes files without it)"
                   if options.features is not None else "set data.target")
            raise NetfitError(
                f"{source!r} has no column {target!r}; {did_you_mean}columns: {listing(names)}; "
                f"{separator_hint(names) or fix}"
            )
    types = dict(options.column_types or {})
    for name, kind in types.items():
        # A missing feature of a run's (or a training file's) is named below as such: the user did not write its type.
        if name not in names and name not in (options.features or ()):
            hint = nearest(name, names)
            did_you_mean = f" (did you mean {hint!r}?)" if hint else ""
            raise NetfitError(f"data.columns names {name!r}, but {source!r} has no such column{did_you_mean}; its "
                              f"columns are {listing(names)}; fix or remove data.columns.{name}")
        if name in options.targets:
            raise NetfitError(f"data.columns types {name!r}, which is data.target; the target's type comes from "
                              "train.task, so remove it from data.columns")
    if options.features is None:
        features = [name for name in names if name not in options.targets and types.get(name) != "ignore"]
    else:
        wanted = list(options.features)
        if len(set(wanted)) != len(wanted) or set(wanted) & set(options.targets):
            raise ValueError(f"features {wanted} repeat a column or include a target")
        for name in wanted:
            if name not in names:
                hint = nearest(name, names)
                did_you_mean = f" (did you mean {hint!r}?)" if hint else ""
                raise NetfitError(
                    f"{source!r} has no feature column {name!r}{did_you_mean}; its columns are {listing(names)}, "
                    f"and the features to read are {listing(wanted)}; "
                    f"{separator_hint(names) or 'add or rename that column'}"
                )
            if types.get(name) == "ignore":
                raise ValueError(f"feature {name!r} is also declared 'ignore' in column_types")
        features = wanted
    used = set(features) | set(options.targets)
    return Columns(features, options.targets, not isinstance(options.target, str) and options.target is not None,
                   tuple(name for name in names if name not in used),
                   {name: kind for name, kind in types.items() if name in features})


def unique_names(names: list[str], source: str) -> list[str]:
    """``names`` when no two are the same (a Parquet or Feather schema may repeat one), else a NetfitError."""
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise NetfitError(f"{source!r} has two columns named {repeated[0]!r}; give every column its own name")
    return list(names)


def separator_hint(names: list[str]) -> str | None:
    """What to say when a header holds one name with semicolons or tabs in it: another separator."""
    for separator, called in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
        if len(names) == 1 and separator in names[0]:
            return (f"its columns seem to be separated by {called}, but netfit reads comma-separated files: "
                    "save it with commas")
    return None


def listing(names: list[str], limit: int = 12) -> str:
    """``a, b, c`` for messages; a long list is cut, so that one line stays one readable line."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])}, ... ({len(names)} in all)"
