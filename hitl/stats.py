"""The numbers the stats panel and the stats() endpoint show, from the store and trainer."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from hitl.review import review_stats
from hitl.tasks import get_task

if TYPE_CHECKING:
    from hitl.session import Session


def _common(session: Session) -> dict:
    store, status = session.store, session.trainer.status_dict()
    counts = store.counts()
    latest = store.latest_model()
    return {
        "total": counts["total"], "readable": counts["readable"],
        "unreadable": counts["total"] - counts["readable"], "skips": counts["skips"],
        "model_version": None if latest is None else int(latest["version"]),
        "training": status["state"] in ("training", "extracting", "starting"),
        "trainer": status,
        "users": [{"user": u, "count": int(n), "per_hour": None if pace is None else
                   round(float(pace), 1)} for u, n, pace in store.user_stats()],
        "task": store.task(),
        "catalog": session.catalog.as_dict(),  # images still registering in the background
    }


def classification_stats(session: Session, live_window: int = 50) -> dict:
    store = session.store
    names = {c.id: c.name for c in store.classes()}
    # the two reads may straddle a class change: count the classes both of them know
    per_class = {names[cid]: int(n) for cid, n in store.label_counts().items() if cid in names}
    latest = store.latest_model()
    live, counted = store.live_accuracy(live_window)
    out = _common(session)
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


def segmentation_stats(session: Session, live_window: int = 50) -> dict:
    """live_window is unused: there is no live score for masks (same signature as
    classification_stats, so the task registry can call either)."""
    store = session.store
    names = {c.id: c.name for c in store.classes()}
    latest = store.latest_model()
    per_class_iou = {}
    if latest is not None and latest["task"] == session.store.task():
        ids = latest["metrics"].get("class_ids", [])
        per_class_iou = {names.get(c, "?"): v for c, v in
                         zip(ids, latest["metrics"].get("per_class_iou", []))}
    out = _common(session)
    out.update({
        "labeled": int(store.counts()["masks"]),
        "val_miou": None if latest is None else latest["val_miou"],
        "per_class_iou": per_class_iou,
    })
    return out


def learning_curve(session: Session, task: str) -> pd.DataFrame:
    """Validation score against number of labels: per label count the latest model's (an
    undo brings a count back; two points over one x drew a vertical segment)."""
    models = session.store.models()
    column = get_task(task).score
    models = models[(models["task"] == task) & models[column].notna()]
    models = models.sort_values("version").drop_duplicates("n_labels", keep="last") \
        .sort_values("n_labels")
    return pd.DataFrame({"labels": models["n_labels"].astype(int),
                         "score": models[column].astype(float)})
