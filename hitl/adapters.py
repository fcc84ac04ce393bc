"""One adapter per entry point: a typed refusal (hitl/errors.py) in that entry point's shape.

The Service raises `HitlError`s carrying their HTTP status; nothing else in hitl turns them
into answers. gr.api and the boards' server functions answer `{"ok": false, "error"}` (a
client loop goes on, the board shows the line); REST answers the error's status with
`{"error"}`; a page event gets `{"ok": false, "error", "status"}` and shows the line. The
message is always one short line, never a traceback and never a huge echoed input.
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
    """A board's server function (hitl/ui/board.py): the board shows the line (its answer
    carries no HTTP status: it came back with 200, and a "status" would read as the HTTP one)."""
    return {"ok": False, "error": one_line(str(exc))}


def for_page(call: Callable[..., dict], *args, **kwargs) -> dict:
    """A page event (hitl/ui/*): run one Service action; its refusal as a dict the event
    shows, as every page event shows it."""
    try:
        return call(*args, **kwargs)
    except HitlError as exc:
        return {"ok": False, "error": one_line(str(exc)), "status": exc.status}
