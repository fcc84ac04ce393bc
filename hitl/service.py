"""The one object through which the page, gr.api and REST change anything.

Any logged-in client can run any page event through `/gradio_api/queue/join` with its
`fn_index`, so hiding a button protects nothing: every public method here takes the `Caller`
first, checks their role, validates its arguments and answers a plain dict —
`{"ok": False, "error": "one line"}` on refusal or bad input, never an exception.
"""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hitl import strategies
from hitl.access import Access
from hitl.review import ReviewService
from hitl.seen import check_seen
from hitl.session import Session
from hitl.store import StoreError
from hitl.tasks import TASKS, get_task

ADMIN, LABELER = "admin", "labeler"
IMPORT_USER = "import"  # labels brought in by --import / python -m hitl import
ROLES = (ADMIN, LABELER)
RESET_COOLDOWN_S = 10.0
EXPORT_KEEP_S = 600.0
MASK_DECODES_AT_ONCE = 2


@dataclass(frozen=True)
class Caller:
    """Who is asking; built from the request at the edge (`Service.caller_of`)."""
    name: str  # login name, HF username, or a per-browser anonymous id
    role: str  # "admin" | "labeler"

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


class Refused(StoreError):
    """The caller's role does not allow this action."""


def answer(fn):
    """A public Service method: a StoreError becomes {"ok": False, "error": ...}; a dict
    without "ok" gets "ok": True."""
    @functools.wraps(fn)
    def run(self, caller: Caller, *args, **kwargs) -> dict:
        if not isinstance(caller, Caller):
            return {"ok": False, "error": "No caller: every action needs to know who asks."}
        if caller.role not in ROLES:
            return {"ok": False, "error": f"{caller.name or 'You'} may not label here: sign in "
                                          "with an account the owner has added."}
        try:
            result = fn(self, caller, *args, **kwargs)
        except StoreError as exc:
            return {"ok": False, "error": one_line(str(exc))}
        if isinstance(result, dict):
            result.setdefault("ok", True)
        return result
    return run


def admin_only(fn):
    """An admin action: refused for labelers before anything is read or changed."""
    @functools.wraps(fn)
    def run(self, caller: Caller, *args, **kwargs):
        if not caller.is_admin:
            raise Refused(f"Only an admin can {ACTIONS.get(fn.__name__, fn.__name__)}; "
                          f"{caller.name} is a labeler.")
        return fn(self, caller, *args, **kwargs)
    return answer(run)


ACTIONS = {"add_class": "add classes", "rename_class": "rename classes",
           "move_class": "reorder classes", "remove_class": "remove classes",
           "start_trainer": "start the trainer", "stop_trainer": "stop the trainer",
           "configure_trainer": "change the backbone, mode or resolution",
           "export": "export the whole session", "reset": "reset the session"}


def one_line(text: str, limit: int = 300) -> str:
    """Messages are one short line: never a traceback, never a huge echoed input."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MASK_PNG_MAX_BYTES = 64 * 1024 * 1024


def mask_from_png(data: bytes, width: int, height: int) -> np.ndarray:
    """An 8-bit single-channel PNG -> class positions; the size is read from the PNG header
    and compared with the image before anything is decoded (a 14000x14000 PNG is 190 KB on
    the wire and 196 MB decoded). Only PNG: a lossy format changes class values."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > MASK_PNG_MAX_BYTES:
        raise StoreError("The mask must be a PNG of at most 64 MB.")
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 33:
        raise StoreError("The mask must be a PNG (other formats change class values).")
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    bit_depth, colour_type = data[24], data[25]
    if (w, h) != (width, height):
        raise StoreError(f"The mask is {w}x{h} but the image is {width}x{height}.")
    if bit_depth != 8 or colour_type not in (0, 3):  # 8-bit grey or palette
        raise StoreError("The mask must be an 8-bit single-channel PNG (grey or palette).")
    import io

    from PIL import Image
    try:
        with Image.open(io.BytesIO(bytes(data)), formats=["PNG"]) as img:
            return np.array(img, dtype=np.uint8)
    except Exception as exc:
        raise StoreError(f"The mask PNG cannot be read ({type(exc).__name__}).") from exc


def require(result: dict) -> dict:
    """For page code that shows errors through StoreError: raise on a refused answer."""
    if not result.get("ok", True):
        raise StoreError(result.get("error") or "Refused.")
    return result


class Service(ReviewService):
    """Labeling, classes, trainer and session changes for one Session, guarded by role; the
    review methods (hitl/review.py) are mixed in."""

    def __init__(self, session: Session, access: Access | None = None):
        self.session = session
        self.access = access or Access.from_settings(session.settings)
        self._reset_lock = threading.Lock()
        self._last_reset = 0.0
        self._exports: list[Path] = []
        self._mask_slots = threading.BoundedSemaphore(MASK_DECODES_AT_ONCE)
        atexit.register(self._prune_exports, 0)

    @property
    def store(self):
        return self.session.store

    # ---- who ------------------------------------------------------------------------------
    def caller_of(self, request) -> Caller:
        """The edge: a Gradio request (or None in-process) -> the Caller and their role."""
        signed_in = self.access.signed_in(request) if request is not None else None
        if signed_in is not None:
            return Caller(*signed_in)
        name = getattr(request, "username", None) if request is not None else None
        if not name:
            name = self.access.anonymous_name(request)
        return Caller(name, self.access.role_of(name))

    # ---- reading --------------------------------------------------------------------------
    def task(self) -> str:
        return self.store.task() or "classification"

    @answer
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
            raise StoreError(f"There is no image with id {image_id}.")
        row = state["row"]
        view = {"image_id": row.id, "filename": row.filename, "width": row.width,
                "height": row.height, "readable": row.readable, "error": row.error,
                "split": row.split, "skipped": state["skipped"], "note": note,
                "strategy": strategy, "prediction": None, "label": None}
        get_task(task).describe(view, state, self.store.classes())
        return view

    @answer
    def next_image(self, caller: Caller, task: str, strategy: str,
                   class_name: str | None = None, exclude=(), keep_leases: bool = False) -> dict:
        """Pick, lease and describe the next image; falls back (and says so) when a strategy
        has no candidate. The page prefetches several: it excludes those it holds already
        and keeps their leases."""
        user = caller.name
        wanted = strategy
        if task not in TASKS:
            raise StoreError(f"Unknown task {one_line(task, 40)!r}.")
        valid = TASKS[task].strategies
        if strategy not in valid:
            raise StoreError(f"Unknown strategy {strategy!r}; choose one of: "
                             + ", ".join(valid) + ".")
        index = self.store.open_index(user) if get_task(task).ranked else None
        candidates = None if index is not None else self.store.candidates(task, user)
        if (candidates["ids"].size == 0 if index is None else index.blocked.all()):
            return self._view(None, task, strategy=strategy)
        note = None
        tried = []
        first_problem = None
        while strategy is not None:
            tried.append(strategy)
            ordered, problem = (self._mask_order(strategy, class_name, candidates)
                                if index is None else
                                self._fast_order(strategy, class_name, index, user))
            if len(exclude):
                ordered = ordered[~np.isin(ordered, np.asarray(exclude, dtype=np.int64))]
            image_id = self.store.lease_first(ordered, user, self.session.settings.lease_seconds,
                                              keep_others=keep_leases) if ordered.size else None
            if image_id is not None:
                if strategy != wanted:
                    note = f"'{wanted}' had no candidate ({first_problem}); showing '{strategy}'."
                return self._view(image_id, task, note=note, strategy=strategy)
            if first_problem is None:
                first_problem = problem or "all its candidates are taken by other labelers"
            strategy = strategies.FALLBACK.get(strategy)
            if strategy in tried:
                strategy = None
        return self._view(None, task, note="Every remaining image is being labeled by someone "
                                           "else right now.", strategy=wanted)

    def _mask_order(self, strategy: str, class_name: str | None,
                    c: dict) -> tuple[np.ndarray, str | None]:
        """Candidate ids for one strategy over mask summaries (entropy, class fractions), and
        why it has none when it has none."""
        if strategy == "sequential":
            return strategies.sequential(c), None
        if strategy == "random":
            return strategies.random_order(c, seed=time.time_ns() % (2**32)), None
        if strategy == "uncertain":
            return strategies.seg_uncertain(c), "no predictions yet"
        if strategy == "class":
            cls = self._class(class_name)
            position = [x.id for x in self.store.classes()].index(cls.id)
            return strategies.seg_of_class(c, position), f"no image predicted to hold {cls.name}"
        raise StoreError(f"Unknown strategy {strategy!r}.")

    def _fast_order(self, strategy: str, class_name: str | None, index: strategies.OpenIndex,
                    user: str) -> tuple[np.ndarray, str | None]:
        """Candidate ids for one strategy over class predictions, from orders sorted once per
        model, and why it has none when it has none."""
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
        cls = self.store.class_by_name(str(name))
        if cls is None:
            raise StoreError(f"There is no class named {one_line(name, 80)!r}.")
        return cls

    @answer
    def open_image(self, caller: Caller, image_id: int, task: str) -> dict:
        """Open any image by id (go to id, arrows); keeps it leased while it is on screen."""
        return self._open(caller, int(image_id), task)

    def _open(self, caller: Caller, image_id: int, task: str) -> dict:
        view = self._view(image_id, task)
        holder = self.store.lease_holder(image_id)
        if holder is not None and holder != caller.name:
            view["note"] = f"{holder} is working on this image right now."
        else:
            self.store.renew_lease(image_id, caller.name, self.session.settings.lease_seconds)
        return view

    @answer
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

    @answer
    def keep_lease(self, caller: Caller, image_id: int) -> dict:
        """The page's timer: keep the image on screen reserved for the one who sees it."""
        kept = self.store.renew_lease(int(image_id), caller.name,
                                      self.session.settings.lease_seconds)
        return {"kept": bool(kept)}

    @answer
    def leave(self, caller: Caller, image_ids: list[int] | None = None) -> dict:
        """A labeler who closes the page frees the images they were shown (or, given ids,
        those the page no longer holds ready)."""
        self.store.release_leases(caller.name, image_ids)
        return {}

    @answer
    def mask_positions(self, caller: Caller, image_id: int) -> dict:
        """The stored mask as class positions (1-based), for the editor and the API."""
        return {"positions": self.store.mask_positions(int(image_id))}

    @answer
    def predicted_mask(self, caller: Caller, image_id: int) -> dict:
        """The model's mask (class positions 1..K), class fractions, model version."""
        if self.store.image(int(image_id)) is None:
            raise StoreError(f"There is no image with id {image_id}.")
        result = self.session.trainer.predicted_mask(int(image_id))
        if result is None:
            return {"ok": False, "mask": None, "error": "No predicted mask for this image yet "
                    "(no segmentation model, or it is being computed: ask again shortly)."}
        names = {c.id: c.name for c in self.store.classes()}
        return {"mask": result["mask"], "class_ids": result["class_ids"],
                "fractions": {names.get(cid, str(cid)): f for cid, f in
                              zip(result["class_ids"], result["fractions"])},
                "model_version": result["model_version"]}

    @answer
    def stats(self, caller: Caller, live_window: int = 50) -> dict:
        """Counts, model version, training state and validation numbers."""
        return get_task(self.task()).stats_of(self.session, int(live_window))

    @answer
    def predictions(self, caller: Caller, limit: int = 100) -> dict:
        """Current class predictions, by image id."""
        frame = self.store.predictions_frame(int(limit))
        return {"predictions": [
            {"image_id": int(r.image_id), "filename": r.filename, "label": r.label,
             "probability": float(r.probability), "model_version": int(r.model_version)}
            for r in frame.itertuples()]}

    @answer
    def classes(self, caller: Caller) -> dict:
        """Class names in order (mask value k is the k-th name), with colours and counts."""
        counts = self.store.label_counts()
        return {"classes": [{"name": c.name, "colour": c.colour, "labels": counts.get(c.id, 0)}
                            for c in self.store.classes()]}

    # ---- labeling -------------------------------------------------------------------------
    def _require_task(self, task: str, user: str) -> None:
        message = self.session.task_message(task)
        if message:
            raise StoreError(message)
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
            raise StoreError(f"There is no image with id {image_id}.")
        self._may_change(caller, [image_id])
        return row

    def _label_class(self, caller: Caller, image_id: int, label: str, revision: int | None):
        """The class a label names, once the caller may label this image now."""
        self._may_annotate(caller, image_id, revision, "classification")
        cls = self.store.class_by_name(str(label))
        if cls is None:
            raise StoreError(f"There is no class named {one_line(label, 80)!r}.")
        return cls

    def _shown(self, image_id: int) -> dict:
        """The prediction the labeler saw, kept with the label for live accuracy."""
        pred = self.store.prediction(int(image_id))
        return {"shown_class_id": None if pred is None else pred[0],
                "shown_model_version": None if pred is None else pred[2]}

    @answer
    def annotate(self, caller: Caller, image_id: int, label: str,
                 revision: int | None = None) -> dict:
        """Label one image with a class name; the prediction shown is kept for live accuracy.
        A page sends the class-list revision its buttons were drawn from: stale is refused."""
        cls = self._label_class(caller, image_id, label, revision)
        self.store.set_label(int(image_id), cls.id, caller.name, **self._shown(image_id))
        return {"ok": True, "image_id": int(image_id), "label": cls.name}

    @answer
    def annotate_next(self, caller: Caller, image_id: int, label: str, strategy: str,
                      class_name: str | None = None, revision: int | None = None) -> dict:
        """Label one image and return the next one: the label and the next image's lease are
        one transaction where the strategy's order does not depend on the label just made."""
        user = caller.name
        cls = self._label_class(caller, image_id, label, revision)
        task = get_task("classification")
        if strategy not in task.strategies:
            raise StoreError(f"Unknown strategy {strategy!r}; choose one of: "
                             + ", ".join(task.strategies) + ".")
        ordered = np.array([], dtype=np.int64)
        if strategy not in ("minority", "last class"):  # these change with the label itself
            ordered, _ = self._fast_order(strategy, class_name, self.store.open_index(user), user)
            ordered = ordered[ordered != int(image_id)]
        leased = self.store.set_label(int(image_id), cls.id, user, **self._shown(image_id),
                                      then_lease=ordered,
                                      lease_seconds=self.session.settings.lease_seconds)
        following = (self._view(leased, "classification", strategy=strategy) if leased is not None
                     else self.next_image(caller, "classification", strategy, class_name))
        return {"ok": True, "image_id": int(image_id), "label": cls.name, "next": following}

    @answer
    def annotate_positions(self, caller: Caller, image_id: int, positions: np.ndarray,
                           revision: int | None = None) -> dict:
        """Save a mask whose pixels hold class positions (1-based, 0 = unlabeled); a page
        sends the class-list revision its brush colours came from: stale is refused."""
        row = self._may_annotate(caller, image_id, revision, "segmentation")
        positions = np.asarray(positions)
        if positions.shape != (row.height, row.width):
            raise StoreError(f"The mask is {positions.shape[1]}x{positions.shape[0]} but the "
                             f"image is {row.width}x{row.height}.")
        pixels = self.store.set_mask_positions(int(image_id), positions, caller.name)
        return {"ok": True, "image_id": int(image_id), "labeled_pixels": pixels}

    @answer
    def annotate_mask_png(self, caller: Caller, image_id: int, data: bytes,
                          revision: int | None = None) -> dict:
        """Save a mask sent as an 8-bit PNG (0 = unlabeled, k = k-th class), checked against
        the image's size from its header before it is decoded."""
        row = self.store.image(int(image_id))
        if row is None:
            raise StoreError(f"There is no image with id {image_id}.")
        self._may_change(caller, [image_id])
        with self._mask_slots:  # whatever the route (gr.api, REST), few decodes at once
            positions = mask_from_png(data, row.width, row.height)
            return self.annotate_positions(caller, image_id, positions, revision)

    @answer
    def skip(self, caller: Caller, image_id: int, revision: int | None = None) -> dict:
        """Skip an image: strategies pass over it until undone."""
        check_seen(self.store, caller.name, image_id, revision)
        if self.store.image(int(image_id)) is None:
            raise StoreError(f"There is no image with id {image_id}.")
        self._may_change(caller, [image_id])
        self.store.skip(int(image_id), caller.name)
        return {"ok": True, "image_id": int(image_id)}

    @answer
    def undo(self, caller: Caller) -> dict:
        """Undo the caller's own last action (a review page as a whole); what someone else
        changed since stays as they left it, and the answer says so."""
        done = self.store.undo_details(caller.name)
        if done is None:
            return {"ok": False, "error": "Nothing to undo.", "image_id": None}
        image_id = done["image_id"]
        self.store.renew_lease(image_id, caller.name, self.session.settings.lease_seconds)
        result = {"ok": True, "image_id": image_id}
        if done.get("kept"):
            result["note"] = "; ".join(f"image {i} was changed by {who} since, so it stays "
                                       "as they left it" for i, who in done["kept"].items())
        return result

    # ---- review (hitl/review.py), with the same own-work rule ------------------------------
    def accept_batch(self, caller: Caller, image_ids, class_name: str, rejected_ids=None,
                     relabels: dict | None = None, *args, **kwargs) -> dict:
        return self._guarded_review(caller, [*(image_ids or []), *(relabels or {})],
                                    super().accept_batch, image_ids, class_name, rejected_ids,
                                    relabels, *args, **kwargs)

    def keep_suspect(self, caller: Caller, image_id: int, *args, **kwargs) -> dict:
        return self._guarded_review(caller, [image_id], super().keep_suspect, image_id,
                                    *args, **kwargs)

    def remove_suspect(self, caller: Caller, image_id: int, *args, **kwargs) -> dict:
        return self._guarded_review(caller, [image_id], super().remove_suspect, image_id,
                                    *args, **kwargs)

    def relabel_suspect(self, caller: Caller, image_id: int, *args, **kwargs) -> dict:
        return self._guarded_review(caller, [image_id], super().relabel_suspect, image_id,
                                    *args, **kwargs)

    @answer
    def _guarded_review(self, caller: Caller, image_ids, method, *args, **kwargs) -> dict:
        try:
            ids = [int(i) for i in image_ids]
        except (TypeError, ValueError):
            raise StoreError("Image ids must be whole numbers.") from None
        self._may_change(caller, ids)
        return method(caller, *args, **kwargs)

    # ---- classes (admin) ------------------------------------------------------------------
    def _find_class(self, name: str | None):
        cls = self.store.class_by_name(str(name or ""))
        if cls is None:
            raise StoreError("Choose a class first." if not name else
                             f"There is no class named {one_line(name, 80)!r}.")
        return cls

    @admin_only
    def add_class(self, caller: Caller, name: str) -> dict:
        cls = self.store.add_class(str(name or ""), caller.name)
        return {"name": cls.name, "message": f"Added '{cls.name}'."}

    @admin_only
    def rename_class(self, caller: Caller, name: str, new_name: str) -> dict:
        cls = self.store.rename_class(self._find_class(name).id, str(new_name or ""),
                                      caller.name)
        return {"name": cls.name, "message": f"Renamed to '{cls.name}'."}

    @admin_only
    def move_class(self, caller: Caller, name: str, delta: int) -> dict:
        """Move a class up (delta < 0) or down; the model restarts (positions changed)."""
        cls = self._find_class(name)
        ids = [c.id for c in self.store.classes()]
        i = ids.index(cls.id)
        j = min(max(i + int(delta), 0), len(ids) - 1)
        ids[i], ids[j] = ids[j], ids[i]
        self.store.reorder_classes(ids, caller.name)
        self.session.trainer.reset_model()
        return {"position": j + 1, "message": f"Moved '{cls.name}' to position {j + 1}."}

    @answer
    def class_removal(self, caller: Caller, name: str) -> dict:
        """What removing a class would delete (for the confirmation), refused for labelers."""
        if not caller.is_admin:
            raise Refused(f"Only an admin can remove classes; {caller.name} is a labeler.")
        cls = self._find_class(name)
        n = self.store.label_counts().get(cls.id, 0)
        return {"name": cls.name, "labels": n,
                "message": f"Remove '{cls.name}'? Its {n} label(s) and its mask pixels are "
                           f"deleted and the model is reset."}

    @admin_only
    def remove_class(self, caller: Caller, name: str) -> dict:
        """Delete a class with its labels and mask pixels; the model restarts."""
        cls = self._find_class(name)
        result = self.store.remove_class(cls.id, caller.name)
        self.session.trainer.reset_model()
        return {"labels": result["labels"], "masks": result["masks"],
                "message": f"Removed '{cls.name}' with {result['labels']} label(s) and pixels "
                           f"in {result['masks']} mask(s)."}

    # ---- trainer and session (admin) ------------------------------------------------------
    @admin_only
    def start_trainer(self, caller: Caller) -> dict:
        self.session.trainer.start()
        return {"message": "Trainer started."}

    @admin_only
    def stop_trainer(self, caller: Caller) -> dict:
        self.session.trainer.stop()
        return {"message": "Trainer stopped."}

    @admin_only
    def configure_trainer(self, caller: Caller, backbone: str, mode: str,
                          finetune_model: str, seg_long_side: int) -> dict:
        """Backbone, mode, fine-tune model and segmentation working resolution for everyone;
        caches are keyed by them, so features are recomputed as needed."""
        import timm

        from hitl.backbones import BACKBONE_PRESETS
        from hitl.settings import MODES
        if mode not in MODES:
            raise StoreError(f"Unknown mode {one_line(mode, 40)!r}; choose one of: "
                             + ", ".join(MODES) + ".")
        if seg_long_side is None or int(seg_long_side) < 64 or int(seg_long_side) > 4096:
            raise StoreError("The working resolution must be between 64 and 4096 pixels.")
        for label, value in (("backbone", backbone), ("fine-tune model", finetune_model)):
            bare = BACKBONE_PRESETS.get(value, value)
            if not isinstance(bare, str) or not timm.is_model(bare):
                raise StoreError(f"Unknown {label} {one_line(value, 80)!r}: not a timm model "
                                 "name.")
        s = self.session.settings
        s.backbone = BACKBONE_PRESETS.get(backbone, backbone)
        s.mode = mode
        s.finetune_model = finetune_model
        s.seg_long_side = int(seg_long_side)  # masks are resized to it, never cropped
        self.session.trainer.reset_model()
        return {"message": f"Now {mode} with {s.backbone if mode == 'frozen' else finetune_model}"
                           "; features are recomputed if needed."}

    @admin_only
    def export(self, caller: Caller, fmt: str) -> dict:
        """One downloadable file of the whole session in `fmt`, in a fresh temp folder."""
        from hitl.export import FORMATS, export_archive
        if fmt not in FORMATS:
            raise StoreError(f"Unknown export format {one_line(fmt, 40)!r}; choose one of: "
                             + ", ".join(FORMATS) + ".")
        self._prune_exports()
        workdir = Path(tempfile.mkdtemp(prefix="hitl-export-"))
        self._exports.append(workdir)
        try:
            path = export_archive(self.store, fmt, workdir,
                                  model_state=self.session.trainer.model_state())
        except Exception as exc:
            self._prune_exports(0)
            raise StoreError(one_line(f"Export failed: {exc}")) from exc
        return {"path": str(path), "name": path.name, "message": f"Exported {fmt}: {path.name}"}

    @answer
    def export_mine(self, caller: Caller) -> dict:
        """The caller's own class labels as CSV (image id, file name, label, time): what any
        labeler may take home; never server paths, never other people's labels."""
        frame = self.store.label_rows()
        mine = frame[frame["user"] == caller.name][["image_id", "filename", "label",
                                                     "created_at"]]
        self._prune_exports()
        workdir = Path(tempfile.mkdtemp(prefix="hitl-mine-"))
        self._exports.append(workdir)
        path = workdir / "my-labels.csv"
        mine.to_csv(path, index=False)
        return {"path": str(path), "name": path.name, "labels": int(len(mine)),
                "message": f"Exported your {len(mine)} label(s): {path.name}"}

    def _prune_exports(self, keep_s: float = EXPORT_KEEP_S) -> None:
        """Export folders live until the download had time to happen (Gradio copies the file
        to its own cache as it answers), then go; all of them go when the process ends."""
        now, kept = time.time(), []
        for folder in self._exports:
            try:
                old = now - folder.stat().st_mtime >= keep_s
            except OSError:
                continue
            if old:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                kept.append(folder)
        self._exports[:] = kept

    @admin_only
    def reset(self, caller: Caller, confirm: bool = False) -> dict:
        """Archive the session folder and start a fresh session (needs confirm=True)."""
        if confirm is not True:
            raise StoreError("Resetting archives every label of this session: call again "
                             "with confirm=true.")
        with self._reset_lock:
            wait = self._last_reset + RESET_COOLDOWN_S - time.monotonic()
            if wait > 0:
                raise StoreError(f"The session was reset a moment ago; try again in "
                                 f"{wait:.0f} s.")
            archive = self.session.reset()
            self._last_reset = time.monotonic()
        return {"archive": str(archive), "archive_name": archive.name,
                "message": f"Archived the session as {archive.name}. A fresh session has "
                           "started."}
