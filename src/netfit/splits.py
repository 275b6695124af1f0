"""Training-ready parts of a dataset: stored rows, targets and the scaler that turns rows into inputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .features import Features
from .preparation import Preparation
from .scaling import Scaler

__all__ = ["Split", "PreparedData"]


@dataclass
class Split:
    """Stored features ``X`` (uint8 images or float32 table rows, unscaled) and targets ``y``.

    A table with categorical or text columns is stored encoded, as :class:`~netfit.features.Features`.
    ``y`` holds int64 class ids, or float32 (n, k) values (scaled, for regression).
    ``scaler`` turns stored rows into the network's inputs, batch by batch, on any device.
    """

    X: torch.Tensor | Features
    y: torch.Tensor
    scaler: Scaler

    def __len__(self) -> int:
        return self.X.shape[0]

    def to(self, device: torch.device) -> "Split":
        return Split(self.X.to(device), self.y.to(device), self.scaler)

    def inputs(self, rows: torch.Tensor | slice) -> torch.Tensor:
        """Scaled float32 inputs of ``rows`` (an index tensor or a slice): a tensor, or a TableBatch."""
        if isinstance(self.X, Features):
            return self.X.take(rows)
        stored = self.X.index_select(0, rows) if isinstance(rows, torch.Tensor) else self.X[rows]
        return self.scaler.apply(stored)


@dataclass
class PreparedData:
    """Tensors for each part; ``val`` and ``test`` are None when there is no such part."""

    preparation: Preparation
    train: Split
    val: Split | None
    test: Split | None
    image_shape: tuple[int, int, int] | None = None  # (height, width, channels) of a row's pixels, when known
