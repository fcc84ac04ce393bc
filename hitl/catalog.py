"""Find image files, read their headers, and register them in the session.

Only headers are read here (size, EXIF rotation), so 100,000 files register in seconds; a file
that later fails to decode is marked unreadable by whoever tries.
"""
from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hitl.imaging import header_info
from hitl.store import Store

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
GLOB_CHARS = set("*?[")


@dataclass
class CatalogReport:
    added: int = 0
    known: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    not_images: int = 0
    missing: list[str] = field(default_factory=list)
    mask_folders: list[str] = field(default_factory=list)  # masks/ beside images/, skipped

    def summary(self) -> str:
        parts = [f"{self.added} new image(s)"]
        if self.known:
            parts.append(f"{self.known} already in the session")
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} unreadable")
        if self.not_images:
            parts.append(f"{self.not_images} non-image file(s) ignored")
        if self.missing:
            parts.append("nothing found at " + ", ".join(self.missing))
        if self.mask_folders:
            parts.append("skipped " + ", ".join(self.mask_folders) + " (masks beside images/: "
                         "labels, not images to label; bring them in with --import FOLDER)")
        return "; ".join(parts)


def find_files(sources: list[str], mask_folders: list[str] | None = None,
               ) -> tuple[list[Path], int, list[str]]:
    """Expand folders (recursively), files and globs to image paths.

    Returns (files, count of non-image files skipped in folders, sources that matched nothing).
    A file named explicitly is kept whatever its suffix, so a bad one is reported, not hidden.
    A `masks/` folder beside an `images/` one (an exported or importable mask set) holds
    labels, not images: it is left out, and named in `mask_folders` when given.
    """
    mask_folders = [] if mask_folders is None else mask_folders
    files: list[Path] = []
    skipped = 0
    missing: list[str] = []
    for source in sources:
        source = os.path.expanduser(str(source))
        if GLOB_CHARS & set(source) and not os.path.exists(source):
            matches = sorted(glob.glob(source, recursive=True))
            found = [Path(m) for m in matches if os.path.isfile(m)]
            for directory in (m for m in matches if os.path.isdir(m)):
                sub, sub_skipped = _walk(directory, mask_folders)
                found += sub
                skipped += sub_skipped
        elif os.path.isdir(source):
            found, sub_skipped = _walk(source, mask_folders)
            skipped += sub_skipped
        elif os.path.isfile(source):
            found = [Path(source)]
        else:
            found = []
        if not found:
            missing.append(source)
        files += found
    return files, skipped, missing


def not_a_file(path: str) -> str:
    """Why a name found in a folder is not read: a dangling symlink, or not a regular file."""
    if os.path.islink(path) and not os.path.exists(path):
        return "dangling symlink (its target does not exist)"
    if os.path.isdir(path):
        return "a folder"
    return "not a regular file (FIFO, socket or device)"


def _walk(directory: str, mask_folders: list[str]) -> tuple[list[Path], int]:
    found: list[Path] = []
    skipped = 0
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if "masks" in dirs and "images" in dirs:
            dirs.remove("masks")
            mask_folders.append(os.path.join(root, "masks"))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            if not os.path.isfile(path):  # a FIFO named x.jpg would hang the header read
                log.warning("skipped %s: %s", path, not_a_file(path))
                skipped += 1
            elif os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                found.append(Path(path))
            else:
                skipped += 1
    return found, skipped


@dataclass
class CatalogProgress:
    """How far a registration has come, for the page and the API while it runs."""
    state: str = "idle"    # idle | finding | reading | done | failed
    found: int = 0         # new image files found
    registered: int = 0    # of which are in the session (usable) now
    error: str | None = None

    def as_dict(self) -> dict:
        return {"state": self.state, "found": self.found, "registered": self.registered,
                "error": self.error}


def register(store: Store, sources: list[str], max_pixels: int = 100_000_000,
             progress: CatalogProgress | None = None, chunk: int | None = None,
             stop=None) -> CatalogReport:
    """Add the images behind `sources` to the session; known paths are not read again.

    With `chunk`, headers are read and images added `chunk` at a time, so the first ones can be
    labeled while the rest register (a registration in the background); `progress` follows it
    and `stop()` returning true ends it between chunks."""
    progress = progress or CatalogProgress()
    progress.state = "finding"
    report = CatalogReport()
    files, report.not_images, report.missing = find_files(sources, report.mask_folders)
    if not files:  # a relaunch without --images: no need to read 100k known paths
        progress.state = "done"
        return report
    known = store.known_paths()
    seen: set[str] = set()
    new_paths: list[str] = []
    for f in files:
        path = os.path.abspath(f)
        if path in known:
            report.known += 1
        elif path not in seen:
            seen.add(path)
            new_paths.append(path)
    progress.found, progress.state = len(new_paths), "reading"
    step = chunk or max(len(new_paths), 1)
    for start in range(0, len(new_paths), step):
        if stop is not None and stop():
            break
        paths = new_paths[start:start + step]
        # a plain loop: header parsing holds the GIL, and a thread pool measured 3x slower
        infos = [header_info(p, max_pixels) for p in paths]
        frame = pd.DataFrame({
            "path": paths,
            "filename": [os.path.basename(p) for p in paths],
            "width": pd.array([i.width for i in infos], dtype="Int32"),
            "height": pd.array([i.height for i in infos], dtype="Int32"),
            "readable": [i.error is None for i in infos],
            "error": [i.error for i in infos],
        })
        report.added += store.add_images(frame)
        report.unreadable += [(p, i.error) for p, i in zip(paths, infos) if i.error]
        progress.registered += len(paths)
    progress.state = "done"
    return report
