"""Image folders: PNG and JPEG files in one subfolder per class, read with Pillow into uint8 rows.

A training folder holds one subfolder per class; the sorted subfolder names are the class
labels (``digits/0/a.png``, ``digits/1/b.jpg``, ...). A folder to predict on may instead hold
its images directly. Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) are
skipped; other files that are not .png/.jpg/.jpeg are skipped and listed once on stderr, since
a stray ``notes.txt`` is common but a folder of GIFs read as nothing would not be.

Every image is decoded by Pillow, converted to one mode (``L``, grayscale, or ``RGB``) and, when
``data.image_size`` is set, resized with Pillow's BILINEAR filter (antialiased when shrinking,
as torchvision's ``Resize`` does). Without ``image_size`` every image must have the first one's
size. Mode ``auto`` is ``L`` when every image is stored as grayscale (``1``, ``L``, ``LA``, or a
palette of greys), else ``RGB``. An alpha channel is dropped, not blended; EXIF orientation is
not applied; 16-bit and float images are refused rather than clipped to 8 bits.

Reading goes in two passes so that nothing large is allocated for a folder that cannot be read:
the headers of all files first (sizes, modes, decompression bombs, files that are not images),
then the pixels, into one preallocated uint8 array of shape (n, height * width * channels),
pixels row by row with channels interleaved: the layout of a (n, height, width[, channels])
array. The :class:`ImageGeometry` a training folder was read with is saved with the run, so new
images are read the same way.

Pillow is an optional dependency (``pip install 'netfit[images]'``), imported on first use.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import numpy as np

from ..errors import NetfitError
from ..files import open_regular, require_memory

__all__ = ["IMAGE_SUFFIXES", "ImageGeometry", "ImageSet", "is_image_folder", "list_images", "read_image_folder",
           "read_images", "image_rows"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GRAY_MODES = ("1", "L", "LA")
# Pillow converts these to L by clipping at 255, which turns a 16-bit scan into a white page.
_DEEP_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")


@dataclass(frozen=True)
class ImageGeometry:
    """How a run's images were read: every image becomes ``height`` x ``width`` pixels in ``mode``.

    ``resized``: images of another size are resized (``data.image_size`` was set); False: they
    are refused, as they were when training.
    """

    height: int
    width: int
    mode: str  # "L" (1 channel) or "RGB" (3 channels)
    resized: bool

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def features(self) -> int:
        return self.height * self.width * self.channels

    def describe(self) -> str:
        return f"{self.width}x{self.height} {self.mode}"

    def to_dict(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width, "mode": self.mode, "resized": self.resized}


class ImageSet(NamedTuple):
    """Images read into rows: ``X`` uint8 (n, features), ``y`` class folder names (None without classes)."""

    X: np.ndarray
    y: np.ndarray | None
    files: list[Path]
    geometry: ImageGeometry


def is_image_folder(path: Path) -> bool:
    """Whether the folder ``path`` holds .png/.jpg/.jpeg files, directly or in its subfolders."""
    for entry in _entries(path):
        if entry.is_dir():
            if any(_is_image_name(sub.name) for sub in _entries(Path(entry.path))):
                return True
        elif _is_image_name(entry.name):
            return True
    return False


def list_images(paths: Path | Iterable[Path]) -> tuple[list[Path], list[str] | None]:
    """The image files of a folder, an image file, or several of either, and their class labels.

    A folder with subfolders is a folder of classes: each subfolder is one class, named by it,
    and must hold images; images beside the class subfolders are refused (they have no class).
    A folder without subfolders holds its images directly. Labels are None unless every path is
    a folder of classes. Skipped non-image files are listed once on stderr.
    """
    single = isinstance(paths, (str, os.PathLike))
    paths = [Path(paths)] if single else [Path(p) for p in paths]
    files: list[Path] = []
    labels: list[str] | None = []
    skipped: list[Path] = []
    for path in paths:
        path = path.expanduser()
        if not path.is_dir():
            if not os.path.lexists(path):
                raise NetfitError(f"image {str(path)!r} does not exist; check the path")
            if not _is_image_name(path.name):
                raise NetfitError(f"{str(path)!r} is not a .png, .jpg or .jpeg file; give images or a folder of them")
            files.append(path)
            labels = None
            continue
        found, classes = _folder_images(path, skipped)
        files += found
        labels = None if labels is None or classes is None else labels + classes
    if skipped:
        shown = ", ".join(str(p) for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        print(f"netfit: skipping {len(skipped)} file{'s' if len(skipped) > 1 else ''} that "
              f"{'are' if len(skipped) > 1 else 'is'} not .png, .jpg or .jpeg: {shown}", file=sys.stderr)
    return files, labels


def read_image_folder(folder: str | Path, size: tuple[int, int] | list[int] | None = None, mode: str = "auto",
                      geometry: ImageGeometry | None = None) -> ImageSet:
    """Read a folder of images (see ``list_images``) into an :class:`ImageSet`.

    ``size`` ([height, width]) resizes every image; None: all must have the first one's size.
    ``mode``: "L", "RGB" or "auto". ``geometry`` (a run's) replaces both: images are read as the
    run's were.
    """
    folder = Path(folder).expanduser()
    files, labels = list_images(folder)
    if not files:
        raise NetfitError(f"image folder {str(folder)!r} holds no .png, .jpg or .jpeg files; put the images "
                          "in one subfolder per class (the subfolder names are the labels)")
    X, geometry = read_images(files, geometry, size, mode, source=str(folder))
    y = None if labels is None else np.array(labels, dtype=str)
    return ImageSet(X, y, files, geometry)


def read_images(files: list[Path], geometry: ImageGeometry | None = None,
                size: tuple[int, int] | list[int] | None = None, mode: str = "auto",
                source: str = "images") -> tuple[np.ndarray, ImageGeometry]:
    """Decode ``files`` into uint8 rows (n, features) and the geometry they were read with.

    With ``geometry`` the images are read as it says; else it is decided from ``size`` and
    ``mode`` (as ``read_image_folder``) and the files' headers.
    """
    Image = _pillow()
    headers = [_header(Image, path) for path in files]  # (size, mode) of each file; no pixels decoded yet
    trained = geometry is not None  # a run's (or the training part's) geometry: data.image_size is set already
    if geometry is None:
        geometry = _decide_geometry(files, headers, size, mode, source)
    if not geometry.resized:
        for path, (found, _) in zip(files, headers):
            if found != (geometry.width, geometry.height):
                size = f"{geometry.width}x{geometry.height}"
                fix = (f"resize it to {size}, or train again with data.image_size = [height, width] to resize "
                       "every image to one size" if trained else
                       "set data.image_size = [height, width] to resize every image to one size")
                raise NetfitError(f"image {str(path)!r} is {found[0]}x{found[1]} pixels but the "
                                  f"{'training ' if trained else ''}images are {size}; {fix}")
    # One array, sized before it is allocated: a folder of large images can exceed memory.
    require_memory(len(files) * geometry.features, f"{len(files)} images of {source} ({geometry.describe()})",
                   "set data.image_size to a smaller size, or use fewer images")
    X = np.empty((len(files), geometry.features), dtype=np.uint8)
    for row, path in enumerate(files):
        X[row] = _pixels(Image, path, geometry).reshape(-1)
    return X, geometry


def image_rows(X: Any, geometry: ImageGeometry) -> np.ndarray | Any:
    """What a run trained on images accepts to predict on: image paths, or an array of images.

    A path (str or Path) or a list of paths is read as the run's images were, giving uint8 rows;
    an array of shape (n, height, width[, channels]) must have the run's height, width and
    channels. Anything else is returned unchanged, for the usual row checks.
    """
    if isinstance(X, (str, os.PathLike)) or (isinstance(X, (list, tuple)) and X
                                             and all(isinstance(p, (str, os.PathLike)) for p in X)):
        files, _ = list_images(X)
        return read_images(files, geometry, source="the images given")[0]
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 3:
        wanted = (geometry.height, geometry.width, geometry.channels)
        if tuple(shape[1:]) != wanted and not (geometry.channels == 1 and tuple(shape[1:]) == wanted[:2]):
            raise NetfitError(f"images of shape {tuple(shape[1:])} were given but the run was trained on images of "
                              f"shape {wanted} (height, width, channels); give images of that shape")
    if isinstance(X, np.ndarray) and not X.flags.writeable:
        X = X.copy()  # np.asarray(PIL image) is read-only, and torch warns about read-only arrays
    return X


# ----------------------------------------------------------------------------- helpers


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise NetfitError("reading images needs Pillow: pip install 'netfit[images]'") from None
    return Image


def _entries(folder: Path) -> list[os.DirEntry]:
    """The visible entries of ``folder``, sorted by name."""
    try:
        with os.scandir(folder) as scan:
            return sorted((e for e in scan if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as err:
        raise NetfitError(f"cannot list folder {str(folder)!r} ({err.strerror or err}); check its permissions") \
            from None


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _folder_images(folder: Path, skipped: list[Path]) -> tuple[list[Path], list[str] | None]:
    entries = _entries(folder)
    subfolders = [e for e in entries if e.is_dir()]
    loose = [Path(e.path) for e in entries if not e.is_dir() and _is_image_name(e.name)]
    if not subfolders:
        skipped += [Path(e.path) for e in entries if not _is_image_name(e.name)]
        return loose, None
    if loose:
        raise NetfitError(f"image folder {str(folder)!r} has images beside its class subfolders, such as "
                          f"{loose[0].name!r}, which have no class; move them into a class subfolder")
    skipped += [Path(e.path) for e in entries if not e.is_dir()]
    files: list[Path] = []
    labels: list[str] = []
    for sub in subfolders:
        inside = _entries(Path(sub.path))
        images = [Path(e.path) for e in inside if not e.is_dir() and _is_image_name(e.name)]
        skipped += [Path(e.path) for e in inside if e.is_dir() or not _is_image_name(e.name)]
        if not images:
            raise NetfitError(f"class folder {sub.path!r} holds no .png, .jpg or .jpeg files; add images of class "
                              f"{sub.name!r} or remove the folder")
        files += images
        labels += [sub.name] * len(images)
    return files, labels


@contextmanager
def _opened(Image, path: Path):
    """An image file opened by Pillow: its header read, its pixels not yet decoded."""
    with open_regular(path, "image file") as handle:  # a FIFO or a device named x.png is refused here
        try:
            with warnings.catch_warnings():
                # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; both are refused.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                # Only these decoders: a GIF or TIFF named .png is refused, and no other parser sees the bytes.
                image = Image.open(handle, formats=("PNG", "JPEG"))
        except Exception as err:
            raise _refusal(Image, path, err) from None
        with image:
            yield image


def _header(Image, path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and grayscale-or-colour of an image, from its header alone."""
    with _opened(Image, path) as image:
        if image.mode in _DEEP_MODES:
            raise NetfitError(f"image {str(path)!r} has {image.mode} pixels (more than 8 bits); netfit reads 8-bit "
                              "images: save it as an 8-bit PNG or JPEG")
        return image.size, "L" if _is_gray(image) else "RGB"


def _is_gray(image) -> bool:
    if image.mode in _GRAY_MODES:
        return True
    if image.mode in ("P", "PA"):
        palette = np.asarray(image.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
        return bool(np.all(palette == palette[:, :1]))
    return False


def _decide_geometry(files: list[Path], headers: list[tuple[tuple[int, int], str]],
                     size: tuple[int, int] | list[int] | None, mode: str, source: str) -> ImageGeometry:
    if mode == "auto":
        colour = next((path for path, (_, kind) in zip(files, headers) if kind == "RGB"), None)
        mode = "L" if colour is None else "RGB"
        if colour is not None and any(kind == "L" for _, kind in headers):
            print(f"netfit: reading the images of {source} as RGB, because some are in colour (such as "
                  f"{str(colour)!r}); set data.image_mode = \"L\" to read them all as grayscale", file=sys.stderr)
    if size is not None:
        return ImageGeometry(int(size[0]), int(size[1]), mode, resized=True)
    width, height = headers[0][0]
    return ImageGeometry(height, width, mode, resized=False)


def _pixels(Image, path: Path, geometry: ImageGeometry) -> np.ndarray:
    with _opened(Image, path) as image:
        try:
            image = image.convert(geometry.mode)  # decodes: a truncated or damaged file fails here
        except Exception as err:
            raise _refusal(Image, path, err) from None
        if image.size != (geometry.width, geometry.height):
            if not geometry.resized:
                raise NetfitError(f"image {str(path)!r} is {image.size[0]}x{image.size[1]} pixels but the run's "
                                  f"images are {geometry.width}x{geometry.height}; resize it to that size")
            image = image.resize((geometry.width, geometry.height), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def _refusal(Image, path: Path, err: BaseException) -> BaseException:
    """The one-line NetfitError for what Pillow raised on ``path`` (other exceptions pass through)."""
    if isinstance(err, NetfitError):
        return err
    if isinstance(err, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        # "Image size (N pixels) exceeds limit of M pixels, could be decompression bomb DOS attack."
        return NetfitError(f"image {str(path)!r} is too large to decode safely ({str(err).split(',')[0].lower()}); "
                           "it may be a decompression bomb: use a smaller image")
    if isinstance(err, Image.UnidentifiedImageError):
        return NetfitError(f"image file {str(path)!r} is not a PNG or JPEG image; replace it, or remove it "
                           "from the folder")
    if isinstance(err, (OSError, SyntaxError, ValueError, EOFError)):
        return NetfitError(f"image file {str(path)!r} is damaged and cannot be decoded ({err}); replace it, "
                           "or remove it from the folder")
    return err
