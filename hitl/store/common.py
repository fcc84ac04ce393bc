"""What every part of the store shares: row types, limits, the palette, small helpers."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from hitl import imaging
from hitl.errors import HitlError

PALETTE = [
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
    "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000",
    "#aaffc3", "#808000", "#ffd8b1", "#000075", "#a9a9a9", "#ffe119",
]
SESSION_TABLES = ("settings", "images", "classes", "labels", "masks", "skips", "predictions",
                  "seg_predictions", "events", "models", "batches", "verdicts")
# labels.source: how a label was made; set_label's `source` names the event, this the column
LABEL_SOURCES = {"label": "click"}
UNDOABLE = ("label", "mask", "skip", "reject", "keep", "unlabel")
MAX_CLASS_NAME = 64
MAX_CLASSES = imaging.MAX_MASK_VALUE  # one mask value 1..254 per class; 0 means unlabeled


# A request the store refuses, with a message meant for the person who made it: the base of
# the typed refusals in hitl/errors.py, so `except StoreError` catches every one of them.
StoreError = HitlError


@dataclass(frozen=True)
class ImageRow:
    id: int
    path: str
    filename: str
    width: int | None
    height: int | None
    readable: bool
    error: str | None
    split: str


@dataclass(frozen=True)
class ClassRow:
    id: int
    name: str
    colour: str
    position: int
    mask_value: int = 0  # what this class's pixels hold in stored masks (1..254)


CLASS_COLUMNS = "id, name, colour, position, mask_value"


def current_time() -> datetime:
    return datetime.now()


def normalise_class_name(name: str) -> str:
    """Trimmed, 1..64 characters, no control characters; raises StoreError saying why."""
    if not isinstance(name, str):
        raise StoreError("A class name must be text.")
    clean = name.strip()
    if not clean:
        raise StoreError("A class name cannot be empty.")
    if len(clean) > MAX_CLASS_NAME:
        raise StoreError(f"A class name can have at most {MAX_CLASS_NAME} characters "
                         f"(this one has {len(clean)}).")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in clean):
        raise StoreError("A class name cannot contain control characters such as tabs or newlines.")
    return clean


def as_timedelta(seconds: float):
    from datetime import timedelta
    return timedelta(seconds=seconds)


def colour_for(index: int) -> str:
    """Colours past the palette: spread hues, still distinct and stable."""
    import colorsys
    r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.75, 0.95)
    return "#{:02x}{:02x}{:02x}".format(int(r * 255), int(g * 255), int(b * 255))


def float_array(values) -> np.ndarray:
    if isinstance(values, np.ma.MaskedArray):
        return values.astype(np.float64).filled(np.nan)
    return np.asarray(values, dtype=np.float64)


def find_sorted(sorted_ids: np.ndarray, ids) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `ids` stands in the sorted array `sorted_ids` (positions clipped into it)
    and whether it is there: the in-memory copies (image rows, predictions) are looked up by
    id this way instead of a query."""
    ids = np.asarray(ids, dtype=np.int64)
    if not sorted_ids.size:
        return np.zeros(ids.shape, dtype=np.int64), np.zeros(ids.shape, dtype=bool)
    pos = np.clip(np.searchsorted(sorted_ids, ids), 0, sorted_ids.size - 1)
    return pos, sorted_ids[pos] == ids
