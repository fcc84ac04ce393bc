"""The REST routes' view of the service layer (hitl/service/): the same guarded Service,
with the answer shapes the REST routes send (a view's REST keys, lists for lists).
"""
from __future__ import annotations

from hitl.service import Caller
from hitl.service import Service as GuardedService
from hitl.session import Session

__all__ = ["Caller", "RestView"]


class RestView:
    """The guarded Service, answering in the REST routes' shapes; any method not reshaped
    here (labels, skips, undo, stats, review) is the Service's own, through __getattr__."""

    def __init__(self, session: Session, service: GuardedService):
        self.session = session
        self.service = service  # the page's: one Service per app (hitl/app_build.py)

    def __getattr__(self, name: str):
        """Everything not reshaped here, as the guarded Service answers it."""
        return getattr(self.__dict__["service"], name)

    def caller(self, name: str | None) -> Caller:
        """A login's caller by name; without one, the anonymous role (hitl/access.py)."""
        access = self.service.access
        return Caller(name, access.role_of(name)) if name else \
            Caller("local", access.anonymous_role)

    def _task(self) -> str:
        return self.service.task()

    def _view(self, view: dict) -> dict:
        pred = view.get("prediction")
        keys = ("image_id", "filename", "width", "height", "prediction", "label", "skipped",
                "strategy", "note")
        return {k: view.get(k) for k in keys} | {
            "probabilities": None if pred is None else {pred["label"]: pred["probability"]}}

    def next_image(self, caller: Caller, strategy: str, class_name: str | None = None) -> dict:
        return self._view(self.service.next_image(caller, self._task(), strategy, class_name))

    def image(self, caller: Caller, image_id: int) -> dict:
        return self._view(self.service.view(caller, int(image_id), self._task()))

    def predicted_mask(self, caller: Caller, image_id: int) -> dict:
        result = self.service.predicted_mask(caller, image_id)
        return {"ok": True, "mask": result["mask"], "model_version": result["model_version"]}

    def annotate_next(self, caller: Caller, image_id: int, label: str, strategy: str,
                      class_name: str | None = None) -> dict:
        result = self.service.annotate_next(caller, image_id, label, strategy, class_name)
        result["next"] = self._view(result["next"])
        return result

    def predictions(self, caller: Caller, limit: int = 100) -> list[dict]:
        return self.service.predictions(caller, limit)["predictions"]

    def classes(self, caller: Caller) -> list[str]:
        return [c["name"] for c in self.service.classes(caller)["classes"]]
