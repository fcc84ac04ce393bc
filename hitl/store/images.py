"""The catalogue of images: registration, rows, readability, neighbours."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from hitl.store.common import ImageRow, find_sorted


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
        added = self._write(insert, moves=("images",))
        self.feed.publish("images")
        return added

    def mark_unreadable(self, image_id: int, error: str) -> None:
        self._write(lambda cur: cur.execute(
            "UPDATE images SET readable = false, error = ? WHERE id = ?", [error, image_id]),
            moves=("images",))
        self.feed.publish("images")

    def _catalogue(self) -> dict[str, np.ndarray]:
        """Every image row as columns, sorted by id, read once and again only after images are
        added or found unreadable: a key press reads one row, and a DuckDB point query costs
        more than the rest of the key press (about 20 MB for 100,000 images)."""
        return self._catalogue_copy.get()

    def _read_catalogue(self) -> dict[str, np.ndarray]:
        res = self._cursor().execute(
            "SELECT id, path, filename, width, height, readable, error, split FROM images "
            "ORDER BY id").fetchnumpy()
        cat = {"id": np.asarray(res["id"], dtype=np.int64)}
        for name in ("width", "height"):
            cat[name] = np.ma.filled(np.ma.asarray(res[name]).astype(np.int64), -1)
        cat["readable"] = np.ma.filled(np.ma.asarray(res["readable"]), False).astype(bool)
        for name in ("path", "filename", "error", "split"):
            cat[name] = np.asarray(res[name], dtype=object)
        cat["readable_ids"] = cat["id"][cat["readable"]]
        return cat

    def image(self, image_id: int) -> ImageRow | None:
        cat = self._catalogue()
        i, found = find_sorted(cat["id"], int(image_id))
        if not found:
            return None
        ids = cat["id"]
        width, height = int(cat["width"][i]), int(cat["height"][i])
        return ImageRow(int(ids[i]), cat["path"][i], cat["filename"][i],
                        None if width < 0 else width, None if height < 0 else height,
                        bool(cat["readable"][i]), _text(cat["error"][i]), cat["split"][i])

    def image_state(self, image_id: int) -> dict | None:
        """One image with its label, skip, mask flag and prediction (the page asks this on
        every key press): an open image needs no query at all."""
        row = self.image(image_id)
        if row is None:
            return None
        state = {"row": row, "label": None, "skipped": False, "has_mask": False,
                 "prediction": self.prediction(row.id)}
        if not self.is_open(row.id):
            label, skipped, masked = self._rows(
                "SELECT (SELECT class_id FROM labels WHERE image_id = $id), "
                "EXISTS (SELECT 1 FROM skips WHERE image_id = $id), "
                "EXISTS (SELECT 1 FROM masks WHERE image_id = $id)", {"id": row.id})[0]
            state.update(label=label, skipped=bool(skipped), has_mask=bool(masked))
        return state

    def images_by_ids(self, ids: Iterable[int]) -> list[ImageRow]:
        ids = [int(i) for i in ids]
        if not ids:
            return []
        rows = self._rows("SELECT id, path, filename, width, height, readable, error, split "
                          "FROM images WHERE id IN (SELECT unnest(?)) ORDER BY id", [ids])
        return [ImageRow(*r) for r in rows]

    def readable_image_ids(self) -> np.ndarray:
        """Sorted ids of every readable image (cached: it only changes when images do)."""
        return self._catalogue()["readable_ids"]

    def unreadable_images(self) -> list[tuple[int, str, str]]:
        return self._rows("SELECT id, path, error FROM images WHERE NOT readable ORDER BY id")

    def image_count(self) -> int:
        return self._one("SELECT count(*) FROM images")

    def neighbour_id(self, image_id: int, step: int) -> int | None:
        """The next (step > 0) or previous readable id, for arrow-key browsing."""
        if step > 0:
            return self._one("SELECT min(id) FROM images WHERE readable AND id > ?", [image_id])
        return self._one("SELECT max(id) FROM images WHERE readable AND id < ?", [image_id])



def _text(value) -> str | None:
    """A nullable text column's value as fetchnumpy gives it (masked or NaN when NULL)."""
    return value if isinstance(value, str) else None
