"""Named locks with a rank, and a checker that refuses to take them out of order.

hitl's lock order is written in hitl/store/__init__.py: a thread may only take a lock whose
rank is higher than every lock it already holds (re-entering a lock it holds is fine). Two
threads that follow the order cannot deadlock. With HITL_LOCK_CHECK=1 (the test suite sets it,
tests/conftest.py) every lock made here checks the order on each acquire and raises
LockOrderError on an inversion, even when no second thread happens to be there to deadlock;
without it they are plain `threading` locks and cost nothing.
"""
from __future__ import annotations

import os
import threading

# the order, outermost first: see hitl/store/__init__.py for what each one guards
RANKS = {
    "service.reset": 5,     # Service._reset_lock: one reset at a time
    "session.reset": 10,    # Session._reset_lock: closes and reopens the store
    "store.write": 20,      # StoreBase._write_lock: one writer, one transaction at a time
    "store.index": 30,      # Index.lock: loads of the in-memory copies (database reads only)
    "lease_book": 40,       # LeaseBook._lock: the reservations dict
    "trainer.status": 50,   # Trainer._lock: the status fields
    "feed": 60,             # ChangeFeed's condition: counters only, calls nothing
}
CHECK = os.environ.get("HITL_LOCK_CHECK") == "1"
violations: list[str] = []  # every inversion seen (the tests fail on any)


class LockOrderError(RuntimeError):
    """A lock taken while a lock of the same or a later rank is held."""


_held = threading.local()


def _stack() -> list:
    stack = getattr(_held, "stack", None)
    if stack is None:
        stack = _held.stack = []
    return stack


class CheckedLock:
    """A Lock or RLock that checks the rank order on every acquire (HITL_LOCK_CHECK=1)."""

    def __init__(self, name: str, reentrant: bool):
        self.name, self.rank, self.reentrant = name, RANKS[name], reentrant
        self._lock = threading.RLock() if reentrant else threading.Lock()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        if not (self.reentrant and self._owner == me):
            later = [lock.name for lock in _stack() if lock is not self and lock.rank >= self.rank]
            if later:
                message = (f"lock order: {self.name} (rank {self.rank}) taken while holding "
                           f"{', '.join(later)} in thread {threading.current_thread().name}")
                violations.append(message)
                raise LockOrderError(message)
        if not self._lock.acquire(blocking, timeout):
            return False
        self._owner, self._depth = me, self._depth + 1
        _stack().append(self)
        return True

    def release(self) -> None:
        stack = _stack()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is self:
                del stack[i]
                break
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
        self._lock.release()

    def _is_owned(self) -> bool:  # threading.Condition asks this
        return self._owner == threading.get_ident()

    def locked(self) -> bool:
        return self._depth > 0

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()


def ordered_lock(name: str, reentrant: bool = False):
    """A lock of the written order: a plain threading lock, or a CheckedLock in the tests."""
    if name not in RANKS:
        raise KeyError(f"{name!r} has no place in hitl's lock order (hitl/locks.py RANKS)")
    if CHECK:
        return CheckedLock(name, reentrant)
    return threading.RLock() if reentrant else threading.Lock()
