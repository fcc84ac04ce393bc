"""The session database: schema, migrations and every SQL statement of hitl.

One DuckDB file per session. DuckDB allows one read-write process per file, so the app
process owns it and the trainer is a thread: reads go through a cursor per thread and run
concurrently; writes are serialised by one lock, so two writers never conflict. A write that
returned has been committed, and DuckDB's write-ahead log makes it survive a killed process.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from hitl import imaging, strategies
from hitl.tasks import get_task


def _free_mask_value(used: set[int]) -> int:
    """The smallest mask value no live class holds: values of removed classes come back."""
    return next(v for v in range(1, imaging.MAX_MASK_VALUE + 1) if v not in used)


def _clear_mask_values(cur, keep: np.ndarray) -> int:
    """Zero every stored mask pixel (current masks and undo copies) whose value is not kept.

    A value is reused by the next class added, so no PNG may still hold it: an undo would
    otherwise paint the old class's pixels as the new one. Returns the masks touched."""
    touched = 0
    for image_id, png in cur.execute("SELECT image_id, png FROM masks").fetchall():
        mask = imaging.png_to_mask(png)
        drop = ~keep[mask] & (mask > 0)
        if drop.any():
            mask[drop] = 0
            touched += 1
            if mask.any():
                cur.execute("UPDATE masks SET png = ?, labeled_pixels = ? WHERE image_id = ?",
                            [imaging.mask_to_png(mask), int((mask > 0).sum()), image_id])
            else:
                cur.execute("DELETE FROM masks WHERE image_id = ?", [image_id])
    for event_id, png in cur.execute(  # only copies an undo can still restore
            "SELECT id, prev_png FROM events WHERE prev_png IS NOT NULL AND NOT undone "
            "AND action = 'mask'").fetchall():
        mask = imaging.png_to_mask(png)
        drop = ~keep[mask] & (mask > 0)
        if drop.any():
            mask[drop] = 0
            cur.execute("UPDATE events SET prev_png = ? WHERE id = ?",
                        [imaging.mask_to_png(mask) if mask.any() else None, event_id])
    return touched


def _bounded_mask_values(cur) -> None:
    """Migration 4. Masks held class ids, which grow forever and overflow 8 bits after 254
    classes; now each class has a mask value 1..254, reused after removal. A class keeps
    its id as its value where the id fits (so its pixels need no rewrite); pixels naming no
    live class (an undo after their class was removed) are cleared, so a reused value
    never revives them."""
    cur.execute("ALTER TABLE classes ADD COLUMN mask_value INTEGER")
    ids = [r[0] for r in cur.execute("SELECT id FROM classes ORDER BY id").fetchall()]
    values = {i: i for i in ids if i <= imaging.MAX_MASK_VALUE}
    keep = np.zeros(256, bool)
    keep[list(values.values())] = True
    _clear_mask_values(cur, keep)  # before a dead value is handed to a class below
    for class_id in ids:
        if class_id not in values:
            values[class_id] = _free_mask_value(set(values.values()))
    for class_id, value in values.items():
        cur.execute("UPDATE classes SET mask_value = ? WHERE id = ?", [value, class_id])


# Each entry moves the schema one version forward: SQL, or a function of the connection.
# Never edit a released entry: append.
MIGRATIONS: list[str | Callable[[duckdb.DuckDBPyConnection], None]] = [
    # 1: classification sessions
    """
    CREATE SEQUENCE seq_images START 1;
    CREATE SEQUENCE seq_classes START 1;
    CREATE SEQUENCE seq_events START 1;
    CREATE TABLE settings (key VARCHAR PRIMARY KEY, value VARCHAR);
    CREATE TABLE images (
        id INTEGER PRIMARY KEY DEFAULT nextval('seq_images'),
        path VARCHAR NOT NULL UNIQUE,
        filename VARCHAR NOT NULL,
        width INTEGER, height INTEGER,
        readable BOOLEAN NOT NULL,
        error VARCHAR,
        split VARCHAR NOT NULL,
        added_at TIMESTAMP DEFAULT current_localtimestamp());
    CREATE TABLE classes (
        id INTEGER PRIMARY KEY DEFAULT nextval('seq_classes'),
        name VARCHAR NOT NULL, colour VARCHAR NOT NULL, position INTEGER NOT NULL);
    CREATE TABLE labels (
        image_id INTEGER PRIMARY KEY, class_id INTEGER NOT NULL, "user" VARCHAR,
        created_at TIMESTAMP, shown_class_id INTEGER, shown_model_version INTEGER);
    CREATE TABLE skips (image_id INTEGER PRIMARY KEY, "user" VARCHAR, created_at TIMESTAMP);
    CREATE TABLE events (
        id BIGINT PRIMARY KEY DEFAULT nextval('seq_events'), "at" TIMESTAMP, "user" VARCHAR,
        action VARCHAR, image_id INTEGER, class_id INTEGER, detail VARCHAR,
        prev_class_id INTEGER, prev_skipped BOOLEAN, undone BOOLEAN DEFAULT false);
    CREATE TABLE predictions (
        image_id INTEGER, model_version INTEGER, class_id INTEGER,
        probability FLOAT, margin FLOAT, entropy FLOAT);
    CREATE TABLE models (
        version INTEGER PRIMARY KEY, task VARCHAR, backbone VARCHAR, mode VARCHAR,
        created_at TIMESTAMP, n_labels INTEGER, val_accuracy DOUBLE, metrics VARCHAR);
    """,
    # 2: segmentation masks, several labelers
    """
    CREATE TABLE masks (
        image_id INTEGER PRIMARY KEY, png BLOB NOT NULL, "user" VARCHAR,
        created_at TIMESTAMP, labeled_pixels BIGINT);
    ALTER TABLE events ADD COLUMN prev_png BLOB;
    ALTER TABLE models ADD COLUMN val_miou DOUBLE;
    CREATE TABLE seg_predictions (
        image_id INTEGER, model_version INTEGER, entropy FLOAT, fractions FLOAT[]);
    CREATE TABLE leases (image_id INTEGER PRIMARY KEY, "user" VARCHAR, expires_at TIMESTAMP);
    """,
    # 3: review pages (issue 13): where a label came from, pages undone as one, verdicts
    # (rejected for a class / kept despite the model), out-of-sample suspect scores
    """
    ALTER TABLE labels ADD COLUMN source VARCHAR DEFAULT 'click';
    UPDATE labels SET source = 'import'
        WHERE image_id IN (SELECT image_id FROM events WHERE action = 'import');
    ALTER TABLE events ADD COLUMN batch_id BIGINT;
    CREATE SEQUENCE seq_batches START 1;
    CREATE TABLE batches (
        id BIGINT PRIMARY KEY, "user" VARCHAR, kind VARCHAR, class_id INTEGER,
        shown INTEGER, accepted INTEGER, created_at TIMESTAMP, undone BOOLEAN DEFAULT false);
    CREATE TABLE verdicts (
        image_id INTEGER, class_id INTEGER, verdict VARCHAR, "user" VARCHAR,
        created_at TIMESTAMP, PRIMARY KEY (image_id, class_id));
    CREATE TABLE suspects (
        image_id INTEGER PRIMARY KEY, label_class_id INTEGER, predicted_class_id INTEGER,
        score FLOAT, model_version INTEGER, computed_at TIMESTAMP);
    """,
    # 4: bounded mask values (a Python step: it rewrites mask PNGs)
    _bounded_mask_values,
]

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


class StoreError(ValueError):
    """A request the store refuses, with a message meant for the person who made it."""


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


SCHEMA_VERSION = len(MIGRATIONS)


def _now() -> datetime:
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


class Store:
    """Owns the DuckDB file of one session."""

    def __init__(self, path: Path | str, val_every: int = 5):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.val_every = val_every
        self._con = duckdb.connect(str(self.path))
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._closed = False
        self.changed = threading.Condition()
        # next_image runs on every key press: keep the two big arrays it needs in memory
        self._readable_ids: np.ndarray | None = None
        self._pred_cache: dict[str, np.ndarray] | None = None
        self._orders: tuple[dict, dict] | None = None       # (pred cache, its score orders)
        self._blocked: tuple[int, np.ndarray, np.ndarray] | None = None  # see open_index
        self._migrate()
        self.revision = self._one("SELECT coalesce(max(id), 0) FROM events")
        # bumped by every class change; pages send it back with each action (see hitl/seen.py)
        self.class_revision = self._one(
            "SELECT count(*) FROM events WHERE action LIKE 'class\\_%' ESCAPE '\\'")

    # ---- plumbing -------------------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            if self._closed:
                raise StoreError("The session database is closed.")
            cur = self._con.cursor()
            self._local.cursor = cur
        return cur

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._cursor().execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._cursor().execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _write(self, fn, *args, **kwargs):
        """Run fn(cursor, ...) in one transaction under the write lock; bump the revision."""
        with self._write_lock:
            cur = self._cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                result = fn(cur, *args, **kwargs)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return result

    def _classes_changed(self) -> None:
        self.class_revision += 1
        self._touch()

    def _touch(self) -> None:
        with self.changed:
            self.revision += 1
            self.changed.notify_all()

    def close(self) -> None:
        """Close the file; a read still running on another thread's cursor (a page's timer
        during a reset) makes DuckDB refuse, so wait for it briefly instead of failing."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            deadline = time.monotonic() + 5.0
            while True:
                try:
                    self._con.close()
                    return
                except duckdb.Error as exc:
                    if "busy" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)

    def _migrate(self) -> None:
        con = self._con
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
        version = con.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        if version > SCHEMA_VERSION:
            raise StoreError(f"This session was written by a newer hitl (schema {version}; "
                             f"this one knows {SCHEMA_VERSION}). Upgrade hitl to open it.")
        for number in range(version + 1, SCHEMA_VERSION + 1):
            con.execute("BEGIN TRANSACTION")
            step = MIGRATIONS[number - 1]
            if callable(step):
                step(con)
            else:
                con.execute(step)
            con.execute("INSERT INTO schema_version VALUES (?)", [number])
            con.execute("COMMIT")

    def schema_version(self) -> int:
        return self._one("SELECT max(version) FROM schema_version")

    # ---- settings ------------------------------------------------------------------------
    def get_setting(self, key: str, default: str | None = None) -> str | None:
        value = self._one("SELECT value FROM settings WHERE key = ?", [key])
        return default if value is None else value

    def set_setting(self, key: str, value: str) -> None:
        self._write(lambda cur: cur.execute(
            "INSERT OR REPLACE INTO settings VALUES (?, ?)", [key, value]))

    def task(self) -> str | None:
        return self.get_setting("task")

    def lock_task(self, task: str, user: str = "local") -> str:
        """Set the session's task unless one is set already; returns the task in force."""
        def lock(cur):
            current = cur.execute("SELECT value FROM settings WHERE key='task'").fetchone()
            if current:
                return current[0]
            cur.execute("INSERT INTO settings VALUES ('task', ?)", [task])
            self._event(cur, user, "task", detail={"task": task})
            return task
        return self._write(lock)

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

    # ---- classes -------------------------------------------------------------------------
    def classes(self) -> list[ClassRow]:
        return [ClassRow(*r) for r in self._rows(
            f"SELECT {CLASS_COLUMNS} FROM classes ORDER BY position, id")]

    def mask_values(self) -> imaging.MaskValues:
        """The table between stored mask values, class positions and export indices."""
        return imaging.MaskValues.of(self.classes())

    def class_by_name(self, name: str) -> ClassRow | None:
        rows = self._rows(f"SELECT {CLASS_COLUMNS} FROM classes "
                          "WHERE lower(name) = lower(?)", [name.strip()])
        return ClassRow(*rows[0]) if rows else None

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
                next((c for c in PALETTE if c not in used), _colour_for(count))
            values = {r[0] for r in cur.execute("SELECT mask_value FROM classes").fetchall()}
            row = cur.execute("INSERT INTO classes (name, colour, position, mask_value) "
                              f"VALUES (?, ?, ?, ?) RETURNING {CLASS_COLUMNS}",
                              [clean, chosen, top + 1, _free_mask_value(values)]).fetchone()
            self._event(cur, user, "class_add", class_id=row[0], detail={"name": clean})
            return ClassRow(*row)
        row = self._write(add)
        self._classes_changed()
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
        self._write(rename)
        self._classes_changed()
        return next(c for c in self.classes() if c.id == class_id)

    def reorder_classes(self, ordered_ids: Sequence[int], user: str = "local") -> None:
        current = {c.id for c in self.classes()}
        if set(ordered_ids) != current or len(ordered_ids) != len(current):
            raise StoreError("A new order must name every class exactly once.")

        def reorder(cur):
            for position, class_id in enumerate(ordered_ids):
                cur.execute("UPDATE classes SET position = ? WHERE id = ?", [position, class_id])
            self._event(cur, user, "class_reorder", detail={"order": list(ordered_ids)})
        self._write(reorder)
        self._classes_changed()

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
            touched = _clear_mask_values(cur, keep)
            cur.execute("DELETE FROM classes WHERE id = ?", [class_id])
            cur.execute("DELETE FROM predictions")
            cur.execute("DELETE FROM seg_predictions")
            self._event(cur, user, "class_remove", class_id=class_id,
                        detail={"name": row[0], "labels": len(labels), "masks": touched})
            return {"labels": len(labels), "masks": touched}
        result = self._write(remove)
        self._pred_cache = None
        self._classes_changed()
        return result

    # ---- labels, masks, skips, undo -------------------------------------------------------
    def _event(self, cur, user: str, action: str, image_id: int | None = None,
               class_id: int | None = None, detail: dict | None = None,
               prev_class_id: int | None = None, prev_skipped: bool | None = None,
               prev_png: bytes | None = None, batch_id: int | None = None) -> None:
        cur.execute(
            'INSERT INTO events ("at", "user", action, image_id, class_id, detail, prev_class_id, '
            "prev_skipped, prev_png, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_now(), user, action, image_id, class_id,
             None if detail is None else json.dumps(detail), prev_class_id, prev_skipped,
             prev_png, batch_id])

    def _require_image(self, cur, image_id: int) -> None:
        if cur.execute("SELECT 1 FROM images WHERE id = ?", [image_id]).fetchone() is None:
            raise StoreError(f"There is no image with id {image_id}.")

    def _prior_state(self, cur, image_id: int) -> tuple[int | None, bool, bytes | None]:
        prev = cur.execute("SELECT class_id FROM labels WHERE image_id = ?", [image_id]).fetchone()
        skipped = cur.execute("SELECT 1 FROM skips WHERE image_id = ?", [image_id]).fetchone()
        png = cur.execute("SELECT png FROM masks WHERE image_id = ?", [image_id]).fetchone()
        return (prev[0] if prev else None, skipped is not None, png[0] if png else None)

    def _prior_rows(self, cur, image_id: int) -> dict:
        """Who wrote the image's label, mask and skip, and when: kept in the event so undo
        puts back exactly those rows, not copies in the undoer's name."""
        prior = {}
        for table, extra in (("labels", ", shown_class_id, shown_model_version, source"),
                             ("masks", ""), ("skips", "")):
            row = cur.execute(f'SELECT "user", created_at{extra} FROM {table} '
                              "WHERE image_id = ?", [image_id]).fetchone()
            if row is not None:
                prior[table] = [row[0], None if row[1] is None else row[1].isoformat(),
                                *row[2:]]
        return {"prior": prior} if prior else {}

    def set_label(self, image_id: int, class_id: int, user: str = "local",
                  shown_class_id: int | None = None, shown_model_version: int | None = None,
                  source: str = "label", then_lease: Sequence[int] | None = None,
                  lease_seconds: float = 600.0) -> int | None:
        """Store one image's class; the prediction shown at the time feeds live accuracy.

        With then_lease (ordered candidates for the next image), the first open one is leased
        to the user in the same transaction (save + next, one commit); returns its id."""
        def label(cur):
            self._require_image(cur, image_id)
            if cur.execute("SELECT 1 FROM classes WHERE id = ?", [class_id]).fetchone() is None:
                raise StoreError(f"There is no class with id {class_id}.")
            prev_class, skipped, _ = self._prior_state(cur, image_id)
            prior = self._prior_rows(cur, image_id)
            cur.execute("INSERT OR REPLACE INTO labels (image_id, class_id, \"user\", created_at, "
                        "shown_class_id, shown_model_version, source) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [image_id, class_id, user, _now(), shown_class_id, shown_model_version,
                         LABEL_SOURCES.get(source, source)])
            cur.execute("DELETE FROM skips WHERE image_id = ?", [image_id])
            cur.execute("DELETE FROM leases WHERE image_id = ?", [image_id])
            self._event(cur, user, source, image_id, class_id, prev_class_id=prev_class,
                        prev_skipped=skipped, detail=prior or None)
            if then_lease is not None and len(then_lease):
                return self._lease_first(cur, [int(i) for i in then_lease], user, lease_seconds)
            return None
        leased = self._write(label)
        self._touch()
        return leased

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
                now = _now()
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
                for table in ("skips", "leases"):
                    cur.execute(f"DELETE FROM {table} WHERE image_id IN "
                                "(SELECT image_id FROM bulk_labels)")
            finally:
                cur.unregister("bulk_labels")
            return len(frame)
        count = self._write(write)
        self._touch()
        return count

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
            self._require_image(cur, image_id)
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
            _, skipped, prev_png = self._prior_state(cur, image_id)
            prior = self._prior_rows(cur, image_id)
            if labeled:
                cur.execute("INSERT OR REPLACE INTO masks VALUES (?, ?, ?, ?, ?)",
                            [image_id, png, user, _now(), labeled])
            else:
                cur.execute("DELETE FROM masks WHERE image_id = ?", [image_id])
            cur.execute("DELETE FROM skips WHERE image_id = ?", [image_id])
            cur.execute("DELETE FROM leases WHERE image_id = ?", [image_id])
            self._event(cur, user, source, image_id, detail={"pixels": labeled, **prior},
                        prev_skipped=skipped, prev_png=prev_png)
        self._write(save)
        self._touch()

    def mask(self, image_id: int) -> np.ndarray | None:
        png = self._one("SELECT png FROM masks WHERE image_id = ?", [image_id])
        return None if png is None else imaging.png_to_mask(png)

    def skip(self, image_id: int, user: str = "local") -> None:
        def skip(cur):
            self._require_image(cur, image_id)
            _, skipped, _ = self._prior_state(cur, image_id)
            prior = self._prior_rows(cur, image_id)
            cur.execute("INSERT OR REPLACE INTO skips VALUES (?, ?, ?)", [image_id, user, _now()])
            cur.execute("DELETE FROM leases WHERE image_id = ?", [image_id])
            self._event(cur, user, "skip", image_id, prev_skipped=skipped, detail=prior or None)
        self._write(skip)
        self._touch()

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
        done = self._write(undo)
        if done is not None:
            self._touch()
        return done

    def _revert(self, cur, user: str, event_id: int, action: str, image_id: int,
                class_id: int | None, prev_class: int | None, prev_skipped: bool | None,
                prev_png: bytes | None, detail: str | None = None) -> None:
        """Put one image back as it was before one event (inside undo's transaction): the
        rows it replaced come back with their own user and time when the event kept them."""
        prior = (json.loads(detail) if detail else {}).get("prior", {})

        def who(table: str) -> list:
            row = prior.get(table)
            if row is None:
                return [user, _now()]
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
        return self._one("SELECT class_id FROM labels WHERE \"user\" = ? "
                         "ORDER BY created_at DESC LIMIT 1", [user])

    def label_rows(self) -> pd.DataFrame:
        """Every label with its image and class, for exports."""
        return self._cursor().execute(
            "SELECT l.image_id, i.path, i.filename, c.name AS label, l.\"user\", l.created_at, "
            "i.split FROM labels l JOIN images i ON i.id = l.image_id "
            "JOIN classes c ON c.id = l.class_id ORDER BY l.image_id").df()

    def mask_rows(self) -> list[tuple[int, str, bytes]]:
        return self._rows("SELECT m.image_id, i.path, m.png FROM masks m "
                          "JOIN images i ON i.id = m.image_id ORDER BY m.image_id")

    # ---- leases --------------------------------------------------------------------------
    def lease_first(self, candidates: Iterable[int], user: str, seconds: float,
                    keep_others: bool = False) -> int | None:
        """Lease the first candidate nobody else holds; atomic against other labelers.

        A labeler holds one image unless keep_others (the page's prefetched images)."""
        ordered = [int(i) for i in candidates]
        if not ordered:
            return None
        if self._still_leased(ordered[0], user, seconds, keep_others):
            return ordered[0]  # asked again (a refresh, a prefetch): no write needed
        return self._write(self._lease_first, ordered, user, seconds, keep_others)

    def _still_leased(self, image_id: int, user: str, seconds: float, keep_others: bool) -> bool:
        """The user holds image_id for at least half a lease more, it is still open, and (unless
        keep_others) it is the only image they hold: leasing it again would change nothing."""
        return bool(self._rows(
            "SELECT 1 FROM leases WHERE image_id = $id AND \"user\" = $user "
            "AND expires_at > $fresh AND $id NOT IN (SELECT image_id FROM labels) "
            "AND $id NOT IN (SELECT image_id FROM skips) "
            "AND $id NOT IN (SELECT image_id FROM masks) "
            "AND ($keep OR (SELECT count(*) FROM leases WHERE \"user\" = $user) = 1)",
            {"id": int(image_id), "user": user, "fresh": _now() + _seconds(seconds / 2),
             "keep": bool(keep_others)}))

    def _lease_first(self, cur, ordered: list[int], user: str, seconds: float,
                     keep_others: bool = False) -> int | None:
        """lease_first inside a write transaction (also used by set_label's save + next)."""
        now = _now()
        row = cur.execute(
            "SELECT c.id FROM (SELECT unnest($ids) AS id, generate_subscripts($ids, 1) AS n) c "
            "WHERE c.id NOT IN (SELECT image_id FROM leases WHERE expires_at > $now "
            "AND \"user\" <> $user) "
            "AND c.id NOT IN (SELECT image_id FROM labels) "
            "AND c.id NOT IN (SELECT image_id FROM skips) "
            "AND c.id NOT IN (SELECT image_id FROM masks) ORDER BY c.n LIMIT 1",
            {"ids": ordered, "now": now, "user": user}).fetchall()
        if not row:
            return None
        image_id = row[0][0]
        if keep_others:
            cur.execute("DELETE FROM leases WHERE image_id = ?", [image_id])
        else:
            cur.execute("DELETE FROM leases WHERE \"user\" = ? OR image_id = ?", [user, image_id])
        cur.execute("INSERT INTO leases VALUES (?, ?, ?)",
                    [image_id, user, now + _seconds(seconds)])
        return image_id

    def renew_lease(self, image_id: int, user: str, seconds: float) -> bool:
        """Keep an image while its labeler works on it (opened by id or still on screen)."""
        def renew(cur):
            now = _now()
            holder = cur.execute("SELECT \"user\" FROM leases WHERE image_id = ? "
                                 "AND expires_at > ?", [image_id, now]).fetchone()
            if holder is not None and holder[0] != user:
                return False
            cur.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)",
                        [image_id, user, now + _seconds(seconds)])
            return True
        return self._write(renew)

    def release_leases(self, user: str, image_ids: Iterable[int] | None = None) -> None:
        """Free this user's leases: all of them, or only those on the given images."""
        if image_ids is None:
            self._write(lambda cur: cur.execute("DELETE FROM leases WHERE \"user\" = ?", [user]))
            return
        ids = [int(i) for i in image_ids]
        if ids:
            self._write(lambda cur: cur.execute(
                "DELETE FROM leases WHERE \"user\" = ? AND image_id IN (SELECT unnest(?))",
                [user, ids]))

    def lease_holder(self, image_id: int) -> str | None:
        return self._one("SELECT \"user\" FROM leases WHERE image_id = ? AND expires_at > ?",
                         [image_id, _now()])

    # ---- candidates for the next image ----------------------------------------------------
    def candidates(self, task: str, user: str) -> dict[str, np.ndarray]:
        """Unlabeled, unskipped, readable images nobody else leases, with their predictions
        (the task's registry entry names which of the two methods below lists them)."""
        return getattr(self, get_task(task).candidates)(user)

    def mask_candidates(self, user: str) -> dict[str, np.ndarray]:
        """Images without a mask, with their segmentation summaries (entropy, fractions)."""
        params = {"now": _now(), "user": user}
        res = self._cursor().execute(
            "SELECT i.id, p.entropy, p.fractions FROM images i "
            "LEFT JOIN seg_predictions p ON p.image_id = i.id "
            "WHERE i.readable AND i.id NOT IN (SELECT image_id FROM masks) "
            "AND i.id NOT IN (SELECT image_id FROM skips) "
            "AND i.id NOT IN (SELECT image_id FROM leases WHERE expires_at > $now "
            "AND \"user\" <> $user) ORDER BY i.id", params).fetchnumpy()
        return {"ids": res["id"].astype(np.int64), "entropy": _float_array(res["entropy"]),
                "fractions": res["fractions"]}

    def label_candidates(self, user: str) -> dict[str, np.ndarray]:
        """Images without a class label, with their class predictions (NaN where none)."""
        params = {"now": _now(), "user": user}
        cur = self._cursor()
        excluded = cur.execute(
            "SELECT image_id FROM labels UNION ALL SELECT image_id FROM skips UNION ALL "
            "SELECT image_id FROM leases WHERE expires_at > $now AND \"user\" <> $user",
            params).fetchnumpy()["image_id"]
        ids = self.readable_image_ids()
        if len(excluded):
            ids = ids[~np.isin(ids, np.asarray(excluded, dtype=np.int64))]
        preds = self._predictions_cache()
        known = preds["image_id"]
        pos = np.clip(np.searchsorted(known, ids), 0, max(len(known) - 1, 0))
        found = (known[pos] == ids) if len(known) else np.zeros(len(ids), dtype=bool)

        def column(name: str) -> np.ndarray:
            out = np.full(len(ids), np.nan)
            if found.any():
                out[found] = preds[name][pos[found]]
            return out
        return {"ids": ids, "class_id": column("class_id"), "probability": column("probability"),
                "margin": column("margin"), "entropy": column("entropy")}

    def _predictions_cache(self) -> dict[str, np.ndarray]:
        cache = self._pred_cache
        if cache is None:
            res = self._cursor().execute(
                "SELECT image_id, class_id, probability, margin, entropy, model_version "
                "FROM predictions "
                "ORDER BY image_id").fetchnumpy()
            cache = {"image_id": np.asarray(res["image_id"], dtype=np.int64)}
            for name in ("class_id", "probability", "margin", "entropy"):
                cache[name] = np.asarray(res[name], dtype=np.float64)
            cache["model_version"] = np.asarray(res["model_version"], dtype=np.int64)
            self._pred_cache = cache
        return cache

    # ---- the fast next-image path (hitl.strategies.fast_order) --------------------------------
    def open_index(self, user: str) -> strategies.OpenIndex:
        """Sorted orders and taken flags for a classification next image, reused across key
        presses: the flags are rebuilt once per change of labels (revision), the orders once
        per published set of predictions; only the few leases are read on every call."""
        leased = self._cursor().execute(
            "SELECT image_id FROM leases WHERE expires_at > ? AND \"user\" <> ?",
            [_now(), user]).fetchnumpy()["image_id"]
        return strategies.OpenIndex(self.readable_image_ids(), self._blocked_flags(),
                                    np.asarray(leased, dtype=np.int64), self._score_orders())

    def _score_orders(self) -> dict:
        preds = self._predictions_cache()
        cached = self._orders
        if cached is None or cached[0] is not preds:
            cached = (preds, strategies.score_orders(
                preds["image_id"], preds["class_id"], preds["probability"], preds["margin"],
                preds["entropy"]))
            self._orders = cached
        return cached[1]

    def _blocked_flags(self) -> np.ndarray:
        """A flag by image id: unreadable, or labeled, masked or skipped by anyone."""
        revision, readable = self.revision, self.readable_image_ids()  # revision first: a
        cached = self._blocked  # write during the rebuild then only makes the next one redo
        if cached is not None and cached[0] == revision and cached[1] is readable:
            return cached[2]
        done = self._cursor().execute(
            "SELECT image_id FROM labels UNION ALL SELECT image_id FROM skips UNION ALL "
            "SELECT image_id FROM masks").fetchnumpy()["image_id"]
        done = np.asarray(done, dtype=np.int64)
        size = int(readable[-1]) + 1 if readable.size else 0
        blocked = np.ones(size, dtype=bool)
        blocked[readable] = False
        blocked[done[done < size]] = True
        self._blocked = (revision, readable, blocked)
        return blocked

    def label_counts(self) -> dict[int, int]:
        """Labels per class id, classes with no label included as 0."""
        return dict(self._rows("SELECT c.id, count(l.image_id) FROM classes c "
                               "LEFT JOIN labels l ON l.class_id = c.id GROUP BY c.id"))

    # ---- predictions and models -------------------------------------------------------------
    def next_model_version(self) -> int:
        return (self._one("SELECT max(version) FROM models") or 0) + 1

    def record_model(self, version: int, task: str, backbone: str, mode: str, n_labels: int,
                     val_accuracy: float | None = None, val_miou: float | None = None,
                     metrics: dict | None = None) -> None:
        self._write(lambda cur: cur.execute(
            "INSERT OR REPLACE INTO models (version, task, backbone, mode, created_at, n_labels, "
            "val_accuracy, val_miou, metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [version, task, backbone, mode, _now(), n_labels, val_accuracy, val_miou,
             json.dumps(metrics or {})]))

    def models(self) -> pd.DataFrame:
        return self._cursor().execute(
            "SELECT version, task, backbone, mode, created_at, n_labels, val_accuracy, "
            "val_miou, metrics FROM models ORDER BY version").df()

    def latest_model(self) -> dict | None:
        rows = self._cursor().execute(
            "SELECT version, task, backbone, mode, created_at, n_labels, val_accuracy, "
            "val_miou, metrics FROM models ORDER BY version DESC LIMIT 1").fetchall()
        if not rows:
            return None
        keys = ["version", "task", "backbone", "mode", "created_at", "n_labels",
                "val_accuracy", "val_miou", "metrics"]
        model = dict(zip(keys, rows[0]))
        model["metrics"] = json.loads(model["metrics"] or "{}")
        return model

    def _publish(self, table: str, frame: pd.DataFrame, columns: str, replace_all: bool) -> None:
        """Replace a prediction table's rows (all, or only the frame's images) in one
        transaction, so readers see either the old or the new predictions."""
        def write(cur):
            cur.register("new_rows", frame)
            if replace_all:
                cur.execute(f"DELETE FROM {table}")
            else:
                cur.execute(f"DELETE FROM {table} WHERE image_id IN "
                            "(SELECT image_id FROM new_rows)")
            cur.execute(f"INSERT INTO {table} SELECT {columns} FROM new_rows")
            cur.unregister("new_rows")
        self._write(write)

    def write_predictions(self, frame: pd.DataFrame, replace_all: bool = True) -> None:
        """Publish class predictions (image_id, model_version, class_id, probability, margin,
        entropy); with replace_all=False only the given images are replaced."""
        self._publish("predictions", frame, "image_id, model_version, class_id, probability, "
                      "margin, entropy", replace_all)
        self._pred_cache = None
        self._predictions_cache()  # rebuilt here, in the writer's thread, not on a key press
        self._score_orders()

    def write_seg_predictions(self, frame: pd.DataFrame, replace_all: bool = True) -> None:
        """Publish per-image segmentation summaries (image_id, model_version, entropy,
        fractions as a list of per-class fractions in class-position order)."""
        self._publish("seg_predictions", frame,
                      "image_id, model_version, entropy, fractions::FLOAT[]", replace_all)

    def prediction(self, image_id: int) -> tuple[int, float, int] | None:
        """(class id, probability, model version) of one image's current prediction, from the
        in-memory copy (the table has no index: a lookup there scans every prediction)."""
        cache = self._predictions_cache()
        known = cache["image_id"]
        i = int(np.searchsorted(known, int(image_id)))
        if i >= len(known) or known[i] != int(image_id):
            return None
        return (int(cache["class_id"][i]), float(cache["probability"][i]),
                int(cache["model_version"][i]))

    def predictions_frame(self, limit: int | None = None) -> pd.DataFrame:
        sql = ("SELECT p.image_id, i.filename, c.name AS label, p.probability, p.margin, "
               "p.entropy, p.model_version FROM predictions p JOIN images i ON i.id = p.image_id "
               "JOIN classes c ON c.id = p.class_id ORDER BY p.image_id")
        if limit is not None:
            sql += f" LIMIT {max(0, int(limit))}"
        return self._cursor().execute(sql).df()

    def clear_predictions(self) -> None:
        def clear(cur):
            cur.execute("DELETE FROM predictions")
            cur.execute("DELETE FROM seg_predictions")
        self._write(clear)
        self._pred_cache = None

    # ---- stats ---------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        row = self._rows(
            "SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM images WHERE readable), "
            "(SELECT count(*) FROM labels), (SELECT count(*) FROM masks), "
            "(SELECT count(*) FROM skips)")[0]
        return dict(zip(["total", "readable", "labels", "masks", "skips"], row))

    def live_accuracy(self, last_n: int) -> tuple[float | None, int]:
        """Share of the last N labels whose shown prediction was right, and how many counted."""
        row = self._rows(
            "SELECT avg(CASE WHEN shown_class_id = class_id THEN 1.0 ELSE 0.0 END), count(*) "
            "FROM (SELECT * FROM labels WHERE shown_class_id IS NOT NULL "
            "ORDER BY created_at DESC LIMIT ?)", [int(last_n)])[0]
        return (None if row[1] == 0 else float(row[0]), int(row[1]))

    def user_stats(self) -> list[tuple[str, int, float]]:
        """(user, labels + masks + skips done, actions per hour over their active span)."""
        return self._rows(
            "SELECT \"user\", count(*) AS n, "
            "CASE WHEN count(*) > 1 AND epoch(max(\"at\")) > epoch(min(\"at\")) "
            "THEN (count(*) - 1) * 3600.0 / (epoch(max(\"at\")) - epoch(min(\"at\"))) END "
            "FROM events WHERE action IN ('label', 'mask', 'skip') AND NOT undone "
            "GROUP BY \"user\" ORDER BY n DESC")

    def events(self, limit: int = 100) -> pd.DataFrame:
        return self._cursor().execute(
            "SELECT id, \"at\", \"user\", action, image_id, class_id, detail, undone FROM events "
            "ORDER BY id DESC LIMIT ?", [limit]).df()

    def copy_labels(self, path: Path, fmt: str) -> None:
        """Write every label to CSV or Parquet with DuckDB's own writer."""
        options = ("FORMAT parquet" if fmt == "parquet"
                   else "FORMAT csv, HEADER, TIMESTAMPFORMAT '%Y-%m-%dT%H:%M:%S.%f'")
        target = str(path).replace("'", "''")  # COPY takes no bound parameter for its target
        self._cursor().execute(
            "COPY (SELECT l.image_id, i.path, c.name AS label, l.\"user\", "
            "l.created_at AS timestamp FROM labels l JOIN images i ON i.id = l.image_id "
            "JOIN classes c ON c.id = l.class_id "
            f"ORDER BY l.image_id) TO '{target}' ({options})")

    def table_rows(self, name: str) -> tuple[list[str], list[tuple]]:
        """(column names, rows as Python values) of one table, for the JSON dump."""
        if name not in SESSION_TABLES:
            raise StoreError(f"Unknown table {name!r}.")
        columns = "* EXCLUDE (prev_png)" if name == "events" else "*"
        cur = self._cursor().execute(f"SELECT {columns} FROM {name} ORDER BY ALL")
        return [d[0] for d in cur.description], cur.fetchall()

    def image_ids_by_path(self) -> dict[str, tuple[int, bool]]:
        """path -> (id, readable) of every registered image."""
        rows = self._rows("SELECT path, id, readable FROM images")
        return {path: (image_id, readable) for path, image_id, readable in rows}

    # ---- review: pages of predictions, verdicts, suspects (issue 13) ----------------------
    def rejected_ids(self, class_id: int) -> np.ndarray:
        """Images a labeler marked as not this class on a review page (kept off its pages)."""
        return np.asarray(self._cursor().execute(
            "SELECT image_id FROM verdicts WHERE class_id = ? AND verdict = 'not'",
            [int(class_id)]).fetchnumpy()["image_id"], dtype=np.int64)

    def lease_page(self, candidates: Iterable[int], user: str, n: int, seconds: float,
                   labeled: bool = False) -> list[int]:
        """Lease the first n candidates nobody else holds, as one page, atomically.

        The user's earlier leases end (one page or image at a time). With labeled=False only
        unlabeled, unmasked images qualify (review pages); labeled=True is for suspects.
        """
        ordered = [int(i) for i in candidates]
        if not ordered or n <= 0:
            return []
        state = "" if labeled else ("AND c.id NOT IN (SELECT image_id FROM labels) "
                                    "AND c.id NOT IN (SELECT image_id FROM masks) ")

        def lease(cur):
            now = _now()
            rows = cur.execute(
                "SELECT c.id FROM (SELECT unnest($ids) AS id, generate_subscripts($ids, 1) AS n) c "
                "WHERE c.id NOT IN (SELECT image_id FROM leases WHERE expires_at > $now "
                f"AND \"user\" <> $user) {state}ORDER BY c.n LIMIT $k",
                {"ids": ordered, "now": now, "user": user, "k": int(n)}).fetchall()
            ids = [r[0] for r in rows]
            cur.execute("DELETE FROM leases WHERE \"user\" = ?", [user])
            if ids:
                cur.execute("DELETE FROM leases WHERE image_id IN (SELECT unnest(?))", [ids])
                cur.execute("INSERT INTO leases SELECT unnest($ids), $user, $until",
                            {"ids": ids, "user": user, "until": now + _seconds(seconds)})
            return ids
        return self._write(lease)

    def accept_page(self, user: str, class_id: int, image_ids: Sequence[int],
                    relabels: dict[int, int], rejected: Sequence[int]) -> dict:
        """Store one review page in one transaction under one batch id (undone as a whole).

        image_ids: every image the labeler saw; relabels: image -> another class; rejected:
        marked wrong without a class (a 'not this class' verdict, the image stays unlabeled).
        The rest become class_id with source 'review'. Refused as a whole when an image is
        unknown, labeled meanwhile, or leased by someone else: nothing is half-stored.
        """
        ids = [int(i) for i in image_ids]
        marked = {int(i) for i in rejected} | {int(i) for i in relabels}
        accepted = [i for i in ids if i not in marked]

        def accept(cur):
            classes = {r[0] for r in cur.execute("SELECT id FROM classes").fetchall()}
            for cid in {int(class_id), *relabels.values()}:
                if cid not in classes:
                    raise StoreError(f"There is no class with id {cid}.")
            known = {r[0] for r in cur.execute(
                "SELECT id FROM images WHERE id IN (SELECT unnest(?))", [ids]).fetchall()}
            if len(known) != len(set(ids)):
                raise StoreError("There is no image with id "
                                 f"{', '.join(str(i) for i in ids if i not in known)}.")
            taken = [r[0] for r in cur.execute(
                "SELECT image_id FROM labels WHERE image_id IN (SELECT unnest($ids)) UNION "
                "SELECT image_id FROM leases WHERE image_id IN (SELECT unnest($ids)) "
                "AND expires_at > $now AND \"user\" <> $user ORDER BY 1",
                {"ids": ids, "now": _now(), "user": user}).fetchall()]
            if taken:
                raise StoreError("This page is out of date: image(s) "
                                 f"{', '.join(map(str, taken))} were labeled or taken by "
                                 "someone else meanwhile. Nothing was stored; load the page again.")
            batch = cur.execute("SELECT nextval('seq_batches')").fetchone()[0]
            now = _now()
            for image_id in ids:
                skipped = cur.execute("SELECT 1 FROM skips WHERE image_id = ?",
                                      [image_id]).fetchone() is not None
                if image_id in marked and image_id not in relabels:
                    cur.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, 'not', ?, ?)",
                                [image_id, int(class_id), user, now])
                    self._event(cur, user, "reject", image_id, int(class_id), batch_id=batch)
                    continue
                cid, source = (int(relabels[image_id]), "click") if image_id in relabels \
                    else (int(class_id), "review")
                cur.execute("INSERT INTO labels (image_id, class_id, \"user\", created_at, "
                            "source) VALUES (?, ?, ?, ?, ?)", [image_id, cid, user, now, source])
                cur.execute("DELETE FROM skips WHERE image_id = ?", [image_id])
                self._event(cur, user, "label", image_id, cid, prev_skipped=skipped,
                            batch_id=batch)
            cur.execute("DELETE FROM leases WHERE image_id IN (SELECT unnest(?))", [ids])
            cur.execute("INSERT INTO batches VALUES (?, ?, 'review', ?, ?, ?, ?, false)",
                        [batch, user, int(class_id), len(ids), len(accepted), now])
            return batch
        batch = self._write(accept)
        self._touch()
        return {"batch_id": int(batch), "accepted": accepted,
                "relabeled": {i: int(c) for i, c in relabels.items()},
                "rejected": [i for i in ids if i in marked and i not in relabels]}

    def keep_label(self, image_id: int, user: str = "local") -> None:
        """The labeler looked at a suspect and keeps its label or mask as it is."""
        def keep(cur):
            row = cur.execute("SELECT coalesce((SELECT class_id FROM labels WHERE image_id = $i),"
                              " (SELECT 0 FROM masks WHERE image_id = $i))",
                              {"i": int(image_id)}).fetchone()
            if row[0] is None:
                raise StoreError(f"Image {image_id} has no label to keep.")
            cur.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, 'kept', ?, ?)",
                        [int(image_id), row[0], user, _now()])
            self._event(cur, user, "keep", int(image_id), row[0])
        self._write(keep)
        self._touch()

    def remove_label(self, image_id: int, user: str = "local") -> None:
        """Delete one image's class label (undoable): a suspect that fits no class."""
        def remove(cur):
            prev = cur.execute("SELECT class_id FROM labels WHERE image_id = ?",
                               [int(image_id)]).fetchone()
            if prev is None:
                raise StoreError(f"Image {image_id} has no label to remove.")
            cur.execute("DELETE FROM labels WHERE image_id = ?", [int(image_id)])
            self._event(cur, user, "unlabel", int(image_id), prev_class_id=prev[0])
        self._write(remove)
        self._touch()

    def write_suspects(self, frame: pd.DataFrame) -> None:
        """Replace the suspect scores (image_id, label_class_id, predicted_class_id, score,
        model_version, computed_at): computed from the labels as they were at computed_at."""
        self._publish("suspects", frame, "image_id, label_class_id, predicted_class_id, score, "
                      "model_version, computed_at", replace_all=True)

    def suspect_rows(self, user: str, n: int) -> list[tuple]:
        """(image_id, filename, label_class_id, predicted_class_id, score, model_version),
        lowest score first: labels and masks unchanged since they were scored, not kept by a
        labeler since, not leased by someone else."""
        return self._rows(
            "SELECT s.image_id, i.filename, s.label_class_id, s.predicted_class_id, s.score, "
            "s.model_version FROM suspects s JOIN images i ON i.id = s.image_id "
            "LEFT JOIN labels l ON l.image_id = s.image_id "
            "LEFT JOIN masks m ON m.image_id = s.image_id "
            "WHERE i.readable AND CASE WHEN s.label_class_id IS NULL "
            "THEN m.created_at <= s.computed_at "
            "ELSE l.class_id = s.label_class_id AND l.created_at <= s.computed_at END "
            "AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.image_id = s.image_id "
            "AND v.verdict = 'kept' AND v.class_id = coalesce(s.label_class_id, 0) "
            "AND v.created_at >= coalesce(l.created_at, m.created_at)) "
            "AND s.image_id NOT IN (SELECT image_id FROM leases WHERE expires_at > $now "
            "AND \"user\" <> $user) ORDER BY s.score, s.image_id LIMIT $n",
            {"now": _now(), "user": user, "n": max(0, int(n))})

    def review_counts(self) -> dict[int, dict[str, int]]:
        """Per page class: images shown on review pages, accepted as shown, and review labels
        in force (pages undone do not count)."""
        out: dict[int, dict[str, int]] = {}
        for cid, shown, accepted in self._rows(
                "SELECT class_id, sum(shown), sum(accepted) FROM batches "
                "WHERE kind = 'review' AND NOT undone GROUP BY class_id"):
            out[cid] = {"shown": int(shown), "accepted": int(accepted), "labels": 0}
        for cid, count in self._rows("SELECT class_id, count(*) FROM labels "
                                     "WHERE source = 'review' GROUP BY class_id"):
            out.setdefault(cid, {"shown": 0, "accepted": 0, "labels": 0})["labels"] = int(count)
        return out


def _seconds(seconds: float):
    from datetime import timedelta
    return timedelta(seconds=seconds)


def _colour_for(index: int) -> str:
    """Colours past the palette: spread hues, still distinct and stable."""
    import colorsys
    r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.75, 0.95)
    return "#{:02x}{:02x}{:02x}".format(int(r * 255), int(g * 255), int(b * 255))


def _float_array(values) -> np.ndarray:
    if isinstance(values, np.ma.MaskedArray):
        return values.astype(np.float64).filled(np.nan)
    return np.asarray(values, dtype=np.float64)
