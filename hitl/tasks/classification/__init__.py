"""Image classification: one class per image, keyboard-driven.

Its store methods (labels, predictions, the presorted open index) live in hitl/store (the
store owns all SQL); its learners in hitl/learners (FrozenClassifier, FinetuneClassifier); its
tab in hitl/ui/classification.py. This module says which of them the task uses.
"""
from __future__ import annotations

from hitl.demo import SHAPES
from hitl.tasks import of_mode, register_task
from hitl.tasks.classification.strategies import STRATEGIES


@register_task(default=True)
class Classification:
    name = "classification"
    demo_classes = SHAPES
    exports = ("csv", "imagefolder", "parquet", "json", "model")
    score = "val_accuracy"
    strategies = STRATEGIES

    def candidates(self, store, user: str) -> dict:
        return store.label_candidates(user)

    def open_pool(self, store, user: str):
        index = store.open_index(user)
        return None if index.blocked.all() else index

    def describe(self, view: dict, state: dict, classes: list) -> None:
        names = {c.id: c.name for c in classes}
        view["label"] = names.get(state["label"])
        pred = state["prediction"]
        if pred is not None and pred[0] in names:
            view["prediction"] = {"label": names[pred[0]], "probability": pred[1],
                                  "model_version": pred[2]}

    def score_suspects(self, store, cache, class_ids: list[int]):
        from hitl.tasks.classification.suspects import score_suspects  # pandas: on first use
        return score_suspects(store, cache, class_ids)

    def learner(self, mode: str) -> type:
        from hitl.learners import finetune, frozen  # torch and timm: on first use
        return of_mode(self.name, mode, {"frozen": frozen.FrozenClassifier,
                                         "finetune": finetune.FinetuneClassifier})

    def predictor(self) -> type:
        from hitl.model_file import ClassificationPredictor
        return ClassificationPredictor

    def stats(self, session, live_window: int = 50) -> dict:
        from hitl.tasks.classification.stats import classification_stats
        return classification_stats(session, live_window)

    def board(self, service) -> dict:
        from hitl.ui import classification  # Gradio: only where a page is built
        return classification.build(service)
