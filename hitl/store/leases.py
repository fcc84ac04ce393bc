"""Leases and the candidates for the next image (the fast path included)."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from hitl import strategies
from hitl.store.common import find_sorted, float_array


class Leases:
    """Leases and the candidates for the next image (the fast path included)."""

    # ---- leases (held in memory: hitl/store/lease_book.py) ----------------------------------
    def lease_first(self, candidates: Iterable[int], user: str, seconds: float,
                    keep_others: bool = False) -> int | None:
        """Lease the first open candidate nobody else holds; atomic against other labelers.

        A labeler holds one image unless keep_others (the page's prefetched images)."""
        ordered = np.asarray(candidates if isinstance(candidates, np.ndarray)
                             else [int(i) for i in candidates], dtype=np.int64)
        if not ordered.size:
            return None
        if self._still_leased(int(ordered[0]), user, seconds, keep_others):
            return int(ordered[0])  # asked again (a refresh, a prefetch): nothing changes
        with self._write_lock:
            return self._lease_first(ordered, user, seconds, keep_others)

    def _still_leased(self, image_id: int, user: str, seconds: float, keep_others: bool) -> bool:
        """The user holds image_id for at least half a lease more, it is still open, and (unless
        keep_others) it is the only image they hold: leasing it again would change nothing."""
        book = self.lease_book
        return (book.holder(image_id, at_least=seconds / 2) == user and self.is_open(image_id)
                and (keep_others or book.held_by(user) == [image_id]))

    def _lease_first(self, ordered: np.ndarray, user: str, seconds: float,
                     keep_others: bool = False) -> int | None:
        """lease_first under the write lock, where the open flags agree with the database
        (every label write moves the revision before it lets go of the lock: StoreBase._change);
        also used by set_label's save + next."""
        blocked = self._blocked_flags()
        ordered = ordered[ordered < blocked.size]
        ordered = ordered[~blocked[ordered]]
        taken = self.lease_book.claim(ordered, user, seconds, keep_others, first_only=True)
        return taken[0] if taken else None

    def is_open(self, image_id: int) -> bool:
        """Readable, and neither labeled, masked nor skipped (as of the current revision)."""
        blocked = self._blocked_flags()
        return 0 <= int(image_id) < blocked.size and not blocked[int(image_id)]

    def renew_lease(self, image_id: int, user: str, seconds: float) -> bool:
        """Keep an image while its labeler works on it (opened by id or still on screen)."""
        return self.lease_book.renew(image_id, user, seconds)

    def release_leases(self, user: str, image_ids: Iterable[int] | None = None) -> None:
        """Free this user's leases: all of them, or only those on the given images."""
        self.lease_book.release(user, image_ids)

    def lease_holder(self, image_id: int) -> str | None:
        return self.lease_book.holder(image_id)

    # ---- candidates for the next image ----------------------------------------------------
    def mask_candidates(self, user: str) -> dict[str, np.ndarray]:
        """Images without a mask, with their segmentation summaries (entropy, fractions)."""
        res = self._cursor().execute(
            "SELECT i.id, p.entropy, p.fractions FROM images i "
            "LEFT JOIN seg_predictions p ON p.image_id = i.id "
            "WHERE i.readable AND i.id NOT IN (SELECT image_id FROM masks) "
            "AND i.id NOT IN (SELECT image_id FROM skips) "
            "AND i.id NOT IN (SELECT unnest($leased::BIGINT[])) ORDER BY i.id",
            {"leased": self.lease_book.held_by_others(user).tolist()}).fetchnumpy()
        return {"ids": res["id"].astype(np.int64), "entropy": float_array(res["entropy"]),
                "fractions": res["fractions"]}

    def label_candidates(self, user: str) -> dict[str, np.ndarray]:
        """Images without a class label, with their class predictions (NaN where none)."""
        done = self._cursor().execute(
            "SELECT image_id FROM labels UNION ALL SELECT image_id FROM skips").fetchnumpy()
        excluded = np.concatenate([np.asarray(done["image_id"], dtype=np.int64),
                                   self.lease_book.held_by_others(user)])
        ids = self.readable_image_ids()
        if len(excluded):
            ids = ids[~np.isin(ids, excluded)]
        preds = self._predictions_copy.get()
        known = preds["image_id"]
        pos, found = find_sorted(known, ids)

        def column(name: str) -> np.ndarray:
            out = np.full(len(ids), np.nan)
            if found.any():
                out[found] = preds[name][pos[found]]
            return out
        return {"ids": ids, "class_id": column("class_id"), "probability": column("probability"),
                "margin": column("margin"), "entropy": column("entropy")}

    def _read_predictions(self) -> dict[str, np.ndarray]:
        res = self._cursor().execute(
            "SELECT image_id, class_id, probability, margin, entropy, model_version "
            "FROM predictions ORDER BY image_id").fetchnumpy()
        cache = {"image_id": np.asarray(res["image_id"], dtype=np.int64)}
        for name in ("class_id", "probability", "margin", "entropy"):
            cache[name] = np.asarray(res[name], dtype=np.float64)
        cache["model_version"] = np.asarray(res["model_version"], dtype=np.int64)
        return cache

    # ---- the fast next-image path (hitl.strategies.OpenIndex) ----------------------------------
    def open_index(self, user: str) -> strategies.OpenIndex:
        """Sorted orders and taken flags for a classification next image, reused across key
        presses: the flags are rebuilt once per change of labels (revision), the orders once
        per published set of predictions; only the few leases (in memory) are read each call."""
        return strategies.OpenIndex(self.readable_image_ids(), self._blocked_flags(),
                                    self.lease_book.held_by_others(user), self._score_orders())

    def _score_orders(self) -> dict:
        return self._orders_copy.get()

    def _read_score_orders(self) -> dict:
        preds = self._predictions_copy.get()
        return strategies.score_orders(preds["image_id"], preds["class_id"],
                                       preds["probability"], preds["margin"], preds["entropy"])

    def _blocked_flags(self) -> np.ndarray:
        """A flag by image id: unreadable, or labeled, masked or skipped by anyone (kept by
        revision and image rows)."""
        return self._blocked.get()

    def _read_blocked_flags(self) -> np.ndarray:
        readable = self.readable_image_ids()
        done = self._cursor().execute(
            "SELECT image_id FROM labels UNION ALL SELECT image_id FROM skips UNION ALL "
            "SELECT image_id FROM masks").fetchnumpy()["image_id"]
        done = np.asarray(done, dtype=np.int64)
        size = int(readable[-1]) + 1 if readable.size else 0
        blocked = np.ones(size, dtype=bool)
        blocked[readable] = False
        blocked[done[done < size]] = True
        return blocked

    def _advance_blocked(self, before: int, done: Iterable[int] | None) -> None:
        """After a write that only closed images (labeled, masked, skipped), mark them in the
        cached flags instead of reading every label again (save + next does this each time)."""
        if done is None:
            return
        ids = np.asarray(list(done), dtype=np.int64)

        def close(flags: np.ndarray) -> None:
            flags[ids[(ids >= 0) & (ids < flags.size)]] = True
        images = self.index.stamp("images")
        self._blocked.advance((before, images), (self.revision, images), close)

    def label_counts(self) -> dict[int, int]:
        """Labels per class id, classes with no label included as 0 (once per revision)."""
        return self.index.per_revision("label_counts", lambda: dict(self._rows(
            "SELECT c.id, count(l.image_id) FROM classes c "
            "LEFT JOIN labels l ON l.class_id = c.id GROUP BY c.id")))

