"""Segmentation's next-image strategies, over the mask candidates with their predicted-mask
summaries (mean pixel entropy, class fractions: Store.mask_candidates)."""
from __future__ import annotations

import numpy as np

from hitl import strategies as s
from hitl.strategies import Pick, Strategy


def seg_uncertain(c: dict) -> np.ndarray:
    """Highest mean pixel entropy of the predicted mask first."""
    return s.lowest(-c["entropy"], c["ids"])


def seg_of_class(c: dict, position: int) -> np.ndarray:
    """Images predicted to hold the largest share of the class at `position` (0-based)."""
    fractions = c["fractions"]
    values = np.full(len(c["ids"]), np.nan)
    for i, row in enumerate(fractions):
        if row is not None and not (isinstance(row, float) and np.isnan(row)) \
                and len(row) > position:
            values[i] = -float(row[position])
    return s.lowest(values, c["ids"])


def _of_class(pick: Pick) -> np.ndarray:
    chosen = pick.chosen_class().id
    position = [c.id for c in pick.store.classes()].index(chosen)
    return seg_of_class(pick.pool, position)


STRATEGIES = s.Strategies(
    Strategy("random", lambda pick: s.random_order(pick.pool, pick.seed), "sequential"),
    Strategy("sequential", lambda pick: s.sequential(pick.pool), None),
    Strategy("uncertain", lambda pick: seg_uncertain(pick.pool), "sequential",
             "no predictions yet"),
    Strategy("class", _of_class, "uncertain",
             lambda pick: f"no image predicted to hold {pick.chosen_class().name}"),
)
