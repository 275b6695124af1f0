"""Real text for the tests and the bag-of-words benchmark: Debian package descriptions -> their section.

No text corpus ships with scikit-learn offline, but every Debian machine describes its packages:

- ``/var/lib/dpkg/status``: the installed packages, each with its whole description (a one-line
  synopsis, then paragraphs of continuation lines that start with a space);
- ``apt-cache dumpavail``: every package the apt lists know (tens of thousands after
  ``apt-get update``), with the synopsis only (long descriptions live in Translation files that
  minimal systems do not fetch).

A row is one package: its description (the status file's, where the package is installed, else
apt's synopsis) and its section (``libs``, ``python``, ``doc``...; a ``contrib/`` or ``non-free/``
prefix dropped). Rows are deduplicated by package, then by text (a text given under two sections
is dropped: no model could get both right); the ``sections`` most common sections with at least
``min_rows`` rows are kept. Train and test rows come from a hash of the package name, so the split
is the same on every machine and in every process, whatever order the sources list packages in.

The rows are built from what the machine has at the time; too few raise :class:`NotEnoughText`,
whose message says how to get more (tests turn it into a failure, not a skip).

Used by ``tests/test_text.py`` and ``benchmarks/text_bow.py`` (which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DebianText", "NotEnoughText", "load_debian_text", "read_stanzas"]

DPKG_STATUS = Path("/var/lib/dpkg/status")


class NotEnoughText(RuntimeError):
    """The machine's package descriptions are too few for the rows asked for."""


@dataclass(frozen=True)
class DebianText:
    """Descriptions (object arrays of str) and section labels of the train and test rows."""

    train_text: np.ndarray
    train_label: np.ndarray
    test_text: np.ndarray
    test_label: np.ndarray
    sections: tuple[str, ...]  # the kept sections, most common first
    sources: str  # where the rows came from, for reports: "dpkg status (711 packages) + apt-cache ..."

    def describe(self) -> str:
        return (f"{len(self.train_text):,} train + {len(self.test_text):,} test rows, {len(self.sections)} sections "
                f"({', '.join(self.sections)}); from {self.sources}")


_FIELD = {name: re.compile(rf"^{name}:[ \t]*(.*(?:\n[ \t].*)*)", re.M) for name in ("Package", "Section", "Description")}


def read_stanzas(text: str) -> list[dict[str, str]]:
    """The Package, Section and Description fields of each deb822 paragraph (blank-line separated).

    A field's continuation lines (starting with a space) are kept, joined by newlines.
    """
    stanzas = []
    for paragraph in re.split(r"\n[ \t]*\n", text):
        found = {name: pattern.search(paragraph) for name, pattern in _FIELD.items()}
        stanzas.append({name: match.group(1).strip() for name, match in found.items() if match})
    return stanzas


def _description(raw: str) -> str:
    # The synopsis, then the long description's lines; " ." marks a paragraph break.
    lines = [line.strip() for line in raw.splitlines()]
    return " ".join(line for line in lines if line and line != ".")


def _packages(stanzas: list[dict[str, str]]) -> dict[str, tuple[str, str]]:
    """Package name -> (description, section), for stanzas that have all three."""
    rows = {}
    for s in stanzas:
        name, section, description = s.get("Package"), s.get("Section"), s.get("Description")
        if name and section and description:
            rows.setdefault(name, (_description(description), section.rsplit("/", 1)[-1]))
    return rows


def _apt_available() -> str:
    if shutil.which("apt-cache") is None:
        return ""
    # Into a file, not a pipe: 50 MB through a pipe costs seconds of polling on a busy machine.
    with tempfile.TemporaryFile() as out:
        try:
            done = subprocess.run(["apt-cache", "dumpavail"], stdout=out, stderr=subprocess.DEVNULL, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        out.seek(0)
        return out.read().decode("utf-8", errors="replace") if done.returncode == 0 else ""


def _in_test(name: str, test_fraction: float) -> bool:
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def _order(name: str) -> bytes:
    # A second, independent hash: the order in which max_rows picks packages.
    return hashlib.sha256(b"order:" + name.encode()).digest()


def load_debian_text(sections: int = 10, min_rows: int = 100, test_fraction: float = 0.2,
                     max_rows: int | None = None, status: Path = DPKG_STATUS,
                     use_apt: bool = True) -> DebianText:
    """The machine's package descriptions as a text classification task (see the module docstring).

    ``max_rows`` keeps that many rows of the kept sections (a deterministic sample, by hash of the
    package name), for fast tests; sections are chosen before sampling.
    """
    installed = _packages(read_stanzas(status.read_text(encoding="utf-8", errors="replace"))) \
        if status.is_file() else {}
    available = _packages(read_stanzas(_apt_available())) if use_apt else {}
    packages = {**available, **installed}  # the status file's whole description wins over apt's synopsis
    sources = f"{status} ({len(installed):,} packages)" + \
        (f" + apt-cache dumpavail ({len(available):,} packages)" if use_apt else "")

    # The same text under two sections cannot be told apart: drop it. Under one section: keep one row.
    by_text: dict[str, list[str]] = defaultdict(list)
    for name in sorted(packages):
        text, section = packages[name]
        by_text[re.sub(r"\s+", " ", text.lower()).strip()].append(name)
    unique = {}
    for names in by_text.values():
        if len({packages[n][1] for n in names}) == 1:
            unique[names[0]] = packages[names[0]]

    counts = Counter(section for _, section in unique.values())
    kept = [s for s, c in counts.most_common() if c >= min_rows][:sections]
    if len(kept) < min(sections, 2):
        raise NotEnoughText(
            f"this machine's package descriptions give {len(kept)} section(s) with at least {min_rows} rows "
            f"(need {sections}; {len(unique):,} distinct descriptions from {sources}); "
            "run `apt-get update` so that `apt-cache dumpavail` lists every Debian package")
    names = sorted((n for n, (_, s) in unique.items() if s in kept), key=_order)
    if max_rows is not None:
        if len(names) < max_rows:
            raise NotEnoughText(f"this machine's package descriptions give {len(names):,} rows in the {len(kept)} "
                                f"kept sections, fewer than the {max_rows:,} asked for (from {sources}); "
                                "run `apt-get update` so that `apt-cache dumpavail` lists every Debian package")
        names = names[:max_rows]
    names.sort()
    test = np.array([_in_test(n, test_fraction) for n in names], bool)
    text = np.array([unique[n][0] for n in names], dtype=object)
    label = np.array([unique[n][1] for n in names], dtype=object)
    return DebianText(text[~test], label[~test], text[test], label[test], tuple(kept), sources)
