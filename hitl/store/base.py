"""Connection, cursors, the one write path, migrations and settings."""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from hitl.store.common import (
    StoreError,
)
from hitl.store.faults import fault_of
from hitl.store.lease_book import LeaseBook
from hitl.store.schema import MIGRATIONS, SCHEMA_VERSION


class StoreBase:
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
        self._images_cache: dict[str, np.ndarray] | None = None  # see Images._catalogue
        self._pred_cache: dict[str, np.ndarray] | None = None
        self._orders: tuple[dict, dict] | None = None       # (pred cache, its score orders)
        self._blocked: tuple[int, np.ndarray, np.ndarray] | None = None  # see open_index
        # read on every key press, changed only through this store: kept in memory, loaded
        # again after a write (see _cached)
        self._settings_cache: dict[str, str] | None = None
        self._classes_cache: list | None = None
        self._latest_model_cache: dict | None = None
        self._memo: dict = {}  # small answers kept until the next change (_per_revision)
        self.lease_book = LeaseBook()  # reservations, in memory (hitl/store/lease_book.py)
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
            except BaseException as exc:
                try:  # a failed COMMIT has rolled back already: no transaction is left
                    cur.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                fault = fault_of(exc)  # a full disk is a 507, not a reset connection
                if fault is not None:
                    raise fault from exc
                raise
            return result

    def _change(self, fn, *args, done: Sequence[int] | None = None, classes: bool = False,
                **kwargs):
        """A write that changes labels, masks, skips or classes. The revision moves before the
        write lock is let go, so whoever takes the lock next sees the database and the
        revision agree: lease_first picks open images from flags cached by revision. `done`:
        images the write only closed (labeled, masked, skipped), marked in those flags at once
        and their leases ended."""
        with self._write_lock:
            before = self.revision
            try:
                result = self._write(fn, *args, **kwargs)
            finally:
                if classes:
                    self._classes_cache = None
            if classes:
                self.class_revision += 1
            self._touch()
            if done is not None:
                self._advance_blocked(before, done)
                self.lease_book.drop(done)
            return result

    def _per_revision(self, key, load):
        """A small answer (label counts, someone's last class) kept until the next change."""
        revision = self.revision
        hit = self._memo.get(key)
        if hit is not None and hit[0] == revision:
            return hit[1]
        value = load()
        if len(self._memo) > 1024:
            self._memo.clear()
        self._memo[key] = (revision, value)
        return value

    def _cached(self, name: str, load):
        """An in-memory copy of a small table only this store writes. A miss loads it under
        the write lock, so it never reads inside a write, and every write drops the copy after
        its commit: a copy is never older than the last write."""
        value = getattr(self, name)
        if value is None:
            with self._write_lock:
                value = getattr(self, name)
                if value is None:
                    value = load()
                    setattr(self, name, value)
        return value

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
        settings = self._cached("_settings_cache",
                                lambda: dict(self._rows("SELECT key, value FROM settings")))
        value = settings.get(key)
        return default if value is None else value

    def set_setting(self, key: str, value: str) -> None:
        try:
            self._write(lambda cur: cur.execute(
                "INSERT OR REPLACE INTO settings VALUES (?, ?)", [key, value]))
        finally:
            self._settings_cache = None

    def task(self) -> str | None:
        return self.get_setting("task")

    def lock_task(self, task: str, user: str = "local") -> str:
        """Set the session's task unless one is set already; returns the task in force."""
        current = self.task()
        if current is not None:  # every label asks: no transaction once the task is set
            return current
        def lock(cur):
            current = cur.execute("SELECT value FROM settings WHERE key='task'").fetchone()
            if current:
                return current[0]
            cur.execute("INSERT INTO settings VALUES ('task', ?)", [task])
            self._event(cur, user, "task", detail={"task": task})
            return task
        try:
            return self._write(lock)
        finally:
            self._settings_cache = None

