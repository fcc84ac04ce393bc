"""A small file's parsed content, re-read when the file changes, as the app runs.

The auth file and its tokens file are changed by `python -m hitl adduser|deluser|revoke` while
the app runs; the app must notice within seconds (a revoked token stops working, a new one
works) without a restart and without reading them on every request. So the file is looked at
(one os.stat) at most every CHECK_EVERY_S, and parsed again only when its
(mtime, size, inode) changed — the writers replace the file atomically, so the inode alone
tells a rewrite.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
CHECK_EVERY_S = 1.0
log = logging.getLogger(__name__)


class FileWatch(Generic[T]):
    """`parse(path)` of a file, kept until the file changes. A missing file parses as
    `missing`; a file that cannot be parsed keeps the last good value and logs one line."""

    def __init__(self, path: Path, parse: Callable[[Path], T], missing: T):
        self.path, self.parse, self.missing = Path(path), parse, missing
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp: tuple | None = ()
        self.value: T = missing
        self.version = 0  # grows each time a new value is read
        self.get(force=True)

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def get(self, force: bool = False) -> T:
        """The value as the file is now (looked at no more than every CHECK_EVERY_S)."""
        now = time.monotonic()
        if not force and now - self._checked < CHECK_EVERY_S:
            return self.value
        with self._lock:
            self._checked = now
            stamp = self._stat()
            if stamp == self._stamp:
                return self.value
            try:
                value = self.missing if stamp is None else self.parse(self.path)
            except (OSError, ValueError) as exc:
                if force and self.version == 0:
                    raise
                log.warning("%s changed but cannot be read; keeping what it said before: %s",
                            self.path, " ".join(str(exc).split()))
                self._stamp = stamp
                return self.value
            self.value, self._stamp = value, stamp
            self.version += 1
            return value
