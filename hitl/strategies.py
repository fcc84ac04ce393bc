"""Which image comes next: strategy objects, and the pure functions they order with.

A task lists its strategies (hitl/tasks/<name>/strategies.py) as `Strategy` objects: a name,
an order over the open images its task offers (a `Pick`), the strategy to fall back to and
why it had nothing. An order is candidate ids in the order the strategy wants them (the first
few are enough: the caller leases the first one no other labeler holds), or an empty array
when it has nothing to offer, so the caller falls back and says why.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from hitl.errors import BadInput, NotFound

TOP = 32  # how many ordered candidates a strategy hands back


def _first(order: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return ids[order[:TOP]]


def lowest(values: np.ndarray, ids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
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
        return lowest(-c["entropy"], c["ids"])
    return lowest(c[score], c["ids"])


def of_class(c: dict, class_id: int, most_confident: bool = True) -> np.ndarray:
    """Unlabeled images predicted as class_id, most confident first."""
    match = c["class_id"] == class_id
    sign = -1.0 if most_confident else 1.0
    return lowest(sign * c["probability"], c["ids"], match)


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
    """Every order the classification strategies walk, ties by id as in lowest: computed
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


def open_sequential(index: OpenIndex) -> np.ndarray:
    """The lowest open ids, as sequential() gives from the full candidate arrays."""
    return first_open(index.readable, index)


def open_random(index: OpenIndex, seed: int) -> np.ndarray:
    """A uniform sample of the open images (random_order() over the full arrays)."""
    rng = np.random.default_rng(seed)
    n = index.readable.size
    if n == 0:
        return EMPTY
    sample = index.readable[rng.integers(0, n, size=min(n, 8 * TOP))]
    picked = first_open(np.unique(sample), index, k=n)
    if picked.size == 0:  # almost everything is done: look at all that is left
        picked = first_open(index.readable, index, k=n, chunk=n)
    return picked[rng.permutation(picked.size)[:TOP]]


def open_ranked(index: OpenIndex, key) -> np.ndarray:
    """The open head of one presorted order of score_orders() (none: nothing predicted)."""
    return first_open(index.orders.get(key, EMPTY), index)


# ---- strategies as objects ----------------------------------------------------------------------
TAKEN = "all its candidates are taken by other labelers"


def _short(text, limit: int) -> str:
    """An echoed name in a refusal: one line, cut to `limit` characters."""
    return " ".join(str(text).split())[:limit]


@dataclass(frozen=True)
class Pick:
    """One next-image choice: who asks, the open images their task offers now (`pool`: what
    the task's open_pool gives, e.g. an OpenIndex), the class a 'class' strategy was given,
    and a seed for random orders."""
    store: Any
    user: str
    pool: Any
    class_name: str | None = None
    seed: int = 0

    def chosen_class(self):
        """The class named for a 'class' strategy; a missing or unknown name is refused."""
        if not self.class_name:
            raise BadInput("Choose a class for the 'class' strategy.")
        cls = self.store.class_by_name(str(self.class_name))
        if cls is None:
            raise NotFound(f"There is no class named {_short(self.class_name, 80)!r}.")
        return cls


@dataclass(frozen=True)
class Strategy:
    """A next-image strategy. `empty` says why it had no candidate (a line, or a function of
    the Pick when the line names a class); `follows_labels`: its order changes with the label
    just made, so save + next cannot compute it before the label is stored."""
    name: str
    order: Callable[[Pick], np.ndarray]
    fallback: str | None
    empty: str | Callable[[Pick], str] = TAKEN
    follows_labels: bool = False

    def empty_reason(self, pick: Pick) -> str:
        return self.empty(pick) if callable(self.empty) else self.empty


class Strategies:
    """A task's strategies in the page's order (its default first), looked up by name."""

    def __init__(self, *items: Strategy):
        self._by_name = {s.name: s for s in items}
        unknown = {s.fallback for s in items} - set(self._by_name) - {None}
        if unknown:
            raise ValueError(f"Fallback to a strategy that is not listed: {sorted(unknown)}.")

    def __iter__(self) -> Iterator[Strategy]:
        return iter(self._by_name.values())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def __getitem__(self, name: str) -> Strategy:
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            raise BadInput(f"Unknown strategy {_short(name, 40)!r}; choose one of: "
                           + ", ".join(self._by_name) + ".") from None

    def after(self, strategy: Strategy, tried: list[str]) -> Strategy | None:
        """The strategy to try when `strategy` had nothing: its fallback, unless tried."""
        nxt = strategy.fallback
        return None if nxt is None or nxt in tried else self._by_name[nxt]
