"""Classification's stats: labels per class, live and validation accuracy, confusion, review."""
from __future__ import annotations

from typing import TYPE_CHECKING

from hitl.review import review_stats
from hitl.stats import common_stats

if TYPE_CHECKING:
    from hitl.session import Session


def classification_stats(session: Session, live_window: int = 50) -> dict:
    store = session.store
    names = {c.id: c.name for c in store.classes()}
    # the two reads may straddle a class change: count the classes both of them know
    per_class = {names[cid]: int(n) for cid, n in store.label_counts().items() if cid in names}
    latest = store.latest_model()
    live, counted = store.live_accuracy(live_window)
    out = common_stats(session)
    out.update({
        "labeled": int(store.counts()["labels"]),
        "per_class": per_class,
        "val_accuracy": None if latest is None else latest["val_accuracy"],
        "live_accuracy": live, "live_counted": counted,
        "confusion": None if latest is None else latest["metrics"].get("confusion"),
        "confusion_classes": None if latest is None else
        [names.get(c, "?") for c in latest["metrics"].get("class_ids", [])],
        "review": review_stats(store),  # pages accepted in bulk, counted apart (hitl/review.py)
    })
    return out
