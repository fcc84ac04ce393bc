"""The session database: schema, migrations and every SQL statement of hitl.

One DuckDB file per session. DuckDB allows one read-write process per file, so the app
process owns it and the trainer is a thread: reads go through a cursor per thread and run
concurrently; writes are serialised by one lock, so two writers never conflict. A write that
returned has been committed, and DuckDB's write-ahead log makes it survive a killed process.

Two parts, each the one owner of its state:
- the SQL part (the mixins below, one module per part, and schema.py): database access only;
- the in-memory index (index.py): image rows, predictions and their orders, the open flags,
  settings, classes, the latest model and small per-revision counts, each loaded by the one
  helper `Cached` (version read -> load under the index lock -> install if the version held).
  Writers mark copies out of date after their transaction ends (`_write(..., moves=...)`),
  then move the change feed (feed.py), which the trainer waits on.

Lock order (hitl/locks.py RANKS; a thread takes locks only in this order, outermost first;
with HITL_LOCK_CHECK=1, as in the tests, an inversion raises LockOrderError):
  1. Service._reset_lock     one reset of the session at a time
  2. Session._reset_lock     closes the store and opens a fresh one
  3. StoreBase._write_lock   one transaction at a time; the open flags agree with the
                             database while it is held
  4. Index.lock              loads of in-memory copies: database reads only, never a write
  5. LeaseBook._lock         the reservations dict; calls nothing
  6. Trainer._lock           the trainer's status fields; calls nothing
  7. ChangeFeed's lock       counters only; a waiter reads the store after it let go
The locks of hitl/ml (a feature cache, a fine-tuned model) and of the login files, the throttle
and the mask decoder's slots are leaves: they are held only around their own data and never
while calling into the store or the service.
No lock is held while calling into code that may take an earlier one: the trainer waits on
the feed, then reads what it wants; a load under the index lock reads but never writes.
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
