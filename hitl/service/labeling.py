"""What a labeler does: read images and predictions, pick the next image, label, mask,
skip, undo, judge review pages and suspects (own work only)."""
from __future__ import annotations

import time

import numpy as np

from hitl import strategies
from hitl.errors import BadInput, Conflict, NotFound, Refused
from hitl.seen import check_seen
from hitl.service.guard import (
    IMPORT_USER,
    LABELER,
    Caller,
    action,
    mask_from_png,
    one_line,
    whole,
)
from hitl.tasks import TASKS, current_task, get_task


class Labeling:
    """Reading and labeling, for labelers and admins alike."""

    # ---- reading --------------------------------------------------------------------------
    def task(self) -> str:
        """The session's task; before the first label, the registry's default (hitl/tasks)."""
        return current_task(self.store.task()).name

    @action(LABELER)
    def view(self, caller: Caller, image_id: int | None, task: str, note: str | None = None,
             strategy: str | None = None) -> dict:
        """Everything the page shows about one image (or the 'nothing left' state)."""
        return self._view(image_id, task, note, strategy)

    def _view(self, image_id: int | None, task: str, note: str | None = None,
              strategy: str | None = None) -> dict:
        if image_id is None:
            return {"image_id": None, "filename": None, "prediction": None, "label": None,
                    "skipped": False, "note": note or "No images left to label.",
                    "strategy": strategy}
        state = self.store.image_state(int(image_id))
        if state is None:
            raise NotFound(f"There is no image with id {image_id}.")
        row = state["row"]
        view = {"image_id": row.id, "filename": row.filename, "width": row.width,
                "height": row.height, "readable": row.readable, "error": row.error,
                "split": row.split, "skipped": state["skipped"], "note": note,
                "strategy": strategy, "prediction": None, "label": None}
        get_task(task).describe(view, state, self.store.classes())
        return view

    @action(LABELER)
    def next_image(self, caller: Caller, task: str, strategy: str,
                   class_name: str | None = None, exclude=(), keep_leases: bool = False) -> dict:
        """Pick, lease and describe the next image; falls back (and says so) when a strategy
        has no candidate. The page prefetches several: it excludes those it holds already
        and keeps their leases."""
        user = caller.name
        if task not in TASKS:
            raise BadInput(f"Unknown task {one_line(task, 40)!r}.")
        chosen = TASKS[task].strategies[strategy]
        pool = TASKS[task].open_pool(self.store, user)
        if pool is None:
            return self._view(None, task, strategy=strategy)
        pick = strategies.Pick(self.store, user, pool, class_name, seed=time.time_ns() % 2**32)
        tried: list[str] = []
        first_problem = None
        while chosen is not None:
            tried.append(chosen.name)
            ordered = chosen.order(pick)
            if first_problem is None:  # why the strategy asked for had nothing, if it had
                first_problem = chosen.empty_reason(pick) if ordered.size == 0 \
                    else strategies.TAKEN
            if len(exclude):
                ordered = ordered[~np.isin(ordered, np.asarray(exclude, dtype=np.int64))]
            image_id = self.store.lease_first(ordered, user, self.session.settings.lease_seconds,
                                              keep_others=keep_leases) if ordered.size else None
            if image_id is not None:
                note = None if chosen.name == strategy else \
                    f"'{strategy}' had no candidate ({first_problem}); showing '{chosen.name}'."
                return self._view(image_id, task, note=note, strategy=chosen.name)
            chosen = TASKS[task].strategies.after(chosen, tried)
        return self._view(None, task, note="Every remaining image is being labeled by someone "
                                           "else right now.", strategy=strategy)

    @action(LABELER)
    def open_image(self, caller: Caller, image_id: int, task: str) -> dict:
        """Open any image by id (go to id, arrows); keeps it leased while it is on screen."""
        image_id = whole(image_id, "image_id")
        return self._open(caller, int(image_id), task)

    def _open(self, caller: Caller, image_id: int, task: str) -> dict:
        view = self._view(image_id, task)
        holder = self.store.lease_holder(image_id)
        if holder is not None and holder != caller.name:
            view["note"] = f"{holder} is working on this image right now."
        else:
            self.store.renew_lease(image_id, caller.name, self.session.settings.lease_seconds)
        return view

    @action(LABELER)
    def neighbour(self, caller: Caller, image_id: int | None, step: int, task: str) -> dict:
        """The previous or next image by id."""
        start = 0 if image_id is None and step > 0 else image_id
        if start is None:
            start = 2**31 - 1
        target = self.store.neighbour_id(int(start), int(step))
        if target is None:
            view = self._view(image_id, task)
            view["note"] = "This is the last image." if step > 0 else "This is the first image."
            return view
        return self._open(caller, target, task)

    @action(LABELER)
    def image_file(self, caller: Caller, image_id: int) -> dict:
        """Where an image's file is, for the routes that send it (never shown to anyone)."""
        image_id = whole(image_id, "image_id")
        row = self.store.image(image_id)
        if row is None:
            raise NotFound(f"There is no image with id {image_id}.")
        return {"path": row.path, "filename": row.filename}

    @action(LABELER)
    def keep_lease(self, caller: Caller, image_id: int) -> dict:
        """The page's timer: keep the image on screen reserved for the one who sees it."""
        image_id = whole(image_id, "image_id")
        kept = self.store.renew_lease(int(image_id), caller.name,
                                      self.session.settings.lease_seconds)
        return {"kept": bool(kept)}

    @action(LABELER)
    def leave(self, caller: Caller, image_ids: list[int] | None = None) -> dict:
        """A labeler who closes the page frees the images they were shown (or, given ids,
        those the page no longer holds ready)."""
        self.store.release_leases(caller.name, image_ids)
        return {}

    @action(LABELER)
    def mask_positions(self, caller: Caller, image_id: int) -> dict:
        """The stored mask as class positions (1-based), for the editor and the API."""
        image_id = whole(image_id, "image_id")
        return {"positions": self.store.mask_positions(int(image_id))}

    @action(LABELER)
    def predicted_mask(self, caller: Caller, image_id: int) -> dict:
        """The model's mask (class positions 1..K), class fractions, model version."""
        image_id = whole(image_id, "image_id")
        if self.store.image(int(image_id)) is None:
            raise NotFound(f"There is no image with id {image_id}.")
        result = self.session.trainer.predicted_mask(int(image_id))
        if result is None:
            raise NotFound("No predicted mask for this image yet (no segmentation model, or "
                           "it is being computed: ask again shortly).")
        names = {c.id: c.name for c in self.store.classes()}
        return {"mask": result["mask"], "class_ids": result["class_ids"],
                "fractions": {names.get(cid, str(cid)): f for cid, f in
                              zip(result["class_ids"], result["fractions"])},
                "model_version": result["model_version"]}

    @action(LABELER)
    def stats(self, caller: Caller, live_window: int = 50) -> dict:
        """Counts, model version, training state and validation numbers."""
        return get_task(self.task()).stats(self.session, int(live_window))

    @action(LABELER)
    def predictions(self, caller: Caller, limit: int = 100) -> dict:
        """Current class predictions, by image id."""
        frame = self.store.predictions_frame(int(limit))
        return {"predictions": [
            {"image_id": int(r.image_id), "filename": r.filename, "label": r.label,
             "probability": float(r.probability), "model_version": int(r.model_version)}
            for r in frame.itertuples()]}

    @action(LABELER)
    def classes(self, caller: Caller) -> dict:
        """Class names in order (mask value k is the k-th name), with colours and counts."""
        counts = self.store.label_counts()
        return {"classes": [{"name": c.name, "colour": c.colour, "labels": counts.get(c.id, 0)}
                            for c in self.store.classes()]}

    # ---- labeling -------------------------------------------------------------------------
    def _require_task(self, task: str, user: str) -> None:
        message = self.session.task_message(task)
        if message:
            raise Conflict(message)
        self.session.lock_task(task, user)

    def _may_change(self, caller: Caller, image_ids) -> None:
        """A labeler changes only images nobody else holds: not one leased to someone else,
        not someone else's label or mask (imported labels are nobody's). Admins may; what
        they change is recorded as theirs."""
        if caller.is_admin:
            return
        for image_id in image_ids:
            holder = self.store.lease_holder(int(image_id))
            if holder is not None and holder != caller.name:
                raise Refused(f"{holder} is working on image {image_id} right now; "
                              "choose another image.")
            owner = self.store.label_owner(int(image_id))
            if owner is not None and owner not in (caller.name, IMPORT_USER):
                raise Refused(f"Image {image_id} was labeled by {owner}; only they or an "
                              "admin can change it.")

    def _may_annotate(self, caller: Caller, image_id: int, revision: int | None, task: str):
        """The image's row, once the caller may annotate it for `task` now: what they saw is
        current, the session's task is `task`, the image exists and is theirs to change."""
        check_seen(self.store, caller.name, image_id, revision)
        self._require_task(task, caller.name)
        row = self.store.image(int(image_id))
        if row is None:
            raise NotFound(f"There is no image with id {image_id}.")
        self._may_change(caller, [image_id])
        return row

    def _label_class(self, caller: Caller, image_id: int, label: str, revision: int | None):
        """The class a label names, once the caller may label this image now."""
        self._may_annotate(caller, image_id, revision, "classification")
        cls = self.store.class_by_name(str(label))
        if cls is None:
            raise NotFound(f"There is no class named {one_line(label, 80)!r}.")
        return cls

    def _shown(self, image_id: int) -> dict:
        """The prediction the labeler saw, kept with the label for live accuracy."""
        pred = self.store.prediction(int(image_id))
        return {"shown_class_id": None if pred is None else pred[0],
                "shown_model_version": None if pred is None else pred[2]}

    @action(LABELER)
    def annotate(self, caller: Caller, image_id: int, label: str,
                 revision: int | None = None) -> dict:
        """Label one image with a class name; the prediction shown is kept for live accuracy.
        A page sends the class-list revision its buttons were drawn from: stale is refused."""
        image_id = whole(image_id, "image_id")
        cls = self._label_class(caller, image_id, label, revision)
        self.store.set_label(int(image_id), cls.id, caller.name, **self._shown(image_id))
        return {"ok": True, "image_id": int(image_id), "label": cls.name}

    @action(LABELER)
    def annotate_next(self, caller: Caller, image_id: int, label: str, strategy: str,
                      class_name: str | None = None, revision: int | None = None) -> dict:
        """Label one image and return the next one: the label and the next image's lease are
        one transaction where the strategy's order does not depend on the label just made."""
        image_id = whole(image_id, "image_id")
        user = caller.name
        cls = self._label_class(caller, image_id, label, revision)
        chosen = get_task("classification").strategies[strategy]
        ordered = strategies.EMPTY
        if not chosen.follows_labels:  # else its order changes with the label itself
            pick = strategies.Pick(self.store, user, self.store.open_index(user), class_name,
                                   seed=time.time_ns() % 2**32)
            ordered = chosen.order(pick)
            ordered = ordered[ordered != int(image_id)]
        leased = self.store.set_label(int(image_id), cls.id, user, **self._shown(image_id),
                                      then_lease=ordered,
                                      lease_seconds=self.session.settings.lease_seconds)
        following = (self._view(leased, "classification", strategy=strategy) if leased is not None
                     else self.next_image(caller, "classification", strategy, class_name))
        return {"ok": True, "image_id": int(image_id), "label": cls.name, "next": following}

    @action(LABELER)
    def annotate_positions(self, caller: Caller, image_id: int, positions: np.ndarray,
                           revision: int | None = None) -> dict:
        """Save a mask whose pixels hold class positions (1-based, 0 = unlabeled); a page
        sends the class-list revision its brush colours came from: stale is refused."""
        image_id = whole(image_id, "image_id")
        row = self._may_annotate(caller, image_id, revision, "segmentation")
        positions = np.asarray(positions)
        if positions.shape != (row.height, row.width):
            raise BadInput(f"The mask is {positions.shape[1]}x{positions.shape[0]} but the "
                             f"image is {row.width}x{row.height}.")
        pixels = self.store.set_mask_positions(int(image_id), positions, caller.name)
        return {"ok": True, "image_id": int(image_id), "labeled_pixels": pixels}

    @action(LABELER)
    def annotate_mask_png(self, caller: Caller, image_id: int, data: bytes,
                          revision: int | None = None) -> dict:
        """Save a mask sent as an 8-bit PNG (0 = unlabeled, k = k-th class), checked against
        the image's size from its header before it is decoded."""
        image_id = whole(image_id, "image_id")
        row = self.store.image(int(image_id))
        if row is None:
            raise NotFound(f"There is no image with id {image_id}.")
        self._may_change(caller, [image_id])
        if message := self.session.task_message("segmentation"):
            raise Conflict(message)  # before any decoding
        positions = mask_from_png(data, row.width, row.height)  # few at once: hitl/mask_png.py
        return self.annotate_positions(caller, image_id, positions, revision)

    @action(LABELER)
    def skip(self, caller: Caller, image_id: int, revision: int | None = None) -> dict:
        """Skip an image: strategies pass over it until undone."""
        image_id = whole(image_id, "image_id")
        check_seen(self.store, caller.name, image_id, revision)
        if self.store.image(int(image_id)) is None:
            raise NotFound(f"There is no image with id {image_id}.")
        self._may_change(caller, [image_id])
        self.store.skip(int(image_id), caller.name)
        return {"ok": True, "image_id": int(image_id)}

    @action(LABELER)
    def undo(self, caller: Caller) -> dict:
        """Undo the caller's own last action (a review page as a whole); what someone else
        changed since stays as they left it, and the answer says so."""
        done = self.store.undo_details(caller.name)
        if done is None:
            raise Conflict("Nothing to undo.")
        image_id = done["image_id"]
        self.store.renew_lease(image_id, caller.name, self.session.settings.lease_seconds)
        result = {"ok": True, "image_id": image_id}
        if done.get("kept"):
            result["note"] = "; ".join(f"image {i} was changed by {who} since, so it stays "
                                       "as they left it" for i, who in done["kept"].items())
        return result
