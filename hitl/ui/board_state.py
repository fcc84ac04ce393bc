"""Where a labeling board stands: its progress line and why it has no image to show.

The board (hitl/ui/board.py) shows labeled / total and the caller's work today on every tick,
and, when its queue runs dry, says which of three things happened: everything is labeled
(export, or add images), the images left are reserved by other labelers (and when the first
frees), or the last ones are still on their way from this page.
"""
from __future__ import annotations

from datetime import datetime

from hitl.session import Session


def progress(session: Session, task: str, user: str) -> dict:
    """{labeled, total, skipped, left, mine_today} for the board's progress line."""
    store = session.store
    counts = store.counts()
    labeled = counts["masks" if task == "segmentation" else "labels"]
    today = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
    return {"labeled": labeled, "total": counts["readable"], "skipped": counts["skips"],
            "left": max(0, counts["readable"] - labeled - counts["skips"]),
            "mine_today": store.done_since(today).get(user, 0)}


def empty_state(session: Session, task: str, user: str, held: list[int]) -> tuple[str, str]:
    """(state, message) when no image is free for this labeler: 'done', 'reserved' or
    'held'."""
    p = progress(session, task, user)
    if p["left"] == 0:
        what = (f"All {p['total']} images are labeled" if not p["skipped"] else
                f"Nothing left to label: {p['labeled']} of {p['total']} labeled, "
                f"{p['skipped']} skipped (open a skipped one by id to label it)")
        return "done", (f"{what}. Export them on the Session tab, or add images "
                        "(app.py --images) to go on.")
    store = session.store
    others = [(i, s) for i, s in store.lease_book.others_left(user) if store.is_open(i)]
    mine = [i for i in held if store.is_open(i)]
    if others and len(mine) < p["left"]:
        soonest = min(s for _, s in others)
        when = f"{soonest / 60:.0f} min" if soonest >= 90 else f"{max(1, round(soonest))} s"
        return "reserved", (f"The {len(others)} image(s) left are reserved by other labelers; "
                            f"the first frees in about {when} (at once if its page closes). "
                            "This page looks again by itself.")
    return "held", "The last images are being saved by this page."
