"""What only an admin does: classes, the trainer, exports of everything, reset."""
from __future__ import annotations

import shutil
import time

from hitl.errors import BadInput, Conflict, NotFound, Unavailable
from hitl.export_leftovers import workdir as export_workdir
from hitl.service.guard import (
    ADMIN,
    EXPORT_KEEP_S,
    LABELER,
    RESET_COOLDOWN_S,
    Caller,
    action,
    one_line,
    whole,
)


class Admin:
    """Classes, trainer and session changes; each refused for labelers."""

    # ---- classes (admin) ------------------------------------------------------------------
    def _find_class(self, name: str | None):
        cls = self.store.class_by_name(str(name or ""))
        if cls is None:
            if not name:
                raise BadInput("Choose a class first.")
            raise NotFound(f"There is no class named {one_line(name, 80)!r}.")
        return cls

    @action(ADMIN)
    def add_class(self, caller: Caller, name: str) -> dict:
        cls = self.store.add_class(str(name or ""), caller.name)
        return {"name": cls.name, "message": f"Added '{cls.name}'."}

    @action(ADMIN)
    def rename_class(self, caller: Caller, name: str, new_name: str) -> dict:
        cls = self.store.rename_class(self._find_class(name).id, str(new_name or ""),
                                      caller.name)
        return {"name": cls.name, "message": f"Renamed to '{cls.name}'."}

    @action(ADMIN)
    def recolour_class(self, caller: Caller, name: str, colour: str) -> dict:
        """Give a class another display colour (#rrggbb): every page redraws it."""
        cls = self.store.set_class_colour(self._find_class(name).id, colour, caller.name)
        return {"name": cls.name, "message": f"'{cls.name}' is now drawn in {cls.colour}."}

    @action(ADMIN)
    def move_class(self, caller: Caller, name: str, delta: int) -> dict:
        """Move a class up (delta < 0) or down. Not a model change: the learner keys classes
        by id and moves its columns with them (hitl/learners/frozen.py)."""
        cls = self._find_class(name)
        ids = [c.id for c in self.store.classes()]
        i = ids.index(cls.id)
        j = min(max(i + int(delta), 0), len(ids) - 1)
        ids[i], ids[j] = ids[j], ids[i]
        self.store.reorder_classes(ids, caller.name)
        return {"position": j + 1, "message": f"Moved '{cls.name}' to position {j + 1}."}

    @action(ADMIN)
    def class_removal(self, caller: Caller, name: str) -> dict:
        """What removing a class would delete (for the confirmation), refused for labelers."""
        cls = self._find_class(name)
        n = self.store.label_counts().get(cls.id, 0)
        return {"name": cls.name, "labels": n,
                "message": f"Remove '{cls.name}'? Its {n} label(s) and its mask pixels are "
                           f"deleted and the model is reset."}

    @action(ADMIN)
    def remove_class(self, caller: Caller, name: str) -> dict:
        """Delete a class with its labels and mask pixels; the model restarts."""
        cls = self._find_class(name)
        result = self.store.remove_class(cls.id, caller.name)
        self.session.trainer.reset_model()
        return {"labels": result["labels"], "masks": result["masks"],
                "message": f"Removed '{cls.name}' with {result['labels']} label(s) and pixels "
                           f"in {result['masks']} mask(s)."}

    # ---- trainer and session (admin) ------------------------------------------------------
    @action(ADMIN)
    def start_trainer(self, caller: Caller) -> dict:
        self.session.trainer.start()
        return {"message": "Trainer started."}

    @action(ADMIN)
    def stop_trainer(self, caller: Caller) -> dict:
        self.session.trainer.stop()
        return {"message": "Trainer stopped."}

    @action(ADMIN)
    def configure_trainer(self, caller: Caller, backbone: str, mode: str,
                          finetune_model: str, seg_long_side: int) -> dict:
        """Backbone, mode, fine-tune model and segmentation working resolution for everyone;
        caches are keyed by them, so features are recomputed as needed."""
        import timm

        from hitl.backbones import BACKBONE_PRESETS
        from hitl.settings import MODES
        if mode not in MODES:
            raise BadInput(f"Unknown mode {one_line(mode, 40)!r}; choose one of: "
                             + ", ".join(MODES) + ".")
        side = None if seg_long_side is None else whole(seg_long_side, "The working resolution")
        if side is None or side < 64 or side > 4096:
            raise BadInput("The working resolution must be between 64 and 4096 pixels.")
        for label, value in (("backbone", backbone), ("fine-tune model", finetune_model)):
            bare = BACKBONE_PRESETS.get(value, value)
            if not isinstance(bare, str) or not timm.is_model(bare):
                raise BadInput(f"Unknown {label} {one_line(value, 80)!r}: not a timm model "
                                 "name.")
        s = self.session.settings
        s.backbone = BACKBONE_PRESETS.get(backbone, backbone)
        s.mode = mode
        s.finetune_model = finetune_model
        s.seg_long_side = side  # masks are resized to it, never cropped
        self.session.trainer.reset_model()
        return {"message": f"Now {mode} with {s.backbone if mode == 'frozen' else finetune_model}"
                           "; features are recomputed if needed."}

    @action(ADMIN)
    def export(self, caller: Caller, fmt: str) -> dict:
        """One downloadable file of the whole session in `fmt`, in a fresh temp folder."""
        from hitl.export import FORMATS, export_archive
        if fmt not in FORMATS:
            raise BadInput(f"Unknown export format {one_line(fmt, 40)!r}; choose one of: "
                             + ", ".join(FORMATS) + ".")
        self._prune_exports()
        workdir = export_workdir("export")  # named after this process (hitl/export_leftovers.py)
        self._exports.append(workdir)
        try:
            path = export_archive(self.store, fmt, workdir,
                                  model_state=self.session.trainer.model_state())
        except Exception as exc:
            self._prune_exports(0)
            raise Unavailable(one_line(f"Export failed: {exc}")) from exc
        return {"path": str(path), "name": path.name, "message": f"Exported {fmt}: {path.name}"}

    @action(LABELER)
    def export_mine(self, caller: Caller) -> dict:
        """The caller's own class labels as CSV (image id, file name, label, time): what any
        labeler may take home; never server paths, never other people's labels."""
        frame = self.store.label_rows()
        mine = frame[frame["user"] == caller.name][["image_id", "filename", "label",
                                                     "created_at"]]
        self._prune_exports()
        workdir = export_workdir("mine")
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

    @action(ADMIN)
    def reset(self, caller: Caller, confirm: bool = False) -> dict:
        """Archive the session folder and start a fresh session (needs confirm=True)."""
        if confirm is not True:
            raise BadInput("Resetting archives every label of this session: call again "
                             "with confirm=true.")
        with self._reset_lock:
            wait = self._last_reset + RESET_COOLDOWN_S - time.monotonic()
            if wait > 0:
                raise Conflict(f"The session was reset a moment ago; try again in "
                                 f"{wait:.0f} s.")
            archive = self.session.reset()
            self._last_reset = time.monotonic()
        return {"archive": str(archive), "archive_name": archive.name,
                "message": f"Archived the session as {archive.name}. A fresh session has "
                           "started."}
