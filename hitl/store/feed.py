"""The change feed: counters that writers move after they commit, and a wait for them.

Its lock is the innermost of hitl's lock order (hitl/store/__init__.py): while it is held
nothing is called, nothing is read but its own counters. A waiter (the trainer) waits for a
counter to move, lets go, and only then reads the store — a wait whose predicate read the
store took the store's locks inside this one, and froze the app once.
"""
from __future__ import annotations

import threading

from hitl.locks import ordered_lock

KINDS = ("labels", "settings", "images", "predictions", "pokes")


class ChangeFeed:
    """Named counters: `labels` is the session revision (labels, masks, skips, classes, the
    task); `settings`, `images` and `predictions` move on their own writes; `pokes` wakes
    waiters without a change (a stop, a reset of the model)."""

    def __init__(self, revision: int = 0):
        self._cond = threading.Condition(ordered_lock("feed"))
        self._counts = dict.fromkeys(KINDS, 0)
        self._counts["labels"] = int(revision)

    @property
    def revision(self) -> int:
        """The labels counter: a plain read, safe anywhere."""
        return self._counts["labels"]

    def snapshot(self) -> tuple[int, ...]:
        """Every counter, to wait on later (a move in between is never missed)."""
        counts = self._counts
        return tuple(counts[kind] for kind in KINDS)

    def publish(self, kind: str = "labels") -> None:
        """A committed change of `kind`: move its counter and wake every waiter."""
        with self._cond:
            self._counts[kind] += 1
            self._cond.notify_all()

    def poke(self) -> None:
        """Wake the waiters with no change (they re-check their own flags)."""
        self.publish("pokes")

    def wait(self, seen: tuple[int, ...], timeout: float) -> tuple[int, ...]:
        """Until a counter moved past `seen` (a snapshot) or `timeout`; returns the counters."""
        with self._cond:
            self._cond.wait_for(lambda: self.snapshot() != seen, timeout=timeout)
            return self.snapshot()
