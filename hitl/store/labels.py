"""Labels, masks, skips and undo, each written with its event."""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from hitl import imaging
from hitl.store.common import (
    CLASS_COLUMNS,
    LABEL_SOURCES,
    UNDOABLE,
    ClassRow,
    StoreError,
    current_time,
)


class Labels:
    """Labels, masks, skips and undo, each written with its event."""

    # ---- labels, masks, skips, undo -------------------------------------------------------
    def _event(self, cur, user: str, action: str, image_id: int | None = None,
               class_id: int | None = None, detail: dict | None = None,
               prev_class_id: int | None = None, prev_skipped: bool | None = None,
               prev_png: bytes | None = None, batch_id: int | None = None) -> None:
        cur.execute(
            'INSERT INTO events ("at", "user", action, image_id, class_id, detail, prev_class_id, '
            "prev_skipped, prev_png, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [current_time(), user, action, image_id, class_id,
             None if detail is None else json.dumps(detail), prev_class_id, prev_skipped,
             prev_png, batch_id])

    def _require_image(self, image_id: int) -> None:
        if self.image(image_id) is None:
            raise StoreError(f"There is no image with id {image_id}.")

    def _prior(self, cur, image_id: int, png: bool = False) -> tuple[int | None, bool,
                                                                     bytes | None, dict]:
        """What the image holds before a write: its class, whether it is skipped, its mask PNG
        (when `png`), and who wrote its label, mask and skip, and when (kept in the event so
        undo puts back exactly those rows, not copies in the undoer's name). An open image
        (the usual case: the next image) holds nothing, and costs no query."""
        if self.is_open(image_id):
            return None, False, None, {}
        row = cur.execute(
            "SELECT l.class_id, l.\"user\", l.created_at, l.shown_class_id, "
            "l.shown_model_version, l.source, m.\"user\", m.created_at, "
            f"{'m.png' if png else 'NULL'}, s.\"user\", s.created_at FROM (SELECT $id AS id) x "
            "LEFT JOIN labels l ON l.image_id = x.id LEFT JOIN masks m ON m.image_id = x.id "
            "LEFT JOIN skips s ON s.image_id = x.id", {"id": int(image_id)}).fetchone()
        when = [None if t is None else t.isoformat() for t in (row[2], row[7], row[10])]
        prior = {}
        if row[1] is not None:
            prior["labels"] = [row[1], when[0], row[3], row[4], row[5]]
        if row[6] is not None:
            prior["masks"] = [row[6], when[1]]
        if row[9] is not None:
            prior["skips"] = [row[9], when[2]]
        return row[0], row[9] is not None, row[8], ({"prior": prior} if prior else {})

    def set_label(self, image_id: int, class_id: int, user: str = "local",
                  shown_class_id: int | None = None, shown_model_version: int | None = None,
                  source: str = "label", then_lease: Sequence[int] | None = None,
                  lease_seconds: float = 600.0) -> int | None:
        """Store one image's class; the prediction shown at the time feeds live accuracy.

        With then_lease (ordered candidates for the next image), the first open one is leased
        to the user at once (save + next: one commit); returns its id."""
        def label(cur):
            self._require_image(image_id)
            if int(class_id) not in {c.id for c in self.classes()}:  # under the write lock
                raise StoreError(f"There is no class with id {class_id}.")
            prev_class, skipped, _, prior = self._prior(cur, image_id)
            cur.execute("INSERT OR REPLACE INTO labels (image_id, class_id, \"user\", created_at, "
                        "shown_class_id, shown_model_version, source) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [image_id, class_id, user, current_time(), shown_class_id,
                         shown_model_version, LABEL_SOURCES.get(source, source)])
            if skipped:
                cur.execute("DELETE FROM skips WHERE image_id = ?", [image_id])
            self._event(cur, user, source, image_id, class_id, prev_class_id=prev_class,
                        prev_skipped=skipped, detail=prior or None)
        with self._write_lock:
            self._change(label, done=[int(image_id)])
            if then_lease is None or not len(then_lease):
                return None
            return self._lease_first(np.asarray(then_lease, dtype=np.int64), user,
                                     lease_seconds)

    def set_labels(self, image_ids: Sequence[int], class_ids: Sequence[int],
                   user: str = "import", source: str = "import") -> int:
        """Store many images' classes in one transaction (imports): set-based SQL with the same
        rows and undoable events as set_label; for an image named twice the last class wins.
        Returns how many images were labeled; an unknown image or class refuses them all."""
        frame = pd.DataFrame({"image_id": np.asarray(image_ids, dtype=np.int64),
                              "class_id": np.asarray(class_ids, dtype=np.int64)})
        if frame.empty:
            return 0
        frame = frame.drop_duplicates("image_id", keep="last").reset_index(drop=True)
        frame["ord"] = np.arange(len(frame))

        def write(cur):
            cur.register("bulk_labels", frame)
            try:
                missing = cur.execute("SELECT image_id FROM bulk_labels WHERE image_id NOT IN "
                                      "(SELECT id FROM images) LIMIT 1").fetchall()
                if missing:
                    raise StoreError(f"There is no image with id {missing[0][0]}.")
                missing = cur.execute("SELECT class_id FROM bulk_labels WHERE class_id NOT IN "
                                      "(SELECT id FROM classes) LIMIT 1").fetchall()
                if missing:
                    raise StoreError(f"There is no class with id {missing[0][0]}.")
                now = current_time()
                cur.execute(
                    'INSERT INTO events ("at", "user", action, image_id, class_id, prev_class_id, '
                    "prev_skipped) SELECT $now, $user, $action, b.image_id, b.class_id, "
                    "l.class_id, s.image_id IS NOT NULL FROM bulk_labels b "
                    "LEFT JOIN labels l ON l.image_id = b.image_id "
                    "LEFT JOIN skips s ON s.image_id = b.image_id ORDER BY b.ord",
                    {"now": now, "user": user, "action": source})
                cur.execute(
                    "INSERT OR REPLACE INTO labels (image_id, class_id, \"user\", created_at, "
                    "shown_class_id, shown_model_version, source) SELECT image_id, class_id, "
                    "$user, $now, NULL, NULL, $source FROM bulk_labels",
                    {"now": now, "user": user, "source": LABEL_SOURCES.get(source, source)})
                cur.execute("DELETE FROM skips WHERE image_id IN "
                            "(SELECT image_id FROM bulk_labels)")
            finally:
                cur.unregister("bulk_labels")
            return len(frame)
        return self._change(write, done=frame["image_id"].tolist())

    def set_mask(self, image_id: int, mask: np.ndarray, user: str = "local",
                 source: str = "mask") -> None:
        """Store one image's mask (uint8 mask values of classes, 0 = unlabeled) as a PNG."""
        self._save_mask(image_id, lambda values: mask, user, source)

    def set_mask_positions(self, image_id: int, positions: np.ndarray, user: str = "local",
                           source: str = "mask") -> int:
        """Store a mask given as class positions (1..K in class order, 0 = unlabeled), as the
        editor and the API send it; converted with the classes of the same transaction.
        Returns the number of labeled pixels."""
        positions = np.asarray(positions)
        self._save_mask(image_id, lambda values: values.from_positions(positions), user, source)
        return int((positions > 0).sum())

    def mask_positions(self, image_id: int) -> np.ndarray | None:
        """One image's stored mask as class positions (1..K, 0 = unlabeled), or None."""
        mask = self.mask(image_id)
        return None if mask is None else self.mask_values().to_positions(mask)

    def _save_mask(self, image_id: int, encode, user: str, source: str) -> None:
        def save(cur):
            self._require_image(image_id)
            rows = cur.execute(f"SELECT {CLASS_COLUMNS} FROM classes "
                               "ORDER BY position, id").fetchall()
            try:
                mask = np.asarray(encode(imaging.MaskValues.of(ClassRow(*r) for r in rows)))
                png = imaging.mask_to_png(mask)
            except imaging.ImageError as exc:
                raise StoreError(str(exc)) from exc
            labeled = int((mask > 0).sum())
            present = set(np.unique(mask).tolist()) - {0}
            live = {r[4] for r in rows}
            if not present <= live:
                raise StoreError(f"The mask uses values that no class holds: "
                                 f"{sorted(present - live)}.")
            _, skipped, prev_png, prior = self._prior(cur, image_id, png=True)
            if labeled:
                cur.execute("INSERT OR REPLACE INTO masks VALUES (?, ?, ?, ?, ?)",
                            [image_id, png, user, current_time(), labeled])
            else:
                cur.execute("DELETE FROM masks WHERE image_id = ?", [image_id])
            cur.execute("DELETE FROM skips WHERE image_id = ?", [image_id])
            self._event(cur, user, source, image_id, detail={"pixels": labeled, **prior},
                        prev_skipped=skipped, prev_png=prev_png)
        self._change(save)  # not `done`: an empty mask reopens the image
        self.lease_book.drop([image_id])

    def mask(self, image_id: int) -> np.ndarray | None:
        png = self._one("SELECT png FROM masks WHERE image_id = ?", [image_id])
        return None if png is None else imaging.png_to_mask(png)

    def skip(self, image_id: int, user: str = "local") -> None:
        def skip(cur):
            self._require_image(image_id)
            _, skipped, _, prior = self._prior(cur, image_id)
            cur.execute("INSERT OR REPLACE INTO skips VALUES (?, ?, ?)",
                        [image_id, user, current_time()])
            self._event(cur, user, "skip", image_id, prev_skipped=skipped, detail=prior or None)
        self._change(skip, done=[int(image_id)])

    def undo(self, user: str = "local") -> int | None:
        """Undo this user's last label, mask or skip (or whole review page); returns the
        image id or None."""
        done = self.undo_details(user)
        return None if done is None else done["image_id"]

    def undo_details(self, user: str = "local") -> dict | None:
        """Undo this user's last action; a review page (one batch id) is undone as a whole.

        Returns {image_id, image_ids, batch_id, kept} or None when there is nothing to undo;
        `kept` maps an image someone else changed since to that user: undo leaves their work
        as it is there (the action still counts as undone).
        """
        def undo(cur):
            actions = ", ".join(f"'{a}'" for a in UNDOABLE)
            last = cur.execute(
                f"SELECT id, batch_id FROM events WHERE \"user\" = ? AND action IN ({actions}) "
                "AND NOT undone ORDER BY id DESC LIMIT 1", [user]).fetchone()
            if last is None:
                return None
            where, params = ("id = ?", [last[0]]) if last[1] is None else \
                ("batch_id = ? AND NOT undone", [last[1]])
            rows = cur.execute(
                "SELECT id, action, image_id, class_id, prev_class_id, prev_skipped, prev_png, "
                f"detail FROM events WHERE {where} ORDER BY id DESC", params).fetchall()
            kept = {}
            for row in rows:
                later = cur.execute(
                    f"SELECT \"user\" FROM events WHERE image_id = ? AND id > ? AND NOT undone "
                    f"AND action IN ({actions}) AND \"user\" <> ? ORDER BY id DESC LIMIT 1",
                    [row[2], row[0], user]).fetchone()
                if later is None:
                    self._revert(cur, user, *row)
                else:
                    kept[row[2]] = later[0]
                    cur.execute("UPDATE events SET undone = true WHERE id = ?", [row[0]])
            if last[1] is not None:
                cur.execute("UPDATE batches SET undone = true WHERE id = ?", [last[1]])
            ids = [r[2] for r in reversed(rows)]
            return {"image_id": ids[0], "image_ids": ids, "batch_id": last[1], "kept": kept}
        return self._change(undo)

    def _revert(self, cur, user: str, event_id: int, action: str, image_id: int,
                class_id: int | None, prev_class: int | None, prev_skipped: bool | None,
                prev_png: bytes | None, detail: str | None = None) -> None:
        """Put one image back as it was before one event (inside undo's transaction): the
        rows it replaced come back with their own user and time when the event kept them."""
        prior = (json.loads(detail) if detail else {}).get("prior", {})

        def who(table: str) -> list:
            row = prior.get(table)
            if row is None:
                return [user, current_time()]
            return [row[0], None if row[1] is None else datetime.fromisoformat(row[1])]
        if action in ("label", "unlabel"):
            cur.execute("DELETE FROM labels WHERE image_id = ?", [image_id])
            if prev_class is not None:
                shown = (prior.get("labels") or [None, None, None, None, None])[2:]
                cur.execute("INSERT INTO labels (image_id, class_id, \"user\", created_at, "
                            "shown_class_id, shown_model_version, source) "
                            "VALUES (?, ?, ?, ?, ?, ?, coalesce(?, 'click'))",
                            [image_id, prev_class, *who("labels"), *shown])
        elif action == "mask":
            cur.execute("DELETE FROM masks WHERE image_id = ?", [image_id])
            if prev_png is not None:
                pixels = int((imaging.png_to_mask(prev_png) > 0).sum())
                cur.execute("INSERT INTO masks VALUES (?, ?, ?, ?, ?)",
                            [image_id, prev_png, *who("masks"), pixels])
        elif action in ("reject", "keep"):
            cur.execute("DELETE FROM verdicts WHERE image_id = ? AND class_id = ?",
                        [image_id, class_id])
        if action in ("label", "mask", "skip"):
            cur.execute("DELETE FROM skips WHERE image_id = ?", [image_id])
            if prev_skipped:
                cur.execute("INSERT INTO skips VALUES (?, ?, ?)", [image_id, *who("skips")])
        cur.execute("UPDATE events SET undone = true WHERE id = ?", [event_id])
        self._event(cur, user, "undo", image_id, detail={"event": event_id, "action": action})

    def label_owner(self, image_id: int) -> str | None:
        """Who wrote the image's label or mask (None when it has neither)."""
        return self._one('SELECT coalesce((SELECT "user" FROM labels WHERE image_id = ?), '
                         '(SELECT "user" FROM masks WHERE image_id = ?))', [image_id, image_id])

    def label_of(self, image_id: int) -> int | None:
        return self._one("SELECT class_id FROM labels WHERE image_id = ?", [image_id])

    def is_skipped(self, image_id: int) -> bool:
        return self._one("SELECT count(*) FROM skips WHERE image_id = ?", [image_id]) > 0

    def labeled_pairs(self, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, class ids) of every readable labeled image, optionally of one split."""
        where = "" if split is None else "AND i.split = ?"
        params = [] if split is None else [split]
        res = self._cursor().execute(
            f"SELECT l.image_id, l.class_id FROM labels l JOIN images i ON i.id = l.image_id "
            f"WHERE i.readable {where} ORDER BY l.image_id", params).fetchnumpy()
        return res["image_id"].astype(np.int64), res["class_id"].astype(np.int64)

    def masked_ids(self, split: str | None = None) -> np.ndarray:
        where = "" if split is None else "AND i.split = ?"
        params = [] if split is None else [split]
        return self._cursor().execute(
            f"SELECT m.image_id FROM masks m JOIN images i ON i.id = m.image_id "
            f"WHERE i.readable {where} ORDER BY m.image_id", params).fetchnumpy()["image_id"]

    def last_label_class(self, user: str) -> int | None:
        return self.index.per_revision(("last_class", user), lambda: self._one(
            "SELECT class_id FROM labels WHERE \"user\" = ? ORDER BY created_at DESC LIMIT 1",
            [user]))

    def label_rows(self) -> pd.DataFrame:
        """Every label with its image and class, for exports."""
        return self._cursor().execute(
            "SELECT l.image_id, i.path, i.filename, c.name AS label, l.\"user\", l.created_at, "
            "i.split FROM labels l JOIN images i ON i.id = l.image_id "
            "JOIN classes c ON c.id = l.class_id ORDER BY l.image_id").df()

    def mask_rows(self) -> list[tuple[int, str, bytes]]:
        return self._rows("SELECT m.image_id, i.path, m.png FROM masks m "
                          "JOIN images i ON i.id = m.image_id ORDER BY m.image_id")

