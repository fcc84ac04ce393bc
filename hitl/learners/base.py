"""What every learner shares: its session parts, the two callbacks, the class order."""
from __future__ import annotations

import time
from collections.abc import Callable

from hitl.imaging import MaskValues
from hitl.settings import Settings
from hitl.store import Store

Report = Callable[..., None]                 # report(**status fields), see trainer.TrainerStatus
Publish = Callable[..., None]                # publish(masks=PublishedMasks | None, features=…)


class Learner:
    """One task and one training mode; the trainer thread calls `step` and `model_state`."""

    task = ""   # the registered task's name (hitl/tasks/) its models are recorded under
    mode = ""   # "frozen" | "finetune"

    def __init__(self, settings: Settings, store: Store, report: Report, publish: Publish):
        self.settings, self.store, self.report, self.publish = settings, store, report, publish
        self.class_ids: list[int] = []
        self.mask_values = MaskValues(())  # stored mask values -> positions of class_ids
        self.version: int | None = None

    def step(self, changed: bool) -> bool:
        raise NotImplementedError

    def model_state(self) -> dict | None:
        raise NotImplementedError

    def _current_classes(self) -> list[int]:
        """Class ids in order now, with the mask table that matches them."""
        rows = self.store.classes()
        self.mask_values = MaskValues.of(rows)
        return [c.id for c in rows]

    def _class_names(self) -> list[str]:
        names = {c.id: c.name for c in self.store.classes()}
        return [names[c] for c in self.class_ids if c in names]

    def _trained(self, version: int, started: float, what: str) -> None:
        """Say on the page that a model version is out."""
        self.version = version
        self.report(model_version=version, last_trained_at=time.time(),
                    last_train_seconds=time.perf_counter() - started, state="idle",
                    message=f"model v{version} {what}")
