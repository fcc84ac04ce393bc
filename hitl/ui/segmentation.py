"""The Segmentation tab: a painter in the browser (hitl/ui/seg_board.js), masks to correct.

Tools, class, size, opacity, zoom and the prediction overlay change in the browser with no
server event. The page paints class positions pixel by pixel at the mask size — the image's
own size up to MASK_SIDE on the long side, so a zoomed stroke lands on the image pixel meant —
and sends, on save, only what the labeler touched (a grey PNG: the position, or KEEP where
untouched); the server scales that edit to the image (a no-op below the cap) and applies it
over the stored mask, so an unedited pixel stays bit-exact at any image size. The picture
comes as a display copy (long side DISPLAY_SIDE) and, once zoomed past it, in full.
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
from hitl.imaging import ImageError, load_image
from hitl.service import Service
from hitl.stats import learning_curve
from hitl.tasks.segmentation.stats import segmentation_stats
from hitl.tasks.segmentation.strategies import STRATEGIES
from hitl.ui import board
from hitl.ui.classification import catalog_line, held_out, trainer_line
from hitl.ui.common import data_url, display_image, may_label
from hitl.ui.titles import Titles

TASK = "segmentation"
KEEP = 255  # in an edit from the page: a pixel the labeler did not touch
MAX_EDIT_BYTES = 16 * 1024 * 1024  # encoded; an edit is mostly KEEP and compresses well
MASK_SIDE = 4096  # the page paints masks at the image's size up to this long side
LOSSLESS_PIXELS = 512 * 512  # pictures up to this size go to the page as PNG
KEYS = [("1…9, 0", "brush class"), ("D / E", "brush / eraser"), ("L", "fill a closed region"),
        ("P", "polygon: click corners, click the first (or Enter) to fill"),
        ("W", "wand: similar colours"), ("[ / ]", "brush size"),
        ("Ctrl+Z / Ctrl+Shift+Z", "undo / redo a stroke"), ("Enter", "save and go on"),
        ("S", "skip"), ("U", "undo the last save"), ("A", "the prediction as the mask"),
        ("M", "prediction overlay (outlines)"), ("N / B", "next / previous id"),
        ("G", "go to id"), ("wheel, pinch, + / -", "zoom"),
        ("Space-drag, middle-drag", "pan"), ("F", "fit"), ("O", "1:1 (image pixels)"),
        ("?", "this help"), ("Esc", "close it, drop an open polygon")]
LEGEND = "**Keys** — " + " · ".join(f"`{k}`: {what}" for k, what in KEYS)
BOARD_JS = board.script("seg_paint.js", "seg_view.js", "seg_board.js")
CSS = board.CSS + """
.hb-view { position: relative; width: 100%; height: min(70vh, 720px); overflow: hidden;
  background: #e9e9e9; touch-action: none; user-select: none; cursor: crosshair; }
.hb-view.hb-grab { cursor: grab; }
.hb-view.hb-panning { cursor: grabbing; }
.hb-stage { position: absolute; left: 0; top: 0; transform-origin: 0 0; will-change: transform; }
.hb-stage img, .hb-stage canvas, .hb-stage svg { position: absolute; inset: 0; width: 100%;
  height: 100%; user-select: none; -webkit-user-drag: none; pointer-events: none; }
.hb-stage.hb-pixelated img { image-rendering: pixelated; }
.hb-stage canvas { visibility: hidden; }
#seg-view-mask { position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none; }
.hb-stage svg polyline { fill: rgba(255,255,255,0.25); stroke: #111; stroke-width: 1.5;
  vector-effect: non-scaling-stroke; }
.hb-stage svg circle { fill: #fff; stroke: #111; vector-effect: non-scaling-stroke; }
#seg-cursor { position: absolute; left: 0; top: 0; border-radius: 50%; pointer-events: none;
  border: 1px solid #fff; box-shadow: 0 0 0 1px #000; }
#seg-help { position: absolute; right: 8px; top: 8px; background: rgba(255,255,255,0.96);
  padding: 8px 12px; border-radius: 6px; font-size: 0.85em; max-height: 95%; overflow: auto; }
#seg-help td { padding: 1px 8px 1px 0; }
.hb-tools { display: flex; gap: 14px; align-items: center; flex-wrap: wrap; }
.hb-tools label { display: flex; gap: 6px; align-items: center; font-size: 0.9em; }
.hb-swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px;
  margin-right: 6px; vertical-align: -1px; border: 1px solid rgba(0,0,0,0.3); }
"""
HELP = "".join(f"<tr><td><kbd>{k}</kbd></td><td>{what}</td></tr>" for k, what in KEYS)
TEMPLATE = f"""
<div class="hb">
  {board.opening("seg", STRATEGIES.names)}
    <div id="seg-classes" class="hb-buttons"></div>
    <div class="hb-tools">
      <span id="seg-tools" class="hb-buttons"></span>
      <button id="seg-stroke-undo" title="Ctrl+Z">↶</button>
      <button id="seg-stroke-redo" title="Ctrl+Shift+Z">↷</button>
      <button id="seg-fit">Fit (F)</button><button id="seg-one">1:1 (O)</button>
      <button id="seg-help-button">Keys (?)</button>
    </div>
    <div class="hb-tools">
      <label>Brush size <input type="range" id="seg-size" min="1" max="120" value="12">
        <span id="seg-size-value">12</span></label>
      <label>Wand tolerance <input type="range" id="seg-tolerance" min="0" max="128"
        value="24"></label>
      <label>Mask opacity <input type="range" id="seg-opacity" min="0.1" max="1" step="0.05"
        value="0.5"></label>
      <label><input type="checkbox" id="seg-overlay-toggle"> Show prediction (M)</label>
      <button id="seg-accept">Prediction as mask (A)</button>
      <button id="seg-clear">Clear</button>
    </div>
    <div class="hb-view"><div class="hb-stage">
      <img id="seg-image" alt="" draggable="false" style="visibility:hidden">
      <canvas id="seg-pred"></canvas>
      <canvas id="seg-canvas"></canvas>
      <svg id="seg-poly"><polyline points=""></polyline></svg>
    </div><canvas id="seg-view-mask"></canvas><div id="seg-cursor" hidden></div>
    <div id="seg-help" hidden><b>Keys</b><table>{HELP}</table></div></div>
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


def mask_size(width: int, height: int) -> tuple[int, int]:
    """The size the page paints an image's mask at: its own, up to MASK_SIDE on the long side."""
    return mask_png.display_size(width, height, MASK_SIDE)


def picture_url(img: Image.Image | None, quality: int = 85) -> str | None:
    """The picture for the painter: lossless when small (the wand compares exact colours and
    edges stay sharp when enlarged), else a JPEG."""
    if img is None or img.width * img.height > LOSSLESS_PIXELS:
        return data_url(img, quality)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def positions_url(positions: np.ndarray | None, size: tuple[int, int]) -> str | None:
    """Class positions (0 = none) scaled to the display size, as a grey PNG data URL."""
    if positions is None:
        return None
    small = Image.fromarray(np.asarray(positions, dtype=np.uint8), "L").resize(size, Image.NEAREST)
    buf = io.BytesIO()
    small.save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def decode_edit(url: str, width: int, height: int) -> np.ndarray:
    """The page's edit of a width x height image (a PNG data URL at mask size: a position,
    or KEEP, in its red channel) as a uint8 array; its size is checked before decoding
    (hitl/mask_png.py)."""
    expected = mask_size(width, height)
    return mask_png.decode(mask_png.from_data_url(url, MAX_EDIT_BYTES), expected,
                           mask_png.ANY_COLOUR, slack=1, max_bytes=MAX_EDIT_BYTES)


def apply_edit(stored: np.ndarray | None, edit: np.ndarray, width: int,
               height: int) -> np.ndarray:
    """The stored mask (or none) with the touched pixels of an edit made at mask size (the
    image's own below MASK_SIDE: then the resize changes nothing)."""
    full = np.asarray(Image.fromarray(edit, "L").resize((width, height), Image.NEAREST))
    out = np.zeros((height, width), np.uint8) if stored is None else np.array(stored, np.uint8)
    touched = full != KEEP
    out[touched] = full[touched]
    return out


def build(service: Service) -> dict:
    session = service.session

    titles = Titles(session)

    def item(view: dict, caller) -> dict:
        """One image for the painter: pixels, its stored mask at mask size, its sizes."""
        image_id = view.get("image_id")
        img, problem = display_image(session, image_id)
        view = {**view, "filename": titles(image_id, view.get("filename"))}
        keys = ("image_id", "filename", "split", "skipped", "label", "note")
        out = {**{k: view.get(k) for k in keys}, "problem": problem, "src": picture_url(img),
               "w": None, "h": None, "fw": None, "fh": None, "mask": None,
               "names": [c.name for c in session.store.classes()]}  # what positions mean
        if img is not None:
            row = session.store.image(int(image_id))
            out["fw"], out["fh"] = row.width or img.width, row.height or img.height
            out["w"], out["h"] = size = mask_size(out["fw"], out["fh"])
            stored = service.mask_positions(caller, image_id)["positions"]
            out["mask"] = positions_url(stored, size)
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
    full = board.server_function(service, "seg_full")(lambda data, caller: full_image(data))

    def full_image(data: dict) -> dict:
        """The picture at its own size (up to the mask size), for a zoomed painter."""
        row = session.store.image(int(data.get("image_id")))
        if row is None or not row.readable:
            raise NotFound("This image cannot be shown in full.")
        try:
            img = load_image(row.path, session.settings.max_image_pixels)
        except ImageError as exc:
            raise NotFound(f"Image {row.id} is unreadable: {exc}") from exc
        if max(img.size) > MASK_SIDE:
            img = img.resize(mask_size(*img.size), Image.LANCZOS)
        return {"src": picture_url(img, quality=90)}

    def predicted(data: dict, caller) -> dict:
        """The model's mask at display size, if it was made for the classes on the page."""
        image_id = int(data.get("image_id"))
        if data.get("rev") is not None and int(data["rev"]) != session.store.class_revision:
            raise Conflict("The classes changed: the page is redrawn.")
        result = service.predicted_mask(caller, image_id)
        if result["class_ids"] != [c.id for c in session.store.classes()]:
            raise NotFound("No prediction for the current classes yet.")
        row = session.store.image(image_id)
        if row is None or not row.readable:
            raise NotFound(f"Image {image_id} cannot be shown.")
        return {"mask": positions_url(result["mask"], mask_size(row.width, row.height))}

    with gr.Column():
        gr.HTML(value="", html_template=TEMPLATE, css_template=CSS, js_on_load=BOARD_JS,
                elem_id="seg-board", apply_default_css=False,
                server_functions=[*board.functions(service, TASK, "seg", item, act),
                                  prediction, full])
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
