"""Predicted masks come from what a learner published, never from work on the asking thread."""
from __future__ import annotations

import numpy as np

from hitl import demo
from hitl.learners.published import HeadMasks, StoredMasks
from hitl.ml import heads
from hitl.ml.features import FeatureCache
from hitl.tasks import get_task


def _head(grid: np.ndarray) -> heads.SegHead:
    h, w, _ = grid.shape
    targets = np.zeros((h * w, 2), np.float32)
    targets[: h * w // 2, 0] = 1
    targets[h * w // 2:, 1] = 1
    return heads.train_seg_head([grid], [targets], [np.ones(h * w, np.float32)], 2, steps=20)


def test_head_masks_answer_from_the_cache_and_remember_what_was_missing(tmp_path):
    rng = np.random.default_rng(0)
    grid = rng.normal(size=(4, 6, 8)).astype(np.float16)
    cache = FeatureCache(tmp_path, "key")
    masks = HeadMasks(3, [10, 20], _head(grid), cache)
    assert masks.mask(1, (40, 60)) is None  # no features yet: no extraction, just a note
    assert masks.mask(1, (40, 60)) is None
    assert masks.take_wanted() == [1] and masks.take_wanted() == []
    cache.put_patches(1, grid)
    mask, version = masks.mask(1, (40, 60))
    assert version == 3 and mask.shape == (40, 60) and set(np.unique(mask)) <= {1, 2}
    nxt = HeadMasks(4, [10, 20], masks.head, cache, wanted=[7])
    assert nxt.take_wanted() == [7]  # a new version keeps the open requests


def test_stored_masks_resize_to_the_asked_size_and_keep_older_versions():
    masks = StoredMasks(1, [10, 20])
    small = np.array([[1, 2], [2, 1]], np.uint8)
    masks.add(5, small, 1)
    masks.version = 2
    mask, version = masks.mask(5, (4, 4))
    assert version == 1
    np.testing.assert_array_equal(mask, np.kron(small, np.ones((2, 2), np.uint8)))
    assert masks.mask(6, (4, 4)) is None and masks.take_wanted() == [6]
    for image_id in range(StoredMasks.LIMIT + 1):
        masks.add(100 + image_id, small, 2)
    assert masks.mask(5, (2, 2)) is None  # the oldest went first


def test_a_segmentation_learner_needs_only_its_two_callbacks(session_factory):
    """No trainer: status goes to `report`, masks to `publish`, and a mask asked for before it
    was computed is computed on the learner's next step. (Fine-tune mode's learner takes the
    same path in test_finetune_mode.py, through the trainer.)"""
    session = session_factory(task="segmentation", train=False, demo_count=12)
    store, folder = session.store, session.settings.demo_dir
    rows = store.images_by_ids(store.readable_image_ids())
    for row in rows[:4]:
        store.set_mask_positions(row.id, demo.ground_truth_mask(folder, row.filename), "ann")
    reports, published = [], {}
    learner = get_task("segmentation").learner("frozen")(
        session.settings, store, lambda **f: reports.append(f), published.update)
    changed = True
    while learner.step(changed) or learner.version is None:
        changed = False
    masks = published["masks"]
    assert masks.version == learner.version
    assert masks.class_ids == [c.id for c in store.classes()]
    assert any(r.get("model_version") == learner.version for r in reports)
    labeled = rows[0]  # not a candidate: nothing predicted it yet, so the first ask misses
    if masks.mask(labeled.id, (labeled.height, labeled.width)) is None:
        learner.step(False)
    mask, version = masks.mask(labeled.id, (labeled.height, labeled.width))
    assert mask.shape == (labeled.height, labeled.width) and version == learner.version
    assert 1 <= mask.min() and mask.max() <= len(masks.class_ids)
