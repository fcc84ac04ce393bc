"""What the labeler saw: an action names the image on their screen and the class-list revision
its buttons (or brush colours) were drawn from, and is refused when either no longer holds.

A page that gets such a refusal re-renders (new buttons, the image back) instead of storing a
label the person did not mean: after "triangle" moves up, an old `3` must not store "box".
"""
from __future__ import annotations

from hitl.errors import Conflict
from hitl.store import Store


class StaleAction(Conflict):
    """The action was made on a screen that no longer matches the session."""


def check_seen(store: Store, user: str, image_id: int | None,
               class_revision: int | None) -> None:
    """Raise StaleAction when the class list changed since the page drew it, or when the
    image is on another labeler's screen (they hold its lease) rather than this one's.

    `None` for a field means the caller did not say (scripted API clients): not checked.
    """
    if class_revision is not None and int(class_revision) != store.class_revision:
        raise StaleAction("The classes changed since this page showed them: the buttons are "
                          "redrawn, nothing was stored. Look again and press once more.")
    if image_id is not None:
        holder = store.lease_holder(int(image_id))
        if holder is not None and holder != user:
            raise StaleAction(f"Image {int(image_id)} is on {holder}'s screen now, not yours: "
                              "nothing was stored.")
