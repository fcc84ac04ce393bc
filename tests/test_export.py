"""Exports: each format read back by the tool that consumes it, and no half-written output."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hitl import catalog, demo
from hitl.export import (
    MARKER,
    ExportError,
    atomic_file,
    export,
    export_archive,
    safe_name,
    write_coco,
)
from hitl.store import Store

REPO = Path(__file__).resolve().parent.parent
CLS_NAMES = ["circle", "square", "triangle", "a/b", "..", "Café ☕"]


def make_classification(tmp: Path, count: int = 9) -> tuple[Store, dict[str, str]]:
    """A session with every demo image labeled (odd classes included) plus a same-name twin.

    Returns the store and file name -> expected label for the demo images.
    """
    images = demo.generate(tmp / "demo", count=count)
    twin = tmp / "other"
    twin.mkdir()
    shutil.copy(images / "demo_0000_circle.png", twin / "demo_0000_circle.png")
    store = Store(tmp / "session" / "hitl.duckdb")
    catalog.register(store, [str(images), str(twin)])
    store.lock_task("classification")
    classes = {n: store.add_class(n).id for n in CLS_NAMES}
    truth = demo.ground_truth(tmp / "demo")
    odd = {3: "a/b", 4: "..", 5: "Café ☕"}
    expected = {}
    for row in store.images_by_ids(store.readable_image_ids()):
        if row.path.startswith(str(twin)):
            store.set_labels([row.id], [classes["circle"]], user="bob")  # an import
            continue
        label = odd.get(int(row.filename[5:9]), truth[row.filename])
        store.set_label(row.id, classes[label], user="ann")
        expected[row.filename] = label
    return store, expected


def make_segmentation(tmp: Path, count: int = 6) -> tuple[Store, dict[str, np.ndarray]]:
    """A session with demo masks (partly unlabeled), classes reordered so index != id - 1."""
    images = demo.generate(tmp / "demo", count=count)
    store = Store(tmp / "session" / "hitl.duckdb")
    catalog.register(store, [str(images)])
    store.lock_task("segmentation")
    rows = [store.add_class(n) for n in demo.SEG_CLASSES]
    store.reorder_classes([c.id for c in rows][::-1])
    lut = np.zeros(256, np.uint8)  # ground-truth value k (k-th SEG_CLASS) -> stored value
    lut[1:len(rows) + 1] = [c.mask_value for c in rows]
    masks = {}
    for row in store.images_by_ids(store.readable_image_ids()):
        mask = lut[demo.ground_truth_mask(tmp / "demo", row.filename)]
        mask[:10, :] = 0  # a strip left unlabeled
        store.set_mask(row.id, mask)
        masks[row.filename] = mask
    return store, masks


@pytest.fixture
def cls_store(tmp_path):
    store, expected = make_classification(tmp_path)
    yield store, expected
    store.close()


@pytest.fixture
def seg_store(tmp_path):
    store, masks = make_segmentation(tmp_path)
    yield store, masks
    store.close()


def test_csv_and_parquet_have_the_label_columns(cls_store, tmp_path):
    store, expected = cls_store
    csv_path = export(store, "csv", tmp_path / "out" / "labels.csv")
    parquet_path = export(store, "parquet", tmp_path / "out")  # a folder: default name
    assert parquet_path == tmp_path / "out" / "labels.parquet"
    frame = pd.read_csv(csv_path)
    assert list(frame.columns) == ["image_id", "path", "label", "user", "timestamp", "source"]
    assert len(frame) == len(expected) + 1
    by_name = {Path(p).name: label for p, label in zip(frame["path"], frame["label"])
               if "other" not in p}
    assert by_name == expected
    assert set(frame["user"]) == {"ann", "bob"}
    # how each label was made: a key press or click, a review page, an import
    assert dict(zip(frame["user"], frame["source"])) == {"ann": "click", "bob": "import"}
    for stamp in frame["timestamp"]:
        assert "T" in stamp and datetime.fromisoformat(stamp)
    parquet = duckdb.sql(f"SELECT * FROM '{parquet_path}' ORDER BY image_id").df()
    assert list(parquet.columns) == list(frame.columns)
    assert parquet["label"].tolist() == frame["label"].tolist()
    assert parquet["path"].tolist() == frame["path"].tolist()
    assert parquet["source"].tolist() == frame["source"].tolist()


def test_imagefolder_loads_in_torchvision_and_keeps_every_file(cls_store, tmp_path):
    from torchvision.datasets import ImageFolder

    store, expected = cls_store
    out = export(store, "imagefolder", tmp_path / "ds")
    dataset = ImageFolder(str(out))
    assert sorted(dataset.classes) == sorted(safe_name(n) for n in CLS_NAMES)
    assert len(dataset) == len(expected) + 1
    for path, target in dataset.samples:
        assert Path(path).resolve().is_relative_to(out.resolve())
    circles = sorted(p.name for p in (out / "circle").iterdir())
    assert len([n for n in circles if n.endswith("demo_0000_circle.png")]) == 2  # no overwrite
    img, _ = dataset[0]
    assert img.size == demo.SIZE
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_imagefolder_split_follows_the_store_and_symlinks(cls_store, tmp_path):
    store, expected = cls_store
    out = export(store, "imagefolder", tmp_path / "ds", split=True, symlink=True)
    found = {}
    for file in out.rglob("*.png"):
        split = file.relative_to(out).parts[0]
        assert file.is_symlink()
        found[file.resolve()] = split
    assert len(found) == len(expected) + 1
    for row in store.images_by_ids(store.readable_image_ids()):
        assert found[Path(row.path).resolve()] == row.split


def test_safe_name_cannot_escape():
    for name in ["..", ".", "a/b", "a\\b", "/", "con", " x. "]:
        clean = safe_name(name)
        assert clean not in ("", ".", "..") and "/" not in clean and "\\" not in clean
    assert safe_name("Café ☕") == "Café ☕"


def test_masks_are_class_indices_with_palette_and_labelmap(seg_store, tmp_path):
    store, masks = seg_store
    out = export(store, "masks", tmp_path / "m")
    classes = store.classes()
    index_of = {c.mask_value: i for i, c in enumerate(classes)}
    for name, mask in masks.items():
        stem = Path(name).stem
        with Image.open(out / "masks" / f"{stem}.png") as img:
            assert img.mode == "L"
            index = np.array(img)
        expected = np.full(mask.shape, 255, np.uint8)
        for value, i in index_of.items():
            expected[mask == value] = i
        np.testing.assert_array_equal(index, expected)
        with Image.open(out / "masks_palette" / f"{stem}.png") as shown:
            assert shown.mode == "P"
            np.testing.assert_array_equal(np.array(shown), expected)
            rgb = np.array(shown.convert("RGB"))
        first = classes[int(expected[-1, -1])] if expected[-1, -1] != 255 else None
        if first is not None:
            assert "#%02x%02x%02x" % tuple(rgb[-1, -1]) == first.colour
        assert (out / "images" / name).is_file()
    entries = json.loads((out / "classes.json").read_text())
    assert [e["name"] for e in entries] == [c.name for c in classes]
    assert [e["index"] for e in entries] == list(range(len(classes)))
    lines = (out / "labelmap.txt").read_text().splitlines()
    assert lines[0] == "# label:color_rgb:parts:actions"
    assert lines[1].startswith(f"{classes[0].name}:") and lines[1].endswith("::")


def test_coco_decodes_to_the_stored_masks(seg_store, tmp_path):
    from pycocotools.coco import COCO

    store, masks = seg_store
    path = export(store, "coco", tmp_path / "coco.json")
    coco = COCO(str(path))
    classes = store.classes()
    assert [coco.cats[i + 1]["name"] for i in range(len(classes))] == [c.name for c in classes]
    assert len(coco.imgs) == len(masks)
    for image_id, info in coco.imgs.items():
        stored = store.mask(image_id)
        assert (info["height"], info["width"]) == stored.shape
        rebuilt = np.zeros_like(stored)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
            value = classes[ann["category_id"] - 1].mask_value
            rebuilt[coco.annToMask(ann) > 0] = value
            assert ann["area"] == int((stored == value).sum())
        np.testing.assert_array_equal(rebuilt, stored)


def test_json_holds_the_whole_session(cls_store, tmp_path):
    store, expected = cls_store
    doc = json.loads(export(store, "json", tmp_path / "s.json").read_text())
    assert len(doc["images"]) == len(expected) + 1
    assert [c["name"] for c in doc["classes"]] == CLS_NAMES
    assert len(doc["labels"]) == len(expected) + 1
    assert all(isinstance(r["image_id"], int) for r in doc["labels"])
    assert {e["action"] for e in doc["events"]} >= {"label", "class_add", "task"}
    for key in ("skips", "predictions", "models", "masks"):
        assert doc[key] == []


def test_model_without_a_trained_model_says_so(cls_store, tmp_path):
    store, _ = cls_store
    with pytest.raises(ExportError, match="no trained model"):
        export(store, "model", tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()


def test_missing_image_stops_the_export_and_leaves_nothing(cls_store, tmp_path):
    store, _ = cls_store
    victim = store.images_by_ids(store.readable_image_ids())[-1]
    os.remove(victim.path)
    with pytest.raises(ExportError, match="missing"):
        export(store, "imagefolder", tmp_path / "ds")
    assert list(tmp_path.glob("*ds*")) == []


def test_a_failing_writer_leaves_no_file(seg_store, tmp_path):
    store, _ = seg_store
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "coco.json"
    out.write_text("previous export")

    def items():
        for image_id, path, png in store.mask_rows():
            yield image_id, path, store.mask(image_id)
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_coco(out, store.classes(), items())
    assert out.read_text() == "previous export"
    with pytest.raises(RuntimeError):
        with atomic_file(folder / "new.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    assert sorted(p.name for p in folder.iterdir()) == ["coco.json"]


def test_folder_export_replaces_its_own_output_only(seg_store, tmp_path):
    store, _ = seg_store
    out = export(store, "masks", tmp_path / "m")
    assert (out / MARKER).is_file()
    (out / "stale.txt").write_text("x")
    export(store, "masks", out)
    assert not (out / "stale.txt").exists()
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(ExportError, match="not an earlier hitl export"):
        export(store, "masks", precious)
    assert (precious / "thesis.tex").read_text() == "keep me"


def test_archive_is_one_file(seg_store, tmp_path):
    store, masks = seg_store
    archive = export_archive(store, "masks", tmp_path / "downloads")
    assert archive.suffix == ".zip"
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    assert "masks/classes.json" in names
    assert len([n for n in names if n.startswith("masks/masks/")]) == len(masks)
    assert sorted(p.name for p in archive.parent.iterdir()) == ["masks.zip"]
    json_file = export_archive(store, "json", tmp_path / "downloads")
    assert json_file.name == "session.json"


def test_a_format_the_task_does_not_offer_is_refused(seg_store, tmp_path):
    seg, _ = seg_store
    with pytest.raises(ExportError, match="segmentation session exports as masks, coco"):
        export(seg, "csv", tmp_path / "labels.csv")
    (tmp_path / "c").mkdir()
    cls, _ = make_classification(tmp_path / "c")
    with pytest.raises(ExportError, match="classification session"):
        export(cls, "masks", tmp_path / "m")
    cls.close()
    assert not (tmp_path / "labels.csv").exists() and not (tmp_path / "m").exists()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hitl", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_cli_export_and_the_locked_session_message(tmp_path):
    store, expected = make_classification(tmp_path)
    session = store.path.parent
    result = run_cli("export", "--session", str(session), "--format", "csv",
                     "--out", str(tmp_path / "x.csv"))
    assert result.returncode == 2
    assert "the session is open in a running app" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()
    store.close()
    result = run_cli("export", "--session", str(session), "--format", "csv",
                     "--out", str(tmp_path / "x.csv"))
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(tmp_path / "x.csv")) == len(expected) + 1
    result = run_cli("export", "--session", str(session), "--format", "model",
                     "--out", str(tmp_path / "m.pt"))
    assert result.returncode == 2 and "no trained model" in result.stderr


def test_cli_adduser_and_unknown_command(tmp_path):
    auth_file = tmp_path / "users.txt"
    result = subprocess.run([sys.executable, "-m", "hitl", "adduser", "--auth-file",
                             str(auth_file), "--password-stdin", "alice"], cwd=REPO,
                            input="pw\n", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert auth_file.read_text().startswith("alice:scrypt$")
    assert run_cli("frobnicate").returncode == 2
