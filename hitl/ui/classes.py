"""The class manager: add, rename, reorder, remove (with confirmation)."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from hitl.session import Session
from hitl.store import StoreError
from hitl.ui.common import note_text, user_of


def class_table(session: Session) -> pd.DataFrame:
    counts = session.store.label_counts()
    rows = [(i + 1, c.name, c.colour, counts.get(c.id, 0))
            for i, c in enumerate(session.store.classes())]
    return pd.DataFrame(rows, columns=["#", "name", "colour", "labels"])


def build(session: Session) -> dict:
    gr.Markdown("Classes in order: the first ten get keys `1`…`9`, `0`. Names are trimmed, "
                "up to 64 characters, unique ignoring case.")
    table = gr.Dataframe(interactive=False, elem_id="classes-table")
    with gr.Row():
        new_name = gr.Textbox(label="New class", elem_id="class-new", scale=3)
        add_btn = gr.Button("Add", elem_id="class-add", scale=1)
    with gr.Row():
        chosen = gr.Dropdown([], label="Class", elem_id="class-chosen", scale=2)
        rename_to = gr.Textbox(label="Rename to", scale=2)
        rename_btn = gr.Button("Rename", scale=1)
    with gr.Row():
        up_btn = gr.Button("Move up", size="sm")
        down_btn = gr.Button("Move down", size="sm")
        remove_btn = gr.Button("Remove…", variant="stop", size="sm", elem_id="class-remove")
    with gr.Row(visible=False) as confirm_row:
        confirm_md = gr.Markdown()
        confirm_btn = gr.Button("Yes, remove it and its labels", variant="stop",
                                elem_id="class-remove-confirm")
        cancel_btn = gr.Button("Cancel", elem_id="class-remove-cancel")
    message = gr.Markdown(elem_id="class-message")

    def current(text: str | None = None):
        names = [c.name for c in session.store.classes()]
        return (class_table(session), gr.Dropdown(choices=names, value=None),
                note_text(text), gr.Row(visible=False))

    def guarded(fn):
        def run(*args, request: gr.Request = None):
            try:
                return current(fn(*args, user=user_of(request)))
            except StoreError as exc:
                return (class_table(session), gr.update(), note_text(str(exc)),
                        gr.Row(visible=False))
        return run

    def find(name):
        cls = session.store.class_by_name(name or "")
        if cls is None:
            raise StoreError("Choose a class first.")
        return cls

    def add(name, user):
        cls = session.store.add_class(name or "", user)
        return f"Added '{cls.name}'."

    def rename(name, new, user):
        cls = session.store.rename_class(find(name).id, new or "", user)
        return f"Renamed to '{cls.name}'."

    def move(delta):
        def run(name, user):
            cls = find(name)
            ids = [c.id for c in session.store.classes()]
            i = ids.index(cls.id)
            j = min(max(i + delta, 0), len(ids) - 1)
            ids[i], ids[j] = ids[j], ids[i]
            session.store.reorder_classes(ids, user)
            session.trainer.reset_model()
            return f"Moved '{cls.name}' to position {j + 1}."
        return run

    def ask_remove(name):
        cls = session.store.class_by_name(name or "")
        if cls is None:
            return gr.Row(visible=False), "", note_text("Choose a class first.")
        n = session.store.label_counts().get(cls.id, 0)
        return (gr.Row(visible=True),
                note_text(f"Remove '{cls.name}'? Its {n} label(s) and its mask pixels are "
                          f"deleted and the model is reset."), "")

    def remove(name, user):
        cls = find(name)
        result = session.store.remove_class(cls.id, user)
        session.trainer.reset_model()
        return (f"Removed '{cls.name}' with {result['labels']} label(s) and pixels in "
                f"{result['masks']} mask(s).")

    outs = [table, chosen, message, confirm_row]
    add_btn.click(guarded(add), [new_name], outs, api_visibility="private")
    new_name.submit(guarded(add), [new_name], outs, api_visibility="private")
    rename_btn.click(guarded(rename), [chosen, rename_to], outs, api_visibility="private")
    up_btn.click(guarded(move(-1)), [chosen], outs, api_visibility="private")
    down_btn.click(guarded(move(+1)), [chosen], outs, api_visibility="private")
    remove_btn.click(ask_remove, [chosen], [confirm_row, confirm_md, message],
                     api_visibility="private")
    confirm_btn.click(guarded(remove), [chosen], outs, api_visibility="private")
    cancel_btn.click(lambda: gr.Row(visible=False), None, [confirm_row],
                     api_visibility="private")
    return {"refresh": (lambda: current()[:2], [], [table, chosen])}
