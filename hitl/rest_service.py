"""A stand-in for the service layer (hitl/service.py) until it lands: the REST routes call
these methods, with the caller first, and get plain dicts ({"ok": False, "error"} on refusal).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitl.labeling import Labeling
from hitl.review import ReviewService
from hitl.session import Session
from hitl.stats import classification_stats, segmentation_stats
from hitl.store import StoreError


@dataclass(frozen=True)
class Caller:
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _refusal(exc: Exception) -> dict:
    return {"ok": False, "error": str(exc)}


class Service(ReviewService):
    def __init__(self, session: Session):
        self.session = session
        self.labeling = Labeling(session)

    def caller(self, name: str | None) -> Caller:
        return Caller(name or "local", "admin")

    def _task(self) -> str:
        return self.session.store.task() or "classification"

    def _view(self, view: dict) -> dict:
        pred = view.get("prediction")
        keys = ("image_id", "filename", "width", "height", "prediction", "label", "skipped",
                "strategy", "note")
        return {k: view.get(k) for k in keys} | {
            "probabilities": None if pred is None else {pred["label"]: pred["probability"]}}

    def next_image(self, caller: Caller, strategy: str, class_name: str | None = None) -> dict:
        try:
            return self._view(self.labeling.next_image(self._task(), strategy, class_name,
                                                       caller.name))
        except StoreError as exc:
            return _refusal(exc)

    def image(self, caller: Caller, image_id: int) -> dict:
        try:
            return self._view(self.labeling.view(int(image_id), self._task()))
        except StoreError as exc:
            return _refusal(exc)

    def mask_positions(self, caller: Caller, image_id: int) -> np.ndarray | None:
        return self.labeling.mask_positions(image_id)

    def predicted_mask(self, caller: Caller, image_id: int) -> dict:
        result = self.session.trainer.predicted_mask(int(image_id))
        if result is None:
            return {"ok": False, "error": "No segmentation model yet.", "status": 404}
        return {"ok": True, "mask": result["mask"], "model_version": result["model_version"]}

    def annotate(self, caller: Caller, image_id: int, label: str) -> dict:
        try:
            return self.labeling.annotate(image_id, label, caller.name)
        except StoreError as exc:
            return _refusal(exc)

    def annotate_mask(self, caller: Caller, image_id: int, positions: np.ndarray) -> dict:
        try:
            return self.labeling.annotate_positions(image_id, positions, caller.name)
        except StoreError as exc:
            return _refusal(exc)

    def skip(self, caller: Caller, image_id: int) -> dict:
        try:
            return self.labeling.skip(image_id, caller.name)
        except StoreError as exc:
            return _refusal(exc)

    def undo(self, caller: Caller) -> dict:
        return self.labeling.undo(caller.name)

    def stats(self, caller: Caller, live_window: int = 50) -> dict:
        if self._task() == "segmentation":
            return segmentation_stats(self.session)
        return classification_stats(self.session, live_window)

    def predictions(self, caller: Caller, limit: int = 100) -> list[dict]:
        frame = self.session.store.predictions_frame(limit)
        return [{"image_id": int(r.image_id), "filename": r.filename, "label": r.label,
                 "probability": float(r.probability), "model_version": int(r.model_version)}
                for r in frame.itertuples()]

    def classes(self, caller: Caller) -> list[str]:
        return [c.name for c in self.session.store.classes()]
