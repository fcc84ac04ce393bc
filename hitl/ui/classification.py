"""The Classification tab: one button per class, keys 1-0, the next image chosen for you."""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from hitl.service import Service, require
from hitl.stats import classification_stats, learning_curve
from hitl.store import StoreError
from hitl.strategies import CLASSIFICATION_STRATEGIES
from hitl.ui.common import data_url, display_image, page_request, parse_id

TASK = "classification"
LEGEND = ("**Keys** — `1`…`9`, `0`: label with class 1…10 and go on · `S`: skip · "
          "`U` / `Backspace` / `Ctrl+Z`: undo · `←` / `→`: previous / next id · "
          "`G`: go to id")


BOARD_JS = (Path(__file__).with_name("cls_board.js")).read_text()
BOARD_CSS = """
.hb-controls { display: flex; gap: 12px; align-items: end; flex-wrap: wrap; margin-bottom: 8px; }
.hb-controls label { display: flex; flex-direction: column; font-size: 0.85em; gap: 2px; }
.hb-controls select, .hb-controls input { padding: 4px 6px; border: 1px solid #bbb;
  border-radius: 4px; min-width: 8em; }
.hb-frame { height: 440px; display: flex; align-items: center; justify-content: center;
  background: #f4f4f4; border-radius: 6px; }
.hb-frame img { max-width: 100%; max-height: 440px; object-fit: contain; }
.hb-buttons, .hb-row { display: flex; flex-wrap: wrap; gap: 6px; margin: 8px 0; }
.hb-body button { padding: 6px 12px; border: 1px solid #bbb; border-radius: 6px;
  background: #fff; cursor: pointer; min-width: 90px; }
.hb-body button.hb-primary { background: #ff7c00; color: #fff; border-color: #ff7c00; }
.hb-note { min-height: 1.4em; }
.hb-warn { color: #b00020; font-weight: 600; }
.hb-lock { padding: 12px; background: #fff3cd; border-radius: 6px; }
"""


def board_template() -> str:
    options = "".join(f"<option>{html.escape(s)}</option>" for s in CLASSIFICATION_STRATEGIES)
    return f"""
<div class="hb">
  <div id="cls-lock" class="hb-lock" hidden></div>
  <div class="hb-body">
    <div class="hb-controls">
      <label>Next image <select class="hb-strategy" id="cls-strategy">{options}</select></label>
      <label>Class (for 'class' strategy) <select class="hb-class"></select></label>
      <label id="cls-goto">Go to id <input type="text" inputmode="numeric" size="8"></label>
      <button id="cls-go">Open</button>
    </div>
    <h3 id="cls-title">Loading…</h3>
    <div class="hb-frame"><img id="cls-image" alt="" style="visibility:hidden"></div>
    <div id="cls-note" class="hb-note"></div>
    <div id="cls-buttons" class="hb-buttons"></div>
    <div class="hb-row">
      <button id="cls-prev">← Previous</button><button id="cls-skip">Skip (S)</button>
      <button id="cls-undo">Undo (U)</button><button id="cls-next">Next →</button>
      <button id="cls-fetch">Next by strategy</button>
    </div>
  </div>
</div>"""


def build(service: Service) -> dict:
    session = service.session

    def item(view: dict) -> dict:
        """One image for the board: what the page shows, with its pixels inline."""
        img, problem = display_image(session, view.get("image_id"))
        keys = ("image_id", "filename", "split", "skipped", "label", "prediction", "note")
        return {**{k: view.get(k) for k in keys}, "problem": problem, "src": data_url(img)}

    def answer(fn):
        """A server function: the caller from the request, a dict back, never a trace."""
        def run(data, request: gr.Request):
            try:
                return {"ok": True, **fn(data or {}, service.caller_of(page_request(request)))}
            except (StoreError, ValueError, TypeError) as exc:
                return {"ok": False, "error": str(exc)}
        run.__name__ = fn.__name__
        return run

    @answer
    def cls_sync(data, caller):
        """Every tick: the class list and its revision, the lock, the leases kept."""
        message = session.task_message(TASK)
        if not message:
            for image_id in (data.get("held") or [])[:32]:
                service.keep_lease(caller, int(image_id))
        store = session.store
        return {"rev": store.class_revision, "epoch": id(store), "message": message or "",
                "classes": [{"name": c.name, "colour": c.colour} for c in store.classes()]}

    @answer
    def cls_take(data, caller):
        """The next images by the strategy, leased to this labeler for the board's queue."""
        exclude = [int(i) for i in data.get("exclude") or []]
        items, note = [], None
        for _ in range(max(1, min(int(data.get("n") or 1), 8))):
            view = require(service.next_image(caller, TASK, str(data.get("strategy") or
                                                                "uncertain"),
                                              data.get("class_name") or None,
                                              exclude=exclude, keep_leases=True))
            if view.get("image_id") is None:
                note = view.get("note")
                break
            exclude.append(view["image_id"])
            items.append(item(view))
        return {"items": items, "note": note}

    @answer
    def cls_release(data, caller):
        return require(service.leave(caller, [int(i) for i in data.get("ids") or []]))

    @answer
    def cls_act(data, caller):
        """A label or skip of the image on the labeler's screen, with the revision seen."""
        message = session.task_message(TASK)
        if message:
            raise StoreError(message)
        image_id, rev = data.get("image_id"), data.get("rev")
        if image_id is None:
            raise StoreError("No image to label.")
        if data.get("op") == "skip":
            return require(service.skip(caller, int(image_id), revision=rev))
        return require(service.annotate(caller, int(image_id), str(data.get("class_name") or ""),
                                        revision=rev))

    @answer
    def cls_undo(data, caller):
        result = require(service.undo(caller))
        return {"item": item(require(service.open_image(caller, result["image_id"], TASK)))}

    @answer
    def cls_open(data, caller):
        if data.get("step"):
            start = data.get("from")
            view = require(service.neighbour(caller, None if start is None else int(start),
                                             int(data["step"]), TASK))
        else:
            image_id = parse_id(data.get("image_id"))
            if image_id is None:
                raise StoreError(f"'{data.get('image_id')}' is not an image id (a whole number).")
            view = require(service.open_image(caller, image_id, TASK))
        return {"item": item(view)}

    with gr.Column():
        gr.HTML(value="", html_template=board_template(), css_template=BOARD_CSS,
                js_on_load=BOARD_JS, elem_id="cls-board", apply_default_css=False,
                server_functions=[cls_sync, cls_take, cls_release, cls_act, cls_undo,
                                  cls_open])
        gr.Markdown(LEGEND)
        with gr.Accordion("Statistics", open=True):
            stats_md = gr.Markdown(elem_id="cls-stats")
            live_window = gr.Slider(5, 500, value=50, step=5,
                                    label="Live accuracy over the last N labels")
            with gr.Row():
                curve = gr.LinePlot(x="labels", y="score", title="Validation accuracy",
                                    height=220, y_lim=[0, 1])
                confusion = gr.Dataframe(label="Confusion (validation; rows = truth)",
                                         interactive=False)

    def refresh(window):
        """Timer tick: stats, curve, confusion (the board keeps its own classes and lock)."""
        stats = classification_stats(session, int(window))
        frame = learning_curve(session, TASK)
        matrix = stats["confusion"]
        names = stats["confusion_classes"] or []
        import pandas as pd
        conf = pd.DataFrame(matrix, columns=names, index=names).reset_index(names="truth") \
            if matrix else pd.DataFrame()
        return stats_markdown(stats), frame, conf

    return {"refresh": (refresh, [live_window], [stats_md, curve, confusion])}


def lock_updates(message: str | None, shown: str) -> tuple:
    """Show or hide a tab's body only when the lock changes: re-sending visibility on every
    tick re-mounts everything inside (the image editor reloaded itself every 2 s)."""
    message = message or ""
    if message == shown:
        return gr.update(), gr.update(), shown
    return (gr.Markdown(message, visible=bool(message)), gr.Column(visible=not message),
            message)


def _pct(value) -> str:
    return "—" if value is None else f"{value:.1%}"


def stats_markdown(stats: dict) -> str:
    t = stats["trainer"]
    per_class = ", ".join(f"{k}: {v}" for k, v in stats["per_class"].items()) or "no classes"
    lines = [
        f"**Labeled** {stats['labeled']} / {stats['readable']} · **skipped** {stats['skips']}"
        + (f" · **unreadable** {stats['unreadable']}" if stats["unreadable"] else ""),
        f"**Per class** {per_class}",
        f"**Live accuracy** {_pct(stats['live_accuracy'])} (over {stats['live_counted']} "
        f"labels with a prediction) · **validation accuracy** {_pct(stats['val_accuracy'])}",
        trainer_line(t),
    ]
    if catalog_line(stats):
        lines.insert(0, catalog_line(stats))
    if stats["users"]:
        lines.append("**Labelers** " + ", ".join(
            f"{u['user']}: {u['count']}" + (f" ({u['per_hour']}/h)" if u["per_hour"] else "")
            for u in stats["users"]))
    return "  \n".join(lines)


def catalog_line(stats: dict) -> str:
    """While --images register in the background: how far they are ('' once done)."""
    c = stats.get("catalog") or {}
    if c.get("state") in ("finding", "reading"):
        return (f"⏳ **Registering images** {c['registered']:,} / {c['found']:,} "
                "(those registered can be labeled now)")
    return f"⚠️ {c['error']}" if c.get("error") else ""


def trainer_line(t: dict) -> str:
    import time
    parts = [f"**Trainer** {t['state']}"]
    if t.get("model_version"):
        ago = "" if not t.get("last_trained_at") else \
            f", trained {time.time() - t['last_trained_at']:.0f}s ago"
        parts.append(f"model v{t['model_version']}{ago}")
    if t.get("extract_total") and t.get("extract_done", 0) < t["extract_total"]:
        rate = f" at {t['extract_rate']:.1f} img/s" if t.get("extract_rate") else ""
        parts.append(f"features {t['extract_done']}/{t['extract_total']}{rate}")
    if t.get("message"):
        parts.append(t["message"])
    line = " · ".join(parts)
    if t.get("error"):
        line += f"  \n⚠️ **Trainer error:** {t['error']}"
    if t.get("weights_warning"):
        line += f"  \n⚠️ {t['weights_warning']}"
    return line
