"""The fast next-image path gives the same order as the strategies over full candidate arrays."""
from __future__ import annotations

import numpy as np

from hitl import strategies
from hitl.strategies import OpenIndex, open_random, open_ranked, open_sequential, score_orders
from hitl.tasks.classification.strategies import open_minority


def _setup(seed: int = 0, n: int = 3000):
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1, dtype=np.int64)
    readable = ids[rng.random(n) > 0.05]
    # no ties: lowest keeps an arbitrary one of the ids tied at its cut (argpartition)
    prob, margin, entropy = rng.random(n), rng.random(n), rng.random(n)
    cls = rng.integers(1, 4, n).astype(float)
    has_pred = rng.random(n) > 0.1
    blocked = np.ones(n + 1, dtype=bool)
    blocked[readable] = False
    done = rng.choice(ids, 400, replace=False)
    blocked[done] = True
    leased = rng.choice(readable, 5, replace=False)
    open_ids = readable[~blocked[readable] & ~np.isin(readable, leased)]
    p = ids[has_pred]
    index = OpenIndex(readable, blocked, leased, score_orders(
        p, cls[has_pred], prob[has_pred], margin[has_pred], entropy[has_pred]))
    pos = open_ids - 1
    nan = np.where(has_pred[pos], 0.0, np.nan)
    full = {"ids": open_ids, "class_id": cls[pos] + nan, "probability": prob[pos] + nan,
            "margin": margin[pos] + nan, "entropy": entropy[pos] + nan}
    return index, full


def test_fast_orders_match_the_full_strategies():
    for seed in range(3):
        index, c = _setup(seed)
        assert np.array_equal(open_sequential(index), strategies.sequential(c))
        assert np.array_equal(open_ranked(index, "uncertain"), strategies.uncertain(c))
        assert np.array_equal(open_ranked(index, "margin"), strategies.uncertain(c, "margin"))
        assert np.array_equal(open_ranked(index, "entropy"), strategies.uncertain(c, "entropy"))
        for cid in (1, 2, 3):
            assert np.array_equal(open_ranked(index, ("confident", cid)),
                                  strategies.of_class(c, cid))
        counts = {1: 5, 2: 0, 3: 9}
        assert np.array_equal(open_minority(index, [2, 1, 3]),
                              strategies.minority(c, counts, [1, 2, 3]))
        picked = open_random(index, seed)
        assert picked.size == strategies.TOP and np.unique(picked).size == picked.size
        assert np.isin(picked, c["ids"]).all()


def test_ties_go_to_the_lower_id():
    ids = np.arange(1, 101, dtype=np.int64)
    same = np.full(100, 0.5)
    index = OpenIndex(ids, np.zeros(101, dtype=bool), np.array([], dtype=np.int64),
                      score_orders(ids[::-1], np.ones(100), same, same, same))
    assert open_ranked(index, "uncertain").tolist() == list(range(1, 33))
    assert open_ranked(index, ("confident", 1)).tolist() == list(range(1, 33))


def test_random_finds_the_last_open_images():
    index, c = _setup(1)
    last = c["ids"][:3]
    blocked = np.ones_like(index.blocked)
    blocked[last] = False
    nearly_done = OpenIndex(index.readable, blocked, np.array([], dtype=np.int64), index.orders)
    assert sorted(open_random(nearly_done, 4)) == sorted(last)
    assert open_ranked(nearly_done, ("confident", 99)).size == 0


def test_bulk_labels_are_one_transaction_with_undoable_events(tmp_path):
    import pytest

    from hitl.store import Store, StoreError
    from tests.test_store import add_images
    store = Store(tmp_path / "s.duckdb")
    add_images(store, 50)
    cat, dog = store.add_class("cat").id, store.add_class("dog").id
    store.set_label(3, cat, "ann")
    store.skip(4, "ann")
    count = store.set_labels([1, 2, 3, 4, 2], [cat, cat, dog, dog, dog], user="bob",
                             source="label")
    assert count == 4  # image 2 twice: the last class wins
    labels = store.label_rows().set_index("image_id")
    assert labels.loc[[1, 2, 3, 4], "label"].tolist() == ["cat", "dog", "dog", "dog"]
    assert set(labels.loc[[1, 2, 3, 4], "user"]) == {"bob"}
    assert not store.is_skipped(4)
    with pytest.raises(StoreError, match="no image with id 999"):
        store.set_labels([5, 999], [cat, cat])
    with pytest.raises(StoreError, match="no class with id 77"):
        store.set_labels([5], [77])
    assert store.label_of(5) is None  # a refused batch writes nothing
    # each label is its own undoable event, with what it replaced
    assert store.undo("bob") == 2 and store.label_of(2) is None  # events in the given order
    assert store.undo("bob") == 4 and store.is_skipped(4) and store.label_of(4) is None
    assert store.undo("bob") == 3 and store.label_of(3) == cat
    assert store.set_labels([], []) == 0
    assert store.set_labels([7], [cat]) == 1  # an import: recorded, like set_label's imports
    assert store.events(1)["action"].tolist() == ["import"]
    store.close()
