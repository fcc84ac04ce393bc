"""One way to write a file so that a crash never leaves half of it under its real name."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_file(path: Path | str, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds
    (a rename in the same folder: readers see the old file or the new one, never a mix).
    `mode` (e.g. 0o600 for secrets) is set before anything is written; the data is flushed
    to disk before the rename, so a power cut cannot leave an empty file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if mode is not None:
        os.fchmod(fd, mode)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
