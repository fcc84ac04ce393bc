"""Classes: add, rename, reorder, remove (with their labels), mask values."""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from hitl import imaging
from hitl.errors import BadInput, NotFound
from hitl.store.common import (
    CLASS_COLUMNS,
    MAX_CLASSES,
    PALETTE,
    ClassRow,
    StoreError,
    colour_for,
    normalise_class_name,
)
from hitl.store.schema import clear_mask_values, free_mask_value


class Classes:
    """Classes: add, rename, reorder, remove (with their labels), mask values."""

    # ---- classes -------------------------------------------------------------------------
    def classes(self) -> list[ClassRow]:
        """In order; read on every key press, so kept in memory between class changes."""
        return list(self._classes.get())

    def _read_classes(self) -> list[ClassRow]:
        return [ClassRow(*r) for r in self._rows(
            f"SELECT {CLASS_COLUMNS} FROM classes ORDER BY position, id")]

    def mask_values(self) -> imaging.MaskValues:
        """The table between stored mask values, class positions and export indices."""
        return imaging.MaskValues.of(self.classes())

    def class_by_name(self, name: str) -> ClassRow | None:
        wanted = name.strip().lower()
        return next((c for c in self.classes() if c.name.lower() == wanted), None)

    def _check_unique(self, cur, name: str, except_id: int | None = None) -> None:
        clash = cur.execute("SELECT name FROM classes WHERE lower(name) = lower(?) AND id <> ?",
                            [name, -1 if except_id is None else except_id]).fetchone()
        if clash:
            raise StoreError(f"A class named '{clash[0]}' exists already (names ignore case).")

    def add_class(self, name: str, user: str = "local", colour: str | None = None) -> ClassRow:
        """Append a class; its colour is the given one or the first free palette colour."""
        clean = normalise_class_name(name)

        def add(cur):
            self._check_unique(cur, clean)
            count, top = cur.execute(
                "SELECT count(*), coalesce(max(position), -1) FROM classes").fetchone()
            if count >= MAX_CLASSES:
                raise StoreError(f"A session can have at most {MAX_CLASSES} classes.")
            used = {r[0] for r in cur.execute("SELECT colour FROM classes").fetchall()}
            chosen = colour if colour and colour not in used else \
                next((c for c in PALETTE if c not in used), colour_for(count))
            values = {r[0] for r in cur.execute("SELECT mask_value FROM classes").fetchall()}
            row = cur.execute("INSERT INTO classes (name, colour, position, mask_value) "
                              f"VALUES (?, ?, ?, ?) RETURNING {CLASS_COLUMNS}",
                              [clean, chosen, top + 1, free_mask_value(values)]).fetchone()
            self._event(cur, user, "class_add", class_id=row[0], detail={"name": clean})
            return ClassRow(*row)
        row = self._change(add, classes=True)
        return row

    def rename_class(self, class_id: int, name: str, user: str = "local") -> ClassRow:
        clean = normalise_class_name(name)

        def rename(cur):
            old = cur.execute("SELECT name FROM classes WHERE id = ?", [class_id]).fetchone()
            if old is None:
                raise StoreError(f"There is no class with id {class_id}.")
            self._check_unique(cur, clean, except_id=class_id)
            cur.execute("UPDATE classes SET name = ? WHERE id = ?", [clean, class_id])
            self._event(cur, user, "class_rename", class_id=class_id,
                        detail={"from": old[0], "to": clean})
        self._change(rename, classes=True)
        return next(c for c in self.classes() if c.id == class_id)

    def set_class_colour(self, class_id: int, colour: str, user: str = "local") -> ClassRow:
        """A class's display colour (#rrggbb); the model and the masks are untouched."""
        value = str(colour or "").strip().lower()
        if not re.fullmatch(r"#[0-9a-f]{6}", value):
            raise BadInput(f"{str(colour)[:40]!r} is not a colour: give #rrggbb.")

        def recolour(cur):
            if cur.execute("SELECT 1 FROM classes WHERE id = ?", [class_id]).fetchone() is None:
                raise NotFound(f"There is no class with id {class_id}.")
            cur.execute("UPDATE classes SET colour = ? WHERE id = ?", [value, class_id])
            self._event(cur, user, "class_colour", class_id=class_id, detail={"to": value})
        self._change(recolour, classes=True)
        return next(c for c in self.classes() if c.id == class_id)

    def reorder_classes(self, ordered_ids: Sequence[int], user: str = "local") -> None:
        current = {c.id for c in self.classes()}
        if set(ordered_ids) != current or len(ordered_ids) != len(current):
            raise StoreError("A new order must name every class exactly once.")

        def reorder(cur):
            for position, class_id in enumerate(ordered_ids):
                cur.execute("UPDATE classes SET position = ? WHERE id = ?", [position, class_id])
            self._event(cur, user, "class_reorder", detail={"order": list(ordered_ids)})
        self._change(reorder, classes=True)

    def remove_class(self, class_id: int, user: str = "local") -> dict[str, int]:
        """Delete a class with its labels and its mask pixels, in one transaction."""
        def remove(cur):
            row = cur.execute("SELECT name, mask_value FROM classes WHERE id = ?",
                              [class_id]).fetchone()
            if row is None:
                raise StoreError(f"There is no class with id {class_id}.")
            labels = cur.execute("DELETE FROM labels WHERE class_id = ? RETURNING image_id",
                                 [class_id]).fetchall()
            keep = np.ones(256, bool)
            keep[row[1]] = False
            touched = clear_mask_values(cur, keep)
            cur.execute("DELETE FROM classes WHERE id = ?", [class_id])
            cur.execute("DELETE FROM predictions")
            cur.execute("DELETE FROM seg_predictions")
            self._event(cur, user, "class_remove", class_id=class_id,
                        detail={"name": row[0], "labels": len(labels), "masks": touched})
            return {"labels": len(labels), "masks": touched}
        return self._change(remove, classes=True, moves=("predictions",))

