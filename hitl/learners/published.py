"""Predicted masks as a learner publishes them, readable from any thread.

A page asking for an image's predicted mask must never run the backbone on its request
thread, nor touch a learner while the trainer thread changes it. So a segmentation learner
hands the trainer an object that answers from what is already computed — the head of a
model version plus cached features, or masks predicted in the trainer thread — and
notes the images it could not answer for, so the learner does those first.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from hitl.ml.features import FeatureCache
    from hitl.ml.heads import SegHead

WANTED = 64  # images asked for and not answered, remembered for the learner


class PublishedMasks:
    """Masks of one model version and its class order (positions 1..K)."""

    def __init__(self, version: int, class_ids: list[int], wanted=()):
        self.version = version
        self.class_ids = list(class_ids)
        self.wanted: deque[int] = deque(wanted, maxlen=WANTED)

    def mask(self, image_id: int, size: tuple[int, int]) -> tuple[np.ndarray, int] | None:
        """(mask of positions at size (H, W), model version), or None when not computed yet
        (the image is then remembered in `wanted`)."""
        found = self._lookup(image_id, size)
        if found is None and image_id not in self.wanted:
            self.wanted.append(image_id)
        return found

    def take_wanted(self) -> list[int]:
        """The images asked for since the last call, oldest first (trainer thread)."""
        out = []
        while self.wanted:
            out.append(self.wanted.popleft())
        return out

    def _lookup(self, image_id: int, size: tuple[int, int]) -> tuple[np.ndarray, int] | None:
        raise NotImplementedError


class HeadMasks(PublishedMasks):
    """Frozen mode: one trained head (never changed once published) over cached patch grids."""

    def __init__(self, version: int, class_ids: list[int], head: SegHead, cache: FeatureCache,
                 wanted=()):
        super().__init__(version, class_ids, wanted)
        self.head, self.cache = head, cache

    def _lookup(self, image_id, size):
        grid = self.cache.get_patches(image_id)
        if grid is None:
            return None
        return self.head.predict_mask(grid, size)[0], self.version


class StoredMasks(PublishedMasks):
    """Fine-tune mode: masks the trainer thread predicted, at the learner's working size, for
    the last LIMIT images; after a new round the older masks are served (with their own
    version) until their images come round again."""

    LIMIT = 512

    def __init__(self, version: int, class_ids: list[int]):
        super().__init__(version, class_ids)
        self._masks: OrderedDict[int, tuple[np.ndarray, int]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, image_id: int, positions: np.ndarray, version: int) -> None:
        with self._lock:
            self._masks[image_id] = (np.asarray(positions, np.uint8), version)
            self._masks.move_to_end(image_id)
            while len(self._masks) > self.LIMIT:
                self._masks.popitem(last=False)

    def _lookup(self, image_id, size):
        with self._lock:
            found = self._masks.get(image_id)
        if found is None:
            return None
        positions, version = found
        if positions.shape != tuple(size):
            positions = np.asarray(Image.fromarray(positions).resize((size[1], size[0]),
                                                                      Image.NEAREST))
        return positions, version
