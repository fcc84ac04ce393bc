"""What a labeler can do — next image, label, mask, skip, undo, open by id — for the page and
the API alike. Every answer is a plain dict so both can pass it on as it is.
"""
from __future__ import annotations

import time

import numpy as np

from hitl import strategies
from hitl.session import Session
from hitl.store import StoreError
from hitl.tasks import get_task

TASK_STRATEGIES = {"classification": strategies.CLASSIFICATION_STRATEGIES,
                   "segmentation": strategies.SEGMENTATION_STRATEGIES}


class Labeling:
    def __init__(self, session: Session):
        self.session = session

    @property
    def store(self):
        return self.session.store

    # ---- reading ---------------------------------------------------------------------------
    def view(self, image_id: int | None, task: str, note: str | None = None,
             strategy: str | None = None) -> dict:
        """Everything the page shows about one image (or the 'nothing left' state)."""
        if image_id is None:
            return {"image_id": None, "filename": None, "prediction": None, "label": None,
                    "skipped": False, "note": note or "No images left to label.",
                    "strategy": strategy}
        state = self.store.image_state(image_id)
        if state is None:
            raise StoreError(f"There is no image with id {image_id}.")
        row = state["row"]
        view = {"image_id": row.id, "filename": row.filename, "width": row.width,
                "height": row.height, "readable": row.readable, "error": row.error,
                "split": row.split, "skipped": state["skipped"], "note": note,
                "strategy": strategy, "prediction": None, "label": None}
        if task == "classification":
            names = {c.id: c.name for c in self.store.classes()}
            view["label"] = names.get(state["label"])
            pred = state["prediction"]
            if pred is not None and pred[0] in names:
                view["prediction"] = {"label": names[pred[0]], "probability": pred[1],
                                      "model_version": pred[2]}
        else:
            view["label"] = "mask" if state["has_mask"] else None
        return view

    def next_image(self, task: str, strategy: str, class_name: str | None = None,
                   user: str = "local") -> dict:
        """Pick, lease and describe the next image; falls back (and says so) when a strategy
        has no candidate."""
        wanted = strategy
        valid = TASK_STRATEGIES[task]
        if strategy not in valid:
            raise StoreError(f"Unknown strategy {strategy!r}; choose one of: "
                             + ", ".join(valid) + ".")
        index = self.store.open_index(user) if self._has_fast_path(task) else None
        candidates = None if index is not None else self.store.candidates(task, user)
        if (candidates["ids"].size == 0 if index is None else index.blocked.all()):
            return self.view(None, task, strategy=strategy)
        note = None
        tried = []
        first_problem = None
        while strategy is not None:
            tried.append(strategy)
            ordered, problem = (self._order(task, strategy, class_name, candidates, user)
                                if index is None else
                                self._fast_order(strategy, class_name, index, user))
            image_id = self.store.lease_first(ordered, user, self.session.settings.lease_seconds) \
                if ordered.size else None
            if image_id is not None:
                if strategy != wanted:
                    note = f"'{wanted}' had no candidate ({first_problem}); showing '{strategy}'."
                return self.view(image_id, task, note=note, strategy=strategy)
            if first_problem is None:
                first_problem = problem or "all its candidates are taken by other labelers"
            strategy = strategies.FALLBACK.get(strategy)
            if strategy in tried:
                strategy = None
        return self.view(None, task, note="Every remaining image is being labeled by someone "
                                          "else right now.", strategy=wanted)

    def _order(self, task: str, strategy: str, class_name: str | None, c: dict,
               user: str) -> tuple[np.ndarray, str | None]:
        """Candidate ids for one strategy, and why it has none when it has none."""
        no_predictions = "no predictions yet"
        if strategy == "sequential":
            return strategies.sequential(c), None
        if strategy == "random":
            return strategies.random_order(c, seed=time.time_ns() % (2**32)), None
        if task == "segmentation":
            if strategy == "uncertain":
                return strategies.seg_uncertain(c), no_predictions
            cls = self._class(class_name)
            position = [x.id for x in self.store.classes()].index(cls.id)
            return strategies.seg_of_class(c, position), f"no image predicted to hold {cls.name}"
        if strategy in ("uncertain", "margin", "entropy"):
            score = "probability" if strategy == "uncertain" else strategy
            return strategies.uncertain(c, score), no_predictions
        if strategy == "minority":
            order = [x.id for x in self.store.classes()]
            return (strategies.minority(c, self.store.label_counts(), order),
                    "no predicted candidate for any class")
        if strategy == "class":
            cls = self._class(class_name)
            return strategies.of_class(c, cls.id), f"no unlabeled image predicted as {cls.name}"
        if strategy == "last class":
            last = self.store.last_label_class(user)
            if last is None:
                return np.array([], dtype=np.int64), "no label yet"
            return strategies.of_class(c, last), "no unlabeled image predicted as the last class"
        raise StoreError(f"Unknown strategy {strategy!r}.")

    @staticmethod
    def _has_fast_path(task: str) -> bool:
        """Tasks whose candidates are class predictions walk pre-sorted orders (fast_order)."""
        return get_task(task).candidates == "label_candidates"

    def _fast_order(self, strategy: str, class_name: str | None, index: strategies.OpenIndex,
                    user: str) -> tuple[np.ndarray, str | None]:
        """_order's answers for classification, from orders sorted once per model."""
        if strategy in ("sequential", "random"):
            return strategies.fast_order(strategy, index, seed=time.time_ns() % (2**32)), None
        if strategy in ("uncertain", "margin", "entropy"):
            return strategies.fast_order(strategy, index), "no predictions yet"
        if strategy == "minority":
            order = [x.id for x in self.store.classes()]
            counts = self.store.label_counts()
            ranking = sorted(order, key=lambda cid: (counts.get(cid, 0), order.index(cid)))
            return (strategies.fast_order(strategy, index, class_ranking=ranking),
                    "no predicted candidate for any class")
        if strategy == "class":
            cls = self._class(class_name)
            return (strategies.fast_order(strategy, index, class_id=cls.id),
                    f"no unlabeled image predicted as {cls.name}")
        if strategy == "last class":
            last = self.store.last_label_class(user)
            if last is None:
                return np.array([], dtype=np.int64), "no label yet"
            return (strategies.fast_order(strategy, index, class_id=last),
                    "no unlabeled image predicted as the last class")
        raise StoreError(f"Unknown strategy {strategy!r}.")

    def _class(self, name: str | None):
        if not name:
            raise StoreError("Choose a class for the 'class' strategy.")
        cls = self.store.class_by_name(name)
        if cls is None:
            raise StoreError(f"There is no class named {name!r}.")
        return cls

    def open_image(self, image_id: int, task: str, user: str = "local") -> dict:
        """Open any image by id (go to id, arrows); keeps it leased while it is on screen."""
        view = self.view(int(image_id), task)
        holder = self.store.lease_holder(int(image_id))
        if holder is not None and holder != user:
            view["note"] = f"{holder} is working on this image right now."
        else:
            self.store.renew_lease(int(image_id), user, self.session.settings.lease_seconds)
        return view

    def neighbour(self, image_id: int | None, step: int, task: str, user: str = "local") -> dict:
        start = 0 if image_id is None and step > 0 else image_id
        if start is None:
            start = 2**31 - 1
        target = self.store.neighbour_id(start, step)
        if target is None:
            view = self.view(image_id, task) if image_id is not None else self.view(None, task)
            view["note"] = "This is the last image." if step > 0 else "This is the first image."
            return view
        return self.open_image(target, task, user)

    # ---- writing ---------------------------------------------------------------------------
    def _require_task(self, task: str, user: str) -> None:
        message = self.session.task_message(task)
        if message:
            raise StoreError(message)
        self.session.lock_task(task, user)

    def annotate(self, image_id: int, label: str, user: str = "local") -> dict:
        """Label one image with a class name; the prediction shown is kept for live accuracy."""
        self._require_task("classification", user)
        cls = self.store.class_by_name(str(label))
        if cls is None:
            raise StoreError(f"There is no class named {label!r}.")
        if self.store.image(int(image_id)) is None:
            raise StoreError(f"There is no image with id {image_id}.")
        pred = self.store.prediction(int(image_id))
        self.store.set_label(int(image_id), cls.id, user,
                             shown_class_id=None if pred is None else pred[0],
                             shown_model_version=None if pred is None else pred[2])
        return {"ok": True, "image_id": int(image_id), "label": cls.name}

    def annotate_positions(self, image_id: int, positions: np.ndarray, user: str = "local") -> dict:
        """Save a mask whose pixels hold class positions (1-based, 0 = unlabeled)."""
        self._require_task("segmentation", user)
        row = self.store.image(int(image_id))
        if row is None:
            raise StoreError(f"There is no image with id {image_id}.")
        positions = np.asarray(positions)
        if positions.shape != (row.height, row.width):
            raise StoreError(f"The mask is {positions.shape[1]}x{positions.shape[0]} but the "
                             f"image is {row.width}x{row.height}.")
        pixels = self.store.set_mask_positions(int(image_id), positions, user)
        return {"ok": True, "image_id": int(image_id), "labeled_pixels": pixels}

    def mask_positions(self, image_id: int) -> np.ndarray | None:
        """The stored mask as class positions (1-based), for the editor and the API."""
        return self.store.mask_positions(int(image_id))

    def skip(self, image_id: int, user: str = "local") -> dict:
        self.store.skip(int(image_id), user)
        return {"ok": True, "image_id": int(image_id)}

    def undo(self, user: str = "local") -> dict:
        image_id = self.store.undo(user)
        if image_id is None:
            return {"ok": False, "error": "Nothing to undo.", "image_id": None}
        self.store.renew_lease(image_id, user, self.session.settings.lease_seconds)
        return {"ok": True, "image_id": image_id}
