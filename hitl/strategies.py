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


# ---- the fast path: walk orders sorted once per published model ------------------------------
@dataclass(frozen=True)
class OpenIndex:
    """What a next-image choice needs without filtering every image on each key press: the
    readable ids, which ids are taken (labeled, skipped, masked, unreadable: a flag by id) or
    leased by someone else, and candidate orders sorted once per published set of predictions
    (see score_orders)."""
    readable: np.ndarray  # sorted ids
    blocked: np.ndarray   # bool, indexed by image id
    leased: np.ndarray    # ids other labelers hold right now (a handful)
    orders: dict          # score_orders() of the current predictions


def score_orders(image_id: np.ndarray, class_id: np.ndarray, probability: np.ndarray,
                 margin: np.ndarray, entropy: np.ndarray) -> dict:
    """Every order the classification strategies walk, ties by id as in _lowest: computed
    once when predictions are published, so a key press only walks the head of one."""
    ids = np.asarray(image_id, dtype=np.int64)
    keep = ~np.isnan(probability)
    ids, class_id = ids[keep], class_id[keep]
    probability, margin, entropy = probability[keep], margin[keep], entropy[keep]
    orders: dict = {"uncertain": ids[np.lexsort((ids, probability))],
                    "margin": ids[np.lexsort((ids, margin))],
                    "entropy": ids[np.lexsort((ids, -entropy))]}
    for cid in np.unique(class_id):
        sel = class_id == cid
        cids, prob = ids[sel], probability[sel]
        orders[("confident", int(cid))] = cids[np.lexsort((cids, -prob))]
        orders[("doubtful", int(cid))] = cids[np.lexsort((cids, prob))]
    return orders


def first_open(order: np.ndarray, index: OpenIndex, k: int = TOP, chunk: int = 512) -> np.ndarray:
    """The first k ids of `order` that are neither blocked nor leased, walking it in chunks."""
    found, count = [], 0
    blocked, size = index.blocked, len(index.blocked)
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[part < size]
        part = part[~blocked[part]]
        if index.leased.size and part.size:
            part = part[~np.isin(part, index.leased)]
        found.append(part)
        count += part.size
        if count >= k:
            break
    return np.concatenate(found)[:k] if found else np.array([], dtype=np.int64)


EMPTY = np.array([], dtype=np.int64)


def fast_order(strategy: str, index: OpenIndex, class_id: int | None = None,
               class_ranking: list[int] | None = None, seed: int = 0) -> np.ndarray:
    """Ordered open candidates for a classification strategy, like the functions above give
    from the full candidate arrays (random: a uniform sample of the open images)."""
    if strategy == "sequential":
        return first_open(index.readable, index)
    if strategy == "random":
        rng = np.random.default_rng(seed)
        n = index.readable.size
        if n == 0:
            return EMPTY
        sample = index.readable[rng.integers(0, n, size=min(n, 8 * TOP))]
        picked = first_open(np.unique(sample), index, k=n)
        if picked.size == 0:  # almost everything is done: look at all that is left
            picked = first_open(index.readable, index, k=n, chunk=n)
        return picked[rng.permutation(picked.size)[:TOP]]
    if strategy in ("uncertain", "margin", "entropy"):
        return first_open(index.orders.get(strategy, EMPTY), index)
    if strategy in ("class", "last class"):
        return first_open(index.orders.get(("confident", class_id), EMPTY), index)
    if strategy == "minority":
        for cid in class_ranking or []:
            ids = first_open(index.orders.get(("doubtful", cid), EMPTY), index)
            if ids.size:
                return ids
        return EMPTY
    raise ValueError(f"No fast path for strategy {strategy!r}.")
