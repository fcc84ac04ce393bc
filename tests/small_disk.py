"""A disk of a few megabytes of its own (a tmpfs mount), to fill or make read-only for real.

Mounting needs root (or CAP_SYS_ADMIN); without it the test fails with a line saying so,
it is never skipped.
"""
from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"this test needs a small disk of its own: 'mount {' '.join(args)}'"
                             f" failed ({done.stderr.strip() or done.returncode}); run the "
                             "tests as root or in a container allowed to mount a tmpfs")


@contextlib.contextmanager
def small_disk(folder: Path, size_kb: int = 16384) -> Iterator[Path]:
    """`folder` as a tmpfs of `size_kb` KiB while the block runs; unmounted after."""
    folder.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def read_only(folder: Path) -> None:
    """Make a small_disk read-only from now on."""
    _mount("-o", "remount,ro", str(folder))


def fill(folder: Path) -> Path:
    """Write a file in `folder` until the disk is full; returns it (delete it to free)."""
    filler = folder / "filler"
    with open(filler, "ab", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    with open(filler, "ab", buffering=0) as out:  # the last few bytes of the last block
        try:
            while True:
                out.write(b"\0")
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler
