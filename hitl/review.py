"""Review in bulk (issue 13): pages of one predicted class, suspect labels, more like this.

The store-aware layer between the service (`hitl/service/`) and the pure cores
(`hitl/ml/suspects.py`, `hitl/ml/similar.py`). It reads the trainer's cached features and
never touches the live model; suspect scores are refreshed by the trainer when it is idle
(`SuspectRefresher`), so asking for suspects is one query.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime

import numpy as np

from hitl.errors import BadInput, Conflict, NotFound, Unavailable
from hitl.store import Store
from hitl.tasks import current_task, get_task

log = logging.getLogger(__name__)
TASK = "classification"  # review pages are a classification view; suspects serve both tasks
MAX_PAGE = 96
MAX_SUSPECTS = 500  # a queue worked through one at a time, not a grid
POOL_BUDGET_S = 2.0  # segmentation: seconds of patch-grid pooling per "more like this" call


def _band(band) -> tuple[float, float]:
    """(low, high) probability band; None or empty means every prediction."""
    if band is None or (isinstance(band, (list, tuple)) and len(band) == 0):
        return 0.0, 1.0
    try:
        low, high = (float(v) for v in band)
    except (TypeError, ValueError):
        raise BadInput("band must be two numbers [low, high] between 0 and 1.") from None
    if not 0.0 <= low <= high <= 1.0:
        raise BadInput(f"band must satisfy 0 <= low <= high <= 1; got [{low}, {high}].")
    return low, high


def _page_size(n, most: int = MAX_PAGE) -> int:
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise BadInput(f"n must be a whole number; got {n!r}.") from None
    if not 1 <= n <= most:
        raise BadInput(f"n must be between 1 and {most}; got {n}.")
    return n


def _ids(values, name: str) -> list[int]:
    try:
        out = [int(v) for v in (values or [])]
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a list of image ids.") from None
    if len(set(out)) != len(out):
        raise BadInput(f"{name} names an image twice.")
    return out


class Review:
    """What a labeler can do with pages of images; every answer is a plain dict."""

    def __init__(self, session):
        self.session = session
        self._pooled: tuple[str, np.ndarray, np.ndarray] | None = None
        self.pool_pending = 0  # images whose patch grids are not pooled yet

    @property
    def store(self) -> Store:
        return self.session.store

    def _class(self, name):
        if not name or not isinstance(name, str):
            raise BadInput("Choose a class.")
        cls = self.store.class_by_name(name)
        if cls is None:
            raise NotFound(f"There is no class named {name!r}.")
        return cls

    def _classification_only(self) -> None:
        message = self.session.task_message(TASK)
        if message:
            raise Conflict(message)

    def _items(self, ids: list[int], extra: dict[int, dict] | None = None) -> list[dict]:
        names = {c.id: c.name for c in self.store.classes()}
        rows = {r.id: r for r in self.store.images_by_ids(ids)}
        items = []
        for image_id in ids:
            pred = self.store.prediction(image_id)
            item = {"image_id": image_id, "filename": rows[image_id].filename,
                    "prediction": None if pred is None or pred[0] not in names else
                    {"label": names[pred[0]], "probability": float(pred[1]),
                     "model_version": int(pred[2])}}
            item.update((extra or {}).get(image_id, {}))
            items.append(item)
        return items

    # ---- review pages -----------------------------------------------------------------------
    def review_batch(self, user: str, class_name: str, n: int = 24, band=None) -> dict:
        """A page of unlabeled images predicted as class_name, most confident first, leased to
        the caller as a whole (other labelers' pages never overlap it)."""
        self._classification_only()
        cls, n, (low, high) = self._class(class_name), _page_size(n), _band(band)
        c = get_task(TASK).candidates(self.store, user)
        prob = c["probability"]
        keep = (c["class_id"] == cls.id) & (prob >= low) & (prob <= high)
        keep &= ~np.isin(c["ids"], self.store.rejected_ids(cls.id))
        ids, prob = c["ids"][keep], prob[keep]
        ordered = ids[np.lexsort((ids, -prob))]
        leased = self.store.lease_page(ordered, user, n, self.session.settings.lease_seconds)
        note = None if leased else (
            f"No unlabeled image is predicted as {cls.name}"
            + ("" if (low, high) == (0.0, 1.0) else f" with probability in [{low}, {high}]")
            + " (or the others are on someone else's page).")
        return {"ok": True, "class_name": cls.name, "band": [low, high],
                "items": self._items(leased), "note": note}

    def accept_batch(self, user: str, image_ids, class_name: str, rejected_ids=None,
                     relabels: dict | None = None) -> dict:
        """Store a page: the unmarked images as class_name (source 'review'), relabels as
        their class, the other marked ones as 'not class_name'. One undo reverts it all."""
        self._classification_only()
        cls = self._class(class_name)
        ids, rejected = _ids(image_ids, "image_ids"), _ids(rejected_ids, "rejected_ids")
        if not ids:
            raise BadInput("image_ids is empty: nothing to accept.")
        if len(ids) > MAX_PAGE:
            raise BadInput(f"A page holds at most {MAX_PAGE} images.")
        if not isinstance(relabels or {}, dict):
            raise BadInput("relabels must map image ids to class names.")
        fixes = {}
        for key, name in (relabels or {}).items():
            image_id = _ids([key], "relabels")[0]
            fixes[image_id] = self._class(name).id
        stray = sorted((set(rejected) | set(fixes)) - set(ids))
        if stray:
            raise BadInput(f"Marked image(s) {stray} are not on the page.")
        self.session.lock_task(TASK, user)
        done = self.store.accept_page(user, cls.id, ids, fixes, rejected)
        names = {c.id: c.name for c in self.store.classes()}
        return {"ok": True, "batch_id": done["batch_id"], "class_name": cls.name,
                "accepted": done["accepted"],
                "relabeled": {str(i): names[c] for i, c in done["relabeled"].items()},
                "rejected": done["rejected"]}

    # ---- suspects -----------------------------------------------------------------------------
    def suspects(self, user: str, n: int = 24) -> dict:
        """Labeled images whose out-of-sample prediction disagrees most with their label
        (score: probability of the given class, or IoU of the mask), leased to the caller."""
        n = _page_size(n, MAX_SUSPECTS)
        rows = self.store.suspect_rows(user, n)
        leased = set(self.store.lease_page([r[0] for r in rows], user, n,
                                           self.session.settings.lease_seconds, labeled=True))
        names = {c.id: c.name for c in self.store.classes()}
        extra = {r[0]: {"label": "mask" if r[2] is None else names.get(r[2]),
                        "oos_prediction": None if r[3] is None else names.get(r[3]),
                        "score": float(r[4]), "model_version": r[5]}
                 for r in rows if r[0] in leased}
        note = None if extra else "No suspects yet: the trainer scores labels when it is idle."
        return {"ok": True, "items": self._items(list(extra), extra), "note": note}

    def _seen(self, image_id: int, seen_label: str | None) -> None:
        """Refuse an action on a label that changed since the labeler saw it."""
        if seen_label is None:
            return
        names = {c.id: c.name for c in self.store.classes()}
        label = self.store.label_of(image_id)
        now = names.get(label) if label is not None else \
            ("mask" if self.store.mask(image_id) is not None else None)
        if now != seen_label:
            raise Conflict(f"Image {image_id} changed meanwhile: its label is now {now!r}, "
                             f"you saw {seen_label!r}. Nothing was changed.")

    def keep(self, user: str, image_id: int, seen_label: str | None = None) -> dict:
        """The label stays as it is and leaves the suspects list."""
        self._seen(int(image_id), seen_label)
        self.store.keep_label(int(image_id), user)
        return {"ok": True, "image_id": int(image_id)}

    def relabel(self, user: str, image_id: int, class_name: str,
                seen_label: str | None = None) -> dict:
        """Give a suspect (or any image) another class, recorded as a deliberate label."""
        if self.store.mask(int(image_id)) is not None:
            raise BadInput(f"A mask is relabeled by repainting it: open image {image_id} in "
                             "the Segmentation tab (G, then its id).")
        self._classification_only()
        cls, image_id = self._class(class_name), int(image_id)
        if self.store.image(image_id) is None:
            raise NotFound(f"There is no image with id {image_id}.")
        self._seen(image_id, seen_label)
        self.store.set_label(image_id, cls.id, user)
        return {"ok": True, "image_id": image_id, "label": cls.name}

    def undo(self, user: str) -> dict:
        """Undo the caller's last action; a whole page when it was a page."""
        done = self.store.undo_details(user)
        if done is None:
            raise Conflict("Nothing to undo.")
        return {"ok": True, "image_id": done["image_id"], "image_ids": done["image_ids"],
                "page": done["batch_id"] is not None}

    def remove(self, user: str, image_id: int, seen_label: str | None = None) -> dict:
        """Remove a suspect's label (or mask), undoably."""
        image_id = int(image_id)
        self._seen(image_id, seen_label)
        if self.store.label_of(image_id) is not None:
            self.store.remove_label(image_id, user)
        elif (mask := self.store.mask(image_id)) is not None:
            self.store.set_mask(image_id, np.zeros_like(mask), user)
        else:
            raise Conflict(f"Image {image_id} has no label to remove.")
        return {"ok": True, "image_id": image_id}

    # ---- more like this -----------------------------------------------------------------------
    def similar(self, user: str, image_id: int, n: int = 24) -> dict:
        """The n unlabeled images nearest to image_id by cached features (cosine), leased to the
        caller as a page that accept_batch can label in bulk."""
        n, image_id = _page_size(n), int(image_id)
        if self.store.image(image_id) is None:
            raise NotFound(f"There is no image with id {image_id}.")
        ids, feats = self._features()
        row = np.searchsorted(ids, image_id)
        if row >= len(ids) or ids[row] != image_id:
            raise Unavailable(f"Image {image_id} has no cached features yet; try again when the "
                             "trainer has extracted them.")
        free = current_task(self.store.task()).candidates(self.store, user)["ids"]
        exclude = ~np.isin(ids, free)
        exclude[row] = True
        from hitl.ml.similar import nearest  # torch: imported on first use, not at start-up
        rows, sims = nearest(feats[row], feats, 4 * n, exclude=exclude)
        leased = self.store.lease_page(ids[rows], user, n, self.session.settings.lease_seconds)
        sim = dict(zip(ids[rows].tolist(), sims.tolist()))
        note = None if leased else "No unlabeled image is free to show."
        if getattr(self, "pool_pending", 0):
            note = (f"Searched {len(ids)} images; {self.pool_pending} more are still being "
                    "pooled from their patch grids: ask again for a wider search.")
        return {"ok": True, "image_id": image_id,
                "items": self._items(leased, {i: {"similarity": sim[i]} for i in leased}),
                "note": note}

    def _features(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted ids, one vector per image) from the frozen learner's cache: the global
        vectors, or mean-pooled patch grids in segmentation (pooled once, then kept)."""
        cache = self.session.trainer.published("features")
        if cache is None:
            raise Unavailable("More like this needs frozen mode's cached features; the trainer "
                             "has none yet (is it running in frozen mode?).")
        ids, feats = cache.get_global()
        if len(ids):
            return ids, feats
        if not hasattr(cache, "get_patches"):
            raise Unavailable("No cached features yet.")
        wanted = self.store.readable_image_ids()
        key = f"{id(self.store)}:{getattr(cache, 'dir', '')}"  # a reset session reuses the dir
        self.pool_pending = 0
        if self._pooled is None or self._pooled[0] != key:
            self._pooled = (key, np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
        _, have, pooled = self._pooled
        new_ids, new_rows = [], []
        todo = np.setdiff1d(wanted, have).tolist()
        start = time.monotonic()
        for n, i in enumerate(todo):
            if time.monotonic() - start > POOL_BUDGET_S:  # a big set is pooled over calls
                self.pool_pending = len(todo) - n
                break
            grid = cache.get_patches(i)
            if grid is not None:
                new_ids.append(i)
                new_rows.append(grid.reshape(-1, grid.shape[-1]).astype(np.float32).mean(0))
        if new_ids:
            ids = np.concatenate([have, np.asarray(new_ids, np.int64)])
            feats = np.concatenate([pooled, np.stack(new_rows)]) if len(have) \
                else np.stack(new_rows)
            order = np.argsort(ids)
            self._pooled = (key, ids[order], feats[order])
        return self._pooled[1], self._pooled[2]


def review_stats(store: Store) -> dict:
    """Review numbers for the stats panel: accept rate per class, review labels apart."""
    names = {c.id: c.name for c in store.classes()}
    per_class = {}
    for cid, c in store.review_counts().items():
        if cid in names:
            per_class[names[cid]] = dict(c, accept_rate=round(c["accepted"] / c["shown"], 4)
                                         if c["shown"] else None)
    return {"labels": sum(c["labels"] for c in per_class.values()), "per_class": per_class}


class SuspectRefresher:
    """Trainer idle hook: re-score every label out-of-sample when labels changed.

    Called with the trainer's current learner when it has nothing else to do; at most once per
    MIN_INTERVAL_S, so a labeling burst costs one refresh once it pauses. Learners without a
    feature cache (fine-tune mode) are skipped: their features are not cached.
    """

    MIN_INTERVAL_S = 5.0

    def __init__(self, store: Store):
        self.store = store
        self._done: tuple | None = None
        self._last = 0.0

    def __call__(self, learner) -> bool:
        cache = getattr(learner, "cache", None)
        version = getattr(learner, "version", None)
        if cache is None or version is None:
            return False
        key = (self.store.revision, version)
        if key == self._done or time.monotonic() - self._last < self.MIN_INTERVAL_S:
            return False
        self._last = time.monotonic()
        computed_at = datetime.now()
        class_ids = [c.id for c in self.store.classes()]
        frame = current_task(self.store.task()).score_suspects(self.store, cache, class_ids)
        if frame is not None:
            frame["model_version"] = int(version)
            frame["computed_at"] = computed_at
            self.store.write_suspects(frame)
        self._done = key
        return False

