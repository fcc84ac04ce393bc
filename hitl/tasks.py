"""The tasks hitl knows, in one table: what each one offers and which code does its work.

Whatever differs between classification and segmentation is looked up here, never tested
as `if task == ...`, so a missed case raises instead of quietly acting as classification.
Adding a task is a module for its learners, one entry in TASKS and its UI tab.

Heavy parts (learners and predictors import torch and timm) are named "module:attribute"
and imported on first use, so reading the table costs nothing and imports nothing.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hitl import strategies
from hitl.demo import SEG_CLASSES, SHAPES


class UnknownTask(ValueError):
    """A task name hitl has no entry for."""


def _resolve(ref: str) -> Any:
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Task:
    name: str
    strategies: tuple[str, ...]       # next-image strategies, the page's default first
    learners: dict[str, str]          # training mode -> its class in hitl/learners/<mode>.py
    stats: str                        # "module:function" (session, live_window) -> dict
    predictor: str                    # "module:Class" that a model file of this task loads into
    exports: tuple[str, ...]          # the export formats (hitl.export) that hold its labels
    demo_classes: tuple[str, ...]     # the generated demo set's classes for this task
    score: str                        # the models column its learning curve plots
    candidates: str                   # the Store method listing its unlabeled images
    ranked: bool                      # its candidates walk Store.open_index's presorted
                                      # class-prediction orders (else per-call strategies)
    describe: Callable[[dict, dict, list], None]  # (view, image state, classes): put its
                                      # label and prediction in what the page and API show
    suspect_scorer: str               # the hitl.review.SuspectRefresher method that scores its
                                      # labels out of sample

    def learner(self, mode: str) -> type:
        """The learner class for a training mode ('frozen' or 'finetune')."""
        if mode not in self.learners:
            raise ValueError(f"Unknown training mode {mode!r} for {self.name}; choose one of: "
                             + ", ".join(self.learners) + ".")
        return _resolve(f"hitl.learners.{mode}:{self.learners[mode]}")

    def stats_of(self, session, live_window: int = 50) -> dict:
        """The numbers the stats panel and the stats() endpoint show for this task."""
        return _resolve(self.stats)(session, live_window)

    def predictor_class(self) -> type:
        return _resolve(self.predictor)


def _describe_label(view: dict, state: dict, classes) -> None:
    names = {c.id: c.name for c in classes}
    view["label"] = names.get(state["label"])
    pred = state["prediction"]
    if pred is not None and pred[0] in names:
        view["prediction"] = {"label": names[pred[0]], "probability": pred[1],
                              "model_version": pred[2]}


def _describe_mask(view: dict, state: dict, classes) -> None:
    view["label"] = "mask" if state["has_mask"] else None


TASKS: dict[str, Task] = {
    "classification": Task(
        name="classification", strategies=strategies.CLASSIFICATION_STRATEGIES,
        learners={"frozen": "FrozenClassifier", "finetune": "FinetuneClassifier"},
        stats="hitl.stats:classification_stats",
        predictor="hitl.model_file:ClassificationPredictor",
        exports=("csv", "imagefolder", "parquet", "json", "model"),
        demo_classes=SHAPES,
        score="val_accuracy",
        candidates="label_candidates",
        ranked=True, describe=_describe_label, suspect_scorer="_classification",
    ),
    "segmentation": Task(
        name="segmentation", strategies=strategies.SEGMENTATION_STRATEGIES,
        learners={"frozen": "FrozenSegmenter", "finetune": "FinetuneSegmenter"},
        stats="hitl.stats:segmentation_stats",
        predictor="hitl.model_file:SegmentationPredictor",
        exports=("masks", "coco", "json", "model"),
        demo_classes=SEG_CLASSES,
        score="val_miou",
        candidates="mask_candidates",
        ranked=False, describe=_describe_mask, suspect_scorer="_segmentation",
    ),
}


def get_task(name: str | None) -> Task:
    """The registry entry of `name`; an unknown (or missing) task raises UnknownTask."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise UnknownTask(f"Unknown task {name!r}; hitl knows: {', '.join(TASKS)}.") from None
