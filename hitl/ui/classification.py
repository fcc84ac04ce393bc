"""The Classification tab: one button per class, keys 1-0, the next image chosen for you."""
from __future__ import annotations

import gradio as gr

from hitl.service import Service
from hitl.stats import learning_curve
from hitl.tasks.classification.stats import classification_stats
from hitl.tasks.classification.strategies import STRATEGIES
from hitl.ui import board
from hitl.ui.common import data_url, display_image, may_label
from hitl.ui.titles import Titles

TASK = "classification"
LEGEND = ("**Keys** — `1`…`9`, `0`: label with class 1…10 and go on · `S`: skip · "
          "`U` / `Backspace` / `Ctrl+Z`: undo · `←` / `→`: previous / next id · "
          "`G`: go to id")


BOARD_JS = board.script("cls_board.js")
CSS = board.CSS + """
.hb-frame { height: 440px; display: flex; align-items: center; justify-content: center;
  background: #f4f4f4; border-radius: 6px; }
.hb-frame img { max-width: 100%; max-height: 440px; object-fit: contain; }
"""
TEMPLATE = f"""
<div class="hb">
  {board.opening("cls", STRATEGIES.names)}
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

    titles = Titles(session)

    def item(view: dict, caller) -> dict:
        """One image for the board: what the page shows, with its pixels inline."""
        img, problem = display_image(session, view.get("image_id"))
        keys = ("image_id", "split", "skipped", "label", "prediction", "note")
        return {**{k: view.get(k) for k in keys}, "problem": problem, "src": data_url(img),
                "filename": titles(view.get("image_id"), view.get("filename"))}

    def act(data: dict, caller) -> dict:
        """A label or skip of the image on the labeler's screen, with the revision seen."""
        image_id, rev = int(data["image_id"]), data.get("rev")
        if data.get("op") == "skip":
            return service.skip(caller, image_id, revision=rev)
        return service.annotate(caller, image_id, str(data.get("class_name") or ""),
                                revision=rev)

    with gr.Column():
        gr.HTML(value="", html_template=TEMPLATE, css_template=CSS, js_on_load=BOARD_JS,
                elem_id="cls-board", apply_default_css=False,
                server_functions=board.functions(service, TASK, "cls", item, act))
        gr.Markdown(LEGEND)
        with gr.Accordion("Statistics", open=True):
            stats_md = gr.Markdown(elem_id="cls-stats")
            live_window = gr.Slider(5, 500, value=50, step=5,
                                    label="Live accuracy over the last N labels")
            with gr.Row():
                curve = gr.LinePlot(x="labels", y="score", title="Validation accuracy",
                                    height=220, y_lim=[0, 1], x_axis_format="d")
                confusion = gr.Dataframe(label="Confusion (validation; rows = truth)",
                                         interactive=False)

    def refresh(window, request: gr.Request = None):
        """Timer tick: stats, curve, confusion (the board keeps its own classes and lock)."""
        import pandas as pd
        if not may_label(service, request):
            return "", None, pd.DataFrame()
        stats = classification_stats(session, int(window))
        frame = learning_curve(session, TASK)
        matrix = stats["confusion"]
        names = stats["confusion_classes"] or []
        conf = pd.DataFrame(matrix, columns=names, index=names).reset_index(names="truth") \
            if matrix else pd.DataFrame()
        return stats_markdown(stats), frame, conf

    return {"refresh": (refresh, [live_window], [stats_md, curve, confusion])}


def held_out(score: float | None, model_version: int | None) -> str:
    """A validation score, or why there is none: a model trained only on validation-split
    labels (the first few, by their ids' hash) would be scored on what it learned from."""
    if score is not None:
        return f"{score:.1%}"
    return "— (no held-out labels yet)" if model_version else "—"


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
        f"labels with a prediction) · **validation accuracy** "
        f"{held_out(stats['val_accuracy'], stats.get('model_version'))}",
        trainer_line(t),
    ]
    if catalog_line(stats):
        lines.insert(0, catalog_line(stats))
    if (stats.get("review") or {}).get("per_class"):
        lines.append(review_line(stats["review"]))
    if stats["users"]:
        lines.append("**Labelers** " + ", ".join(
            f"{u['user']}: {u['count']}" + (f" ({u['per_hour']}/h)" if u["per_hour"] else "")
            for u in stats["users"]))
    return "  \n".join(lines)


def review_line(review: dict) -> str:
    """Labels accepted by the page on the Review tab, apart, with the accept rate per class."""
    return (f"**Review** {review['labels']} labels accepted on pages · accept rate "
            + ", ".join(f"{name}: {_pct(c['accept_rate'])} of {c['shown']}"
                        for name, c in review["per_class"].items()))


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
