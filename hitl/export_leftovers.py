"""Export temp folders that a killed process left behind, found and removed at the next start.

An export is built in a temp folder and moved into place at the end (hitl/export.py), and the
page's exports wait in a temp folder for their download (hitl/service/admin.py); both go when
the process ends normally. A SIGKILL or a power cut leaves them (800-1,500 files for a masks
export). Each such folder names the process that made it — `hitl-export-<pid>-*` in the
system's temp folder, a marker file with the pid inside a `.<name>.*.tmp` beside an export —
so a later start removes those of processes that are gone, and never a running one's.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

STARTED = time.time()  # this process's start, near enough: folders before it are not ours
WORKDIR_KINDS = ("export", "mine")
log = logging.getLogger(__name__)


def workdir(kind: str) -> Path:
    """A fresh temp folder for one page export, named after this process."""
    return Path(tempfile.mkdtemp(prefix=f"hitl-{kind}-{os.getpid()}-"))


def owner_gone(pid: int | None) -> bool:
    """True when no process `pid` runs (None: the folder names no process)."""
    if pid is None:
        return True
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False  # someone else's process: alive
    return False


def _older_than_start(path: Path) -> bool:
    try:
        return path.stat().st_mtime < STARTED
    except OSError:
        return False


def remove_stale_workdirs(keep_s: float, tempdir: Path | None = None) -> int:
    """Remove page-export folders older than this process whose process is gone (or that
    are older than `keep_s`, when their pid was reused or they name none). Returns how many."""
    root = Path(tempdir or tempfile.gettempdir())
    pattern = re.compile(rf"hitl-(?:{'|'.join(WORKDIR_KINDS)})-(?:(\d+)-)?")
    removed = 0
    with contextlib.suppress(OSError):
        for folder in root.iterdir():
            found = pattern.match(folder.name)
            if not found or not folder.is_dir() or folder.is_symlink() or \
                    not _older_than_start(folder):
                continue
            old = time.time() - folder.stat().st_mtime > keep_s
            if old or owner_gone(int(found[1]) if found[1] else None):
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    if removed:
        log.info("removed %d export folder(s) left by stopped apps in %s", removed, root)
    return removed


def marker_text() -> str:
    return f"written by hitl export (pid {os.getpid()}); a re-export may replace this folder\n"


def remove_stale_siblings(path: Path, marker: str) -> int:
    """Before an export to `path`: remove the `.<name>.*.tmp` folders beside it that an
    export killed midway left (they hold `marker`, naming a process that is gone)."""
    path = Path(path)
    removed = 0
    with contextlib.suppress(OSError):
        for folder in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
            try:
                text = (folder / marker).read_text(encoding="utf-8")
            except OSError:
                continue  # not an export's, or not ours: left alone
            pid = re.search(r"\(pid (\d+)\)", text)
            if folder.is_dir() and not folder.is_symlink() and _older_than_start(folder) \
                    and owner_gone(int(pid[1]) if pid else None):
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)
