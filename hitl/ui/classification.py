"""The Classification tab: one button per class, keys 1-0, the next image chosen for you."""
from __future__ import annotations

import gradio as gr

from hitl.service import Service, require
from hitl.stats import classification_stats, learning_curve
from hitl.store import StoreError
from hitl.strategies import CLASSIFICATION_STRATEGIES
from hitl.ui.common import display_image, header, note_text, parse_id

SLOTS = 20  # class buttons; keys 1-9, 0 reach the first ten
TASK = "classification"
LEGEND = ("**Keys** — `1`…`9`, `0`: label with class 1…10 and go on · `S`: skip · "
          "`U` / `Backspace` / `Ctrl+Z`: undo · `←` / `→`: previous / next id · "
          "`G`: go to id")


def build(service: Service) -> dict:
    session = service.session
    with gr.Column():
        lock_md = gr.Markdown(visible=False, elem_id="cls-lock")
        with gr.Column(visible=True) as body:
            with gr.Row():
                strategy = gr.Dropdown(list(CLASSIFICATION_STRATEGIES), value="uncertain",
                                       label="Next image", scale=2, elem_id="cls-strategy")
                class_choice = gr.Dropdown([], label="Class (for 'class' strategy)", scale=2,
                                           allow_custom_value=False)
                goto = gr.Textbox(label="Go to id", scale=1, elem_id="cls-goto")
                go = gr.Button("Open", scale=0, elem_id="cls-go")
            current = gr.State(None)
            title = gr.Markdown("### Loading…", elem_id="cls-title")
            image = gr.Image(type="pil", interactive=False, show_label=False, height=440,
                             format="jpeg", elem_id="cls-image")
            note = gr.Markdown(elem_id="cls-note")
            with gr.Row(elem_id="cls-buttons"):
                buttons = [gr.Button(visible=False, elem_id=f"cls-btn-{i}", min_width=90)
                           for i in range(SLOTS)]
            with gr.Row():
                prev_btn = gr.Button("← Previous", elem_id="cls-prev", size="sm")
                skip_btn = gr.Button("Skip (S)", elem_id="cls-skip", size="sm")
                undo_btn = gr.Button("Undo (U)", elem_id="cls-undo", size="sm")
                next_btn = gr.Button("Next →", elem_id="cls-next", size="sm")
                fetch_btn = gr.Button("Next by strategy", elem_id="cls-fetch", size="sm")
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

    outputs = [current, title, image, note, *buttons]

    def render(view: dict, extra: str | None = None) -> list:
        img, problem = display_image(session, view.get("image_id"))
        classes = session.store.classes()
        pred = view.get("prediction")
        updates = []
        for i in range(SLOTS):
            if i >= len(classes):
                updates.append(gr.Button(visible=False))
                continue
            c = classes[i]
            key = f"{(i + 1) % 10}: " if i < 10 else ""
            text, variant = f"{key}{c.name}", "secondary"
            if view.get("label") == c.name:
                text, variant = f"✓ {text}", "primary"
            elif view.get("label") is None and pred and pred["label"] == c.name:
                text, variant = f"{text} · {pred['probability']:.0%}", "primary"
            updates.append(gr.Button(value=text, variant=variant, visible=True))
        lines = [view.get("note"), problem, extra]
        if not classes:
            lines.append("Add classes in the Classes tab to start labeling.")
        if pred and view.get("label") is None:
            lines.append(f"Model v{pred['model_version']} predicts {pred['label']} "
                         f"({pred['probability']:.0%}).")
        return [view.get("image_id"), header(view), img, note_text(*lines), *updates]

    def guarded(fn):
        """Every action answers with the current image and a message, never a stack trace."""
        def run(current_id, *args, request: gr.Request = None):
            message = session.task_message(TASK)
            if message:
                return [current_id, gr.update(), gr.update(), note_text(message),
                        *[gr.update()] * SLOTS]
            caller = service.caller_of(request)
            try:
                return fn(current_id, *args, user=caller)
            except StoreError as exc:
                view = service.view(caller, current_id, TASK)
                if not view["ok"]:
                    view = service.view(caller, None, TASK)
                return render(view, str(exc))
        return run

    def fetch(current_id, strategy_name, class_name, user):
        return render(require(service.next_image(user, TASK, strategy_name, class_name)))

    def make_label(slot: int):
        def label(current_id, strategy_name, class_name, user):
            classes = session.store.classes()
            if current_id is None:
                raise StoreError("No image to label.")
            if slot >= len(classes):
                raise StoreError(f"There is no class {slot + 1}.")
            require(service.annotate(user, current_id, classes[slot].name))
            return render(require(service.next_image(user, TASK, strategy_name, class_name)))
        return label

    def skip(current_id, strategy_name, class_name, user):
        if current_id is None:
            raise StoreError("No image to skip.")
        require(service.skip(user, current_id))
        return render(require(service.next_image(user, TASK, strategy_name, class_name)))

    def undo(current_id, strategy_name, class_name, user):
        result = service.undo(user)
        if not result["ok"]:
            raise StoreError(result["error"])
        return render(require(service.open_image(user, result["image_id"], TASK)),
                      f"Undone: image {result['image_id']} is back as it was.")

    def step(delta):
        def move(current_id, strategy_name, class_name, user):
            return render(require(service.neighbour(user, current_id, delta, TASK)))
        return move

    def open_id(current_id, text, user):
        image_id = parse_id(text)
        if image_id is None:
            raise StoreError(f"'{text}' is not an image id (a whole number).")
        return render(require(service.open_image(user, image_id, TASK)))

    common = dict(outputs=outputs, api_visibility="private", concurrency_limit=None)
    strategy_inputs = [current, strategy, class_choice]
    for i, button in enumerate(buttons):
        button.click(guarded(make_label(i)), strategy_inputs, **common)
    skip_btn.click(guarded(skip), strategy_inputs, **common)
    undo_btn.click(guarded(undo), strategy_inputs, **common)
    prev_btn.click(guarded(step(-1)), strategy_inputs, **common)
    next_btn.click(guarded(step(+1)), strategy_inputs, **common)
    fetch_btn.click(guarded(fetch), strategy_inputs, **common)
    strategy.change(guarded(fetch), strategy_inputs, **common)
    go.click(guarded(open_id), [current, goto], **common)
    goto.submit(guarded(open_id), [current, goto], **common)

    def refresh(window, current_id, shown_lock, request: gr.Request = None):
        """Timer tick: lock state, stats, curve, confusion, class choices; keeps the lease
        on the image on screen while its labeler works on it."""
        message = session.task_message(TASK)
        if current_id is not None and not message:
            service.keep_lease(service.caller_of(request), int(current_id))
        stats = classification_stats(session, int(window))
        frame = learning_curve(session, TASK)
        matrix = stats["confusion"]
        names = stats["confusion_classes"] or []
        import pandas as pd
        conf = pd.DataFrame(matrix, columns=names, index=names).reset_index(names="truth") \
            if matrix else pd.DataFrame()
        return (*lock_updates(message, shown_lock), stats_markdown(stats), frame, conf,
                gr.Dropdown(choices=[c.name for c in session.store.classes()]))

    shown_lock = gr.State("")
    refresh_outputs = [lock_md, body, shown_lock, stats_md, curve, confusion, class_choice]
    return {"first": (guarded(fetch), strategy_inputs, outputs),
            "refresh": (refresh, [live_window, current, shown_lock], refresh_outputs)}


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
    if stats["users"]:
        lines.append("**Labelers** " + ", ".join(
            f"{u['user']}: {u['count']}" + (f" ({u['per_hour']}/h)" if u["per_hour"] else "")
            for u in stats["users"]))
    return "  \n".join(lines)


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
