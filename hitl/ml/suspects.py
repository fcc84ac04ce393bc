"""Suspect labels: out-of-sample predictions for labeled images by k-fold on cached features.

A head trained on a label always agrees with it, so a label is judged by heads that never saw
it: the labeled images are split into k folds, and each fold is predicted by a head trained on
the other folds (the same linear heads the trainer uses, `hitl.ml.heads`). A label the
out-of-sample model confidently disagrees with is probably wrong.

Classification scores a label by the out-of-sample probability of the given class;
segmentation by the IoU between the mask's labeled pixels and the out-of-sample mask over the
same pixels. Low score = suspect; the lowest come first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitl.ml import heads

FOLDS = 5
FOLD_STEPS = 60  # a fresh head per fold; separable features converge well before this
# Much stronger than the trainer's decay: an unregularised head memorises the very wrong labels
# it should expose (on 5%-noisy blobs a wrong label kept 0.93 of its class at 1e-4, 0.13 at 0.1).
FOLD_DECAY = 0.1


def fold_of(n: int, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """(n,) fold index per row: a fixed shuffle, so a rerun on the same labels agrees."""
    folds = max(2, min(folds, n))
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) % folds
    return out


@dataclass
class ClassSuspects:
    """Out-of-sample view of every labeled row, in input order."""

    probs: np.ndarray  # (N, K) out-of-sample probabilities
    score: np.ndarray  # (N,) probability of the given label: low = suspect
    predicted: np.ndarray  # (N,) out-of-sample argmax

    def ranking(self) -> np.ndarray:
        """Row indices, most suspect first (ties broken by the predicted class's confidence)."""
        top = self.probs.max(1)
        return np.lexsort((-top, self.score))


def classification_oos(
    feats: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    folds: int = FOLDS,
    steps: int = FOLD_STEPS,
    seed: int = 0,
    weight_decay: float = FOLD_DECAY,
) -> ClassSuspects:
    """k-fold out-of-sample class probabilities for labeled rows.

    feats: (N, C) cached global features; labels: (N,) 0-based class indices. Needs N >= 2.
    A fold whose training part holds a single class still gets a head (it predicts that class).
    """
    feats, labels = np.asarray(feats), np.asarray(labels, np.int64)
    if feats.ndim != 2 or len(feats) != len(labels) or len(labels) < 2:
        raise ValueError(f"need (N, C) feats and N >= 2 labels; got {feats.shape}, {labels.shape}")
    fold = fold_of(len(labels), folds, seed)
    probs = np.zeros((len(labels), num_classes), np.float32)
    for f in np.unique(fold):
        held = fold == f
        head = heads.train_linear_head(feats[~held], labels[~held], num_classes, steps=steps,
                                       weight_decay=weight_decay)
        probs[held] = head.predict_proba(feats[held])
    score = probs[np.arange(len(labels)), labels]
    return ClassSuspects(probs=probs, score=score, predicted=probs.argmax(1))


def labeled_iou(label: np.ndarray, predicted: np.ndarray) -> float:
    """Mean IoU over the classes present, counted on labeled pixels only (label > 0).

    label: (H, W) positions 1..K, 0 = unlabeled; predicted: (H, W) positions 1..K.
    1.0 when no pixel is labeled (nothing to disagree with).
    """
    keep = label > 0
    if not keep.any():
        return 1.0
    a, b = label[keep].astype(np.int64), predicted[keep].astype(np.int64)
    k = int(max(a.max(), b.max())) + 1
    inter = np.bincount(a[a == b], minlength=k)
    union = np.bincount(a, minlength=k) + np.bincount(b, minlength=k) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean())


def segmentation_oos(
    grids: list[np.ndarray],
    targets: list[np.ndarray],
    weights: list[np.ndarray],
    masks: list[np.ndarray],
    num_classes: int,
    folds: int = FOLDS,
    steps: int = FOLD_STEPS,
    seed: int = 0,
    weight_decay: float = FOLD_DECAY,
) -> np.ndarray:
    """(N,) IoU of each mask's labeled pixels against an out-of-sample predicted mask.

    grids[i]: (h, w, C) patch features; targets/weights from `heads.mask_to_patch_targets`;
    masks[i]: (H, W) positions 1..K (0 = unlabeled) at the image's size. Needs N >= 2.
    """
    n = len(grids)
    if n < 2 or not (len(targets) == len(weights) == len(masks) == n):
        raise ValueError("need at least 2 masked images and one target, weight and mask each")
    fold = fold_of(n, folds, seed)
    out = np.ones(n, np.float32)
    for f in np.unique(fold):
        train = np.flatnonzero(fold != f)
        try:
            head = heads.train_seg_head([grids[i] for i in train], [targets[i] for i in train],
                                        [weights[i] for i in train], num_classes, steps=steps,
                                        weight_decay=weight_decay)
        except ValueError:  # the other folds hold no labeled patch: nothing to judge by
            continue
        for i in np.flatnonzero(fold == f):
            predicted, _ = head.predict_mask(grids[i], masks[i].shape)
            out[i] = labeled_iou(masks[i], predicted)
    return out
