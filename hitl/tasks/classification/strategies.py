"""Classification's next-image strategies: each walks an order sorted once per published model
(Store.open_index: hitl.strategies.OpenIndex), so a key press reads the head of one order."""
from __future__ import annotations

import numpy as np

from hitl import strategies as s
from hitl.strategies import EMPTY, Pick, Strategy

NO_PREDICTIONS = "no predictions yet"


def _ranked(key: str):
    def order(pick: Pick) -> np.ndarray:
        return s.open_ranked(pick.pool, key)
    return order


def open_minority(index: s.OpenIndex, ranking: list[int]) -> np.ndarray:
    """The least-confident open image predicted as the first class of `ranking` (fewest
    labels first) that has one."""
    for class_id in ranking:
        ids = s.open_ranked(index, ("doubtful", class_id))
        if ids.size:
            return ids
    return EMPTY


def _minority(pick: Pick) -> np.ndarray:
    order = [c.id for c in pick.store.classes()]
    counts = pick.store.label_counts()
    ranking = sorted(order, key=lambda cid: (counts.get(cid, 0), order.index(cid)))
    return open_minority(pick.pool, ranking)


def _of_class(pick: Pick) -> np.ndarray:
    return s.open_ranked(pick.pool, ("confident", pick.chosen_class().id))


def _last_class(pick: Pick) -> np.ndarray:
    last = pick.store.last_label_class(pick.user)
    return EMPTY if last is None else s.open_ranked(pick.pool, ("confident", last))


def _no_last_class(pick: Pick) -> str:
    if pick.store.last_label_class(pick.user) is None:
        return "no label yet"
    return "no unlabeled image predicted as the last class"


STRATEGIES = s.Strategies(
    Strategy("uncertain", _ranked("uncertain"), "sequential", NO_PREDICTIONS),
    Strategy("margin", _ranked("margin"), "sequential", NO_PREDICTIONS),
    Strategy("entropy", _ranked("entropy"), "sequential", NO_PREDICTIONS),
    Strategy("minority", _minority, "uncertain", "no predicted candidate for any class",
             follows_labels=True),
    Strategy("random", lambda pick: s.open_random(pick.pool, pick.seed), "sequential"),
    Strategy("sequential", lambda pick: s.open_sequential(pick.pool), None),
    Strategy("class", _of_class, "uncertain",
             lambda pick: f"no unlabeled image predicted as {pick.chosen_class().name}"),
    Strategy("last class", _last_class, "uncertain", _no_last_class, follows_labels=True),
)
