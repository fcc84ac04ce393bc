"""The catalogue of images: registration, rows, readability, neighbours."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from hitl.store.common import (
    ImageRow,
)


class Images:
    """The catalogue of images: registration, rows, readability, neighbours."""

    # ---- images --------------------------------------------------------------------------
    def known_paths(self) -> set[str]:
        return {row[0] for row in self._rows("SELECT path FROM images")}

    def add_images(self, records: pd.DataFrame) -> int:
        """Insert new images (columns path, filename, width, height, readable, error).

        Paths already in the session are ignored, so adding a folder twice adds nothing.
        """
        if records.empty:
            return 0

        records = records.assign(ord=range(len(records)))

        def insert(cur):
            cur.register("new_images", records)
            before = cur.execute("SELECT count(*) FROM images").fetchone()[0]
            # the validation split: a fixed hash of the id, never the order of labeling
            cur.execute(f"""
                INSERT INTO images (id, path, filename, width, height, readable, error, split)
                SELECT id, path, filename, width, height, readable, error,
                       CASE WHEN (id::BIGINT * 2654435761) % 4294967296 % {int(self.val_every)} = 0
                            THEN 'val' ELSE 'train' END
                FROM (SELECT nextval('seq_images') AS id, n.*
                      FROM (SELECT * FROM (SELECT DISTINCT ON (path) * FROM new_images
                                           ORDER BY path, ord) ORDER BY ord) n
                      WHERE n.path NOT IN (SELECT path FROM images))
            """)
            cur.unregister("new_images")
            return cur.execute("SELECT count(*) FROM images").fetchone()[0] - before
        added = self._write(insert)
        self._readable_ids = None
        return added

    def mark_unreadable(self, image_id: int, error: str) -> None:
        self._write(lambda cur: cur.execute(
            "UPDATE images SET readable = false, error = ? WHERE id = ?", [error, image_id]))
        self._readable_ids = None

    def image(self, image_id: int) -> ImageRow | None:
        row = self._rows("SELECT id, path, filename, width, height, readable, error, split "
                         "FROM images WHERE id = ?", [int(image_id)])
        return ImageRow(*row[0]) if row else None

    def image_state(self, image_id: int) -> dict | None:
        """One image with its label, skip, mask flag and prediction, in a single query (the
        page asks this on every key press)."""
        rows = self._rows(
            "SELECT i.id, i.path, i.filename, i.width, i.height, i.readable, i.error, i.split, "
            "l.class_id, s.image_id IS NOT NULL, m.image_id IS NOT NULL FROM images i "
            "LEFT JOIN labels l ON l.image_id = i.id LEFT JOIN skips s ON s.image_id = i.id "
            "LEFT JOIN (SELECT image_id FROM masks WHERE image_id = $id) m ON m.image_id = i.id "
            "WHERE i.id = $id", {"id": int(image_id)})
        if not rows:
            return None
        r = rows[0]
        return {"row": ImageRow(*r[:8]), "label": r[8], "skipped": bool(r[9]),
                "has_mask": bool(r[10]), "prediction": self.prediction(int(image_id))}

    def images_by_ids(self, ids: Iterable[int]) -> list[ImageRow]:
        ids = [int(i) for i in ids]
        if not ids:
            return []
        rows = self._rows("SELECT id, path, filename, width, height, readable, error, split "
                          "FROM images WHERE id IN (SELECT unnest(?)) ORDER BY id", [ids])
        return [ImageRow(*r) for r in rows]

    def readable_image_ids(self) -> np.ndarray:
        """Sorted ids of every readable image (cached: it only changes when images do)."""
        ids = self._readable_ids
        if ids is None:
            ids = self._cursor().execute(
                "SELECT id FROM images WHERE readable ORDER BY id").fetchnumpy()["id"]
            ids = np.asarray(ids, dtype=np.int64)
            self._readable_ids = ids
        return ids

    def unreadable_images(self) -> list[tuple[int, str, str]]:
        return self._rows("SELECT id, path, error FROM images WHERE NOT readable ORDER BY id")

    def image_count(self) -> int:
        return self._one("SELECT count(*) FROM images")

    def neighbour_id(self, image_id: int, step: int) -> int | None:
        """The next (step > 0) or previous readable id, for arrow-key browsing."""
        if step > 0:
            return self._one("SELECT min(id) FROM images WHERE readable AND id > ?", [image_id])
        return self._one("SELECT max(id) FROM images WHERE readable AND id < ?", [image_id])

