"""The background trainer: watch the store, train, predict, publish; never block the page.

One thread of the app process (DuckDB allows one writer process). Each turn it asks the
learner for the session's task and mode to do one short unit of work (a batch of feature
extraction, or a training round and its predictions). It sleeps when nothing changed, wakes
as soon as a label lands, survives its own errors (shown on the page), and picks up where it
left off after a restart because features, labels and predictions all live in the session.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from hitl.locks import ordered_lock
from hitl.settings import Settings
from hitl.store import Store
from hitl.tasks import current_task, get_task

if TYPE_CHECKING:
    from hitl.learners.published import PublishedMasks

log = logging.getLogger(__name__)
CHECKPOINT_EVERY_S = 60.0  # the model file holds the backbone too: not after every label
DEBOUNCE_S = 0.15   # let a burst of key presses land before training on them
DEBOUNCE_MAX_S = 0.6
IDLE_WAIT_S = 2.0


@dataclass
class TrainerStatus:
    state: str = "stopped"          # stopped | starting | extracting | training | idle | error
    message: str = ""
    error: str | None = None
    weights_warning: str | None = None
    model_version: int | None = None
    last_trained_at: float | None = None
    last_train_seconds: float | None = None
    extract_done: int = 0
    extract_total: int = 0
    extract_rate: float | None = None   # images per second of the last batch
    backbone: str | None = None
    device: str | None = None
    mode: str | None = None
    task: str | None = None
    turns: int = 0                      # loop turns done: each is a step or an idle wait
    updated: float = field(default_factory=time.time)


class Learner(Protocol):
    """One task+mode, built as cls(settings, store, report, publish): `report(**fields)`
    updates the trainer's status, `publish(**results)` hands over what other threads may read
    (`masks`: a segmentation model's PublishedMasks; `features`: the frozen feature cache).
    A learner never sees the trainer; only the trainer thread steps it."""

    version: int | None  # the latest model version it made (None before the first)

    def step(self, changed: bool) -> bool:
        """Work once; True when more work is pending (do not sleep)."""

    def model_state(self) -> dict | None:
        """What a model file needs (hitl/model_file.py), or None before the first model;
        built from finished models only, so the page's export may ask for it too."""


def default_idle_hooks(store: Store) -> list:
    """What an idle trainer does besides waiting: re-score labels as suspects (hitl/review.py)."""
    from hitl.review import SuspectRefresher
    return [SuspectRefresher(store)]


class Trainer:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self.status = TrainerStatus()
        self._lock = ordered_lock("trainer.status")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._learner: Learner | None = None
        self._learner_key: tuple | None = None
        self._published: dict[str, Any] = {}  # what the current learner handed over
        self._asked = threading.Event()  # a page asked for a mask not computed yet
        self._force = threading.Event()
        self._saved_version: int | None = None
        self._saved_at = 0.0
        self.idle_hooks = default_idle_hooks(store)

    # ---- control ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        # Leave a core to the web server: a key press must answer while the model trains.
        import os

        import torch
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
        self._stop.clear()
        self.update(state="starting", message="starting", error=None)
        self._thread = threading.Thread(target=self._run, name="hitl-trainer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        self._checkpoint(force=True)
        self.update(state="stopped", message="stopped")

    def wake(self) -> None:
        self.store.feed.poke()

    def reset_model(self) -> None:
        """Forget the learner (backbone, resolution or mode changed; a class was removed)."""
        self._force.set()
        self.wake()

    def update(self, **fields) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(self.status, key, value)
            self.status.updated = time.time()

    def status_dict(self) -> dict:
        with self._lock:
            return asdict(self.status)

    # ---- what the page asks of the current learner --------------------------------------------
    def learner(self) -> Learner | None:
        return self._learner

    def publish(self, **results: Any) -> None:
        """Results a learner hands over for other threads (called on the trainer thread)."""
        self._published = {**self._published, **results}

    def published(self, name: str) -> Any:
        """`masks` (PublishedMasks) or `features` (FeatureCache) of the current learner, or
        None: the only parts of a learner a request thread may read."""
        return self._published.get(name)

    def predicted_mask(self, image_id: int) -> dict | None:
        """The latest model's mask for one image at its size (positions 1..K), its class
        fractions, version and class order; None until one is published for the image.
        Answered from published results only: safe and cheap on a request thread."""
        masks: PublishedMasks | None = self._published.get("masks")
        if masks is None:
            return None
        row = self.store.image(image_id)
        if row is None or not row.readable:
            return None
        found = masks.mask(image_id, (row.height, row.width))
        if found is None:
            self._asked.set()
            self.wake()
            return None
        mask, version = found
        k = len(masks.class_ids)
        fractions = np.bincount(mask.ravel(), minlength=k + 1)[1:k + 1] / max(mask.size, 1)
        return {"mask": mask, "fractions": fractions.tolist(), "model_version": version,
                "class_ids": list(masks.class_ids)}

    def model_state(self) -> dict | None:
        learner = self._learner
        return None if learner is None else learner.model_state()

    # ---- the loop ----------------------------------------------------------------------------
    def _wanted_key(self) -> tuple:
        s = self.settings
        task = current_task(self.store.task()).name  # before the first label: the default
        name = s.backbone if s.mode == "frozen" else s.finetune_model
        return (task, s.mode, name, s.seg_long_side, s.device)

    def _make_learner(self, key: tuple) -> Learner:
        task, mode = key[0], key[1]
        return get_task(task).learner(mode)(self.settings, self.store, self.update, self.publish)

    def _run(self) -> None:
        seen = -1
        while not self._stop.is_set():
            mark = self.store.feed.snapshot()  # before reading anything: no change is missed
            more = False
            try:
                key = self._wanted_key()
                if self._force.is_set() or key != self._learner_key or self._learner is None:
                    self._force.clear()
                    self._learner = None
                    self._published = {}
                    # the key first: a learner that cannot be built (an unknown backbone) is
                    # tried again on the next change, not in a loop that spins on the error
                    self._learner_key = key
                    self._learner = self._make_learner(key)
                    self.update(task=key[0], mode=key[1], backbone=key[2], error=None)
                    seen = -1
                revision = self.store.revision
                if revision != seen:
                    self._debounce(revision)
                    revision = self.store.revision
                self._asked.clear()
                more = self._learner.step(changed=revision != seen)
                seen = revision
                self._checkpoint()
                if self.status.error:
                    self.update(error=None)
            except Exception as exc:  # the trainer must survive anything and say what happened
                log.error("trainer error:\n%s", traceback.format_exc())
                self.update(state="error", error=f"{type(exc).__name__}: {exc}",
                            message="training failed; it resumes on the next change")
                seen = self.store.revision
                more = False
            if not more and not self._stop.is_set():
                more = self._run_idle_hooks()
            if not more and not self._stop.is_set():
                if self.status.state not in ("error",):
                    self.update(state="idle", message="waiting for new labels")
                self.store.feed.wait(mark, IDLE_WAIT_S)
            self.update(turns=self.status.turns + 1)

    def _run_idle_hooks(self) -> bool:
        """Extra work for an idle trainer (suspect scores); True when a hook has more to do.
        A failing hook is logged and shown, and never stops training."""
        more = False
        for hook in self.idle_hooks:
            try:
                more = bool(hook(self._learner)) or more
            except Exception as exc:
                log.error("idle hook failed:\n%s", traceback.format_exc())
                self.update(error=f"{type(exc).__name__}: {exc}")
        return more

    @property
    def checkpoint_path(self):
        return self.settings.model_state_path

    def _checkpoint(self, force: bool = False) -> None:
        """Keep the latest model on disk, so `python -m hitl export --format model` works
        when the app is stopped; at most once a minute while labels stream in."""
        learner = self._learner
        if learner is None or learner.version in (None, self._saved_version):
            return  # checked first: building a state may read a whole checkpoint file
        if not force and time.monotonic() - self._saved_at < CHECKPOINT_EVERY_S:
            return
        state = learner.model_state()
        if state is None:
            return
        from hitl.model_file import save_model
        try:
            save_model(self.checkpoint_path, state)
            self._saved_version = state.get("model_version")
            self._saved_at = time.monotonic()
        except Exception:  # a failed checkpoint must not stop training
            log.error("checkpoint failed:\n%s", traceback.format_exc())

    def _debounce(self, revision: int) -> None:
        start = time.monotonic()
        while time.monotonic() - start < DEBOUNCE_MAX_S and not self._stop.is_set():
            time.sleep(DEBOUNCE_S)
            if self.store.revision == revision:
                return
            revision = self.store.revision
