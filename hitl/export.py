"""Labels, masks and models out of a session, in formats other tools read directly.

Every output appears whole or not at all: a file is written under a temporary name in its
own folder and renamed into place, a folder is built beside its final name and renamed at
the end. A crash, a full disk or a missing source image leaves the previous export (or
nothing) under the final name, never half a dataset that looks complete.
"""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import shutil
import tempfile
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hitl import imaging
from hitl.atomic import atomic_file
from hitl.export_leftovers import marker_text, remove_stale_siblings
from hitl.store import SESSION_TABLES, ClassRow, Store
from hitl.tasks import get_task

FORMATS = ("csv", "imagefolder", "parquet", "json", "masks", "coco", "model")
FOLDER_FORMATS = {"imagefolder", "masks"}
DEFAULT_NAMES = {"csv": "labels.csv", "parquet": "labels.parquet", "json": "session.json",
                 "coco": "coco.json", "model": "model.pt", "imagefolder": "imagefolder",
                 "masks": "masks"}
MARKER = ".hitl-export"  # marks a folder as ours, so a re-export may replace it


class ExportError(RuntimeError):
    """An export that cannot be made, with a message for the person who asked for it."""


# ---- atomic outputs -------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`, renamed to `path` if the block succeeds.

    An existing `path` is replaced only when it is empty or an earlier export (it holds our
    marker file): a mistyped --out must never delete someone's folder.
    """
    path = Path(path)
    if path.exists() and not (path.is_dir() and (not any(path.iterdir())
                                                 or (path / MARKER).is_file())):
        raise ExportError(f"{path} exists and is not an earlier hitl export: "
                          "choose a new folder or remove it first.")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(path, MARKER)  # what an export killed midway left here
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        (tmp / MARKER).write_text(marker_text())  # names this process, for the cleanup
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- names --------------------------------------------------------------------------------

_FORBIDDEN = set('<>:"/\\|?*')
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                     *(f"lpt{i}" for i in range(1, 10))}


def safe_name(name: str) -> str:
    """A class name as a folder name on any OS: Unicode kept, separators and `..` defused."""
    name = unicodedata.normalize("NFC", name)
    clean = "".join("_" if ch in _FORBIDDEN or ord(ch) < 32 or ord(ch) == 127 else ch
                    for ch in name).strip().rstrip(". ")
    if not clean or set(clean) <= {"."} or clean.lower().split(".")[0] in _WINDOWS_RESERVED:
        clean = "_" + clean
    return clean


def class_folders(classes: Iterable[ClassRow]) -> dict[str, str]:
    """Class name -> distinct safe folder name (a suffix separates names that clean alike)."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for c in classes:
        folder = safe_name(c.name)
        if folder.lower() in taken:
            folder = f"{folder}_{c.id}"
        taken.add(folder.lower())
        folders[c.name] = folder
    return folders


def unique_names(items: Iterable[tuple[int, str]]) -> dict[int, str]:
    """image id -> file name, prefixed with the id where names would collide in one folder.

    Compared ignoring case, so the export also survives a case-insensitive file system.
    """
    items = list(items)
    counts = Counter(name.lower() for _, name in items)
    return {image_id: f"{image_id}_{name}" if counts[name.lower()] > 1 else name
            for image_id, name in items}


# ---- formats ------------------------------------------------------------------------------

def export(store: Store, fmt: str, out: Path, *, split: bool = False, symlink: bool = False,
           model_state: dict | None = None) -> Path:
    """Write the session's labels, masks or model as `fmt` at `out`; returns the path written.

    For a file format, an existing folder `out` receives the file under its default name.
    """
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    task = store.task()
    if task is not None and fmt not in get_task(task).exports:
        raise ExportError(f"A {task} session exports as {', '.join(get_task(task).exports)}; "
                          f"{fmt!r} holds no {task} labels.")
    out = Path(out)
    if fmt not in FOLDER_FORMATS and out.is_dir():
        out = out / DEFAULT_NAMES[fmt]
    if fmt in ("csv", "parquet"):
        with atomic_file(out) as tmp:
            store.copy_labels(tmp, fmt)
    elif fmt == "json":
        write_json(out, session_document(store))
    elif fmt == "imagefolder":
        write_imagefolder(store, out, split=split, symlink=symlink)
    elif fmt == "masks":
        write_masks(out, store.classes(), _mask_items(store), symlink=symlink)
    elif fmt == "coco":
        write_coco(out, store.classes(), _mask_items(store))
    elif fmt == "model":
        if model_state is None:
            raise ExportError("There is no trained model yet: label a few images and let the "
                              "trainer publish one, then export again.")
        from hitl.model_file import save_model
        save_model(out, model_state)
    return out


def export_archive(store: Store, fmt: str, workdir: Path, *, split: bool = False,
                   model_state: dict | None = None) -> Path:
    """One downloadable file for the page: the file itself, or a .zip of a folder format."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    name = DEFAULT_NAMES.get(fmt, fmt)
    if fmt not in FOLDER_FORMATS:
        return export(store, fmt, workdir / name, split=split, model_state=model_state)
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        folder = export(store, fmt, Path(scratch) / name, split=split)
        archive = workdir / f"{name}.zip"
        with atomic_file(archive) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for file in sorted(folder.rglob("*")):
                    if file.is_file() and file.name != MARKER:
                        zf.write(file, Path(name) / file.relative_to(folder))
    return archive


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def session_document(store: Store) -> dict[str, Any]:
    """Every table as a list of records; mask PNGs as base64, JSON columns decoded."""
    doc: dict[str, Any] = {"format": "hitl-session", "schema_version": store.schema_version(),
                           "exported_at": dt.datetime.now().isoformat()}
    for name in SESSION_TABLES:
        columns, rows = store.table_rows(name)
        records = [dict(zip(columns, row)) for row in rows]
        for record in records:
            for key in ("detail", "metrics"):
                if isinstance(record.get(key), str):
                    with contextlib.suppress(ValueError):
                        record[key] = json.loads(record[key])
        doc[name] = records
    return doc


def write_json(out: Path, document: dict[str, Any]) -> None:
    with atomic_file(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(document, fh, default=_json_default, ensure_ascii=False)


def _place(src: str, dest: Path, symlink: bool) -> None:
    try:
        if symlink:
            os.symlink(os.path.abspath(src), dest)
        else:
            shutil.copy2(src, dest)
    except FileNotFoundError as exc:
        raise ExportError(f"The image {src} is missing, so the export stopped (nothing was "
                          "written). Restore the file or remove its label, then export again.") \
            from exc


def write_imagefolder(store: Store, out: Path, *, split: bool = False,
                      symlink: bool = False) -> None:
    """out/<class>/<file> (or out/<split>/<class>/<file>): what torchvision's ImageFolder reads."""
    rows = store.label_rows()
    folders = class_folders(store.classes())
    rows["folder"] = [str(Path(s) / folders[label]) if split else folders[label]
                      for s, label in zip(rows["split"], rows["label"])]
    with atomic_folder(out) as tmp:
        for folder, group in rows.groupby("folder", sort=True):
            (tmp / folder).mkdir(parents=True)
            names = unique_names(zip(group["image_id"].tolist(), group["filename"].tolist()))
            for image_id, src in zip(group["image_id"].tolist(), group["path"].tolist()):
                _place(src, tmp / folder / names[image_id], symlink)


MaskItem = tuple[int, str, np.ndarray]  # (image id, image path, stored mask values)


def _mask_items(store: Store) -> Iterator[MaskItem]:
    for image_id, path, png in store.mask_rows():
        yield image_id, path, imaging.png_to_mask(png)


def _colour_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def labelmap_text(classes: list[ClassRow]) -> str:
    """Pascal VOC / CVAT labelmap.txt: one `name:r,g,b::` line per class, in index order."""
    lines = ["# label:color_rgb:parts:actions"]
    lines += [f"{c.name}:{','.join(map(str, _colour_rgb(c.colour)))}::" for c in classes]
    return "\n".join(lines) + "\n"


def write_masks(out: Path, classes: list[ClassRow], items: Iterable[MaskItem], *,
                symlink: bool = False) -> None:
    """masks/ (index PNGs), masks_palette/ (for viewing), images/, labelmap.txt, classes.json."""
    to_index = imaging.MaskValues.of(classes).to_index
    palette = [0] * 768
    for index, c in enumerate(classes):
        palette[3 * index:3 * index + 3] = _colour_rgb(c.colour)
    with atomic_folder(out) as tmp:
        for sub in ("masks", "masks_palette", "images"):
            (tmp / sub).mkdir()
        (tmp / "labelmap.txt").write_text(labelmap_text(classes), encoding="utf-8")
        (tmp / "classes.json").write_text(json.dumps(
            [{"index": i, "name": c.name, "colour": c.colour} for i, c in enumerate(classes)],
            ensure_ascii=False, indent=1), encoding="utf-8")
        stems: Counter[str] = Counter()
        for image_id, path, mask in items:
            stem = Path(path).stem
            if stems[stem.lower()]:
                stem = f"{image_id}_{stem}"
            stems[stem.lower()] += 1
            index = to_index(mask)
            Image.fromarray(index, mode="L").save(tmp / "masks" / f"{stem}.png")
            shown = Image.fromarray(index, mode="P")
            shown.putpalette(palette)
            shown.save(tmp / "masks_palette" / f"{stem}.png")
            _place(path, tmp / "images" / f"{stem}{Path(path).suffix}", symlink)


def coco_document(classes: list[ClassRow], items: Iterable[MaskItem]) -> dict[str, Any]:
    """COCO instances JSON: one RLE annotation per (image, class present); category = index + 1."""
    from pycocotools import mask as mask_util

    doc: dict[str, Any] = {
        "info": {"description": "exported by hitl",
                 "date_created": dt.datetime.now().isoformat()},
        "images": [], "annotations": [],
        "categories": [{"id": i + 1, "name": c.name, "supercategory": "", "color": c.colour}
                       for i, c in enumerate(classes)],
    }
    to_index = imaging.MaskValues.of(classes).to_index
    for image_id, path, mask in items:
        height, width = mask.shape
        doc["images"].append({"id": int(image_id), "file_name": os.path.basename(path),
                              "width": int(width), "height": int(height)})
        index = to_index(mask)
        for k in np.unique(index):
            if k == imaging.UNLABELED_INDEX:
                continue
            rle = mask_util.encode(np.asfortranarray(index == k, dtype=np.uint8))
            doc["annotations"].append({
                "id": len(doc["annotations"]) + 1, "image_id": int(image_id),
                "category_id": int(k) + 1, "iscrowd": 0,
                "segmentation": {"size": [int(height), int(width)],
                                 "counts": rle["counts"].decode("ascii")},
                "area": float(mask_util.area(rle)),
                "bbox": [float(v) for v in mask_util.toBbox(rle)],
            })
    return doc


def write_coco(out: Path, classes: list[ClassRow], items: Iterable[MaskItem]) -> None:
    """The COCO file, written atomically; the document is built first, so a failure writes
    nothing."""
    write_json(out, coco_document(classes, items))
