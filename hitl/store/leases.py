"""Leases and the candidates for the next image (the fast path included)."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from hitl import strategies
from hitl.store.common import (
    as_timedelta,
    current_time,
    float_array,
)
from hitl.tasks import get_task


class Leases:
    """Leases and the candidates for the next image (the fast path included)."""

    # ---- leases --------------------------------------------------------------------------
    def lease_first(self, candidates: Iterable[int], user: str, seconds: float,
                    keep_others: bool = False) -> int | None:
        """Lease the first candidate nobody else holds; atomic against other labelers.

        A labeler holds one image unless keep_others (the page's prefetched images)."""
        ordered = [int(i) for i in candidates]
        if not ordered:
            return None
        if self._still_leased(ordered[0], user, seconds, keep_others):
            return ordered[0]  # asked again (a refresh, a prefetch): no write needed
        return self._write(self._lease_first, ordered, user, seconds, keep_others)

    def _still_leased(self, image_id: int, user: str, seconds: float, keep_others: bool) -> bool:
        """The user holds image_id for at least half a lease more, it is still open, and (unless
        keep_others) it is the only image they hold: leasing it again would change nothing."""
        return bool(self._rows(
            "SELECT 1 FROM leases WHERE image_id = $id AND \"user\" = $user "
            "AND expires_at > $fresh AND $id NOT IN (SELECT image_id FROM labels) "
            "AND $id NOT IN (SELECT image_id FROM skips) "
            "AND $id NOT IN (SELECT image_id FROM masks) "
            "AND ($keep OR (SELECT count(*) FROM leases WHERE \"user\" = $user) = 1)",
            {"id": int(image_id), "user": user, "fresh": current_time() + as_timedelta(seconds / 2),
             "keep": bool(keep_others)}))

    def _lease_first(self, cur, ordered: list[int], user: str, seconds: float,
                     keep_others: bool = False) -> int | None:
        """lease_first inside a write transaction (also used by set_label's save + next)."""
        now = current_time()
        row = cur.execute(
            "SELECT c.id FROM (SELECT unnest($ids) AS id, generate_subscripts($ids, 1) AS n) c "
            "WHERE c.id NOT IN (SELECT image_id FROM leases WHERE expires_at > $now "
            "AND \"user\" <> $user) "
            "AND c.id NOT IN (SELECT image_id FROM labels) "
            "AND c.id NOT IN (SELECT image_id FROM skips) "
            "AND c.id NOT IN (SELECT image_id FROM masks) ORDER BY c.n LIMIT 1",
            {"ids": ordered, "now": now, "user": user}).fetchall()
        if not row:
            return None
        image_id = row[0][0]
        if keep_others:
            cur.execute("DELETE FROM leases WHERE image_id = ?", [image_id])
        else:
            cur.execute("DELETE FROM leases WHERE \"user\" = ? OR image_id = ?", [user, image_id])
        cur.execute("INSERT INTO leases VALUES (?, ?, ?)",
                    [image_id, user, now + as_timedelta(seconds)])
        return image_id

    def renew_lease(self, image_id: int, user: str, seconds: float) -> bool:
        """Keep an image while its labeler works on it (opened by id or still on screen)."""
        def renew(cur):
            now = current_time()
            holder = cur.execute("SELECT \"user\" FROM leases WHERE image_id = ? "
                                 "AND expires_at > ?", [image_id, now]).fetchone()
            if holder is not None and holder[0] != user:
                return False
            cur.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)",
                        [image_id, user, now + as_timedelta(seconds)])
            return True
        return self._write(renew)

    def release_leases(self, user: str, image_ids: Iterable[int] | None = None) -> None:
        """Free this user's leases: all of them, or only those on the given images."""
        if image_ids is None:
            self._write(lambda cur: cur.execute("DELETE FROM leases WHERE \"user\" = ?", [user]))
            return
        ids = [int(i) for i in image_ids]
        if ids:
            self._write(lambda cur: cur.execute(
                "DELETE FROM leases WHERE \"user\" = ? AND image_id IN (SELECT unnest(?))",
                [user, ids]))

    def lease_holder(self, image_id: int) -> str | None:
        return self._one("SELECT \"user\" FROM leases WHERE image_id = ? AND expires_at > ?",
                         [image_id, current_time()])

    # ---- candidates for the next image ----------------------------------------------------
    def candidates(self, task: str, user: str) -> dict[str, np.ndarray]:
        """Unlabeled, unskipped, readable images nobody else leases, with their predictions
        (the task's registry entry names which of the two methods below lists them)."""
        return getattr(self, get_task(task).candidates)(user)

    def mask_candidates(self, user: str) -> dict[str, np.ndarray]:
        """Images without a mask, with their segmentation summaries (entropy, fractions)."""
        params = {"now": current_time(), "user": user}
        res = self._cursor().execute(
            "SELECT i.id, p.entropy, p.fractions FROM images i "
            "LEFT JOIN seg_predictions p ON p.image_id = i.id "
            "WHERE i.readable AND i.id NOT IN (SELECT image_id FROM masks) "
            "AND i.id NOT IN (SELECT image_id FROM skips) "
            "AND i.id NOT IN (SELECT image_id FROM leases WHERE expires_at > $now "
            "AND \"user\" <> $user) ORDER BY i.id", params).fetchnumpy()
        return {"ids": res["id"].astype(np.int64), "entropy": float_array(res["entropy"]),
                "fractions": res["fractions"]}

    def label_candidates(self, user: str) -> dict[str, np.ndarray]:
        """Images without a class label, with their class predictions (NaN where none)."""
        params = {"now": current_time(), "user": user}
        cur = self._cursor()
        excluded = cur.execute(
            "SELECT image_id FROM labels UNION ALL SELECT image_id FROM skips UNION ALL "
            "SELECT image_id FROM leases WHERE expires_at > $now AND \"user\" <> $user",
            params).fetchnumpy()["image_id"]
        ids = self.readable_image_ids()
        if len(excluded):
            ids = ids[~np.isin(ids, np.asarray(excluded, dtype=np.int64))]
        preds = self._predictions_cache()
        known = preds["image_id"]
        pos = np.clip(np.searchsorted(known, ids), 0, max(len(known) - 1, 0))
        found = (known[pos] == ids) if len(known) else np.zeros(len(ids), dtype=bool)

        def column(name: str) -> np.ndarray:
            out = np.full(len(ids), np.nan)
            if found.any():
                out[found] = preds[name][pos[found]]
            return out
        return {"ids": ids, "class_id": column("class_id"), "probability": column("probability"),
                "margin": column("margin"), "entropy": column("entropy")}

    def _predictions_cache(self) -> dict[str, np.ndarray]:
        cache = self._pred_cache
        if cache is None:
            res = self._cursor().execute(
                "SELECT image_id, class_id, probability, margin, entropy, model_version "
                "FROM predictions "
                "ORDER BY image_id").fetchnumpy()
            cache = {"image_id": np.asarray(res["image_id"], dtype=np.int64)}
            for name in ("class_id", "probability", "margin", "entropy"):
                cache[name] = np.asarray(res[name], dtype=np.float64)
            cache["model_version"] = np.asarray(res["model_version"], dtype=np.int64)
            self._pred_cache = cache
        return cache

    # ---- the fast next-image path (hitl.strategies.fast_order) --------------------------------
    def open_index(self, user: str) -> strategies.OpenIndex:
        """Sorted orders and taken flags for a classification next image, reused across key
        presses: the flags are rebuilt once per change of labels (revision), the orders once
        per published set of predictions; only the few leases are read on every call."""
        leased = self._cursor().execute(
            "SELECT image_id FROM leases WHERE expires_at > ? AND \"user\" <> ?",
            [current_time(), user]).fetchnumpy()["image_id"]
        return strategies.OpenIndex(self.readable_image_ids(), self._blocked_flags(),
                                    np.asarray(leased, dtype=np.int64), self._score_orders())

    def _score_orders(self) -> dict:
        preds = self._predictions_cache()
        cached = self._orders
        if cached is None or cached[0] is not preds:
            cached = (preds, strategies.score_orders(
                preds["image_id"], preds["class_id"], preds["probability"], preds["margin"],
                preds["entropy"]))
            self._orders = cached
        return cached[1]

    def _blocked_flags(self) -> np.ndarray:
        """A flag by image id: unreadable, or labeled, masked or skipped by anyone."""
        revision, readable = self.revision, self.readable_image_ids()  # revision first: a
        cached = self._blocked  # write during the rebuild then only makes the next one redo
        if cached is not None and cached[0] == revision and cached[1] is readable:
            return cached[2]
        done = self._cursor().execute(
            "SELECT image_id FROM labels UNION ALL SELECT image_id FROM skips UNION ALL "
            "SELECT image_id FROM masks").fetchnumpy()["image_id"]
        done = np.asarray(done, dtype=np.int64)
        size = int(readable[-1]) + 1 if readable.size else 0
        blocked = np.ones(size, dtype=bool)
        blocked[readable] = False
        blocked[done[done < size]] = True
        self._blocked = (revision, readable, blocked)
        return blocked

    def label_counts(self) -> dict[int, int]:
        """Labels per class id, classes with no label included as 0."""
        return dict(self._rows("SELECT c.id, count(l.image_id) FROM classes c "
                               "LEFT JOIN labels l ON l.class_id = c.id GROUP BY c.id"))

