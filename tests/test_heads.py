"""Linear heads over cached features: learning, warm starts, stats, mask-to-grid mapping."""

import math

import numpy as np
import pytest

from hitl.ml.heads import (
    LinearHead,
    SegHead,
    mask_to_patch_targets,
    prediction_stats,
    train_linear_head,
    train_seg_head,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(n: int, k: int, c: int = 32, seed: int = 0, spread: float = 3.0):
    """Gaussian blobs: class centres far apart relative to the unit noise, plus a shared offset."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(size=(k, c)) * spread
    y = rng.integers(0, k, n)
    x = centres[y] + rng.normal(size=(n, c)) + 5.0  # offset: standardisation must handle it
    return x.astype(np.float16), y


# ---------------------------------------------------------------- classification


def test_linear_head_learns_separable_blobs():
    x, y = blobs(300, 3)
    xt, yt = blobs(1000, 3, seed=1)
    head = train_linear_head(x, y, 3)
    p = head.predict_proba(xt)
    assert p.shape == (1000, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert (p.argmax(1) == yt).mean() > 0.97


def test_linear_head_many_rows_minibatch_path():
    # more rows than one optimisation batch: exercises the shuffled-slices path
    x, y = blobs(10_000, 10, c=64)
    head = train_linear_head(x, y, 10)
    assert (head.predict_proba(x).argmax(1) == y).mean() > 0.97


def test_class_without_labels_gets_a_low_column():
    x, y = blobs(200, 3)
    head = train_linear_head(x, y, num_classes=5)  # classes 3 and 4 have no labels
    p = head.predict_proba(x)
    assert p.shape == (200, 5)
    assert p[:, 3:].max() < 0.05
    assert set(np.unique(p.argmax(1))) <= {0, 1, 2}


def test_rare_class_is_balanced():
    # 400 of class 0, 8 of class 1, overlapping a little: balancing keeps class 1 recall high
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (400, 8)), rng.normal(1.5, 1, (8, 8))]).astype(np.float32)
    y = np.array([0] * 400 + [1] * 8)
    head = train_linear_head(x, y, 2)
    test = rng.normal(1.5, 1, (500, 8)).astype(np.float32)
    assert (head.predict_proba(test).argmax(1) == 1).mean() > 0.8


def test_warm_start_keeps_predictions_exactly():
    x, y = blobs(200, 3)
    head = train_linear_head(x, y, 3)
    x2, y2 = blobs(300, 3, seed=5)  # new data -> new standardisation stats
    same = train_linear_head(x2, y2, 3, previous=head, steps=0)
    assert not np.allclose(same.mean, head.mean)
    np.testing.assert_allclose(same.predict_proba(x2), head.predict_proba(x2), atol=1e-5)
    # a few warm steps are enough to stay accurate
    warm = train_linear_head(x2, y2, 3, previous=head, steps=5)
    assert (warm.predict_proba(x2).argmax(1) == y2).mean() > 0.97


def test_warm_start_with_an_added_class_keeps_old_rows():
    x, y = blobs(200, 3)
    head = train_linear_head(x, y, 3)
    grown = train_linear_head(x, y, 4, previous=head, steps=0)
    assert grown.weight.shape[0] == 4
    old = head.predict_proba(x)
    new = grown.predict_proba(x)[:, :3]
    np.testing.assert_allclose(new / new.sum(1, keepdims=True), old, atol=1e-5)


def test_linear_head_state_round_trip():
    x, y = blobs(100, 3)
    head = train_linear_head(x, y, 3)
    state = head.state()
    assert set(state) == {"weight", "bias", "mean", "std"}
    again = LinearHead.from_state({k: np.array(v) for k, v in state.items()})
    np.testing.assert_array_equal(again.predict_proba(x), head.predict_proba(x))


def test_bad_labels_raise():
    x, y = blobs(10, 3)
    with pytest.raises(ValueError):
        train_linear_head(x, y, 2)


def test_prediction_stats_hand_made():
    probs = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0]], np.float32)
    pred, top1, margin, ent = prediction_stats(probs)
    assert pred[0] == 0 and pred[2] == 2
    np.testing.assert_allclose(top1, [0.7, 1 / 3, 1.0], atol=1e-6)
    np.testing.assert_allclose(margin, [0.5, 0.0, 1.0], atol=1e-6)
    expected0 = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    np.testing.assert_allclose(ent, [expected0, math.log(3), 0.0], atol=1e-5)


def test_prediction_stats_single_class():
    pred, top1, margin, ent = prediction_stats(np.ones((4, 1), np.float32))
    np.testing.assert_array_equal(pred, 0)
    np.testing.assert_allclose(top1, 1.0)
    np.testing.assert_allclose(margin, 1.0)
    np.testing.assert_allclose(ent, 0.0, atol=1e-6)


# ---------------------------------------------------------------- segmentation: mask -> grid


def test_mask_to_patch_targets_exact_fractions():
    mask = np.array([[1, 1, 1, 0], [1, 2, 0, 0], [0, 0, 2, 2], [0, 0, 2, 2]], np.uint8)
    t, w = mask_to_patch_targets(mask, (2, 2), 2)
    assert t.shape == (4, 2) and w.shape == (4,)
    np.testing.assert_allclose(w, [1.0, 0.25, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(t, [[0.75, 0.25], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], atol=1e-6)


def test_mask_to_patch_targets_size_not_a_multiple_of_the_grid():
    # 3x3 pixels onto 2x2 patches: each patch covers 1.5 x 1.5 pixels; the centre pixel
    # overlaps every patch by 0.5 x 0.5, i.e. 1/9 of its area
    mask = np.ones((3, 3), np.uint8)
    mask[1, 1] = 2
    t, w = mask_to_patch_targets(mask, (2, 2), 2)
    np.testing.assert_allclose(w, 1.0, atol=1e-6)
    np.testing.assert_allclose(t[:, 1], 1 / 9, atol=1e-6)
    # the last column unlabeled, onto a 1x2 grid: patch 1 spans columns [1.5, 3), a third labeled
    mask = np.ones((3, 3), np.uint8)
    mask[:, 2] = 0
    t, w = mask_to_patch_targets(mask, (1, 2), 1)
    np.testing.assert_allclose(w, [1.0, 1 / 3], atol=1e-6)
    np.testing.assert_allclose(t, [[1.0], [1.0]], atol=1e-6)


def test_mask_to_patch_targets_matches_block_means():
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, (64, 96)).astype(np.uint8)  # 0..3, K = 3
    t, w = mask_to_patch_targets(mask, (4, 6), 3)
    blocks = mask.reshape(4, 16, 6, 16).transpose(0, 2, 1, 3).reshape(24, 256)
    np.testing.assert_allclose(w, (blocks > 0).mean(1), atol=1e-5)
    for k in range(3):
        expected = (blocks == k + 1).sum(1) / (blocks > 0).sum(1)
        np.testing.assert_allclose(t[:, k], expected, atol=1e-5)


def test_mask_values_above_k_are_unlabeled():
    mask = np.full((4, 4), 3, np.uint8)
    mask[:2] = 1
    t, w = mask_to_patch_targets(mask, (2, 1), 2)
    np.testing.assert_allclose(w, [1.0, 0.0])


# ---------------------------------------------------------------- segmentation: heads


def half_and_half_grid(rng, h=8, w=8, c=16):
    """Left half of the grid has feature pattern A, right half pattern B, plus noise."""
    a, b = np.random.default_rng(7).normal(size=(2, c)) * 3
    grid = np.where(np.arange(w)[None, :, None] < w // 2, a, b) + rng.normal(size=(h, w, c)) * 0.3
    return grid.astype(np.float16)


def test_unlabeled_pixels_do_not_count_as_any_class():
    # Class 1 labeled on the left (features A); class 2 labeled on ONE column on the right
    # (features B); the other three right columns (also B) are unlabeled. Were unlabeled pixels
    # taken as class 1 ("background"), B would be mostly class 1 and the right side would be 1.
    rng = np.random.default_rng(0)
    grids, targets, weights = [], [], []
    for _ in range(4):
        grid = half_and_half_grid(rng)
        mask = np.zeros((64, 64), np.uint8)  # 8 pixels per patch
        mask[:, :32] = 1
        mask[:, 56:] = 2
        t, w = mask_to_patch_targets(mask, (8, 8), 2)
        assert (w.reshape(8, 8)[:, 4:7] == 0).all()
        grids.append(grid)
        targets.append(t)
        weights.append(w)
    head = train_seg_head(grids, targets, weights, 2)
    pred, _ = head.predict_mask(half_and_half_grid(rng), (64, 64))
    assert (pred[:, :24] == 1).all()
    assert (pred[:, 40:] == 2).all()


def class_grid(rng, labels, centres, noise=0.5):
    return (centres[labels] + rng.normal(size=(*labels.shape, centres.shape[1])) * noise).astype(
        np.float16
    )


def test_train_seg_head_learns_synthetic_grids():
    rng = np.random.default_rng(0)
    k, c = 4, 32
    centres = rng.normal(size=(k, c)) * 2
    grids, targets, weights = [], [], []
    for _ in range(20):
        labels = rng.integers(0, k, (16, 16))
        mask = np.kron(labels + 1, np.ones((4, 4), np.uint8)).astype(np.uint8)
        mask[rng.random(mask.shape) < 0.5] = 0  # half the pixels unlabeled
        t, w = mask_to_patch_targets(mask, (16, 16), k)
        grids.append(class_grid(rng, labels, centres))
        targets.append(t)
        weights.append(w)
    head = train_seg_head(grids, targets, weights, k)
    labels = rng.integers(0, k, (16, 16))
    logits = head.patch_logits(class_grid(rng, labels, centres))
    assert logits.shape == (16, 16, k)
    assert (logits.argmax(-1) == labels).mean() > 0.97
    # warm start with zero steps reproduces the head exactly; state round-trips
    same = train_seg_head(grids[:3], targets[:3], weights[:3], k, previous=head, steps=0)
    grid = grids[0]
    np.testing.assert_allclose(same.patch_logits(grid), head.patch_logits(grid), atol=1e-3)
    again = SegHead.from_state(head.state())
    np.testing.assert_array_equal(again.patch_logits(grid), head.patch_logits(grid))


def test_train_seg_head_needs_labels():
    grid = np.zeros((2, 2, 4), np.float16)
    with pytest.raises(ValueError):
        train_seg_head([grid], [np.zeros((4, 2), np.float32)], [np.zeros(4, np.float32)], 2)


def test_predict_mask_non_square_and_summary():
    rng = np.random.default_rng(0)
    k, c = 3, 8
    head = SegHead(
        rng.normal(size=(k, c)).astype(np.float32),
        np.zeros(k, np.float32),
        np.zeros(c, np.float32),
        np.ones(c, np.float32),
    )
    grid = rng.normal(size=(4, 6, c)).astype(np.float16)
    mask, fractions = head.predict_mask(grid, (37, 53))
    assert mask.shape == (37, 53) and mask.dtype == np.uint8
    assert mask.min() >= 1 and mask.max() <= k
    np.testing.assert_allclose(
        fractions, np.bincount(mask.ravel(), minlength=k + 1)[1:] / mask.size, atol=1e-6
    )
    # bilinear upsampling of logits: at each patch centre the mask agrees with the patch argmax
    patch = head.patch_logits(grid).argmax(-1) + 1
    assert mask.shape != patch.shape
    big, _ = head.predict_mask(grid, (40, 60))  # exact 10x: centres at 5 + 10 i
    np.testing.assert_array_equal(big[5::10, 5::10], patch)
    entropy, frac = head.summary(grid)
    assert 0.0 <= entropy <= math.log(k)
    np.testing.assert_allclose(
        frac, np.bincount(patch.ravel() - 1, minlength=k) / patch.size, atol=1e-6
    )


def test_read_only_cached_features(tmp_path, recwarn):
    # feature caches are often np.load(..., mmap_mode="r"): read-only, float16
    x, y = blobs(100, 3)
    np.save(tmp_path / "f.npy", x)
    cached = np.load(tmp_path / "f.npy", mmap_mode="r")
    head = train_linear_head(cached, y, 3)
    np.testing.assert_allclose(
        head.predict_proba(cached), head.predict_proba(np.array(x)), atol=1e-6
    )
    assert not [w for w in recwarn if "writable" in str(w.message)]
