"""The in-memory index: copies of what every key press reads (image rows, predictions, open
flags, settings, classes, small counts), each kept by ONE helper, `Cached`.

A copy is tagged with the version of its data read *before* loading it: writers move the
version after their transaction ends (commit or rollback), so a copy loaded from data that a
write then changed carries the old version and is loaded again on the next read — it can be
late by one read, never stale for good (a catalogue cleared before a background chunk's
commit once hid thousands of images from `next`). Loads run under the index lock (one load
at a time instead of a herd) and only read the database: nothing under this lock takes the
store's write lock (the order is in hitl/store/__init__.py).
"""
from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from hitl.locks import ordered_lock


class Cached:
    """One in-memory copy: version read -> load under the lock -> install if still current."""

    def __init__(self, lock, load: Callable[[], Any], version: Callable[[], Hashable]):
        self._lock, self._load, self._version = lock, load, version
        self._entry: tuple[Hashable, Any] = (object(), None)  # (version, value)

    def get(self) -> Any:
        version, value = self._entry
        if version == self._version():
            return value
        with self._lock:
            wanted = self._version()
            version, value = self._entry
            if version == wanted:
                return value
            value = self._load()
            if self._version() == wanted:  # a write ended meanwhile: don't keep a maybe-old copy
                self._entry = (wanted, value)
            return value

    def advance(self, before: Hashable, after: Hashable, change: Callable[[Any], None]) -> bool:
        """Bring the copy from version `before` to `after` in place (a write that only closed
        a few images), instead of loading it again; False when the copy was not at `before`."""
        with self._lock:
            version, value = self._entry
            if version != before:
                return False
            change(value)
            self._entry = (after, value)
            return True


class Index:
    """Every in-memory copy of one store, and the stamps that version them."""

    def __init__(self, revision: Callable[[], int]):
        self.lock = ordered_lock("store.index", reentrant=True)  # nested loads (flags -> rows)
        self._stamps: dict[str, int] = {}
        self._revision = revision
        self._memo: dict[Hashable, Cached] = {}

    def stamp(self, name: str) -> int:
        return self._stamps.get(name, 0)

    def moved(self, *names: str) -> None:
        """Writers call this after their transaction ended: the named copies are out of date."""
        for name in names:
            self._stamps[name] = self._stamps.get(name, 0) + 1

    def cached(self, load: Callable[[], Any], *stamps: str, revision: bool = False) -> Cached:
        """A copy versioned by the named stamps (and the session revision when `revision`)."""
        def version() -> tuple:
            key = tuple(self._stamps.get(name, 0) for name in stamps)
            return (self._revision(), *key) if revision else key
        return Cached(self.lock, load, version)

    def per_revision(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """A small answer (label counts, someone's last class) kept until the next change."""
        entry = self._memo.get(key)
        if entry is None:
            if len(self._memo) > 1024:
                self._memo.clear()
            entry = self._memo.setdefault(key, self.cached(load, revision=True))
        return entry.get()
