"""Who holds which image for the next few minutes, kept in memory.

A lease is a reservation: the image on a labeler's screen (and the few their page has ready)
is not handed to anyone else while they look at it. Taking one happens on every key press,
so it is a dict write, not a database commit. Leases need no durability: after a restart the
pages take their images again on their next tick (hitl/ui/board.py), and an image whose lease
was lost is at worst shown to two people, whose labels the store keeps apart anyway (the
second one is refused or replaces the first, with its own undo).

Expiry policy: a lease taken lasts its full term (a REST client's one image); a lease that was
renewed must go on being renewed, and lapses RENEWED_SECONDS after the last renewal. A page
renews what it holds every tick (2 s), so a page that closes or crashes without saying so
gives its images back within that window, not after the full term.
"""
from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np

from hitl.locks import ordered_lock

RENEWED_SECONDS = 90.0  # a renewed lease's life from its last renewal (background tabs tick
                        # once a minute at worst)


class LeaseBook:
    """image id -> (user, expiry on the monotonic clock), safe to share between threads."""

    def __init__(self, renewed_seconds: float = RENEWED_SECONDS) -> None:
        self._lock = ordered_lock("lease_book")
        self._held: dict[int, tuple[str, float]] = {}
        self.renewed_seconds = float(renewed_seconds)

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def holder(self, image_id: int, at_least: float = 0.0) -> str | None:
        """Who holds the image for at least `at_least` seconds more (None: nobody)."""
        entry = self._held.get(int(image_id))
        if entry is None or entry[1] <= self.now() + at_least:
            return None
        return entry[0]

    def held_by(self, user: str) -> list[int]:
        now = self.now()
        with self._lock:
            return [i for i, (who, until) in self._held.items() if who == user and until > now]

    def held_by_others(self, user: str) -> np.ndarray:
        """Ids other labelers hold now (a handful: a few per open page)."""
        now = self.now()
        with self._lock:
            ids = [i for i, (who, until) in self._held.items() if who != user and until > now]
        return np.asarray(ids, dtype=np.int64)

    def others_left(self, user: str) -> list[tuple[int, float]]:
        """(image id, seconds until it frees) of the leases other labelers hold now."""
        now = self.now()
        with self._lock:
            return [(i, until - now) for i, (who, until) in self._held.items()
                    if who != user and until > now]

    def first_free(self, ordered: Iterable[int], user: str) -> Iterable[int]:
        """The ids of `ordered`, in order, that nobody but `user` holds."""
        now = self.now()
        for image_id in ordered:
            if self._free(int(image_id), user, now):
                yield int(image_id)

    def _free(self, image_id: int, user: str, now: float) -> bool:
        entry = self._held.get(image_id)
        return entry is None or entry[0] == user or entry[1] <= now

    def claim(self, image_ids: Iterable[int], user: str, seconds: float,
              keep_others: bool = True, first_only: bool = False) -> list[int]:
        """Lease to `user` those of the images nobody else holds (with first_only, the first
        of them), in one step: a renewal on another thread cannot slip in between the look and
        the take. Returns them. When something is taken and not keep_others, the user's other
        leases end (one image, or one page, at a time)."""
        now = self.now()
        with self._lock:
            taken = []
            for image_id in (int(i) for i in image_ids):
                if self._free(image_id, user, now):
                    taken.append(image_id)
                    if first_only:
                        break
            if taken and not keep_others:
                self._release(user, None)
            for image_id in taken:
                self._held[image_id] = (user, now + float(seconds))
            if len(self._held) > 256:  # forget the expired now and then
                self._held = {i: e for i, e in self._held.items() if e[1] > now}
            return taken

    def renew(self, image_id: int, user: str, seconds: float) -> bool:
        """Keep holding an image (for at most renewed_seconds more: a renewed lease must be
        renewed again); False when someone else holds it."""
        image_id = int(image_id)
        now = self.now()
        with self._lock:
            entry = self._held.get(image_id)
            if entry is not None and entry[0] != user and entry[1] > now:
                return False
            self._held[image_id] = (user, now + min(float(seconds), self.renewed_seconds))
            return True

    def release(self, user: str, image_ids: Iterable[int] | None = None) -> None:
        """End the user's leases: all of them, or those on the given images."""
        with self._lock:
            self._release(user, image_ids)

    def _release(self, user: str, image_ids: Iterable[int] | None) -> None:
        ids = self._held.keys() if image_ids is None else {int(i) for i in image_ids}
        for image_id in [i for i in ids if self._held.get(i, ("",))[0] == user]:
            del self._held[image_id]

    def drop(self, image_ids: Iterable[int]) -> None:
        """End any lease on these images (they were labeled, masked or skipped)."""
        with self._lock:
            for image_id in image_ids:
                self._held.pop(int(image_id), None)
