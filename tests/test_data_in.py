"""Data in: a mask set without its class table is refused in one line before anything starts;
`--images` on a mask set leaves its masks out; repeated file names are told apart."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hitl import catalog

ROOT = Path(__file__).resolve().parents[1]


def mask_set(folder: Path) -> Path:
    """images/0.png, images/1.png and their masks/, with no classes.json or labelmap.txt."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / "images" / f"{i}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "masks" / f"{i}.png")
    return folder


def test_import_of_masks_without_a_class_table_is_one_line_and_exit_2(tmp_path):
    source = mask_set(tmp_path / "set")
    done = subprocess.run([sys.executable, "app.py", "--import", str(source), "--session",
                           str(tmp_path / "session"), "--no-train"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "classes.json" in lines[0] and "labelmap.txt" in lines[0] and str(source) in lines[0]
    assert not (tmp_path / "session").exists()  # refused before anything was made


def test_images_on_a_mask_set_leaves_the_masks_out(tmp_path):
    source = mask_set(tmp_path / "set")
    skipped: list[str] = []
    files, _, _ = catalog.find_files([str(source)], skipped)
    assert sorted(f.relative_to(source).as_posix() for f in files) == ["images/0.png",
                                                                       "images/1.png"]
    assert skipped == [str(source / "masks")]
    report = catalog.CatalogReport(added=2, mask_folders=skipped)
    assert "skipped" in report.summary() and "--import" in report.summary()


def test_titles_show_the_relative_path_where_names_repeat(tmp_path, session_factory):
    from hitl.ui.titles import Titles
    root = tmp_path / "photos"
    for folder, name in (("a", "0.png"), ("b", "0.png"), ("b", "unique.png")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / folder / name)
    session = session_factory(images=[str(root)], train=False)
    store = session.store
    titles = Titles(session)
    shown = {titles(r.id, r.filename) for r in store.images_by_ids(store.readable_image_ids())}
    assert shown == {"a/0.png", "b/0.png", "unique.png"}
