"""Bounded mask values: 1..254 per class, reused after removal, one table for every reader."""
from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest
from PIL import Image

from hitl import catalog, demo, imaging
from hitl.export import export
from hitl.store import MIGRATIONS, Store, StoreError


@pytest.fixture
def seg(tmp_path):
    images = demo.generate(tmp_path / "demo", count=2)
    store = Store(tmp_path / "session" / "hitl.duckdb")
    catalog.register(store, [str(images)])
    store.lock_task("segmentation")
    yield store
    store.close()


def test_300_add_remove_cycles_then_label_and_export(seg, tmp_path):
    h, w = demo.SIZE[1], demo.SIZE[0]
    keeper = seg.add_class("keeper")
    for cycle in range(300):
        cls = seg.add_class(f"temporary {cycle}")
        assert 1 <= cls.mask_value <= imaging.MAX_MASK_VALUE
        assert cls.id > 254 or cycle < 253  # ids keep growing; values do not
        positions = np.zeros((h, w), np.uint8)
        positions[:, : w // 2] = 2  # the temporary class (position 2)
        positions[:, w // 2:] = 1
        seg.set_mask_positions(1, positions, "ann")
        seg.remove_class(cls.id)
    assert cls.id > 300 and cls.mask_value == 2  # the same value came back every cycle
    assert [c.name for c in seg.classes()] == ["keeper"]
    np.testing.assert_array_equal(seg.mask_positions(1)[:, w // 2:], 1)
    assert (seg.mask_positions(1)[:, : w // 2] == 0).all()  # the removed pixels are gone

    cell = seg.add_class("cell")
    positions = np.zeros((h, w), np.uint8)
    positions[: h // 2] = 2
    positions[h // 2:, :10] = 1
    for image_id in (1, 2):
        seg.set_mask_positions(image_id, positions, "ann")
        np.testing.assert_array_equal(seg.mask_positions(image_id), positions)
    seg.reorder_classes([cell.id, keeper.id])  # no mask is rewritten, positions follow
    np.testing.assert_array_equal(seg.mask_positions(1), np.choose(positions, [0, 2, 1]))

    out = export(seg, "masks", tmp_path / "masks")
    assert [e["name"] for e in json.loads((out / "classes.json").read_text())] == \
        ["cell", "keeper"]
    for file in sorted((out / "masks").glob("*.png")):
        index = np.array(Image.open(file))
        np.testing.assert_array_equal(index, np.choose(positions, [255, 1, 0]))

    from pycocotools.coco import COCO
    coco = COCO(str(export(seg, "coco", tmp_path / "coco.json")))
    for image_id in (1, 2):
        rebuilt = np.zeros((h, w), np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
            rebuilt[coco.annToMask(ann) > 0] = ann["category_id"]
        np.testing.assert_array_equal(rebuilt, np.choose(positions, [0, 2, 1]))


def test_a_reused_value_never_revives_an_undone_mask(seg):
    h, w = demo.SIZE[1], demo.SIZE[0]
    a = seg.add_class("a")
    old = seg.add_class("old")
    seg.set_mask_positions(1, np.full((h, w), 2, np.uint8), "ann")   # all "old"
    seg.set_mask_positions(1, np.full((h, w), 1, np.uint8), "ann")   # then all "a"
    seg.remove_class(old.id)
    new = seg.add_class("new")
    assert new.mask_value == old.mask_value
    assert seg.undo("ann") == 1  # back to the first mask, whose pixels were "old"
    assert seg.mask(1) is None  # cleared with its class, not painted as "new"
    assert a.mask_value != new.mask_value


def test_positions_past_the_classes_are_refused(seg):
    seg.add_class("a")
    with pytest.raises(StoreError, match="only 1 classes"):
        seg.set_mask_positions(1, np.full((4, 4), 2, np.uint8))
    assert seg.mask(1) is None


def test_migration_gives_each_class_a_value_and_clears_dead_pixels(tmp_path):
    """A schema-2 session: masks hold class ids; class 2 was removed but an undo brought its
    pixels back; class 300 has an id past 8 bits."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER)")
    for number, step in enumerate(MIGRATIONS[:2], start=1):
        con.execute(step)
        con.execute("INSERT INTO schema_version VALUES (?)", [number])
    con.execute("INSERT INTO images (path, filename, width, height, readable, split) "
                "VALUES ('/a.png', 'a.png', 4, 2, true, 'train')")
    for class_id, name in ((1, "one"), (3, "three"), (300, "big")):
        con.execute("INSERT INTO classes VALUES (?, ?, '#ff0000', ?)", [class_id, name, class_id])
    old = np.array([[1, 2, 3, 0], [1, 1, 2, 3]], np.uint8)
    con.execute("INSERT INTO masks VALUES (1, ?, 'ann', now(), 6)", [imaging.mask_to_png(old)])
    con.execute("INSERT INTO events (\"at\", \"user\", action, image_id, prev_png) "
                "VALUES (now(), 'ann', 'mask', 1, ?)", [imaging.mask_to_png(old)])
    con.close()

    store = Store(path)
    try:
        values = {c.name: c.mask_value for c in store.classes()}
        assert values == {"one": 1, "three": 3, "big": 2}
        np.testing.assert_array_equal(store.mask(1), [[1, 0, 3, 0], [1, 1, 0, 3]])
        np.testing.assert_array_equal(store.mask_positions(1), [[1, 0, 2, 0], [1, 1, 0, 2]])
        assert store.undo("ann") == 1  # the undo copy was cleared of the dead pixels too
        assert store.mask(1) is not None and 2 not in store.mask(1)
    finally:
        store.close()


def test_mask_values_table_round_trips():
    table = imaging.MaskValues((7, 2, 254))
    positions = np.array([[0, 1, 2, 3]], np.uint8)
    values = table.from_positions(positions)
    np.testing.assert_array_equal(values, [[0, 7, 2, 254]])
    np.testing.assert_array_equal(table.to_positions(values), positions)
    np.testing.assert_array_equal(table.to_index(values), [[255, 0, 1, 2]])
    np.testing.assert_array_equal(table.from_index(table.to_index(values)), values)
    np.testing.assert_array_equal(table.to_positions(np.array([[5]], np.uint8)), [[0]])
