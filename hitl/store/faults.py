"""What a failing disk or database file means, told in one line.

DuckDB and the OS report faults as generic exceptions whose kind is only in the text or the
errno: a full disk on COMMIT ("Could not write file ….wal: No space left on device"), a
damaged file ("Corrupt database file: computed checksum …", "Could not read enough bytes",
"… is not a valid DuckDB database file"), a read-only folder ("Read-only file system"), or
another process holding the file ("Could not set lock on file …"). Checked on duckdb 2.0.0.

`fault_of` turns a fault met while serving into the typed refusal of hitl/errors.py (a
request gets 507 or 503, not a reset connection); `open_error` turns one met while opening a
session into the line app.py prints before it exits with code 2.
"""
from __future__ import annotations

import errno
import re
from pathlib import Path

from hitl.errors import DiskFull, HitlError, Unavailable

DISK_FULL = ("no space left on device", "disk is full", "disk full")
READ_ONLY = ("read-only file system", "permission denied")
DAMAGED = ("corrupt database file", "not a valid duckdb database file",
           "could not read enough bytes", "checksum")
LOCKED = ("could not set lock", "conflicting lock")
STOPPED = ("database has been invalidated",)


def _text(exc: BaseException) -> str:
    return str(exc).lower()


def _errno(exc: BaseException) -> int | None:
    return getattr(exc, "errno", None) if isinstance(exc, OSError) else None


def is_disk_full(exc: BaseException) -> bool:
    return _errno(exc) == errno.ENOSPC or any(s in _text(exc) for s in DISK_FULL)


def is_read_only(exc: BaseException) -> bool:
    return _errno(exc) in (errno.EROFS, errno.EACCES, errno.EPERM) or \
        any(s in _text(exc) for s in READ_ONLY)


def is_damaged(exc: BaseException) -> bool:
    return any(s in _text(exc) for s in DAMAGED)


def is_locked(exc: BaseException) -> bool:
    return any(s in _text(exc) for s in LOCKED)


def fault_of(exc: BaseException) -> HitlError | None:
    """The refusal a request gets for `exc`, or None when `exc` is no disk or file fault (a
    bug, or a refusal already). Nothing of a refused write is stored (hitl/store/base.py)."""
    if isinstance(exc, HitlError):
        return None
    if is_disk_full(exc):
        return DiskFull("the disk is full: nothing of this request was stored; free some "
                        "space on the session's disk and try again.")
    if is_read_only(exc):
        return Unavailable("the session folder is read-only: nothing of this request was "
                           "stored; make it writable and restart the app.")
    if any(s in _text(exc) for s in STOPPED):
        return Unavailable("the session database stopped after a write error (a full or "
                           "failing disk?): make room, then restart the app; every answered "
                           "label is kept.")
    if is_damaged(exc):
        return Unavailable("the session database file is damaged: stop the app, then restore "
                           "the newest session-* archive folder or export what you can.")
    return None


def open_error(session_dir: Path, db_path: Path, exc: BaseException) -> str | None:
    """One line for a session that cannot be opened, saying what to do; None when `exc` is
    not such a fault (it is then a bug, shown with its traceback)."""
    folder = Path(session_dir).resolve()
    if is_locked(exc):
        pid = re.search(r"PID (\d+)", str(exc))
        who = f"process {pid.group(1)}" if pid else "another process"
        return (f"the session {folder} is open in another app ({who}): stop it, or start "
                "this one with another --session")
    if is_damaged(exc):
        return (f"the session database {Path(db_path).resolve()} is damaged (corrupt or "
                f"truncated): restore the newest {folder.name}-* archive folder beside it "
                f"(or a backup) in its place, or start with another --session")
    if is_read_only(exc):
        return (f"the session folder {folder} is read-only: make it writable, or start with "
                "a --session on a writable disk")
    if is_disk_full(exc):
        return (f"the disk of the session folder {folder} is full: free some space, or "
                "start with a --session on another disk")
    return None
