"""Pure cores of review: out-of-sample suspects (both tasks) and nearest neighbours."""

import numpy as np
import pytest

from hitl.ml.heads import mask_to_patch_targets
from hitl.ml.similar import nearest
from hitl.ml.suspects import classification_oos, fold_of, labeled_iou, segmentation_oos

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(n: int, k: int, c: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(size=(k, c)) * 3.0
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(size=(n, c)) + 5.0).astype(np.float16), y


def test_folds_cover_every_row_evenly_and_repeatably():
    f = fold_of(103, 5)
    assert sorted(np.bincount(f).tolist()) == [20, 20, 21, 21, 21]
    np.testing.assert_array_equal(f, fold_of(103, 5))
    assert set(fold_of(3, 5).tolist()) == {0, 1, 2}  # never more folds than rows


def test_injected_wrong_labels_rank_above_every_correct_one():
    x, y = blobs(300, 4)
    noisy = y.copy()
    wrong = np.arange(0, 300, 20)  # 5%: each moved to the next class
    noisy[wrong] = (y[wrong] + 1) % 4
    result = classification_oos(x, noisy, 4)
    top = result.ranking()[: len(wrong)]
    assert set(top.tolist()) == set(wrong.tolist())
    assert result.score[wrong].max() < np.delete(result.score, wrong).min()
    np.testing.assert_array_equal(result.predicted[wrong], y[wrong])  # it says the truth


def test_classification_oos_needs_two_labels():
    with pytest.raises(ValueError, match="N >= 2"):
        classification_oos(np.zeros((1, 4)), np.zeros(1), 2)


def test_labeled_iou_counts_labeled_pixels_only():
    label = np.zeros((4, 4), np.uint8)
    label[:2] = 1  # 8 labeled pixels of class 1, the rest unlabeled
    predicted = np.full((4, 4), 2, np.uint8)
    predicted[:2] = 1
    assert labeled_iou(label, predicted) == 1.0  # disagreement on unlabeled pixels is ignored
    predicted[0] = 2  # half the labeled pixels now disagree
    assert labeled_iou(label, predicted) == pytest.approx((0.5 + 0.0) / 2)
    assert labeled_iou(np.zeros((2, 2), np.uint8), predicted[:2, :2]) == 1.0


def _seg_image(rng, centres, flip: bool):
    """8x8 grid of patch features: left half class 1, right half class 2 (swapped in the mask
    when flip: a wrong mask), 32x32 pixels."""
    truth = np.ones((8, 8), np.int64)
    truth[:, 4:] = 2
    grid = centres[truth - 1] + rng.normal(size=(8, 8, centres.shape[1]))
    mask = np.repeat(np.repeat(truth, 4, 0), 4, 1).astype(np.uint8)
    if flip:
        mask = (3 - mask).astype(np.uint8)
    return grid.astype(np.float16), mask


def test_segmentation_oos_scores_a_wrong_mask_lowest():
    rng = np.random.default_rng(0)
    centres = np.random.default_rng(1).normal(size=(2, 16)) * 3
    grids, masks = zip(*[_seg_image(rng, centres, flip=(i == 3)) for i in range(10)])
    tw = [mask_to_patch_targets(m, g.shape[:2], 2) for g, m in zip(grids, masks)]
    iou = segmentation_oos(list(grids), [t for t, _ in tw], [w for _, w in tw], list(masks), 2)
    assert iou.shape == (10,)
    assert int(iou.argmin()) == 3 and iou[3] < 0.2
    assert np.delete(iou, 3).min() > 0.9


def test_nearest_returns_near_duplicates_first_and_honours_exclude():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(50, 16)).astype(np.float16)
    feats[[7, 21]] = feats[3] * 2 + rng.normal(size=(2, 16)) * 0.01  # scaled copies of row 3
    exclude = np.zeros(50, bool)
    exclude[3] = True
    idx, sims = nearest(feats[3], feats, 5, exclude=exclude)
    assert set(idx[:2].tolist()) == {7, 21} and 3 not in idx
    assert sims[0] > 0.99 and np.all(np.diff(sims) <= 0)
    assert len(nearest(feats[3], feats, 100, exclude=exclude)[0]) == 49
    with pytest.raises(ValueError):
        nearest(feats[3, :4], feats, 5)
