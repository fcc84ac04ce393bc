"""The one object through which the page, gr.api and REST change anything.

Any logged-in client can run any page event through `/gradio_api/queue/join` with its
`fn_index`, so hiding a button protects nothing: every public method here takes the `Caller`
first, checks their role, validates its arguments and answers a plain dict —
`{"ok": False, "error": "one line"}` on refusal or bad input, never an exception.
"""
from __future__ import annotations

import atexit
import threading
from pathlib import Path

from hitl.access import Access
from hitl.export_leftovers import remove_stale_workdirs
from hitl.locks import ordered_lock
from hitl.review import ReviewService
from hitl.service.admin import Admin
from hitl.service.guard import (
    ACTIONS,
    ADMIN,
    EXPORT_KEEP_S,
    IMPORT_USER,
    LABELER,
    MASK_DECODES_AT_ONCE,
    MASK_PNG_MAX_BYTES,
    PNG_SIGNATURE,
    RESET_COOLDOWN_S,
    ROLES,
    Caller,
    Refused,
    admin_only,
    answer,
    mask_from_png,
    one_line,
    require,
)
from hitl.service.labeling import Labeling
from hitl.session import Session


class Service(Labeling, Admin, ReviewService):
    """Labeling, classes, trainer and session changes for one Session, guarded by role; the
    review methods (hitl/review.py) are mixed in."""

    def __init__(self, session: Session, access: Access | None = None):
        self.session = session
        self.access = access or Access.from_settings(session.settings)
        self._reset_lock = ordered_lock("service.reset")
        self._last_reset = 0.0
        self._exports: list[Path] = []
        self._mask_slots = threading.BoundedSemaphore(MASK_DECODES_AT_ONCE)
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
        if not name:
            name = self.access.anonymous_name(request)
        return Caller(name, self.access.role_of(name))


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
    "Caller",
    "Refused",
    "answer",
    "admin_only",
    "ACTIONS",
    "one_line",
    "PNG_SIGNATURE",
    "MASK_PNG_MAX_BYTES",
    "mask_from_png",
    "require",
]
