"""Session controls: trainer start/stop, backbone and mode, export, reset — admin actions
the Service refuses for labelers."""
from __future__ import annotations

import gradio as gr

from hitl.adapters import for_page
from hitl.export import FORMATS
from hitl.service import Service
from hitl.settings import BACKBONE_PRESETS
from hitl.tasks import get_task
from hitl.ui.common import note_text, with_request


def build(service: Service) -> dict:
    s = service.session.settings
    labeler_md = gr.Markdown("Only an admin can change the trainer, export the whole "
                             "session or reset it. " + service.access.admin_hint,
                             visible=False, elem_id="session-labeler")
    with gr.Row():
        mine_btn = gr.Button("Export my labels (CSV)", elem_id="export-mine", scale=0)
        mine_file = gr.File(label="My labels", interactive=False)
    with gr.Column(visible=True) as admin_controls:
        with gr.Row():
            start_btn = gr.Button("Start trainer", elem_id="trainer-start")
            stop_btn = gr.Button("Stop trainer", elem_id="trainer-stop")
        with gr.Row():
            backbone = gr.Dropdown(list(BACKBONE_PRESETS) + [s.backbone], value=s.backbone,
                                   allow_custom_value=True, label="Backbone (preset or any timm "
                                   "name)", elem_id="backbone", scale=2, min_width=340)
            mode = gr.Radio(["frozen", "finetune"], value=s.mode, label="Mode")
            finetune_model = gr.Textbox(s.finetune_model, label="Fine-tune model (timm name)")
            long_side = gr.Number(s.seg_long_side, precision=0, minimum=64, maximum=2048,
                                  label="Segmentation working resolution (long side, px)")
            apply_btn = gr.Button("Apply", elem_id="trainer-apply")
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
            confirm_btn = gr.Button("Yes, archive and reset", variant="stop",
                                    elem_id="reset-confirm")
            cancel_btn = gr.Button("Cancel")
        reset_md = gr.Markdown(elem_id="reset-message")

    def act(action, n_inputs: int = 0):
        """Run one admin action of the Service; a refusal shows its one-line message."""
        def run(*args, request: gr.Request = None):
            result = for_page(action, service.caller_of(request), *args)
            return note_text(result.get("message") if result["ok"] else result["error"])
        return with_request(run, n_inputs)

    def export(fmt_name, request: gr.Request = None):
        result = for_page(service.export, service.caller_of(request), fmt_name)
        if not result["ok"]:
            return None, note_text(result["error"])
        return result["path"], note_text(result["message"])

    def export_mine(request: gr.Request = None):
        result = for_page(service.export_mine, service.caller_of(request))
        return result["path"] if result["ok"] else None

    def reset(request: gr.Request = None):
        result = for_page(service.reset, service.caller_of(request), True)
        return gr.Row(visible=False), note_text(result.get("message") if result["ok"]
                                                else result["error"])

    start_btn.click(act(service.start_trainer), None, trainer_md, api_visibility="private")
    stop_btn.click(act(service.stop_trainer), None, trainer_md, api_visibility="private")
    apply_btn.click(act(service.configure_trainer, 4), [backbone, mode, finetune_model, long_side],
                    trainer_md, api_visibility="private")
    export_btn.click(export, [fmt], [export_file, export_md], api_visibility="private")
    mine_btn.click(export_mine, None, [mine_file], api_visibility="private")
    reset_btn.click(lambda: gr.Row(visible=True), None, confirm_row, api_visibility="private")
    cancel_btn.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private")
    confirm_btn.click(reset, None, [confirm_row, reset_md], api_visibility="private")
    def refresh(chosen: str | None = None, request: gr.Request = None):
        """Admin controls are shown to admins only (the Service refuses them anyway); only
        the export formats that hold the session's task's labels are offered."""
        admin = service.caller_of(request).is_admin
        task = service.session.store.task()
        offered = list(get_task(task).exports) if task else list(FORMATS)
        return (gr.Column(visible=admin), gr.Markdown(visible=not admin),
                gr.Dropdown(choices=offered,
                            value=chosen if chosen in offered else offered[0]))
    return {"refresh": (refresh, [fmt], [admin_controls, labeler_md, fmt])}
