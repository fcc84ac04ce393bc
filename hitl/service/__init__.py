"""The one object through which the page, gr.api and REST change anything.

Any logged-in client can run any page event through `/gradio_api/queue/join` with its
`fn_index`, so hiding a button protects nothing: every public method here takes the `Caller`
first and declares the role it needs (`@action`, hitl/service/guard.py), which is checked
before anything is read or changed. It answers a plain dict, or raises a typed error
(hitl/errors.py) that each entry point turns into its own shape (hitl/adapters.py).
"""
from __future__ import annotations

import atexit
from pathlib import Path

from hitl.access import Access
from hitl.errors import Refused
from hitl.export_leftovers import remove_stale_workdirs
from hitl.locks import ordered_lock
from hitl.service.admin import Admin
from hitl.service.guard import (
    ACTIONS,
    ADMIN,
    ANYONE,
    EXPORT_KEEP_S,
    IMPORT_USER,
    LABELER,
    MASK_DECODES_AT_ONCE,
    MASK_PNG_MAX_BYTES,
    PNG_SIGNATURE,
    RESET_COOLDOWN_S,
    ROLES,
    Caller,
    action,
    declared_actions,
    mask_from_png,
    one_line,
)
from hitl.service.labeling import Labeling
from hitl.service.review import ReviewService
from hitl.session import Session


class Service(Labeling, Admin, ReviewService):
    """Labeling, classes, trainer and session changes for one Session, guarded by role; the
    review actions (hitl/service/review.py) are mixed in."""

    # public methods that are not actions: they take no caller and change nothing
    NOT_ACTIONS = ("caller_of", "task")

    def __init__(self, session: Session, access: Access | None = None):
        self.session = session
        self.access = access or Access.from_settings(session.settings)
        self._reset_lock = ordered_lock("service.reset")
        self._last_reset = 0.0
        self._exports: list[Path] = []
        atexit.register(self._prune_exports, 0)
        remove_stale_workdirs(EXPORT_KEEP_S)  # what a killed app left (hitl/export_leftovers.py)

    @property
    def store(self):
        return self.session.store

    # ---- who ------------------------------------------------------------------------------
    def caller_of(self, request) -> Caller:
        """The edge: a Gradio request (or None in-process) -> the Caller and their role."""
        signed_in = self.access.signed_in(request) if request is not None else None
        if signed_in is not None:
            return Caller(*signed_in)
        name = getattr(request, "username", None) if request is not None else None
        if name:
            return Caller(name, self.access.role_of(name))
        return Caller(self.access.anonymous_name(request), self.access.anonymous_role)


__all__ = [
    "Service",
    "Labeling",
    "Admin",
    "ADMIN",
    "LABELER",
    "IMPORT_USER",
    "ROLES",
    "RESET_COOLDOWN_S",
    "EXPORT_KEEP_S",
    "MASK_DECODES_AT_ONCE",
    "ANYONE",
    "Caller",
    "Refused",
    "action",
    "declared_actions",
    "ACTIONS",
    "one_line",
    "PNG_SIGNATURE",
    "MASK_PNG_MAX_BYTES",
    "mask_from_png",
]
