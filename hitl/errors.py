"""The refusals hitl answers with, each carrying the HTTP status it means.

Every layer raises these; each entry point (gr.api, REST, the boards' server functions, page
events) turns them into its own shape in one adapter, by `status` — never by the wording.
A message is meant for the person who asked: one short line, no traceback.
"""
from __future__ import annotations


class HitlError(ValueError):
    """A request hitl refuses; `status` is its HTTP status (400 unless a subclass says)."""

    status = 400


class BadInput(HitlError):
    """The request itself is wrong (a malformed value, a mask of the wrong size)."""

    status = 422


class Refused(HitlError):
    """The caller's role does not allow this action."""

    status = 403


class NotFound(HitlError):
    """An id that names no image, class or batch."""

    status = 404


class Conflict(HitlError):
    """The state moved under the request (a class list changed, someone else holds it)."""

    status = 409


class Unavailable(HitlError):
    """hitl cannot serve this now (starting, stopping, the database is closed)."""

    status = 503


class DiskFull(Unavailable):
    """The session's disk is full: nothing of the request was stored."""

    status = 507
