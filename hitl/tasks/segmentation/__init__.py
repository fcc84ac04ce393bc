"""Semantic segmentation: brush masks, one 8-bit value per class.

Its store methods (masks, mask values, segmentation predictions, mask candidates) live in
hitl/store (the store owns all SQL); its learners in hitl/learners (FrozenSegmenter,
FinetuneSegmenter, published masks); its tab in hitl/ui/segmentation.py. This module says which
of them the task uses.
"""
from __future__ import annotations

from hitl.demo import SEG_CLASSES
from hitl.tasks import of_mode, register_task
from hitl.tasks.segmentation.strategies import STRATEGIES


@register_task
class Segmentation:
    name = "segmentation"
    demo_classes = SEG_CLASSES
    exports = ("masks", "coco", "json", "model")
    score = "val_miou"
    strategies = STRATEGIES

    def candidates(self, store, user: str) -> dict:
        return store.mask_candidates(user)

    def open_pool(self, store, user: str):
        candidates = store.mask_candidates(user)
        return candidates if candidates["ids"].size else None

    def describe(self, view: dict, state: dict, classes: list) -> None:
        view["label"] = "mask" if state["has_mask"] else None

    def score_suspects(self, store, cache, class_ids: list[int]):
        from hitl.tasks.segmentation.suspects import score_suspects  # pandas: on first use
        return score_suspects(store, cache, class_ids)

    def learner(self, mode: str) -> type:
        from hitl.learners import finetune, frozen  # torch and timm: on first use
        return of_mode(self.name, mode, {"frozen": frozen.FrozenSegmenter,
                                         "finetune": finetune.FinetuneSegmenter})

    def predictor(self) -> type:
        from hitl.model_file import SegmentationPredictor
        return SegmentationPredictor

    def stats(self, session, live_window: int = 50) -> dict:
        from hitl.tasks.segmentation.stats import segmentation_stats
        return segmentation_stats(session, live_window)

    def board(self, service) -> dict:
        from hitl.ui import segmentation  # Gradio: only where a page is built
        return segmentation.build(service)
