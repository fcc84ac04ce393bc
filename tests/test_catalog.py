"""Finding and registering images: globs, duplicates, broken files, real data."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hitl import catalog
from hitl.imaging import ImageError, load_image
from hitl.store import Store
from tests.conftest import TEST_DATA


def make_png(path, size=(32, 24), colour=(200, 10, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def test_folders_globs_and_duplicates(tmp_path):
    make_png(tmp_path / "a" / "one.png")
    make_png(tmp_path / "a" / "sub" / "two.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    store = Store(tmp_path / "db.duckdb")
    report = catalog.register(store, [str(tmp_path / "a")])
    assert report.added == 2 and report.not_images == 1
    again = catalog.register(store, [str(tmp_path / "a" / "**" / "*.png"),
                                     str(tmp_path / "a" / "one.png")])
    assert again.added == 0 and again.known == 3  # the glob finds 2, the file 1
    assert store.image_count() == 2
    missing = catalog.register(store, [str(tmp_path / "nothing-here")])
    assert missing.missing == [str(tmp_path / "nothing-here")]
    row = store.image(1)
    assert (row.width, row.height, row.filename) == (32, 24, "one.png")
    store.close()


def test_broken_files_are_recorded_not_fatal(tmp_path):
    good = make_png(tmp_path / "good.png")
    fake = tmp_path / "fake.jpg"
    fake.write_text("this is text, not a JPEG")
    truncated = tmp_path / "truncated.png"
    data = (tmp_path / "good.png").read_bytes()
    big = tmp_path / "big.png"
    Image.new("L", (4000, 3000)).save(big)
    make_png(tmp_path / "full.png", size=(400, 300))
    truncated.write_bytes((tmp_path / "full.png").read_bytes()[:200])
    store = Store(tmp_path / "db.duckdb")
    report = catalog.register(store, [str(tmp_path)], max_pixels=10_000_000)
    assert report.added == 5
    errors = dict(report.unreadable)
    assert "not a readable image" in errors[str(fake)]
    assert "larger than 10,000,000 pixels" in errors[str(big)]
    assert str(good) not in errors
    # the truncated file has a valid header: it is caught when decoded, with a message
    row = next(r for r in store.images_by_ids(range(1, 6)) if r.filename == "truncated.png")
    assert row.readable
    try:
        load_image(row.path)
        raise AssertionError("a truncated image must not decode")
    except ImageError as exc:
        assert "truncated.png" in str(exc)
    assert len(store.unreadable_images()) == 2
    del data
    store.close()


def test_exif_rotation_gives_displayed_size(tmp_path):
    img = Image.new("RGB", (60, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    img.save(tmp_path / "rot.jpg", exif=exif)
    store = Store(tmp_path / "db.duckdb")
    catalog.register(store, [str(tmp_path / "rot.jpg")])
    row = store.image(1)
    assert (row.width, row.height) == (20, 60)
    assert load_image(row.path).size == (20, 60)
    store.close()


def test_real_hymenoptera_images(tmp_path):
    store = Store(tmp_path / "db.duckdb")
    report = catalog.register(store, [str(TEST_DATA / "hymenoptera")])
    assert report.added == 10 and not report.unreadable
    ids = store.readable_image_ids()
    splits = {store.image(int(i)).split for i in ids}
    assert splits <= {"train", "val"}  # by a hash of the id; 10 ids may all be train
    img = load_image(store.image(int(ids[0])).path)
    assert img.mode == "RGB" and min(img.size) > 50
    store.close()


def test_membrane_grayscale_decodes_to_rgb(tmp_path):
    store = Store(tmp_path / "db.duckdb")
    catalog.register(store, [str(TEST_DATA / "membrane" / "images")])
    row = store.image(1)
    img = load_image(row.path)
    assert (row.width, row.height) == (512, 512) and img.mode == "RGB"
    assert np.asarray(img).shape == (512, 512, 3)
    store.close()


def test_a_fifo_in_the_folder_is_skipped_not_read(tmp_path, caplog):
    """A FIFO named like an image would block the header read forever."""
    import os
    import threading
    make_png(tmp_path / "imgs" / "good.png")
    os.mkfifo(tmp_path / "imgs" / "x.jpg")
    store = Store(tmp_path / "db.duckdb")
    reports = []
    worker = threading.Thread(target=lambda: reports.append(
        catalog.register(store, [str(tmp_path / "imgs")])), daemon=True)
    worker.start()
    worker.join(60)
    assert reports, "registration hung on the FIFO"
    assert reports[0].added == 1 and reports[0].not_images == 1
    assert "x.jpg: not a regular file" in caplog.text
    store.close()


def test_unreadable_notes_name_the_file_not_the_server_folders(tmp_path):
    (tmp_path / "deep" / "dir").mkdir(parents=True)
    fake = tmp_path / "deep" / "dir" / "fake.jpg"
    fake.write_text("not a JPEG")
    store = Store(tmp_path / "db.duckdb")
    report = catalog.register(store, [str(tmp_path / "deep")])
    (_, error), = report.unreadable
    assert "fake.jpg" in error and str(tmp_path) not in error
    with pytest.raises(ImageError) as exc:
        load_image(fake)
    assert str(tmp_path) not in str(exc.value)
    store.close()
