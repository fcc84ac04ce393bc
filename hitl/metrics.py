"""Validation numbers: accuracy and confusion for classes, IoU for masks."""
from __future__ import annotations

import numpy as np


def accuracy(truth: np.ndarray, predicted: np.ndarray) -> float | None:
    return None if len(truth) == 0 else float(np.mean(np.asarray(truth) == np.asarray(predicted)))


def confusion(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> list[list[int]]:
    """Rows are true classes, columns predicted, by class index."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth), np.asarray(predicted)), 1)
    return matrix.tolist()


class IoUAccumulator:
    """Intersection and union per class over labeled pixels only (0 = unlabeled is ignored)."""

    def __init__(self, num_classes: int):
        self.inter = np.zeros(num_classes, dtype=np.int64)
        self.union = np.zeros(num_classes, dtype=np.int64)

    def add(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        """truth and predicted hold class positions 1..K; truth 0 pixels are skipped."""
        labeled = truth > 0
        t, p = truth[labeled].astype(np.int64) - 1, predicted[labeled].astype(np.int64) - 1
        k = len(self.inter)
        valid = (p >= 0) & (p < k) & (t < k)
        t, p = t[valid], p[valid]
        self.inter += np.bincount(t[t == p], minlength=k)[:k]
        self.union += (np.bincount(t, minlength=k)[:k] + np.bincount(p, minlength=k)[:k]
                       - np.bincount(t[t == p], minlength=k)[:k])

    def per_class(self) -> list[float | None]:
        return [None if u == 0 else float(i / u) for i, u in zip(self.inter, self.union)]

    def mean(self) -> float | None:
        values = [v for v in self.per_class() if v is not None]
        return None if not values else float(np.mean(values))
