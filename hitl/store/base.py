"""Connection, cursors, the one write path, migrations and settings."""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from hitl.errors import Unavailable
from hitl.locks import ordered_lock
from hitl.store.common import (
    StoreError,
)
from hitl.store.faults import fault_of
from hitl.store.feed import ChangeFeed
from hitl.store.index import Index
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
        self._write_lock = ordered_lock("store.write", reentrant=True)
        self._closed = False
        self._migrate()
        # writers move the feed after they commit; the trainer waits on it (hitl/store/feed.py)
        self.feed = ChangeFeed(self._one("SELECT coalesce(max(id), 0) FROM events"))
        # bumped by every class change; pages send it back with each action (see hitl/seen.py)
        self.class_revision = self._one(
            "SELECT count(*) FROM events WHERE action LIKE 'class\\_%' ESCAPE '\\'")
        # what a key press reads, in memory (hitl/store/index.py)
        self.index = Index(lambda: self.feed.revision)
        self._settings = self.index.cached(
            lambda: dict(self._rows("SELECT key, value FROM settings")), "settings")
        self._classes = self.index.cached(self._read_classes, "classes")
        self._catalogue_copy = self.index.cached(self._read_catalogue, "images")
        self._predictions_copy = self.index.cached(self._read_predictions, "predictions")
        self._orders_copy = self.index.cached(self._read_score_orders, "predictions")
        self._latest_model = self.index.cached(self._read_latest_model, "models")
        self._blocked = self.index.cached(self._read_blocked_flags, "images", revision=True)
        self.lease_book = LeaseBook()  # reservations, in memory (hitl/store/lease_book.py)

    @property
    def revision(self) -> int:
        """The session's revision: moves after every write of labels, masks, skips, classes
        or the task (the change feed's `labels` counter)."""
        return self.feed.revision

    # ---- plumbing -------------------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self._closed:  # a request that began before a reset closed this store
            raise Unavailable("The session is being reset or closed; try again in a moment.")
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
        return cur

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._cursor().execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._cursor().execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _write(self, fn, *args, moves: Sequence[str] = (), **kwargs):
        """Run fn(cursor, ...) in one transaction under the write lock. `moves`: the in-memory
        copies (hitl/store/index.py) the write may change, marked out of date once the
        transaction ended, committed or not."""
        with self._write_lock:
            try:
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
            finally:
                self.index.moved(*moves)

    def _change(self, fn, *args, done: Sequence[int] | None = None, classes: bool = False,
                moves: Sequence[str] = (), **kwargs):
        """A write that changes labels, masks, skips or classes. The revision moves before the
        write lock is let go, so whoever takes the lock next sees the database and the
        revision agree: lease_first picks open images from flags kept by revision. `done`:
        images the write only closed (labeled, masked, skipped), marked in those flags at once
        and their leases ended."""
        with self._write_lock:
            before = self.revision
            try:
                moves = (*moves, "classes") if classes else moves
                result = self._write(fn, *args, moves=moves, **kwargs)
            finally:
                self.feed.publish("labels")
            if classes:
                self.class_revision += 1
            if done is not None:
                self._advance_blocked(before, done)
                self.lease_book.drop(done)
            return result

    def close(self, grace: float = 0.0) -> None:
        """Close the file; a read still running on another thread's cursor (a page's timer
        during a reset) makes DuckDB refuse, so wait for it briefly instead of failing.
        `grace`: seconds between refusing new reads (503, Unavailable) and closing, so reads
        that began before can still fetch their rows (a reset while pages tick)."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            time.sleep(grace)
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
        value = self._settings.get().get(key)
        return default if value is None else value

    def set_setting(self, key: str, value: str) -> None:
        self._write(lambda cur: cur.execute(
            "INSERT OR REPLACE INTO settings VALUES (?, ?)", [key, value]), moves=("settings",))
        self.feed.publish("settings")

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
            return self._write(lock, moves=("settings",))
        finally:
            self.feed.publish("settings")
