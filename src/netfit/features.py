"""Encoded table rows as the network takes them: dense columns, category codes and a sparse bag of words.

A table with categorical or text columns is not one dense matrix: a bag-of-words over a vocabulary
of 20,000 tokens would be 80 KB of float32 per row, almost all zeros. :class:`Features` keeps what
the column encoder (``encoder.py``) produced in three parts, and :meth:`Features.take` gathers a
batch of rows from them into a :class:`TableBatch`, which the network's first layer
(``model.TableInput``) turns into one pre-activation without ever densifying the bag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["Features", "TableBatch", "InputLayout"]


@dataclass(frozen=True)
class InputLayout:
    """What the first layer of a table network reads: the widths and sizes of each part of a row."""

    dense: int  # numeric columns, was-missing indicators and one-hot categories
    embeddings: tuple[tuple[int, int], ...] = ()  # (codes, width) of each embedded categorical column
    vocabulary: int = 0  # tokens of every text column together: the bag's width

    @property
    def width(self) -> int:
        """The first layer's fan-in: what a plain Linear over the concatenated row would take."""
        return self.dense + sum(width for _, width in self.embeddings) + self.vocabulary

    @property
    def plain(self) -> bool:
        """True when a row is just its dense part (no embedding, no bag): a plain tensor does."""
        return not self.embeddings and not self.vocabulary


class TableBatch(NamedTuple):
    """One batch as the table network's first layer reads it.

    ``bag_indices``/``bag_offsets``/``bag_weights`` are ``nn.EmbeddingBag``'s ``input``,
    ``offsets`` and ``per_sample_weights``: the non-zero bag-of-words entries of the batch's rows.
    """

    dense: torch.Tensor  # (rows, layout.dense) float32
    codes: torch.Tensor  # (rows, embedded columns) int64; 0 is the bucket of values unseen in training
    bag_indices: torch.Tensor  # (entries,) int64 token ids
    bag_offsets: torch.Tensor  # (rows,) int64: where each row's entries start
    bag_weights: torch.Tensor  # (entries,) float32: counts, 1s, or TF-IDF weights

    @property
    def device(self) -> torch.device:
        return self.dense.device

    def to(self, device: torch.device) -> "TableBatch":
        return TableBatch(*(t.to(device) for t in self))


@dataclass
class Features:
    """Encoded rows: dense float32 part, int64 category codes, and the bag of words in CSR form."""

    dense: torch.Tensor  # (n, dense) float32
    codes: torch.Tensor  # (n, embedded columns) int64, (n, 0) when none
    bag_indptr: torch.Tensor  # (n + 1,) int64: row i's entries are bag_indices[indptr[i]:indptr[i + 1]]
    bag_indices: torch.Tensor  # (entries,) int64
    bag_values: torch.Tensor  # (entries,) float32

    def __len__(self) -> int:
        return self.dense.shape[0]

    @property
    def device(self) -> torch.device:
        return self.dense.device

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), self.dense.shape[1] + self.codes.shape[1])

    def to(self, device: torch.device) -> "Features":
        return Features(*(t.to(device) for t in self._parts()))

    def _parts(self) -> tuple[torch.Tensor, ...]:
        return self.dense, self.codes, self.bag_indptr, self.bag_indices, self.bag_values

    def take(self, rows: torch.Tensor | slice) -> TableBatch:
        """The batch of ``rows`` (an index tensor or a slice)."""
        if isinstance(rows, slice):
            rows = torch.arange(len(self), device=self.device)[rows]
        starts = self.bag_indptr.index_select(0, rows)
        lengths = self.bag_indptr.index_select(0, rows + 1) - starts
        offsets = torch.cumsum(lengths, 0) - lengths
        # Gathering rows of a CSR matrix by index: torch has no index_select for sparse CSR tensors,
        # so the positions of the batch's entries are computed here, with no per-row Python.
        total = int(lengths.sum())
        positions = torch.repeat_interleave(starts - offsets, lengths, output_size=total) + \
            torch.arange(total, device=self.device)
        return TableBatch(self.dense.index_select(0, rows), self.codes.index_select(0, rows),
                          self.bag_indices.index_select(0, positions), offsets,
                          self.bag_values.index_select(0, positions))

    def arrays(self) -> list[np.ndarray]:
        """The parts as NumPy arrays, in a fixed order (for hashing the training rows)."""
        return [t.cpu().numpy() for t in self._parts()]
