"""The one decoder for every mask a client sends: the painter's edit (board server function),
gr.api's `/annotate_mask` and REST's `PUT /api/v1/images/{id}/mask`.

A PNG says its size in its first 33 bytes, and a small file can claim a huge one: a 19000x19000
grey PNG is 468 KB on the wire and 361 MB decoded (1.4 GB as RGBA). So the signature, the IHDR
size, bit depth and colour type are read from those bytes and checked against what the caller
expects before Pillow decodes anything; the encoded bytes are capped; and at most
DECODES_AT_ONCE decodes run at once, whoever asks, so a burst of valid masks cannot multiply
the memory either. Only PNG: a lossy format changes class values.
"""
from __future__ import annotations

import base64
import binascii
import io
import threading
from dataclasses import dataclass

import numpy as np

from hitl.errors import BadInput, Unavailable

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_BYTES = 64 * 1024 * 1024
DECODES_AT_ONCE = 2
WAIT_S = 30.0  # a decode waits this long for a slot, then the caller hears "busy"
GREY, RGB, PALETTE, GREY_ALPHA, RGBA = 0, 2, 3, 4, 6
INDEX_TYPES = (GREY, PALETTE)  # a mask of class positions: one 8-bit value per pixel
ANY_COLOUR = (GREY, RGB, PALETTE, GREY_ALPHA, RGBA)  # the painter's canvas sends RGBA
DATA_URL = "data:image/png;base64,"

_slots = threading.BoundedSemaphore(DECODES_AT_ONCE)


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    colour_type: int


def read_header(data: bytes) -> PngHeader:
    """The PNG's IHDR, read from its first 33 bytes (nothing is decoded)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BadInput("The mask must be PNG bytes.")
    head = bytes(data[:33])
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise BadInput("The mask must be a PNG (other formats change class values).")
    return PngHeader(int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"),
                     head[24], head[25])


def check(data: bytes, size: tuple[int, int], colour_types=INDEX_TYPES, slack: int = 0,
          max_bytes: int = MAX_BYTES) -> PngHeader:
    """Refuse (BadInput) a mask that is too many bytes, not a PNG, not `size` (within `slack`
    pixels each way) or not 8-bit of one of `colour_types` — before any decoding."""
    if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > max_bytes:
        raise BadInput(f"The mask must be a PNG of at most {max_bytes // (1024 * 1024)} MB.")
    header = read_header(data)
    width, height = size
    if abs(header.width - width) > slack or abs(header.height - height) > slack:
        raise BadInput(f"The mask is {header.width}x{header.height} but the image is "
                       f"{width}x{height}.")
    if header.bit_depth != 8 or header.colour_type not in colour_types:
        kind = ("an 8-bit single-channel PNG (grey or palette)" if colour_types == INDEX_TYPES
                else "an 8-bit PNG")
        raise BadInput(f"The mask must be {kind}.")
    return header


def decode(data: bytes, size: tuple[int, int], colour_types=INDEX_TYPES, slack: int = 0,
           max_bytes: int = MAX_BYTES) -> np.ndarray:
    """The mask as a (height, width) uint8 array, checked first (`check`): a grey or palette
    PNG's own values; of a colour PNG, the red channel (the painter writes R = G = B)."""
    header = check(data, size, colour_types, slack, max_bytes)
    if not _slots.acquire(timeout=WAIT_S):
        raise Unavailable("The server is decoding other masks; send this one again.")
    try:
        from PIL import Image
        with Image.open(io.BytesIO(bytes(data)), formats=["PNG"]) as img:
            if img.size != (header.width, header.height):  # a second IHDR-like trick
                raise BadInput("The mask PNG's header does not match its size.")
            if img.mode not in ("L", "P"):
                img = img.convert("RGB")
            array = np.array(img, dtype=np.uint8)
    except (BadInput, Unavailable):
        raise
    except Exception as exc:  # noqa: BLE001 - any undecodable upload gets the same answer
        raise BadInput(f"The mask PNG cannot be read ({type(exc).__name__}).") from exc
    finally:
        _slots.release()
    return array[:, :, 0].copy() if array.ndim == 3 else array


def from_data_url(url: str, max_bytes: int = MAX_BYTES) -> bytes:
    """The PNG bytes of a `data:image/png;base64,...` URL (the painter's edit), capped before
    the base64 is decoded."""
    if not isinstance(url, str) or not url.startswith(DATA_URL):
        raise BadInput("The page sent no mask: reload the page and paint again.")
    text = url[len(DATA_URL):]
    if len(text) > max_bytes * 4 // 3 + 4:
        raise BadInput(f"The mask sent is larger than {max_bytes // (1024 * 1024)} MB.")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInput("The mask sent is not base64.") from exc


def display_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The size of width x height brought down to a long side of at most `side` (as Pillow's
    thumbnail rounds, within a pixel): the painter's mask, and so its edit, has that size for
    side = MASK_SIDE (hitl/ui/segmentation.py)."""
    if width <= side and height <= side:
        return width, height
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))
