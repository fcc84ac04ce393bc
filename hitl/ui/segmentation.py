"""The Segmentation tab: brush masks in a gr.ImageEditor, predicted masks to correct.

The editor gets images letterboxed to exactly its canvas (gr.ImageEditor places a layer of
another size as if centred in the canvas, so it comes back shifted), and edits are merged into
the full-size mask so that saving an unedited mask is bit-exact at any image size.
"""
from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from hitl.imaging import Letterbox
from hitl.service import Service, require
from hitl.stats import learning_curve, segmentation_stats
from hitl.store import StoreError
from hitl.strategies import SEGMENTATION_STRATEGIES
from hitl.ui.classification import catalog_line, lock_updates, trainer_line
from hitl.ui.common import display_image, header, note_text, parse_id

TASK = "segmentation"
CANVAS = 512
SLOTS = 10
LEGEND = ("**Keys** — `Enter` / `S`: save and go on · `N` / `B`: next / previous id · "
          "`1`…`0`: brush class · `M`: prediction overlay on/off · `A`: accept the prediction "
          "as the starting mask · `G`: go to id · `U`: undo")


def hex_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return tuple(int(colour[i:i + 2], 16) for i in (0, 2, 4))


def positions_to_rgba(positions: np.ndarray, colours: list[str]) -> np.ndarray:
    """Class positions (1..K, 0 = none) -> an RGBA layer in the class colours."""
    table = np.zeros((256, 4), dtype=np.uint8)
    for pos, colour in enumerate(colours, start=1):
        table[pos, :3] = hex_rgb(colour)
        table[pos, 3] = 255
    return table[positions]


def layers_to_positions(layers: list[np.ndarray], colours: list[str]) -> np.ndarray:
    """Painted pixels (alpha > 0) -> class positions by exact colour; later layers win."""
    out = None
    keys = {hex_rgb(c): pos for pos, c in enumerate(colours, start=1)}
    for layer in layers or []:
        arr = np.asarray(layer)
        if arr.ndim != 3 or arr.shape[2] < 4:
            continue
        if out is None:
            out = np.zeros(arr.shape[:2], dtype=np.uint8)
        painted = arr[:, :, 3] > 0
        code = (arr[:, :, 0].astype(np.int32) << 16) | (arr[:, :, 1].astype(np.int32) << 8) \
            | arr[:, :, 2].astype(np.int32)
        for rgb, pos in keys.items():
            value = (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]
            out[painted & (code == value)] = pos
        # an erased pixel (alpha 0) in the top layer clears what lower layers held
    return out if out is not None else np.zeros((CANVAS, CANVAS), dtype=np.uint8)


def editor_value(img: Image.Image | None, positions: np.ndarray | None, colours: list[str],
                 box: Letterbox | None) -> dict | None:
    """The editor's value as arrays: background letterboxed to the canvas, one mask layer."""
    if img is None or box is None:
        return None
    background = np.asarray(box.image_to_canvas(img.convert("RGB")).convert("RGBA"))
    layer = np.zeros((CANVAS, CANVAS, 4), dtype=np.uint8) if positions is None else \
        positions_to_rgba(box.mask_to_canvas(positions), colours)
    return {"background": background, "layers": [layer], "composite": None}


EDITOR_FILES_KEEP_S = 6 * 3600
_last_prune = [0.0]


def _prune(folder: Path) -> None:
    """Drop editor files older than a few hours, at most once a minute."""
    now = time.time()
    if now - _last_prune[0] < 60:
        return
    _last_prune[0] = now
    for path in folder.iterdir():
        try:
            if now - path.stat().st_mtime > EDITOR_FILES_KEEP_S:
                path.unlink()
        except OSError:
            pass


def editor_files(value: dict | None) -> dict | None:
    """The same value as files we encode ourselves: a JPEG background (display only) and a
    fast PNG layer (exact colours). Gradio's own PNG encoding of both took most of a save."""
    if value is None:
        return None
    folder = Path(gr.ImageEditor.GRADIO_CACHE if hasattr(gr.ImageEditor, "GRADIO_CACHE")
                  else tempfile.gettempdir()) / "hitl-editor"
    folder.mkdir(parents=True, exist_ok=True)
    _prune(folder)
    stem = uuid.uuid4().hex
    background = folder / f"{stem}-bg.jpg"
    Image.fromarray(value["background"][:, :, :3]).save(background, quality=92)
    layers = []
    for i, layer in enumerate(value["layers"]):
        path = folder / f"{stem}-layer{i}.png"
        Image.fromarray(layer, "RGBA").save(path, compress_level=1)
        layers.append(str(path))
    return {"background": str(background), "layers": layers, "composite": None}


def overlay_image(img: Image.Image | None, positions: np.ndarray | None, colours: list[str],
                  opacity: float) -> Image.Image | None:
    if img is None or positions is None:
        return None
    rgba = Image.fromarray(positions_to_rgba(positions, colours)).resize(img.size, Image.NEAREST)
    alpha = np.asarray(rgba)[:, :, 3].astype(np.float32) * float(opacity)
    rgba.putalpha(Image.fromarray(alpha.astype(np.uint8)))
    base = img.convert("RGBA")
    return Image.alpha_composite(base, rgba).convert("RGB")


def build(service: Service) -> dict:
    session = service.session

    def colours() -> list[str]:
        return [c.colour for c in session.store.classes()]

    def brush(default: int = 0) -> gr.Brush:
        cs = colours() or ["#ff0000"]
        return gr.Brush(colors=cs, color_mode="fixed",
                        default_color=cs[min(default, len(cs) - 1)], default_size=12)

    with gr.Column():
        lock_md = gr.Markdown(visible=False, elem_id="seg-lock")
        with gr.Column(visible=True) as body:
            with gr.Row():
                strategy = gr.Dropdown(list(SEGMENTATION_STRATEGIES), value="random",
                                       label="Next image", scale=2)
                class_choice = gr.Dropdown([], label="Class (for 'class' strategy)", scale=2)
                goto = gr.Textbox(label="Go to id", scale=1, elem_id="seg-goto")
                go = gr.Button("Open", scale=0, elem_id="seg-go")
            current = gr.State(None)
            title = gr.Markdown("### Loading…", elem_id="seg-title")
            legend = gr.Markdown(elem_id="seg-legend")
            with gr.Row():
                editor = gr.ImageEditor(
                    type="numpy", image_mode="RGBA", format="png", canvas_size=(CANVAS, CANVAS),
                    fixed_canvas=True, brush=brush(), eraser=gr.Eraser(default_size=16),
                    transforms=(), sources=(), layers=False, label="Mask",
                    elem_id="seg-editor", height=560, scale=3)
                with gr.Column(scale=2):
                    show_overlay = gr.Checkbox(False, label="Show prediction (M)",
                                               elem_id="seg-overlay-toggle")
                    opacity = gr.Slider(0.1, 1.0, value=0.5, step=0.05, label="Overlay opacity")
                    overlay = gr.Image(type="pil", interactive=False, label="Prediction",
                                       visible=False, elem_id="seg-overlay", format="jpeg")
                    accept_btn = gr.Button("Accept prediction as mask (A)", elem_id="seg-accept",
                                           size="sm")
            note = gr.Markdown(elem_id="seg-note")
            with gr.Row():
                prev_btn = gr.Button("← Previous (B)", elem_id="seg-prev", size="sm")
                save_btn = gr.Button("Save and next (Enter)", variant="primary",
                                     elem_id="seg-save")
                skip_btn = gr.Button("Skip", elem_id="seg-skip", size="sm")
                undo_btn = gr.Button("Undo (U)", elem_id="seg-undo", size="sm")
                next_btn = gr.Button("Next → (N)", elem_id="seg-next", size="sm")
            with gr.Row(elem_classes="hitl-hidden"):
                brush_keys = [gr.Button(f"brush {i}", elem_id=f"seg-brush-{i}")
                              for i in range(SLOTS)]
            gr.Markdown(LEGEND)
        with gr.Accordion("Statistics", open=True):
            stats_md = gr.Markdown(elem_id="seg-stats")
            with gr.Row():
                curve = gr.LinePlot(x="labels", y="score", title="Validation mIoU", height=220,
                                    y_lim=[0, 1])
                iou_table = gr.Dataframe(label="Per-class IoU (validation)", interactive=False)

    outputs = [current, title, editor, note, legend, overlay]

    def legend_text() -> str:
        return " ".join(f"<span style='background:{c.colour};padding:2px 8px;border-radius:4px;"
                        f"color:#000'>{i + 1 if i < 10 else ''} {c.name}</span>"
                        for i, c in enumerate(session.store.classes()))

    def predicted_positions(image_id: int) -> np.ndarray | None:
        result = session.trainer.predicted_mask(image_id)
        if result is None:
            return None
        ids = [c.id for c in session.store.classes()]
        if result["class_ids"] != ids:
            return None  # classes changed since that model: do not show stale colours
        return result["mask"]

    def mask_of(caller, image_id: int) -> np.ndarray | None:
        return require(service.mask_positions(caller, image_id))["positions"]

    def render(view: dict, show: bool, alpha: float, extra: str | None = None,
               positions: np.ndarray | None = None, caller=None) -> list:
        image_id = view.get("image_id")
        img, problem = display_image(session, image_id)
        box = None
        if img is not None:
            row = session.store.image(image_id)
            box = Letterbox.fit(row.width, row.height, CANVAS)
        if positions is None and image_id is not None:
            positions = mask_of(caller, image_id)
        cs = colours()
        lines = [view.get("note"), problem, extra]
        if not cs:
            lines.append("Add classes in the Classes tab to start painting.")
        over = None
        if show and image_id is not None and img is not None:
            pred = predicted_positions(image_id)
            over = overlay_image(img, pred, cs, alpha)
            if pred is None:
                lines.append("No prediction yet.")
        return [image_id, header(view), editor_files(editor_value(img, positions, cs, box)),
                note_text(*lines), legend_text(), gr.Image(value=over, visible=show)]

    def guarded(fn):
        def run(current_id, show, alpha, *args, request: gr.Request = None):
            message = session.task_message(TASK)
            if message:
                return [current_id, gr.update(), gr.update(), note_text(message), gr.update(),
                        gr.update()]
            caller = service.caller_of(request)
            try:
                return fn(current_id, show, alpha, *args, user=caller)
            except StoreError as exc:
                view = service.view(caller, current_id, TASK)
                return [current_id, header(view), gr.update(), note_text(str(exc)),
                        legend_text(), gr.update()]
        return run

    def fetch(current_id, show, alpha, strategy_name, class_name, value=None, user=None):
        return render(require(service.next_image(user, TASK, strategy_name, class_name)), show,
                      alpha, caller=user)

    def save(current_id, show, alpha, strategy_name, class_name, value, user):
        if current_id is None:
            raise StoreError("No image to save.")
        if not colours():
            raise StoreError("Add classes before painting.")
        row = session.store.image(current_id)
        box = Letterbox.fit(row.width, row.height, CANVAS)
        canvas = layers_to_positions((value or {}).get("layers") or [], colours())
        if canvas.shape != (CANVAS, CANVAS):
            raise StoreError(f"The editor sent a {canvas.shape[1]}x{canvas.shape[0]} layer; "
                             f"expected {CANVAS}x{CANVAS}. Reload the image and paint again.")
        positions = box.merge_edit(mask_of(user, current_id), canvas)
        require(service.annotate_positions(user, current_id, positions))
        done = f"Saved image {current_id} ({int((positions > 0).sum())} labeled pixels)."
        return render(require(service.next_image(user, TASK, strategy_name, class_name)), show,
                      alpha, done, caller=user)

    def skip(current_id, show, alpha, strategy_name, class_name, value, user):
        if current_id is None:
            raise StoreError("No image to skip.")
        require(service.skip(user, current_id))
        return render(require(service.next_image(user, TASK, strategy_name, class_name)), show,
                      alpha, caller=user)

    def undo(current_id, show, alpha, strategy_name, class_name, value, user):
        result = service.undo(user)
        if not result["ok"]:
            raise StoreError(result["error"])
        return render(require(service.open_image(user, result["image_id"], TASK)), show, alpha,
                      f"Undone: image {result['image_id']} is back as it was.", caller=user)

    def step(delta):
        def move(current_id, show, alpha, strategy_name, class_name, value, user):
            return render(require(service.neighbour(user, current_id, delta, TASK)), show, alpha,
                          caller=user)
        return move

    def accept(current_id, show, alpha, strategy_name, class_name, value, user):
        if current_id is None:
            raise StoreError("No image.")
        pred = predicted_positions(current_id)
        if pred is None:
            raise StoreError("No prediction for this image yet.")
        return render(require(service.view(user, current_id, TASK)), show, alpha,
                      "Prediction loaded: correct it, then save.", positions=pred, caller=user)

    def open_id(current_id, show, alpha, text, user):
        image_id = parse_id(text)
        if image_id is None:
            raise StoreError(f"'{text}' is not an image id (a whole number).")
        return render(require(service.open_image(user, image_id, TASK)), show, alpha,
                      caller=user)

    def toggle_overlay(current_id, show, alpha):
        if current_id is None or not show:
            return gr.Image(visible=show, value=None)
        img, _ = display_image(session, current_id)
        pred = predicted_positions(current_id)
        return gr.Image(value=overlay_image(img, pred, colours(), alpha), visible=True)

    common = dict(outputs=outputs, api_visibility="private", concurrency_limit=None)
    inputs = [current, show_overlay, opacity, strategy, class_choice, editor]
    actions = [save_btn.click(guarded(save), inputs, **common),
               skip_btn.click(guarded(skip), inputs, **common),
               undo_btn.click(guarded(undo), inputs, **common)]
    prev_btn.click(guarded(step(-1)), inputs, **common)
    next_btn.click(guarded(step(+1)), inputs, **common)
    accept_btn.click(guarded(accept), inputs, **common)
    strategy.change(guarded(fetch), inputs, **common)
    go.click(guarded(open_id), [current, show_overlay, opacity, goto], **common)
    goto.submit(guarded(open_id), [current, show_overlay, opacity, goto], **common)
    show_overlay.change(toggle_overlay, [current, show_overlay, opacity], [overlay],
                        api_visibility="private")
    opacity.release(toggle_overlay, [current, show_overlay, opacity], [overlay],
                    api_visibility="private")
    for i, key in enumerate(brush_keys):
        key.click(lambda i=i: gr.ImageEditor(brush=brush(i)), None, [editor],
                  api_visibility="private")

    def refresh(current_id, shown_lock, request: gr.Request = None):
        message = session.task_message(TASK)
        if current_id is not None and not message:
            service.keep_lease(service.caller_of(request), int(current_id))
        stats = segmentation_stats(session)
        iou = pd.DataFrame({"class": list(stats["per_class_iou"]),
                            "IoU": [None if v is None else round(v, 3)
                                    for v in stats["per_class_iou"].values()]})
        miou = "—" if stats["val_miou"] is None else f"{stats['val_miou']:.1%}"
        text = (catalog_line(stats) + "  \n" if catalog_line(stats) else "") + (
                f"**Masks** {stats['labeled']} / {stats['readable']} · **skipped** "
                f"{stats['skips']} · **validation mIoU** {miou}  \n"
                + trainer_line(stats["trainer"]))
        return (*lock_updates(message, shown_lock), text, learning_curve(session, TASK), iou,
                gr.Dropdown(choices=[c.name for c in session.store.classes()]))

    shown_lock = gr.State("")
    refresh_outputs = [lock_md, body, shown_lock, stats_md, curve, iou_table, class_choice]
    for event in actions:  # the stats follow each save, skip or undo (the timer is slow here)
        event.then(refresh, [current, shown_lock], refresh_outputs, api_visibility="private",
                   show_progress="hidden")
    return {"first": (guarded(fetch), inputs, outputs),
            "refresh": (refresh, [current, shown_lock], refresh_outputs),
            "editor": editor, "brush": brush}
