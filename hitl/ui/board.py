"""What both labeling boards (gr.HTML pages that work in the browser) share on the server.

A board calls named Python functions (gr.HTML `server_functions`, posted to Gradio's
login-checked `/gradio_api/component_server`); each one here finds the caller, goes through
the Service and answers a plain dict, never a trace. The browser keeps the image on screen and
the next few: `take` leases them, `sync` (every tick) renews those leases and tells the page
the class list, its revision, the task lock and whether the session was reset.
"""
from __future__ import annotations

import html
import logging
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from hitl.adapters import for_board
from hitl.errors import BadInput, Conflict, HitlError
from hitl.service import LABELER, Service
from hitl.service.guard import check_role
from hitl.ui.board_state import empty_state, progress
from hitl.ui.common import page_request, parse_id

log = logging.getLogger(__name__)
MAX_TAKE = 8
FEED_JS = Path(__file__).with_name("board_feed.js").read_text()
MAX_HELD = 32

CSS = """
.hb-controls { display: flex; gap: 12px; align-items: end; flex-wrap: wrap; margin-bottom: 8px; }
.hb-controls label { display: flex; flex-direction: column; font-size: 0.85em; gap: 2px; }
.hb-controls select, .hb-controls input[type=text] { padding: 4px 6px; border: 1px solid #bbb;
  border-radius: 4px; min-width: 8em; }
.hb-buttons, .hb-row { display: flex; flex-wrap: wrap; gap: 6px; margin: 8px 0; }
.hb-body button { padding: 6px 12px; border: 1px solid #bbb; border-radius: 6px;
  background: #fff; cursor: pointer; min-width: 90px; }
.hb-body button.hb-primary { background: #ff7c00; color: #fff; border-color: #ff7c00; }
.hb-note { min-height: 1.4em; }
.hb-warn { color: #b00020; font-weight: 600; }
.hb-lock { padding: 12px; background: #fff3cd; border-radius: 6px; }
.hb-progress { display: flex; gap: 10px; align-items: center; font-size: 0.9em; }
.hb-progress progress { width: 12em; }
.hb-progress .hb-user { margin-left: auto; color: #555; }
.hb-done { padding: 14px; background: #e6f4ea; border-radius: 6px; font-weight: 600; }
"""


def script(*names: str) -> str:
    """A board's browser code (gr.HTML js_on_load), after the part both boards share."""
    return FEED_JS + "".join(Path(__file__).with_name(n).read_text() for n in names)


def opening(prefix: str, strategies: tuple[str, ...] | list[str]) -> str:
    """How every board starts: the task-lock note, then its body with the next-image controls
    and the title line (the body's closing tag is the board's own)."""
    return (f'<div id="{prefix}-lock" class="hb-lock" hidden></div>\n'
            f'  <div class="hb-body">\n    {controls(prefix, strategies)}\n'
            f'    <div id="{prefix}-progress" class="hb-progress"></div>\n'
            f'    <h3 id="{prefix}-title">Loading…</h3>')


def controls(prefix: str, strategies: tuple[str, ...] | list[str]) -> str:
    """Strategy and class choosers and the go-to box, as the board's HTML."""
    options = "".join(f"<option>{html.escape(s)}</option>" for s in strategies)
    return f"""
    <div class="hb-controls">
      <label>Next image
        <select class="hb-strategy" id="{prefix}-strategy">{options}</select></label>
      <label>Class (for 'class' strategy) <select class="hb-class"></select></label>
      <label id="{prefix}-goto">Go to id <input type="text" inputmode="numeric" size="8"></label>
      <button id="{prefix}-go">Open</button>
    </div>"""


def server_function(service: Service, name: str):
    """Wrap fn(data, caller) -> dict as a board's server function called `name`; a refusal
    is answered by the board adapter (hitl/adapters.py)."""
    def wrap(fn: Callable[[dict, object], dict]):
        def run(data, request: gr.Request):
            try:
                caller = service.caller_of(page_request(request))
                check_role(caller, LABELER, name)  # every board function is labeling
                return {"ok": True, **fn(data if isinstance(data, dict) else {}, caller)}
            except HitlError as exc:
                return for_board(exc)
            except (ValueError, TypeError) as exc:  # a page script's junk, not a refusal
                return for_board(BadInput(f"Bad request: {exc}"))
            except OverflowError:  # an id past int64 (the database's BIGINT)
                return for_board(BadInput("A number the page sent is out of range."))
        run.__name__ = name
        return run
    return wrap


def functions(service: Service, task: str, prefix: str, item: Callable[[dict, object], dict],
              act: Callable[[dict, object], dict]) -> list[Callable]:
    """The board's server functions: {prefix}_sync, _take, _release, _act, _undo, _open.
    `item(view, caller)` turns a Service view into what the page shows; `act` stores an action."""
    session = service.session
    fn = lambda name: server_function(service, f"{prefix}_{name}")  # noqa: E731

    @fn("sync")
    def sync(data, caller):
        """Every tick: the class list and its revision, the lock, the leases kept."""
        message = session.task_message(task)
        if not message:
            for image_id in (data.get("held") or [])[:MAX_HELD]:
                service.keep_lease(caller, int(image_id))
        store = session.store
        return {"rev": store.class_revision, "epoch": session.epoch, "message": message or "",
                "classes": [{"name": c.name, "colour": c.colour} for c in store.classes()],
                "progress": progress(session, task, caller.name), "user": caller.name}

    @fn("take")
    def take(data, caller):
        """The next images by the strategy, leased to this labeler for the board's queue."""
        exclude = [int(i) for i in data.get("exclude") or []]
        items, note, state = [], None, None
        for _ in range(max(1, min(int(data.get("n") or 1), MAX_TAKE))):
            view = service.next_image(caller, task, str(data.get("strategy") or ""),
                                      data.get("class_name") or None,
                                      exclude=exclude, keep_leases=True)
            if view.get("image_id") is None:
                if not items:
                    state, note = empty_state(session, task, caller.name, exclude)
                break
            exclude.append(view["image_id"])
            items.append(item(view, caller))
        return {"items": items, "note": note, "state": state}

    @fn("release")
    def release(data, caller):
        """Images the page no longer holds ready (the strategy changed)."""
        return service.leave(caller, [int(i) for i in data.get("ids") or []])

    @fn("act")
    def do(data, caller):
        message = session.task_message(task)
        if message:
            raise Conflict(message)
        if data.get("image_id") is None:
            raise BadInput("No image.")
        return act(data, caller)

    @fn("undo")
    def undo(data, caller):
        result = service.undo(caller)
        view = service.open_image(caller, result["image_id"], task)
        return {"item": item(view, caller)}

    @fn("open")
    def open_image(data, caller):
        if data.get("step"):
            start = data.get("from")
            view = service.neighbour(caller, None if start is None else int(start),
                                     int(data["step"]), task)
        else:
            image_id = parse_id(data.get("image_id"))
            if image_id is None:
                raise BadInput(f"'{data.get('image_id')}' is not an image id (a whole number).")
            view = service.open_image(caller, image_id, task)
        return {"item": item(view, caller)}

    return [sync, take, release, do, undo, open_image]
