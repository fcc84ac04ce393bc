"""Existing labels and masks into a session: a CSV, an ImageFolder tree, or an index-mask set.

Whatever hitl exports it can import again. A bad row (missing file, unknown mask value, a
mask of the wrong size) is reported and skipped, never fatal: one typo in a 10,000-row CSV
must not cost the other 9,999 labels.
"""
from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from hitl import catalog
from hitl.imaging import MaskValues
from hitl.store import ClassRow, Store, StoreError

USER = "import"
SPLIT_FOLDERS = {"train", "val", "valid", "validation", "test"}


class ImportSourceError(ValueError):
    """A source that cannot be imported at all, with a message saying why."""


@dataclass
class ImportReport:
    format: str = ""
    images: int = 0            # images newly added to the session
    labels: int = 0
    masks: int = 0
    classes_created: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.format}: {self.images} new image(s)", f"{self.labels} label(s)",
                 f"{self.masks} mask(s)"]
        if self.classes_created:
            parts.append("new classes " + ", ".join(self.classes_created))
        if self.problems:
            parts.append(f"{len(self.problems)} problem(s), first: {self.problems[0]}")
        return "; ".join(parts)


def detect_format(source: Path) -> str:
    """'csv', 'masks' or 'imagefolder', from what is at `source`."""
    if source.is_file():
        if source.suffix.lower() == ".csv":
            return "csv"
        raise ImportSourceError(f"{source} is a file but not a .csv; import a CSV with "
                                "path,label columns, an ImageFolder tree or a masks folder.")
    if not source.is_dir():
        raise ImportSourceError(f"Nothing found at {source}.")
    if (source / "masks").is_dir():
        return "masks"
    return "imagefolder"


def import_labels(store: Store, source: str | Path, max_pixels: int = 100_000_000) -> ImportReport:
    """Import labels or masks from `source` as user 'import'; images are registered once."""
    source = Path(os.path.expanduser(str(source)))
    fmt = detect_format(source)
    report = ImportReport(format=fmt)
    if fmt == "csv":
        pairs = _csv_pairs(source, report)
    elif fmt == "imagefolder":
        pairs = _imagefolder_pairs(source, report)
    else:
        _import_masks(store, source, max_pixels, report)
        return report
    _check_task(store, "classification")
    ids = _register(store, [p for p, _ in pairs], max_pixels, report)
    classes: dict[str, int] = {}
    labeled: dict[int, int] = {}  # image id -> class id, written in one transaction below
    for path, name in pairs:
        image_id = ids.get(path)
        if image_id is None:
            continue
        try:
            class_id = classes.get(name.strip().lower()) or _class_row(store, name, report).id
        except StoreError as exc:
            report.problems.append(f"{path}: label {name!r} refused ({exc})")
            continue
        classes[name.strip().lower()] = class_id
        labeled[image_id] = class_id
        report.labels += 1
    store.set_labels(list(labeled), list(labeled.values()), user=USER, source="import")
    if report.labels:
        store.lock_task("classification", user=USER)
    return report


def _check_task(store: Store, task: str) -> None:
    """Labels imply classification and masks segmentation; a session holds one task."""
    current = store.task()
    if current is not None and current != task:
        raise ImportSourceError(f"This is a {current} session: {task} data cannot be imported "
                                "into it. Start a new session for it.")


def _class_row(store: Store, name: str, report: ImportReport) -> ClassRow:
    row = store.class_by_name(name)
    if row is None:
        row = store.add_class(name, user=USER)
        report.classes_created.append(row.name)
    return row


def _register(store: Store, paths: list[str], max_pixels: int,
              report: ImportReport) -> dict[str, int]:
    """Register the files (known ones are not read again); returns path -> id of readable ones."""
    # escaped, so a file name with [ ] or * is taken literally rather than as a glob
    result = catalog.register(store, [glob.escape(p) for p in dict.fromkeys(paths)],
                              max_pixels=max_pixels)
    report.images += result.added
    known = store.image_ids_by_path()
    ids: dict[str, int] = {}
    for path in dict.fromkeys(paths):
        image_id, readable = known.get(path, (None, False))
        if image_id is None:
            report.problems.append(f"{path}: not found")
        elif not readable:
            report.problems.append(f"{path}: not a readable image, skipped")
        else:
            ids[path] = image_id
    return ids


def _csv_pairs(source: Path, report: ImportReport) -> list[tuple[str, str]]:
    """(absolute path, label) rows of a CSV with path and label columns."""
    with open(source, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise ImportSourceError(
                f"{source.name} needs a header with 'path' and 'label' columns "
                f"(found {', '.join(reader.fieldnames or []) or 'none'}).")
        pairs = []
        for line, row in enumerate(reader, start=2):
            path, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
            if not path or not label:
                report.problems.append(f"{source.name} line {line}: empty path or label")
                continue
            full = os.path.abspath(source.parent / os.path.expanduser(path))
            if not os.path.isfile(full):
                report.problems.append(f"{source.name} line {line}: {path} not found")
                continue
            pairs.append((full, label))
    return pairs


def _imagefolder_pairs(root: Path, report: ImportReport) -> list[tuple[str, str]]:
    """root/<class>/… or root/{train,val}/<class>/…; the session keeps its own split."""
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if subdirs and all(d.name.lower() in SPLIT_FOLDERS for d in subdirs):
        class_dirs = [c for d in subdirs for c in sorted(d.iterdir())
                      if c.is_dir() and not c.name.startswith(".")]
    else:
        class_dirs = subdirs
    if not class_dirs:
        raise ImportSourceError(f"{root} has no class folders: expected "
                                f"{root.name}/<class>/<image> or a CSV with path,label columns.")
    pairs = []
    for class_dir in class_dirs:
        files, _, _ = catalog.find_files([glob.escape(str(class_dir))])
        pairs += [(os.path.abspath(f), class_dir.name) for f in files]
    loose = [f for f in root.iterdir() if f.is_file() and not f.name.startswith(".")]
    if loose:
        report.problems.append(f"{len(loose)} file(s) directly in {root} ignored: "
                               "images must sit in a folder named after their class")
    return pairs


# ---- masks ----------------------------------------------------------------------------------

def read_class_names(folder: Path) -> list[str]:
    """Class names in index order, from classes.json or else labelmap.txt."""
    if (folder / "classes.json").is_file():
        entries = json.loads((folder / "classes.json").read_text(encoding="utf-8"))
        return [e["name"] for e in sorted(entries, key=lambda e: e["index"])]
    if (folder / "labelmap.txt").is_file():
        names = []
        for line in (folder / "labelmap.txt").read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                names.append(line.rsplit(":", 3)[0])  # name:r,g,b:parts:actions
        return names
    raise ImportSourceError(missing_class_table(folder))


def missing_class_table(folder: Path) -> str:
    """What to add to a mask folder without a class table (one line)."""
    return (f"{folder} has masks/ but no class table: add {folder / 'classes.json'} "
            '([{"index": 0, "name": "background"}, {"index": 1, "name": "cell"}, ...], one '
            f"entry per mask value) or {folder / 'labelmap.txt'} (one 'name:r,g,b::' line per "
            "mask value, from 0)")


def check_source(source: str | Path) -> None:
    """Refuse, before anything starts, a source that cannot be imported at all (nothing there,
    a mask folder without its class table); raises ImportSourceError with one line."""
    path = Path(os.path.expanduser(str(source)))
    if detect_format(path) == "masks" and not any(
            (path / name).is_file() for name in ("classes.json", "labelmap.txt")):
        raise ImportSourceError(missing_class_table(path))


def _image_files(folder: Path) -> dict[str, str]:
    """file stem -> absolute path of the images in `folder` (first one wins)."""
    if not folder.is_dir():
        return {}
    files, _, _ = catalog.find_files([glob.escape(str(folder))])
    found: dict[str, str] = {}
    for f in files:
        found.setdefault(f.stem, os.path.abspath(f))
    return found


def _import_masks(store: Store, folder: Path, max_pixels: int, report: ImportReport) -> None:
    """masks/<stem>.png (class index, 255 unlabeled) matched to images/<stem>.* by stem.

    Without images/, masks are matched to images already in the session by file stem.
    """
    names = read_class_names(folder)
    _check_task(store, "segmentation")
    mask_files = sorted((folder / "masks").glob("*.png"))
    images = _image_files(folder / "images")
    if not images:
        images = {}
        for path in sorted(store.image_ids_by_path()):
            images.setdefault(Path(path).stem, path)
    wanted = {m: images.get(m.stem) for m in mask_files}
    for m, path in wanted.items():
        if path is None:
            report.problems.append(f"{m.name}: no image with the stem {m.stem!r}")
    ids = _register(store, [p for p in wanted.values() if p is not None], max_pixels, report)
    values: MaskValues | None = None
    for m, path in wanted.items():
        if path not in ids:
            continue
        try:
            with Image.open(m) as img:
                if img.mode not in ("L", "P"):
                    raise ValueError(f"mode {img.mode}, not an 8-bit index PNG")
                index = np.array(img, dtype=np.uint8)
        except Exception as exc:
            report.problems.append(f"{m.name}: unreadable mask ({exc})")
            continue
        row = store.image(ids[path])
        if (row.width, row.height) != (index.shape[1], index.shape[0]):
            report.problems.append(f"{m.name}: mask is {index.shape[1]}x{index.shape[0]} but the "
                                   f"image is {row.width}x{row.height}")
            continue
        unknown = set(np.unique(index).tolist()) - set(range(len(names))) - {255}
        if unknown:
            report.problems.append(f"{m.name}: values {sorted(unknown)} are not class indices "
                                   f"(0..{len(names) - 1}) nor 255")
            continue
        if values is None:  # classes are created once the first mask is known to be usable
            rows = []
            for name in names:
                try:
                    rows.append(_class_row(store, name, report))
                except StoreError as exc:
                    raise ImportSourceError(f"class {name!r} cannot be created: {exc}") from exc
            values = MaskValues.of(rows)
        mask = values.from_index(index)
        if mask.any():
            store.set_mask(ids[path], mask, user=USER, source="import")
            report.masks += 1
    if report.masks:
        store.lock_task("segmentation", user=USER)
