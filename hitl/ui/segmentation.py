"""The Segmentation tab: a painter in the browser (hitl/ui/seg_board.js), masks to correct.

Brush class, size, eraser, opacity and the prediction overlay change in the browser with no
server event. The page paints class positions pixel by pixel at display size and sends, on
save, only what the labeler touched (a grey PNG: the position, or KEEP where untouched); the
server scales that edit to the image and applies it over the stored mask, so an unedited pixel
stays bit-exact at any image size.
"""
from __future__ import annotations

import base64
import io

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from hitl import mask_png
from hitl.errors import BadInput, Conflict, NotFound
from hitl.service import Service
from hitl.stats import learning_curve
from hitl.tasks.segmentation.stats import segmentation_stats
from hitl.tasks.segmentation.strategies import STRATEGIES
from hitl.ui import board
from hitl.ui.classification import catalog_line, held_out, trainer_line
from hitl.ui.common import DISPLAY_SIDE, data_url, display_image, may_label

TASK = "segmentation"
KEEP = 255  # in an edit from the page: a pixel the labeler did not touch
MAX_EDIT_BYTES = 16 * 1024 * 1024  # a 1024x1024 RGBA edit is ~4 MB uncompressed
LEGEND = ("**Keys** — `1`…`0`: brush class · `E`: eraser · `[` / `]`: brush size · "
          "`Enter`: save and go on · `S`: skip · `A`: the prediction as the mask, to correct · "
          "`M`: prediction overlay on/off · `N` / `B`: next / previous id · `U`: undo · "
          "`G`: go to id")
BOARD_JS = board.script("seg_board.js")
CSS = board.CSS + """
.hb-stage { position: relative; max-height: 560px; max-width: 100%; margin: 0 auto;
  background: #f4f4f4; touch-action: none; user-select: none; }
.hb-stage img, .hb-stage canvas { position: absolute; inset: 0; width: 100%; height: 100%;
  image-rendering: pixelated; user-select: none; -webkit-user-drag: none; }
.hb-stage #seg-pred { pointer-events: none; }
.hb-stage-box { display: flex; justify-content: center; height: 560px; }
.hb-stage-box .hb-stage { height: 100%; }
.hb-tools { display: flex; gap: 14px; align-items: center; flex-wrap: wrap; }
.hb-tools label { display: flex; gap: 6px; align-items: center; font-size: 0.9em; }
"""
TEMPLATE = f"""
<div class="hb">
  {board.opening("seg", STRATEGIES.names)}
    <div id="seg-classes" class="hb-buttons"></div>
    <div class="hb-tools">
      <label>Brush size <input type="range" id="seg-size" min="1" max="120" value="12">
        <span id="seg-size-value">12</span></label>
      <label>Mask opacity <input type="range" id="seg-opacity" min="0.1" max="1" step="0.05"
        value="0.5"></label>
      <label><input type="checkbox" id="seg-overlay-toggle"> Show prediction (M)</label>
      <button id="seg-accept">Prediction as mask (A)</button>
      <button id="seg-clear">Clear</button>
    </div>
    <div class="hb-stage-box"><div class="hb-stage">
      <img id="seg-image" alt="" draggable="false" style="visibility:hidden">
      <canvas id="seg-pred"></canvas>
      <canvas id="seg-canvas"></canvas>
    </div></div>
    <div id="seg-note" class="hb-note"></div>
    <div id="seg-saved" class="hb-note"></div>
    <div class="hb-row">
      <button id="seg-prev">← Previous (B)</button>
      <button id="seg-save" class="hb-primary">Save and next (Enter)</button>
      <button id="seg-skip">Skip</button><button id="seg-undo">Undo (U)</button>
      <button id="seg-next">Next → (N)</button>
    </div>
  </div>
</div>"""


def positions_url(positions: np.ndarray | None, size: tuple[int, int]) -> str | None:
    """Class positions (0 = none) scaled to the display size, as a grey PNG data URL."""
    if positions is None:
        return None
    small = Image.fromarray(np.asarray(positions, dtype=np.uint8), "L").resize(size, Image.NEAREST)
    buf = io.BytesIO()
    small.save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def decode_edit(url: str, width: int, height: int) -> np.ndarray:
    """The page's edit of a width x height image (a PNG data URL at display size: a position,
    or KEEP, in its red channel) as a uint8 array; its size is checked before decoding
    (hitl/mask_png.py)."""
    expected = mask_png.display_size(width, height, DISPLAY_SIDE)
    return mask_png.decode(mask_png.from_data_url(url, MAX_EDIT_BYTES), expected,
                           mask_png.ANY_COLOUR, slack=1, max_bytes=MAX_EDIT_BYTES)


def apply_edit(stored: np.ndarray | None, edit: np.ndarray, width: int,
               height: int) -> np.ndarray:
    """The stored mask (or none) with the touched pixels of an edit made at display size."""
    full = np.asarray(Image.fromarray(edit, "L").resize((width, height), Image.NEAREST))
    out = np.zeros((height, width), np.uint8) if stored is None else np.array(stored, np.uint8)
    touched = full != KEEP
    out[touched] = full[touched]
    return out


def build(service: Service) -> dict:
    session = service.session

    def item(view: dict, caller) -> dict:
        """One image for the painter: pixels, its stored mask at display size, its size."""
        image_id = view.get("image_id")
        img, problem = display_image(session, image_id)
        keys = ("image_id", "filename", "split", "skipped", "label", "note")
        out = {**{k: view.get(k) for k in keys}, "problem": problem, "src": data_url(img),
               "w": None, "h": None, "mask": None,
               "names": [c.name for c in session.store.classes()]}  # what positions mean
        if img is not None:
            out["w"], out["h"] = img.size
            stored = service.mask_positions(caller, image_id)["positions"]
            out["mask"] = positions_url(stored, img.size)
        return out

    def act(data: dict, caller) -> dict:
        """Save the edit of the image on the labeler's screen, or skip it."""
        image_id, rev = int(data["image_id"]), data.get("rev")
        if data.get("op") == "skip":
            return service.skip(caller, image_id, revision=rev)
        row = session.store.image(image_id)
        if row is None:
            raise NotFound(f"There is no image with id {image_id}.")
        stored = service.mask_positions(caller, image_id)["positions"]  # role first
        edit = decode_edit(data.get("edit"), row.width, row.height)
        positions = apply_edit(stored, edit, row.width, row.height)
        if not positions.any():
            raise BadInput(f"Nothing is painted on image {image_id}: nothing saved "
                             "(Skip passes it).")
        return service.annotate_positions(caller, image_id, positions, revision=rev)

    prediction = board.server_function(service, "seg_prediction")(
        lambda data, caller: predicted(data, caller))

    def predicted(data: dict, caller) -> dict:
        """The model's mask at display size, if it was made for the classes on the page."""
        image_id = int(data.get("image_id"))
        if data.get("rev") is not None and int(data["rev"]) != session.store.class_revision:
            raise Conflict("The classes changed: the page is redrawn.")
        result = service.predicted_mask(caller, image_id)
        if result["class_ids"] != [c.id for c in session.store.classes()]:
            raise NotFound("No prediction for the current classes yet.")
        img, _ = display_image(session, image_id)
        if img is None:
            raise NotFound(f"Image {image_id} cannot be shown.")
        return {"mask": positions_url(result["mask"], img.size)}

    with gr.Column():
        gr.HTML(value="", html_template=TEMPLATE, css_template=CSS, js_on_load=BOARD_JS,
                elem_id="seg-board", apply_default_css=False,
                server_functions=[*board.functions(service, TASK, "seg", item, act),
                                  prediction])
        gr.Markdown(LEGEND)
        with gr.Accordion("Statistics", open=True):
            stats_md = gr.Markdown(elem_id="seg-stats")
            with gr.Row():
                curve = gr.LinePlot(x="labels", y="score", title="Validation mIoU", height=220,
                                    y_lim=[0, 1], x_axis_format="d")
                iou_table = gr.Dataframe(label="Per-class IoU (validation)", interactive=False)

    def refresh(request: gr.Request = None):
        """Timer tick: stats, curve, per-class IoU (the painter keeps its own classes)."""
        if not may_label(service, request):
            return "", None, pd.DataFrame()
        stats = segmentation_stats(session)
        iou = pd.DataFrame({"class": list(stats["per_class_iou"]),
                            "IoU": [None if v is None else round(v, 3)
                                    for v in stats["per_class_iou"].values()]})
        miou = held_out(stats["val_miou"], stats.get("model_version"))
        text = (catalog_line(stats) + "  \n" if catalog_line(stats) else "") + (
                f"**Masks** {stats['labeled']} / {stats['readable']} · **skipped** "
                f"{stats['skips']} · **validation mIoU** {miou}  \n"
                + trainer_line(stats["trainer"]))
        return text, learning_curve(session, TASK), iou

    return {"refresh": (refresh, [], [stats_md, curve, iou_table])}
