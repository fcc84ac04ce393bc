"""File names for the boards' titles: the relative path where a name repeats.

Two images both called `0.png` (one per folder, as many datasets lay them out) cannot be told
apart by name; for those the title shows the path below the folder their copies share.
"""
from __future__ import annotations

import os
import threading
from collections import Counter

from hitl.session import Session


class Titles:
    """image id -> the name a board shows; recomputed when the number of images changes."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._lock = threading.Lock()
        self._count = -1
        self._shown: dict[int, str] = {}

    def __call__(self, image_id: int | None, filename: str | None) -> str | None:
        if image_id is None:
            return filename
        store = self.session.store
        count = store.image_count()
        with self._lock:
            if count != self._count:
                self._shown, self._count = self._repeated(), count
            return self._shown.get(int(image_id), filename)

    def _repeated(self) -> dict[int, str]:
        """id -> relative path, for the images whose file name is not unique."""
        store = self.session.store
        rows = store.images_by_ids(store.readable_image_ids())
        times = Counter(r.filename for r in rows)
        repeated = [r for r in rows if times[r.filename] > 1]
        if not repeated:
            return {}
        root = os.path.commonpath([os.path.dirname(r.path) for r in repeated])
        return {r.id: os.path.relpath(r.path, root) for r in repeated}
