"""Imports: what hitl exports comes back unchanged into a fresh session; bad rows are reported."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hitl import catalog, demo
from hitl.export import export, safe_name
from hitl.importer import ImportSourceError, import_labels
from hitl.store import Store
from tests.test_export import REPO, make_classification, make_segmentation


def labels_by_name(store: Store) -> dict[str, str]:
    rows = store.label_rows()
    return dict(zip(rows["filename"], rows["label"]))


def masks_by_name(store: Store) -> dict[str, np.ndarray]:
    """file name -> mask as class names per pixel, so ids may differ between sessions."""
    names = {c.id: c.name for c in store.classes()}
    out = {}
    for image_id, path, _ in store.mask_rows():
        mask = store.mask(image_id)
        out[Path(path).name] = np.vectorize(lambda v: names.get(int(v), ""), otypes=[object])(mask)
    return out


@pytest.fixture
def fresh(tmp_path):
    store = Store(tmp_path / "fresh" / "hitl.duckdb")
    yield store
    store.close()


@pytest.mark.parametrize("fmt", ["csv", "imagefolder"])
def test_labels_come_back_from_csv_and_imagefolder(tmp_path, fresh, fmt):
    source, _ = make_classification(tmp_path)
    expected = labels_by_name(source)
    out = export(source, fmt, tmp_path / f"export.{fmt}", split=fmt == "imagefolder")
    source.close()
    report = import_labels(fresh, str(out))
    assert report.format == fmt and report.problems == []
    assert report.labels == report.images == fresh.counts()["labels"] == 10  # twin included
    got = labels_by_name(fresh)
    if fmt == "imagefolder":  # safe folder names come back; same-name files got an id prefix
        expected = {n: safe_name(label) for n, label in expected.items()}
        assert sorted(n for n in got if n.endswith("_demo_0000_circle.png")) == \
            ["10_demo_0000_circle.png", "1_demo_0000_circle.png"]
        got = {re.sub(r"^\d+_(?=demo_)", "", n): label for n, label in got.items()}
    assert got == expected
    assert {c.name for c in fresh.classes()} == set(expected.values())
    assert fresh.task() == "classification"
    users = fresh._cursor().execute('SELECT DISTINCT "user" FROM labels').fetchall()
    assert users == [("import",)]


def test_masks_come_back_bit_exact(tmp_path, fresh):
    source, _ = make_segmentation(tmp_path)
    expected = masks_by_name(source)
    out = export(source, "masks", tmp_path / "m")
    source.close()
    report = import_labels(fresh, str(out))
    assert report.problems == [] and report.masks == len(expected)
    assert report.classes_created == [c for c in reversed(demo.SEG_CLASSES)]
    got = masks_by_name(fresh)
    assert got.keys() == expected.keys()
    for name in expected:
        assert (got[name] == expected[name]).all()
    assert fresh.task() == "segmentation"


def test_masks_with_labelmap_only_and_images_already_in_the_session(tmp_path, fresh):
    source, _ = make_segmentation(tmp_path)
    source.rename_class(source.classes()[0].id, "sky: blue")  # a colon, as labelmap's separator
    expected = masks_by_name(source)
    out = export(source, "masks", tmp_path / "m")
    source.close()
    (out / "classes.json").unlink()
    shutil.rmtree(out / "images")
    catalog.register(fresh, [str(tmp_path / "demo" / "images")])
    before = fresh.image_count()
    report = import_labels(fresh, str(out))
    assert report.images == 0 and fresh.image_count() == before
    assert report.masks == len(expected)
    got = masks_by_name(fresh)
    for name in expected:
        assert (got[name] == expected[name]).all()


def test_bad_rows_are_reported_not_fatal(tmp_path, fresh):
    images = demo.generate(tmp_path / "demo", count=4)
    names = sorted(p.name for p in images.iterdir())
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label,extra\n"
                        f"demo/images/{names[0]},cat,x\n"          # relative to the CSV
                        f"{images / names[1]},Cat,y\n"              # absolute; case-insensitive
                        "demo/images/gone.png,dog,z\n"              # missing file
                        f"demo/images/{names[2]},,z\n")             # empty label
    report = import_labels(fresh, str(csv_path))
    assert report.labels == 2 and report.images == 2
    assert report.classes_created == ["cat"]
    assert len(report.problems) == 2
    assert any("gone.png" in p for p in report.problems)
    again = import_labels(fresh, str(csv_path))
    assert again.images == 0 and fresh.image_count() == 2


def test_unusable_sources_say_why(tmp_path, fresh):
    (tmp_path / "bad.csv").write_text("file,class\nx.png,a\n")
    with pytest.raises(ImportSourceError, match="'path' and 'label'"):
        import_labels(fresh, str(tmp_path / "bad.csv"))
    (tmp_path / "nomap" / "masks").mkdir(parents=True)
    with pytest.raises(ImportSourceError, match="classes.json"):
        import_labels(fresh, str(tmp_path / "nomap"))
    with pytest.raises(ImportSourceError, match="Nothing found"):
        import_labels(fresh, str(tmp_path / "nowhere"))


def test_mask_problems_skip_that_mask_only(tmp_path, fresh):
    source, _ = make_segmentation(tmp_path, count=3)
    out = export(source, "masks", tmp_path / "m")
    source.close()
    first, second = sorted((out / "masks").iterdir())[:2]
    Image.fromarray(np.full((5, 5), 0, np.uint8)).save(first)          # wrong size
    bad = np.array(Image.open(second))
    bad[0, 0] = 77                                                       # not a class index
    Image.fromarray(bad).save(second)
    report = import_labels(fresh, str(out))
    assert report.masks == 1 and len(report.problems) == 2


def test_task_mismatch_is_refused(tmp_path, fresh):
    source, _ = make_segmentation(tmp_path, count=2)
    out = export(source, "masks", tmp_path / "m")
    source.close()
    fresh.lock_task("classification")
    with pytest.raises(ImportSourceError, match="classification session"):
        import_labels(fresh, str(out))
    assert fresh.image_count() == 0


def test_cli_import(tmp_path):
    source, expected = make_classification(tmp_path)
    csv_path = export(source, "csv", tmp_path / "labels.csv")
    source.close()
    session = tmp_path / "new-session"
    result = subprocess.run([sys.executable, "-m", "hitl", "import", "--session", str(session),
                             str(csv_path)], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "10 label(s)" in result.stdout
    store = Store(session / "hitl.duckdb")
    try:
        assert store.counts()["labels"] == 10
    finally:
        store.close()
