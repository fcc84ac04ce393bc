"""The class manager: add, rename, reorder, remove (with confirmation) — admin actions that
the Service refuses for labelers, whatever the page shows."""
from __future__ import annotations

import html
import re

import gradio as gr
import pandas as pd

from hitl.adapters import for_page
from hitl.service import Service
from hitl.ui.common import note_text, with_request


def swatch(colour: str) -> str:
    """A class colour as a small filled square and its hex code (the table's HTML column)."""
    hex_code = html.escape(str(colour))
    return (f'<span style="display:inline-block;width:1em;height:1em;border-radius:2px;'
            f'background:{hex_code};border:1px solid rgba(0,0,0,.3);vertical-align:-2px">'
            f"</span> {hex_code}")


def as_hex(value: str | None) -> str:
    """A colour picker's value (#rrggbb, or rgb()/rgba() in some browsers) as #rrggbb; anything
    else is passed on for the Service to refuse in one line."""
    text = str(value or "").strip()
    found = re.fullmatch(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)[^)]*\)", text)
    if found:
        return "#" + "".join(f"{min(255, round(float(v))):02x}" for v in found.groups())
    return text[:7] if re.fullmatch(r"#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?", text) else text


def class_table(service: Service, caller) -> pd.DataFrame:
    result = for_page(service.classes, caller)
    rows = [(i + 1, c["name"], swatch(c["colour"]), c["labels"])
            for i, c in enumerate(result.get("classes", []))]
    return pd.DataFrame(rows, columns=["#", "name", "colour", "labels"])


def build(service: Service) -> dict:
    gr.Markdown("Classes in order: the first ten get keys `1`…`9`, `0`. Names are trimmed, "
                "up to 64 characters, unique ignoring case. Moving a class keeps the model "
                "(it follows the class, not the position).")
    table = gr.Dataframe(interactive=False, elem_id="classes-table",
                         datatype=["number", "str", "html", "number"])
    with gr.Column(visible=True) as admin_controls:
        with gr.Row():
            new_name = gr.Textbox(label="New class", elem_id="class-new", scale=3)
            add_btn = gr.Button("Add", elem_id="class-add", scale=1)
        with gr.Row():
            chosen = gr.Dropdown([], label="Class", elem_id="class-chosen", scale=2)
            rename_to = gr.Textbox(label="Rename to", scale=2)
            rename_btn = gr.Button("Rename", scale=1)
        with gr.Row():
            colour = gr.ColorPicker(label="Colour", elem_id="class-colour", scale=1)
            colour_btn = gr.Button("Set colour", size="sm", elem_id="class-colour-set", scale=1)
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

    def current(caller, text: str | None = None, selected: str | None = None):
        names = [c["name"] for c in for_page(service.classes, caller).get("classes", [])]
        return (class_table(service, caller),
                gr.Dropdown(choices=names, value=selected if selected in names else None),
                note_text(text), gr.Row(visible=False))

    def guarded(action, n_inputs: int = 1, keep_selection: bool = True):
        """Run one Service action; a refusal shows its message and changes nothing. After it
        the class acted on stays selected and the typed names are cleared."""
        def run(*args, request: gr.Request = None):
            caller = service.caller_of(request)
            result = for_page(action, caller, *args)
            if not result["ok"]:
                return (class_table(service, caller), gr.update(), note_text(result["error"]),
                        gr.Row(visible=False), gr.update(), gr.update())
            selected = (result.get("name") or (args[0] if args else None)) \
                if keep_selection else None
            return (*current(caller, result.get("message"), selected), "", "")
        return with_request(run, n_inputs)

    def ask_remove(name, request: gr.Request = None):
        result = for_page(service.class_removal, service.caller_of(request), name)
        if not result["ok"]:
            return gr.Row(visible=False), "", note_text(result["error"])
        return gr.Row(visible=True), note_text(result["message"]), ""

    outs = [table, chosen, message, confirm_row, new_name, rename_to]
    private = dict(api_visibility="private")
    add_btn.click(guarded(service.add_class), [new_name], outs, **private)
    new_name.submit(guarded(service.add_class), [new_name], outs, **private)
    rename_btn.click(guarded(service.rename_class, 2), [chosen, rename_to], outs, **private)
    up_btn.click(guarded(lambda c, name: service.move_class(c, name, -1)), [chosen], outs,
                 **private)
    down_btn.click(guarded(lambda c, name: service.move_class(c, name, +1)), [chosen], outs,
                   **private)
    colour_btn.click(guarded(lambda c, name, value: service.recolour_class(c, name, as_hex(value)),
                             2), [chosen, colour], outs, **private)

    def colour_of(name, request: gr.Request = None):
        """The chosen class's colour in the picker."""
        found = [c["colour"] for c in for_page(service.classes, service.caller_of(request)).get(
            "classes", []) if c["name"] == name]
        return found[0] if found else gr.update()
    chosen.change(with_request(colour_of, 1), [chosen], [colour], **private)
    remove_btn.click(ask_remove, [chosen], [confirm_row, confirm_md, message], **private)
    confirm_btn.click(guarded(service.remove_class, keep_selection=False), [chosen], outs,
                      **private)
    cancel_btn.click(lambda: gr.Row(visible=False), None, [confirm_row], **private)

    def refresh(request: gr.Request = None):
        caller = service.caller_of(request)
        return (*current(caller)[:2], gr.Column(visible=caller.is_admin))
    return {"refresh": (refresh, [], [table, chosen, admin_controls])}
