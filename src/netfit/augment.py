"""Data augmentation of training images: random shifts and mirror flips (``data.augment``).

A fully-connected network sees an image as a list of pixels, so a garment one pixel to the left is
a new input to it; showing it each training image moved a little and mirrored teaches it that they
are the same garment. Whether that pays within a time budget depends on the data and the network:
on Fashion-MNIST within 10 CPU minutes it did not (docs/benchmarks.md, "The accuracy ceiling").

The transform runs on the device on each gathered batch, on the stored uint8 pixels, before
scaling: one ``gather`` does the shift and the flip together. Written here rather than taken from
torchvision because netfit keeps images as rows of pixels on the training device, not as a
dataset of PIL images, and because every draw must come from the run's seed and the epoch alone:

- the draws of an epoch are one value per training row, from a generator seeded with
  (``train.seed``, epoch), so a resumed run draws exactly what the uninterrupted one drew, with
  nothing to save in the checkpoint;
- they are indexed by row, not by step, so several ranks that each take part of every batch
  (torchrun) change each row exactly as one process does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import NetfitError
from .spec import AugmentSpec

__all__ = ["ImageAugment", "image_augment", "check_augment", "mirror_caution"]

# Mixed into the per-epoch seed so that augmentation draws never repeat the shuffling generator's stream.
_STREAM = 0x5EED_A06


class ImageAugment:
    """Shifts each training image by up to ``shift`` pixels per axis and mirrors it with probability 1/2."""

    def __init__(self, options: AugmentSpec, shape: tuple[int, int, int], rows: int, seed: int,
                 device: torch.device) -> None:
        self.shift, self.flip = options.shift, options.flip
        self.height, self.width, self.channels = shape
        self.seed, self.device = seed, device
        s = self.shift
        self.padded_width = self.width + 2 * s
        # Each row's draws for the current epoch, refilled in place (a CUDA graph reads these buffers).
        self.offsets = torch.zeros(rows, dtype=torch.long, device=device)
        self.mirrored = torch.zeros(rows, dtype=torch.bool, device=device)
        i = torch.arange(self.height, device=device)
        self._row_starts = ((i + s) * self.padded_width + s).view(1, -1, 1)  # (1, H, 1)
        self._columns = torch.arange(self.width, device=device).view(1, 1, -1)  # (1, 1, W)

    def describe(self) -> str:
        changes = [f"shifts of up to {self.shift} pixel{'s' if self.shift > 1 else ''}"] if self.shift else []
        changes += ["mirror flips"] if self.flip else []
        return f"training images change every epoch: {' and '.join(changes)}"

    def begin_epoch(self, epoch: int) -> None:
        """Draw every training row's shift and flip for ``epoch`` (1-based) from the run's seed."""
        generator = torch.Generator(device=self.device).manual_seed((self.seed * 1_000_003 + epoch) ^ _STREAM)
        n, s = len(self.offsets), self.shift
        dy = torch.randint(-s, s + 1, (n,), generator=generator, device=self.device)
        dx = torch.randint(-s, s + 1, (n,), generator=generator, device=self.device)
        self.offsets.copy_(dy * self.padded_width + dx)
        if self.flip:
            self.mirrored.copy_(torch.rand(n, generator=generator, device=self.device) < 0.5)

    def __call__(self, stored: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The batch ``stored`` (stored pixels of training rows ``rows``, one image per row) changed by their draws."""
        n, h, w, c, s = len(stored), self.height, self.width, self.channels, self.shift
        images = stored.view(n, h, w, c)
        if s:
            images = F.pad(images, (0, 0, s, s, s, s))  # zeros around: what a shift uncovers is black
        columns = self._columns.expand(n, 1, w)
        if self.flip:
            columns = torch.where(self.mirrored.index_select(0, rows).view(n, 1, 1), w - 1 - columns, columns)
        source = self._row_starts + columns + self.offsets.index_select(0, rows).view(n, 1, 1)  # (n, H, W)
        source = source.view(n, h * w, 1).expand(n, h * w, c)
        return torch.gather(images.reshape(n, -1, c), 1, source).view(n, h * w * c)


# Built-in datasets of handwriting: a mirrored digit or character is another one, or none.
_WRITING = ("mnist", "mnist-sample", "kmnist")


def mirror_caution(options: AugmentSpec, dataset: str | None) -> str | None:
    """A one-line caution when mirror flips are asked for on a built-in dataset of handwriting."""
    if options.flip and dataset in _WRITING:
        return (f"netfit: caution: {dataset} is handwriting, and a mirrored digit or character is another one or "
                "none; data.augment.flip suits classes that keep their name in a mirror (clothes, most photos)")
    return None


def check_augment(options: AugmentSpec, shape: tuple[int, int, int] | None, source: str) -> None:
    """Refuse ``data.augment`` for data that are not images, or a shift that would move them out of sight."""
    if not options.enabled:
        return
    if shape is None:
        raise NetfitError(f"data.augment moves and mirrors images, but the rows of {source} are not images of a known "
                          "height and width; use an image folder, an IDX dataset (mnist-sample, mnist, fashion-mnist, "
                          "kmnist, or IDX files), or an .npz/.npy file or (in Python) an array of shape "
                          "(n, height, width[, channels]); or remove [data.augment]")
    height, width, _ = shape
    if options.shift >= min(height, width):
        raise NetfitError(f"data.augment.shift = {options.shift} would move images of height {height} and width "
                          f"{width} out of sight; "
                          f"use a shift below {min(height, width)} (1-3 pixels is usual)")


def image_augment(options: AugmentSpec, shape: tuple[int, int, int] | None, rows: int, seed: int,
                  device: torch.device) -> ImageAugment | None:
    """The run's augmentation of its ``rows`` training images, None when ``data.augment`` asks for none.

    ``start_training`` has already refused, with ``check_augment``, data that cannot be augmented.
    """
    return ImageAugment(options, shape, rows, seed, device) if options.enabled else None
