"""The written lock order is enforced, the change feed never reads the store, and the
in-memory copies are never left stale by a write that raced their load."""
from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from hitl import locks
from hitl.store import Store
from hitl.store.feed import ChangeFeed
from hitl.store.index import Index


def forget_violations() -> list[str]:
    """What the checker recorded in this test (cleared: the autouse fixture checks the rest)."""
    seen = list(locks.violations)
    del locks.violations[:]
    return seen


def test_an_inversion_raises_even_without_a_second_thread():
    outer, inner = locks.ordered_lock("store.write", True), locks.ordered_lock("feed")
    with outer, inner:  # in order: fine
        pass
    with inner:
        with pytest.raises(locks.LockOrderError, match="store.write .* while holding feed"):
            outer.acquire()
    assert len(forget_violations()) == 1


def test_reentry_is_allowed_and_the_held_stack_unwinds():
    write = locks.ordered_lock("store.write", reentrant=True)
    index = locks.ordered_lock("store.index", reentrant=True)
    with write, index, write, index:  # re-entering what this thread holds is no inversion
        pass
    with index:
        pass  # nothing left held from before
    assert not forget_violations()
    with pytest.raises(KeyError, match="no place in hitl's lock order"):
        locks.ordered_lock("somewhere.new")


def test_the_old_freeze_is_caught_a_store_read_inside_the_feed_lock(tmp_path):
    """The app froze when the trainer's wait predicate read the store (settings out of date
    -> the write lock) while a writer held the write lock and wanted the condition."""
    store = Store(tmp_path / "s.duckdb")
    try:
        store.set_setting("task", "classification")  # the settings copy is out of date now
        with store.feed._cond:
            with pytest.raises(locks.LockOrderError, match="store.index .* while holding feed"):
                store.task()
        assert len(forget_violations()) == 1
        assert store.task() == "classification"  # after letting go, the read is fine
    finally:
        store.close()


def test_feed_wait_returns_on_a_move_and_on_a_poke_and_misses_nothing():
    feed = ChangeFeed(revision=7)
    assert feed.revision == 7
    mark = feed.snapshot()
    feed.publish("labels")  # before the wait: still seen
    assert feed.wait(mark, timeout=5) != mark and feed.revision == 8
    mark = feed.snapshot()
    threading.Timer(0.05, feed.poke).start()
    start = time.monotonic()
    assert feed.wait(mark, timeout=5) != mark
    assert time.monotonic() - start < 4 and feed.revision == 8  # a poke is no change
    mark = feed.snapshot()
    assert feed.wait(mark, timeout=0.05) == mark  # nothing moved: the timeout


def test_a_copy_loaded_while_a_write_ended_is_loaded_again():
    """Version read before the load: data a write changed during the load is never kept."""
    index = Index(revision=lambda: 0)
    data = {"value": 1}

    def load():
        seen = data["value"]
        if seen == 1:  # a writer commits and marks the copy while this load runs
            data["value"] = 2
            index.moved("things")
        return seen
    copy = index.cached(load, "things")
    assert copy.get() == 1      # this read's answer is what it read...
    assert copy.get() == 2      # ...but it was not kept: the next read loads again
    data["value"] = 3
    assert copy.get() == 2      # kept until a writer marks it
    index.moved("things")
    assert copy.get() == 3


def image_records(start: int, n: int) -> pd.DataFrame:
    return pd.DataFrame({"path": [f"/img/{i}.png" for i in range(start, start + n)],
                         "filename": [f"{i}.png" for i in range(start, start + n)],
                         "width": 8, "height": 8, "readable": True, "error": None})


@pytest.mark.parametrize("run", range(5))
def test_background_registration_never_hides_images_from_a_reader(tmp_path, run):
    """20 chunk writes while a reader keeps asking for the readable ids (what `next` reads):
    once the writes are done every image is there. Before the index's versioned copies, 1-2
    runs in 20 ended with ~300 images missing until the next image write."""
    store = Store(tmp_path / f"s{run}.duckdb")
    done = threading.Event()
    sizes = []

    def reader():
        while not done.is_set():
            sizes.append(store.readable_image_ids().size)
            store.is_open(1)
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for chunk in range(20):
            store.add_images(image_records(chunk * 300, 300))
    finally:
        done.set()
        thread.join()
    try:
        assert store.readable_image_ids().size == 6000
        assert np.array_equal(store.readable_image_ids(), np.arange(1, 6001))
        assert sizes and max(sizes) <= 6000
    finally:
        store.close()
