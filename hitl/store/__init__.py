"""The session database: schema, migrations and every SQL statement of hitl.

One DuckDB file per session. DuckDB allows one read-write process per file, so the app
process owns it and the trainer is a thread: reads go through a cursor per thread and run
concurrently; writes are serialised by one lock, so two writers never conflict. A write that
returned has been committed, and DuckDB's write-ahead log makes it survive a killed process.
"""
from __future__ import annotations

from hitl.store.base import StoreBase
from hitl.store.classes import Classes
from hitl.store.common import (
    CLASS_COLUMNS,
    LABEL_SOURCES,
    MAX_CLASS_NAME,
    MAX_CLASSES,
    PALETTE,
    SESSION_TABLES,
    UNDOABLE,
    ClassRow,
    ImageRow,
    StoreError,
    normalise_class_name,
)
from hitl.store.images import Images
from hitl.store.labels import Labels
from hitl.store.leases import Leases
from hitl.store.predictions import Predictions
from hitl.store.review import Review
from hitl.store.schema import MIGRATIONS, SCHEMA_VERSION


class Store(Images, Classes, Labels, Leases, Predictions, Review, StoreBase):
    """Owns the DuckDB file of one session; each part of its SQL lives in its own module."""


__all__ = [
    "Store",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "StoreError",
    "ImageRow",
    "ClassRow",
    "CLASS_COLUMNS",
    "PALETTE",
    "SESSION_TABLES",
    "LABEL_SOURCES",
    "UNDOABLE",
    "MAX_CLASS_NAME",
    "MAX_CLASSES",
    "normalise_class_name",
]
