"""Segmentation's stats: masks, validation mIoU and IoU per class."""
from __future__ import annotations

from typing import TYPE_CHECKING

from hitl.stats import common_stats

if TYPE_CHECKING:
    from hitl.session import Session


def segmentation_stats(session: Session, live_window: int = 50) -> dict:
    """live_window is unused: there is no live score for masks (Task.stats' signature)."""
    store = session.store
    names = {c.id: c.name for c in store.classes()}
    latest = store.latest_model()
    per_class_iou = {}
    if latest is not None and latest["task"] == session.store.task():
        ids = latest["metrics"].get("class_ids", [])
        per_class_iou = {names.get(c, "?"): v for c, v in
                         zip(ids, latest["metrics"].get("per_class_iou", []))}
    out = common_stats(session)
    out.update({
        "labeled": int(store.counts()["masks"]),
        "val_miou": None if latest is None else latest["val_miou"],
        "per_class_iou": per_class_iou,
    })
    return out
