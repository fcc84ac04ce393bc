"""Which image comes next: pure functions over the candidates and their prediction scores.

Each strategy returns candidate ids in the order it wants them (the first few are enough:
the caller leases the first one no other labeler holds), or an empty array when it has
nothing to offer, so the caller can fall back to the next strategy and say so.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSIFICATION_STRATEGIES = ("uncertain", "margin", "entropy", "minority", "random",
                             "sequential", "class", "last class")
SEGMENTATION_STRATEGIES = ("random", "sequential", "uncertain", "class")
FALLBACK = {"uncertain": "sequential", "margin": "sequential", "entropy": "sequential",
            "minority": "uncertain", "class": "uncertain", "last class": "uncertain",
            "random": "sequential", "sequential": None}
TOP = 32  # how many ordered candidates a strategy hands back


@dataclass(frozen=True)
class Choice:
    ids: np.ndarray
    strategy: str
    note: str | None = None  # set when a fallback was used, to tell the labeler why


def _first(order: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return ids[order[:TOP]]


def _lowest(values: np.ndarray, ids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Ids with the lowest values (ties by id); NaN (no prediction) never qualifies."""
    keep = ~np.isnan(values) if mask is None else (~np.isnan(values) & mask)
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return idx
    k = min(TOP, idx.size)
    part = idx[np.argpartition(values[idx], k - 1)[:k]] if idx.size > k else idx
    order = np.lexsort((ids[part], values[part]))
    return ids[part[order]]


def sequential(c: dict) -> np.ndarray:
    ids = c["ids"]
    if ids.size > TOP:
        ids = ids[np.argpartition(ids, TOP - 1)[:TOP]]
    return np.sort(ids)


def random_order(c: dict, seed: int) -> np.ndarray:
    ids = c["ids"]
    if ids.size == 0:
        return ids
    rng = np.random.default_rng(seed)
    return ids[rng.choice(ids.size, size=min(TOP, ids.size), replace=False)]


def uncertain(c: dict, score: str = "probability") -> np.ndarray:
    """Least confident first: lowest top-1 probability or margin, or highest entropy."""
    if score == "entropy":
        return _lowest(-c["entropy"], c["ids"])
    return _lowest(c[score], c["ids"])


def of_class(c: dict, class_id: int, most_confident: bool = True) -> np.ndarray:
    """Unlabeled images predicted as class_id, most confident first."""
    match = c["class_id"] == class_id
    sign = -1.0 if most_confident else 1.0
    return _lowest(sign * c["probability"], c["ids"], match)


def minority(c: dict, label_counts: dict[int, int], class_order: list[int]) -> np.ndarray:
    """The class with the fewest labels (zero counts too; ties by class order), then its
    least-confident predicted candidate; classes with no candidate pass to the next."""
    ranked = sorted(class_order, key=lambda cid: (label_counts.get(cid, 0),
                                                  class_order.index(cid)))
    for class_id in ranked:
        ids = of_class(c, class_id, most_confident=False)
        if ids.size:
            return ids
    return np.array([], dtype=np.int64)


def seg_uncertain(c: dict) -> np.ndarray:
    """Highest mean pixel entropy of the predicted mask first."""
    return _lowest(-c["entropy"], c["ids"])


def seg_of_class(c: dict, position: int) -> np.ndarray:
    """Images predicted to hold the largest share of the class at `position` (0-based)."""
    fractions = c["fractions"]
    values = np.full(len(c["ids"]), np.nan)
    for i, row in enumerate(fractions):
        if row is not None and not (isinstance(row, float) and np.isnan(row)) \
                and len(row) > position:
            values[i] = -float(row[position])
    return _lowest(values, c["ids"])
