"""Session controls: trainer start/stop, backbone and mode, export, reset."""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from hitl.backbones import BACKBONE_PRESETS
from hitl.export import FORMATS
from hitl.session import Session
from hitl.ui.common import note_text


def build(session: Session) -> dict:
    s = session.settings
    with gr.Row():
        start_btn = gr.Button("Start trainer", elem_id="trainer-start")
        stop_btn = gr.Button("Stop trainer", elem_id="trainer-stop")
    with gr.Row():
        backbone = gr.Dropdown(list(BACKBONE_PRESETS) + [s.backbone], value=s.backbone,
                               allow_custom_value=True, label="Backbone (preset or any timm "
                               "name)", elem_id="backbone")
        mode = gr.Radio(["frozen", "finetune"], value=s.mode, label="Mode")
        finetune_model = gr.Textbox(s.finetune_model, label="Fine-tune model (timm name)")
        long_side = gr.Number(s.seg_long_side, precision=0, minimum=64, maximum=2048,
                              label="Segmentation working resolution (long side, px)")
        apply_btn = gr.Button("Apply")
    trainer_md = gr.Markdown()
    gr.Markdown("### Export")
    with gr.Row():
        fmt = gr.Dropdown(list(FORMATS), value="csv", label="Format")
        export_btn = gr.Button("Export", elem_id="export-btn")
    export_file = gr.File(label="Download", interactive=False)
    export_md = gr.Markdown()
    gr.Markdown("### Reset")
    reset_btn = gr.Button("Reset session…", variant="stop", elem_id="reset")
    with gr.Row(visible=False) as confirm_row:
        gr.Markdown("This archives the session folder (labels are kept there) and starts a "
                    "fresh session.")
        confirm_btn = gr.Button("Yes, archive and reset", variant="stop", elem_id="reset-confirm")
        cancel_btn = gr.Button("Cancel")
    reset_md = gr.Markdown(elem_id="reset-message")

    def start():
        session.trainer.start()
        return "Trainer started."

    def stop():
        session.trainer.stop()
        return "Trainer stopped."

    def apply(name, new_mode, ft_name, side):
        import timm
        if side is None or int(side) < 64:
            return note_text("The working resolution must be at least 64 pixels.")
        for label, value in (("backbone", name), ("fine-tune model", ft_name)):
            bare = BACKBONE_PRESETS.get(value, value)
            if not timm.is_model(bare):
                return note_text(f"Unknown {label} {value!r}: not a timm model name.")
        s.backbone = BACKBONE_PRESETS.get(name, name)
        s.mode = new_mode
        s.finetune_model = ft_name
        # masks are resized to it, never cropped; caches are keyed by it
        s.seg_long_side = int(side)
        session.trainer.reset_model()
        return note_text(f"Now {new_mode} with {s.backbone if new_mode == 'frozen' else ft_name};"
                         " features are recomputed if needed.")

    def export(fmt_name):
        from hitl.export import export_archive
        try:
            workdir = Path(tempfile.mkdtemp(prefix="hitl-export-"))
            path = export_archive(session.store, fmt_name, workdir,
                                  model_state=session.trainer.model_state())
            return str(path), note_text(f"Exported {fmt_name}: {path.name}")
        except Exception as exc:
            return None, note_text(f"Export failed: {exc}")

    def reset():
        archive = session.reset()
        return gr.Row(visible=False), note_text(f"Archived the session to {archive}. "
                                                f"A fresh session has started.")

    start_btn.click(start, None, trainer_md, api_visibility="private")
    stop_btn.click(stop, None, trainer_md, api_visibility="private")
    apply_btn.click(apply, [backbone, mode, finetune_model, long_side], trainer_md,
                    api_visibility="private")
    export_btn.click(export, [fmt], [export_file, export_md], api_visibility="private")
    reset_btn.click(lambda: gr.Row(visible=True), None, confirm_row, api_visibility="private")
    cancel_btn.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private")
    confirm_btn.click(reset, None, [confirm_row, reset_md], api_visibility="private")
    return {}
