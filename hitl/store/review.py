"""Review pages, verdicts and suspect scores."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from hitl.store.common import (
    StoreError,
    current_time,
)


class Review:
    """Review pages, verdicts and suspect scores."""

    # ---- review: pages of predictions, verdicts, suspects (issue 13) ----------------------
    def rejected_ids(self, class_id: int) -> np.ndarray:
        """Images a labeler marked as not this class on a review page (kept off its pages)."""
        return np.asarray(self._cursor().execute(
            "SELECT image_id FROM verdicts WHERE class_id = ? AND verdict = 'not'",
            [int(class_id)]).fetchnumpy()["image_id"], dtype=np.int64)

    def lease_page(self, candidates: Iterable[int], user: str, n: int, seconds: float,
                   labeled: bool = False) -> list[int]:
        """Lease the first n candidates nobody else holds, as one page, atomically.

        The user's earlier leases end (one page or image at a time). With labeled=False only
        unlabeled, unmasked images qualify (review pages); labeled=True is for suspects.
        """
        ordered = [int(i) for i in candidates]
        if not ordered or n <= 0:
            return []
        with self._write_lock:  # the flags agree with the database (StoreBase._change)
            ids = []
            for image_id in self.lease_book.first_free(ordered, user):
                if labeled or not self._has_label_or_mask(image_id):
                    ids.append(image_id)
                    if len(ids) == n:
                        break
            if not ids:  # no page: the one before ends all the same
                self.lease_book.release(user)
            return self.lease_book.claim(ids, user, seconds, keep_others=False)

    def _has_label_or_mask(self, image_id: int) -> bool:
        return not self.is_open(image_id) and bool(self._one(
            "SELECT EXISTS (SELECT 1 FROM labels WHERE image_id = $id) "
            "OR EXISTS (SELECT 1 FROM masks WHERE image_id = $id)", {"id": int(image_id)}))

    def accept_page(self, user: str, class_id: int, image_ids: Sequence[int],
                    relabels: dict[int, int], rejected: Sequence[int]) -> dict:
        """Store one review page in one transaction under one batch id (undone as a whole).

        image_ids: every image the labeler saw; relabels: image -> another class; rejected:
        marked wrong without a class (a 'not this class' verdict, the image stays unlabeled).
        The rest become class_id with source 'review'. Refused as a whole when an image is
        unknown, labeled meanwhile, or leased by someone else: nothing is half-stored.
        """
        ids = [int(i) for i in image_ids]
        marked = {int(i) for i in rejected} | {int(i) for i in relabels}
        accepted = [i for i in ids if i not in marked]

        def accept(cur):
            classes = {r[0] for r in cur.execute("SELECT id FROM classes").fetchall()}
            for cid in {int(class_id), *relabels.values()}:
                if cid not in classes:
                    raise StoreError(f"There is no class with id {cid}.")
            known = {r[0] for r in cur.execute(
                "SELECT id FROM images WHERE id IN (SELECT unnest(?))", [ids]).fetchall()}
            if len(known) != len(set(ids)):
                raise StoreError("There is no image with id "
                                 f"{', '.join(str(i) for i in ids if i not in known)}.")
            held = set(ids) - set(self.lease_book.first_free(ids, user))
            taken = sorted(held | {r[0] for r in cur.execute(
                "SELECT image_id FROM labels WHERE image_id IN (SELECT unnest($ids))",
                {"ids": ids}).fetchall()})
            if taken:
                raise StoreError("This page is out of date: image(s) "
                                 f"{', '.join(map(str, taken))} were labeled or taken by "
                                 "someone else meanwhile. Nothing was stored; load the page again.")
            batch = cur.execute("SELECT nextval('seq_batches')").fetchone()[0]
            now = current_time()
            for image_id in ids:
                skipped = cur.execute("SELECT 1 FROM skips WHERE image_id = ?",
                                      [image_id]).fetchone() is not None
                if image_id in marked and image_id not in relabels:
                    cur.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, 'not', ?, ?)",
                                [image_id, int(class_id), user, now])
                    self._event(cur, user, "reject", image_id, int(class_id), batch_id=batch)
                    continue
                cid, source = (int(relabels[image_id]), "click") if image_id in relabels \
                    else (int(class_id), "review")
                cur.execute("INSERT INTO labels (image_id, class_id, \"user\", created_at, "
                            "source) VALUES (?, ?, ?, ?, ?)", [image_id, cid, user, now, source])
                cur.execute("DELETE FROM skips WHERE image_id = ?", [image_id])
                self._event(cur, user, "label", image_id, cid, prev_skipped=skipped,
                            batch_id=batch)
            cur.execute("INSERT INTO batches VALUES (?, ?, 'review', ?, ?, ?, ?, false)",
                        [batch, user, int(class_id), len(ids), len(accepted), now])
            return batch
        batch = self._change(accept)
        self.lease_book.drop(ids)
        return {"batch_id": int(batch), "accepted": accepted,
                "relabeled": {i: int(c) for i, c in relabels.items()},
                "rejected": [i for i in ids if i in marked and i not in relabels]}

    def keep_label(self, image_id: int, user: str = "local") -> None:
        """The labeler looked at a suspect and keeps its label or mask as it is."""
        def keep(cur):
            row = cur.execute("SELECT coalesce((SELECT class_id FROM labels WHERE image_id = $i),"
                              " (SELECT 0 FROM masks WHERE image_id = $i))",
                              {"i": int(image_id)}).fetchone()
            if row[0] is None:
                raise StoreError(f"Image {image_id} has no label to keep.")
            cur.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, 'kept', ?, ?)",
                        [int(image_id), row[0], user, current_time()])
            self._event(cur, user, "keep", int(image_id), row[0])
        self._change(keep)

    def remove_label(self, image_id: int, user: str = "local") -> None:
        """Delete one image's class label (undoable): a suspect that fits no class."""
        def remove(cur):
            prev = cur.execute("SELECT class_id FROM labels WHERE image_id = ?",
                               [int(image_id)]).fetchone()
            if prev is None:
                raise StoreError(f"Image {image_id} has no label to remove.")
            cur.execute("DELETE FROM labels WHERE image_id = ?", [int(image_id)])
            self._event(cur, user, "unlabel", int(image_id), prev_class_id=prev[0])
        self._change(remove)

    def write_suspects(self, frame: pd.DataFrame) -> None:
        """Replace the suspect scores (image_id, label_class_id, predicted_class_id, score,
        model_version, computed_at): computed from the labels as they were at computed_at."""
        self._publish("suspects", frame, "image_id, label_class_id, predicted_class_id, score, "
                      "model_version, computed_at", replace_all=True)

    def suspect_rows(self, user: str, n: int) -> list[tuple]:
        """(image_id, filename, label_class_id, predicted_class_id, score, model_version),
        lowest score first: labels and masks unchanged since they were scored, not kept by a
        labeler since, not leased by someone else."""
        return self._rows(
            "SELECT s.image_id, i.filename, s.label_class_id, s.predicted_class_id, s.score, "
            "s.model_version FROM suspects s JOIN images i ON i.id = s.image_id "
            "LEFT JOIN labels l ON l.image_id = s.image_id "
            "LEFT JOIN masks m ON m.image_id = s.image_id "
            "WHERE i.readable AND CASE WHEN s.label_class_id IS NULL "
            "THEN m.created_at <= s.computed_at "
            "ELSE l.class_id = s.label_class_id AND l.created_at <= s.computed_at END "
            "AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.image_id = s.image_id "
            "AND v.verdict = 'kept' AND v.class_id = coalesce(s.label_class_id, 0) "
            "AND v.created_at >= coalesce(l.created_at, m.created_at)) "
            "AND s.image_id NOT IN (SELECT unnest($leased::BIGINT[])) "
            "ORDER BY s.score, s.image_id LIMIT $n",
            {"leased": self.lease_book.held_by_others(user).tolist(), "n": max(0, int(n))})

    def review_counts(self) -> dict[int, dict[str, int]]:
        """Per page class: images shown on review pages, accepted as shown, and review labels
        in force (pages undone do not count); once per revision."""
        return self.index.per_revision("review_counts", self._read_review_counts)

    def _read_review_counts(self) -> dict[int, dict[str, int]]:
        out: dict[int, dict[str, int]] = {}
        for cid, shown, accepted in self._rows(
                "SELECT class_id, sum(shown), sum(accepted) FROM batches "
                "WHERE kind = 'review' AND NOT undone GROUP BY class_id"):
            out[cid] = {"shown": int(shown), "accepted": int(accepted), "labels": 0}
        for cid, count in self._rows("SELECT class_id, count(*) FROM labels "
                                     "WHERE source = 'review' GROUP BY class_id"):
            out.setdefault(cid, {"shown": 0, "accepted": 0, "labels": 0})["labels"] = int(count)
        return out


