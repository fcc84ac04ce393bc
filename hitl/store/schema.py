"""The schema and its migrations: each entry moves a session one version forward."""
from __future__ import annotations

from collections.abc import Callable

import duckdb
import numpy as np

from hitl import imaging


def free_mask_value(used: set[int]) -> int:
    """The smallest mask value no live class holds: values of removed classes come back."""
    return next(v for v in range(1, imaging.MAX_MASK_VALUE + 1) if v not in used)


def clear_mask_values(cur, keep: np.ndarray) -> int:
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
    clear_mask_values(cur, keep)  # before a dead value is handed to a class below
    for class_id in ids:
        if class_id not in values:
            values[class_id] = free_mask_value(set(values.values()))
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
    # 5: leases live in memory (hitl/store/lease_book.py): a reservation is not worth a commit
    "DROP TABLE IF EXISTS leases;",
]


SCHEMA_VERSION = len(MIGRATIONS)
