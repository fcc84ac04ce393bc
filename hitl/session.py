"""A labeling session: its folder, database, images and trainer, and how to reset it."""
from __future__ import annotations

import logging
import shutil
import sys
import threading
import uuid
from datetime import datetime
from pathlib import Path

from hitl import catalog, demo
from hitl.catalog import CatalogProgress, CatalogReport
from hitl.hub_images import resolve_image_source
from hitl.locks import ordered_lock
from hitl.settings import Settings
from hitl.store import Store, StoreError
from hitl.tasks import get_task
from hitl.trainer import Trainer

log = logging.getLogger(__name__)
RESET_GRACE_S = 0.5  # requests that began before a reset finish their reads on the old store
CATALOG_CHUNK = 2000  # images registered per step in the background (then usable at once)


class Session:
    """Everything one session folder holds, opened from Settings."""

    def __init__(self, settings: Settings, hub_download=None, start: bool = True):
        """hub_download stands in for huggingface_hub.snapshot_download (tests). start=False:
        no thread yet (registration, trainer) until start() — app.py imports Gradio first."""
        self.settings = settings
        self.hub_download = hub_download
        self._reset_lock = ordered_lock("session.reset")
        self.warnings: list[str] = []
        self._open(start)

    def _open(self, start: bool = True) -> None:
        s = self.settings
        s.session_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(s.db_path, val_every=s.val_every)
        self.epoch = uuid.uuid4().hex  # open pages see a reset as a new epoch (hitl/ui/board.py)
        self.is_demo = not s.images and not s.imports and (
            self.store.image_count() == 0 or self.store.get_setting("demo") == "1")
        self.catalog = CatalogProgress()
        self._catalog_stop = threading.Event()
        background = s.catalog_in_background and not self.is_demo and bool(s.images)
        self.report = CatalogReport() if background else self._register_images()
        if s.task:
            task = self.store.lock_task(s.task)
            if task != s.task:
                self.warnings.append(f"--task {s.task} ignored: this session's task is {task}.")
        for name in s.classes:
            if self.store.class_by_name(name) is None:
                self.store.add_class(name)
        self.ensure_default_classes(self.store.task())
        self.import_reports = [self._import(source) for source in s.imports]
        self.trainer = Trainer(s, self.store)
        self._catalog_thread = None
        if background:  # the page and API answer at once, for the images registered so far
            self._catalog_thread = threading.Thread(target=self._register_in_background,
                                                    name="hitl-catalog", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        """Start the session's threads: background registration, and the trainer unless
        --no-train (reset() starts the new session's itself)."""
        thread = self._catalog_thread
        if thread is not None and thread.ident is None:
            thread.start()
        if self.settings.train:
            self.trainer.start()

    def _register_in_background(self) -> None:
        try:
            self.report = self._register_images(chunk=CATALOG_CHUNK)
            print(f"hitl: session {self.settings.session_dir.resolve()} — "
                  f"{self.report.summary()}", file=sys.stderr, flush=True)
        except Exception as exc:  # a closed store (reset, shutdown) or a bad source
            if not self._catalog_stop.is_set():
                log.exception("registering images failed")
                self.catalog.error = f"{type(exc).__name__}: {exc}"
            self.catalog.state = "failed"

    def _stop_catalog(self) -> None:
        self._catalog_stop.set()
        thread = getattr(self, "_catalog_thread", None)
        if thread is not None and thread.ident is not None:  # started (see start)
            thread.join(timeout=30)

    def _register_images(self, chunk: int | None = None) -> CatalogReport:
        s = self.settings
        if self.is_demo:
            folder = demo.generate(s.demo_dir, s.demo_count, s.demo_seed)
            self.store.set_setting("demo", "1")
            return catalog.register(self.store, [str(folder)], s.max_image_pixels,
                                    self.catalog)
        sources = []
        for source in s.images:
            try:
                sources.append(resolve_image_source(source, s.downloads_dir, self.hub_download))
            except (RuntimeError, ValueError) as exc:
                self.warnings.append(str(exc))
        report = catalog.register(self.store, sources, s.max_image_pixels, self.catalog,
                                  chunk=chunk, stop=self._catalog_stop.is_set)
        for path, error in report.unreadable:
            log.warning("unreadable image %s: %s", path, error)
        if report.missing:
            self.warnings.append("Nothing found at: " + ", ".join(report.missing))
            self.catalog.error = self.warnings[-1]
        return report

    def _import(self, source: str):
        from hitl.importer import import_labels
        return import_labels(self.store, source, self.settings.max_image_pixels)

    def ensure_default_classes(self, task: str | None) -> None:
        """The demo set comes with its classes (coloured as drawn), so it can be labeled at
        first launch, before its task is chosen."""
        if self.is_demo and not self.store.classes():
            names = get_task(task).demo_classes if task else demo.FIRST_LAUNCH_CLASSES
            colours = demo.class_colours()
            for name in names:
                self.store.add_class(name, colour=colours.get(name))

    def lock_task(self, task: str, user: str = "local") -> str:
        """The first labeling action sets the task; returns the task in force."""
        already = self.store.task()
        current = self.store.lock_task(task, user)
        self.ensure_default_classes(current)
        if self.is_demo and already is None:
            counts = self.store.label_counts()
            wanted = set(get_task(current).demo_classes)
            for name in (n for n in demo.FIRST_LAUNCH_CLASSES if n not in wanted):
                cls = self.store.class_by_name(name)
                if cls is not None and not counts.get(cls.id):
                    self.store.remove_class(cls.id, user)
        return current

    def task_message(self, wanted: str) -> str | None:
        """None when `wanted` may be labeled now, else the lock message for the other tab."""
        task = self.store.task()
        if task in (None, wanted):
            return None
        return (f"The task of this session is {task}. To do another task, reset the app "
                f"(this archives the current session).")

    def reset(self) -> Path:
        """Archive the session folder under a timestamped name and start a fresh one."""
        with self._reset_lock:
            self._stop_catalog()
            self.trainer.stop()
            self.store.close(grace=RESET_GRACE_S)
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            folder = self.settings.session_dir
            archive = folder.with_name(f"{folder.name}-{stamp}")
            n = 1
            while archive.exists():
                archive = folder.with_name(f"{folder.name}-{stamp}-{n}")
                n += 1
            shutil.move(str(folder), str(archive))
            self.settings.task = None
            self.warnings = []
            self._open()
            return archive

    def close(self) -> None:
        """Stop the trainer (it checkpoints the model) and close the database; idempotent."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self._stop_catalog()
        self.trainer.stop()
        self.store.close()


__all__ = ["Session", "StoreError"]
