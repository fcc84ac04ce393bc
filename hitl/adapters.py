"""One adapter per entry point: a typed refusal (hitl/errors.py) in that entry point's shape.

The Service raises `HitlError`s carrying their HTTP status; nothing else in hitl turns them
into answers. gr.api answers `{"ok": false, "error"}` (a client loop goes on); REST answers
the error's status with `{"error"}`; a board's server function and a page event get
`{"ok": false, "error", "status"}` and show the one line. The message is always one short
line, never a traceback and never a huge echoed input.
"""
from __future__ import annotations

from collections.abc import Callable

from hitl.errors import HitlError
from hitl.service.guard import one_line


def for_api(exc: HitlError) -> dict:
    """gr.api (hitl/api.py): the refusal as the answer, so a client loop can go on."""
    return {"ok": False, "error": one_line(str(exc))}


def for_rest(exc: HitlError) -> tuple[int, dict]:
    """REST (hitl/rest.py): the error's own status and body; never a status by wording."""
    return exc.status, {"error": one_line(str(exc))}


def for_board(exc: HitlError) -> dict:
    """A board's server function (hitl/ui/board.py): the board shows the line."""
    return {"ok": False, "error": one_line(str(exc)), "status": exc.status}


def for_page(call: Callable[..., dict], *args, **kwargs) -> dict:
    """A page event (hitl/ui/*): run one Service action; its refusal as a dict the event
    shows, as every page event shows it."""
    try:
        return call(*args, **kwargs)
    except HitlError as exc:
        return {"ok": False, "error": one_line(str(exc)), "status": exc.status}
