"""Decoding images safely, and masks as PNG index maps with their class values."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

EXIF_ORIENTATION = 0x0112
ROTATED_ORIENTATIONS = {5, 6, 7, 8}
# We check sizes ourselves (see header_info) with a clear message; Pillow's own guard stays
# as a second line of defence at twice our default limit.
Image.MAX_IMAGE_PIXELS = 200_000_000


def without_dirs(exc: Exception, path) -> str:
    """An error message with the file's server folders left out: labelers see ids and file
    names, never absolute server paths (Pillow's messages name the whole path)."""
    return str(exc).replace(str(path), Path(path).name)


class ImageError(ValueError):
    """An image that cannot be used, with a message for the person labeling."""


@dataclass(frozen=True)
class HeaderInfo:
    width: int | None
    height: int | None
    error: str | None


def header_info(path: Path | str, max_pixels: int) -> HeaderInfo:
    """Size as displayed (EXIF rotation applied), read from the header only: fast for 100k files."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            if img.format == "JPEG" or img.format == "TIFF" or img.format == "WEBP":
                orientation = img.getexif().get(EXIF_ORIENTATION)
                if orientation in ROTATED_ORIENTATIONS:
                    width, height = height, width
    except Image.DecompressionBombError:
        return HeaderInfo(None, None, f"refused: larger than {max_pixels:,} pixels")
    except Exception as exc:  # any file Pillow cannot identify is just unreadable
        return HeaderInfo(None, None, f"not a readable image ({type(exc).__name__}: "
                                      f"{without_dirs(exc, path)})")
    if width * height > max_pixels:
        return HeaderInfo(width, height,
                          f"refused: {width}x{height} is larger than {max_pixels:,} pixels")
    return HeaderInfo(width, height, None)


def load_image(path: Path | str, max_pixels: int = 100_000_000) -> Image.Image:
    """Decode fully (so truncated files fail here, not later), apply EXIF rotation, RGB."""
    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels:
                raise ImageError(f"{Path(path).name}: {img.width}x{img.height} is larger than "
                                 f"{max_pixels:,} pixels")
            img.load()
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"{Path(path).name} cannot be decoded ({type(exc).__name__}: "
                         f"{without_dirs(exc, path)})") from exc


def as_rgb(image: Image.Image) -> Image.Image:
    """The image in RGB, the only mode the models take (no copy when it is RGB already)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def mask_to_png(mask: np.ndarray) -> bytes:
    """An 8-bit single-channel PNG: lossless, small, and readable by any training code."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ImageError(f"A mask must be 2-D, got shape {arr.shape}.")
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ImageError("Mask values must be in 0..255.")
        arr = arr.astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def png_to_mask(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        if img.mode not in ("L", "P"):
            raise ImageError(f"A mask PNG must be 8-bit single-channel, got mode {img.mode}.")
        return np.array(img, dtype=np.uint8)


MAX_MASK_VALUE = 254   # stored mask values are 1..254; 0 = unlabeled, 255 = unlabeled on export
UNLABELED_INDEX = 255  # the exported index masks' "no class" value


@dataclass(frozen=True)
class MaskValues:
    """The one table between the three ways a mask pixel names a class.

    - value: what stored masks hold, fixed per class (1..254, reused after a class is
      removed), so reordering classes rewrites no mask;
    - position: 1..K in class order (0 = unlabeled), what heads, the editor and the API use;
    - index: 0..K-1 in class order (255 = unlabeled), what exported masks hold.
    """
    values: tuple[int, ...]  # the mask value of each class, in class order

    @classmethod
    def of(cls, classes) -> MaskValues:
        """From class rows (anything with a .mask_value) in class order."""
        return cls(tuple(int(c.mask_value) for c in classes))

    def _lut(self, fill: int, start: int, source: str) -> np.ndarray:
        lut = np.full(256, fill, np.uint8)
        for position, value in enumerate(self.values, start=start):
            if source == "value":
                lut[value] = position
            else:
                lut[position] = value
        return lut

    def to_positions(self, mask: np.ndarray) -> np.ndarray:
        """Stored values -> positions 1..K; values of no class -> 0."""
        return self._lut(0, 1, "value")[np.asarray(mask, np.uint8)]

    def from_positions(self, positions: np.ndarray) -> np.ndarray:
        """Positions 1..K (0 = unlabeled) -> stored values; raises on a position past K."""
        positions = np.asarray(positions)
        top = int(positions.max(initial=0))
        if top > len(self.values) or int(positions.min(initial=0)) < 0:
            raise ImageError(f"The mask uses class {top} but there are only "
                             f"{len(self.values)} classes.")
        return self._lut(0, 1, "position")[positions.astype(np.uint8)]

    def to_index(self, mask: np.ndarray) -> np.ndarray:
        """Stored values -> 0-based class index, unlabeled (and unknown) -> 255."""
        return self._lut(UNLABELED_INDEX, 0, "value")[np.asarray(mask, np.uint8)]

    def from_index(self, index: np.ndarray) -> np.ndarray:
        """0-based class index (255 = unlabeled) -> stored values (indices past K -> 0)."""
        return self._lut(0, 0, "position")[np.asarray(index, np.uint8)]
