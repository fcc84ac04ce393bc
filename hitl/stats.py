"""The numbers every task's stats panel shows, from the store and trainer; each task adds its
own (hitl/tasks/<name>/stats.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from hitl.tasks import get_task

if TYPE_CHECKING:
    from hitl.session import Session


def common_stats(session: Session) -> dict:
    """What every task's stats show (hitl/tasks/<name>/stats.py adds its own)."""
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
