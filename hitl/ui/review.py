"""The Review tab: confirm the model's predictions a page at a time, check suspect labels,
find more images like one.

The grid lives in the browser (a gr.HTML with its own script): clicks and keys mark cells
there, and only the accept sends the page as it was shown — its ids, its class and the
marks — to the service, which refuses a page that went stale. Keys: arrows move, `X` or
`Space` marks the cell (not this class), a digit gives it that class, `Enter` accepts the
rest and loads the next page, `U` undoes the last page.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import gradio as gr
from PIL import Image, ImageOps

from hitl.adapters import for_page
from hitl.store import StoreError
from hitl.ui.common import display_image, note_text, parse_id

THUMB = 160  # px, long side of a grid cell
PAGE_SIZES = (24, 32, 40, 48)
GRID_JS = (Path(__file__).with_name("review_grid.js")).read_text()
GRID_CSS = """
.rev-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr));
            gap: 6px; }
.rev-cell { position: relative; border: 3px solid transparent; border-radius: 6px;
            cursor: pointer; background: #f4f4f5; text-align: center; }
.rev-cell img { width: 100%; height: 130px; object-fit: contain; display: block; }
.rev-cell.cursor { border-color: #4363d8; }
.rev-cell.marked { border-color: #e6194b; opacity: 0.75; }
.rev-cap { font-size: 12px; display: block; }
.rev-tag { position: absolute; top: 4px; left: 4px; background: #e6194b; color: white;
           font-size: 12px; padding: 0 4px; border-radius: 3px; }
.rev-tag:empty { display: none; }
"""
LEGEND = ("**Keys** — click or `X` / `Space`: mark the cell as wrong · `1`…`9`, `0`: give the "
          "cell under the cursor that class · arrows: move · `Enter`: accept the rest and load "
          "the next page · `U`: undo the last page")


def thumbnail(path: str) -> str:
    """A small JPEG data URI; JPEG's draft mode decodes big photos at a fraction of the cost."""
    with Image.open(path) as img:
        img.draft("RGB", (THUMB * 2, THUMB * 2))
        img = ImageOps.exif_transpose(img).convert("RGB")
        img.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def overlay(img: Image.Image, positions, colours: list[str], alpha: float = 0.45):
    """Class colours over an image where positions (1..K at the image's size) are set."""
    import numpy as np
    if positions is None:
        return img
    positions = np.asarray(positions)
    lut = np.zeros((256, 3), np.uint8)
    for k, colour in enumerate(colours, start=1):
        lut[k] = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    paint = Image.fromarray(lut[positions]).resize(img.size, Image.NEAREST)
    where = Image.fromarray(((positions > 0) * int(255 * alpha)).astype(np.uint8)) \
        .resize(img.size, Image.NEAREST)
    return Image.composite(paint, img.convert("RGB"), where)


def grid_html(store, page: dict | None, class_name: str | None, mode: str) -> str:
    """The page as HTML: one cell per image; data attributes say what was shown."""
    items = (page or {}).get("items") or []
    if not items:
        return "<div id='rev-grid-empty'>No page loaded.</div>"
    rows = {r.id: r for r in store.images_by_ids([it["image_id"] for it in items])}
    classes = [c.name for c in store.classes()]
    cells = []
    for it in items:
        row = rows.get(it["image_id"])
        try:
            src = thumbnail(row.path)
        except Exception:  # an unreadable file shows as an empty cell; it can still be marked
            src = ""
        pred = it.get("prediction")
        extra = f" · {pred['probability']:.0%}" if pred else ""
        if it.get("similarity") is not None:
            extra = f" · sim {it['similarity']:.2f}"
        cells.append(
            f"<div class='rev-cell' data-id='{it['image_id']}' data-mark=''>"
            f"<span class='rev-tag'></span><img src='{src}' alt='image {it['image_id']}'>"
            f"<span class='rev-cap'>#{it['image_id']}{html.escape(extra)}</span></div>")
    ids = [it["image_id"] for it in items]
    return (f"<div class='rev-grid' id='rev-grid' data-class='{html.escape(class_name or '')}' "
            f"data-mode='{mode}' data-ids='{json.dumps(ids)}' "
            f"data-classes='{html.escape(json.dumps(classes))}'>{''.join(cells)}</div>")


def parse_payload(text: str) -> tuple[list[int], str, list[int], dict[str, str]]:
    """What the grid script sends on accept: {ids, class_name, marks: {id: "" | class}}."""
    try:
        data = json.loads(text or "{}")
        ids = [int(i) for i in data.get("ids", [])]
        marks = {str(int(k)): str(v) for k, v in (data.get("marks") or {}).items()}
    except (ValueError, TypeError, AttributeError):
        raise StoreError("The page sent a malformed accept; reload the page.") from None
    rejected = [int(k) for k, v in marks.items() if not v]
    relabels = {k: v for k, v in marks.items() if v}
    return ids, str(data.get("class_name") or ""), rejected, relabels


def add_tab(service, caller_of=None) -> None:
    """The Review tab, registered by hitl/ui/app.py in one line; who asks comes from the
    service layer's caller_of (hitl/service/) unless given."""
    caller_of = caller_of or service.caller_of
    with gr.Tab("Review", id="review") as tab:
        parts = build(service, caller_of)
    tab.select(*parts["refresh"], api_visibility="private")


def build(service, caller_of) -> dict:
    """service: the service layer (its review methods); caller_of(request) -> Caller."""
    store = lambda: service.session.store  # noqa: E731 (the store changes on reset)
    with gr.Column():
        with gr.Row():
            class_choice = gr.Dropdown([], label="Predicted class", scale=2,
                                       elem_id="rev-class")
            size = gr.Dropdown(list(PAGE_SIZES), value=24, label="Page size", scale=1)
            low = gr.Number(0.0, label="Min probability", minimum=0, maximum=1, scale=1)
            high = gr.Number(1.0, label="Max probability", minimum=0, maximum=1, scale=1)
            load = gr.Button("Load page", elem_id="rev-load", scale=0)
        with gr.Row():
            like_id = gr.Textbox(label="More like image id", scale=1, elem_id="rev-like-id")
            like = gr.Button("More like this", elem_id="rev-like", scale=0)
        status = gr.Markdown(elem_id="rev-status")
        grid = gr.HTML("<div id='rev-grid-empty'>Choose a class and load a page.</div>",
                       css_template=GRID_CSS, js_on_load=GRID_JS, elem_id="rev-grid-box")
        payload = gr.Textbox(elem_classes="hitl-hidden", elem_id="rev-payload", label="page")
        with gr.Row():
            accept = gr.Button("Accept the rest (Enter)", variant="primary", elem_id="rev-accept")
            undo = gr.Button("Undo last page (U)", elem_id="rev-undo", size="sm")
        gr.Markdown(LEGEND)
        with gr.Accordion("Suspect labels", open=False):
            gr.Markdown("Labels the model, trained without them, disagrees with most "
                        "(refreshed by the trainer when it is idle).")
            suspects_btn = gr.Button("Load suspects", elem_id="rev-suspects")
            queue = gr.State([])
            suspect_md = gr.Markdown(elem_id="rev-suspect")
            with gr.Row():
                suspect_img = gr.Image(type="pil", interactive=False, label="label", height=320,
                                       format="jpeg")
                predicted_img = gr.Image(type="pil", interactive=False, height=320,
                                         label="model's mask", format="jpeg", visible=False)
            with gr.Row():
                keep_btn = gr.Button("Keep label", elem_id="rev-keep")
                fix_class = gr.Dropdown([], label="Relabel as", scale=1)
                fix_btn = gr.Button("Relabel", elem_id="rev-relabel")
                remove_btn = gr.Button("Remove label", elem_id="rev-remove", variant="stop")

    def render(page: dict, class_name: str | None, mode: str, extra: str | None = None):
        if not page.get("ok", True):
            return gr.update(), note_text(page.get("error"), extra)
        n = len(page.get("items") or [])
        head = (f"{n} images predicted as **{html.escape(class_name or '')}**" if mode == "review"
                else f"{n} images like #{page.get('image_id')}; accept them as the chosen class")
        return grid_html(store(), page, class_name, mode), \
            "  \n".join(filter(None, [extra, head if n else None, note_text(page.get("note"))]))

    def load_page(class_name, n, lo, hi, request: gr.Request = None, extra=None):
        page = for_page(service.review_batch, caller_of(request), class_name, int(n or 24),
                                    [float(lo or 0), float(hi if hi is not None else 1)])
        return render(page, class_name, "review", extra)

    def load_like(text, n, request: gr.Request = None):
        image_id = parse_id(text)
        if image_id is None:
            return gr.update(), note_text(f"'{text}' is not an image id (a whole number).")
        page = for_page(service.similar, caller_of(request), image_id, int(n or 24))
        return render(page, None, "similar")

    def accept_page(text, class_name, n, lo, hi, request: gr.Request = None):
        try:
            ids, shown_class, rejected, relabels = parse_payload(text)
        except StoreError as exc:
            return gr.update(), note_text(str(exc))
        if not ids:
            return gr.update(), "No page to accept: load one first."
        target = shown_class or class_name  # a "more like this" page takes the chosen class
        done = for_page(service.accept_batch, caller_of(request), ids, target, rejected,
                        relabels)
        if not done.get("ok"):
            return gr.update(), note_text(done.get("error"))
        said = (f"Stored {len(done['accepted'])} × {target}"
                + (f", {len(done['relabeled'])} relabeled" if done["relabeled"] else "")
                + (f", {len(done['rejected'])} left unlabeled" if done["rejected"] else "")
                + ". `U` undoes the page.")
        review_stats = for_page(service.stats, caller_of(request), 50).get("review") or {}
        rate = review_stats.get("per_class", {}).get(target)
        if rate and rate.get("accept_rate") is not None:
            said += (f" Accept rate for {target}: {rate['accept_rate']:.0%} of "
                     f"{rate['shown']} images reviewed; {rate['labels']} review labels.")
        return load_page(target, n, lo, hi, request, extra=html.escape(said))

    def undo_page(class_name, n, lo, hi, request: gr.Request = None):
        done = for_page(service.undo_page, caller_of(request))
        if not done.get("ok"):
            return gr.update(), note_text(done.get("error"))
        said = f"Undone: {len(done['image_ids'])} image(s) are back as they were."
        if not class_name:
            return gr.update(), said
        return load_page(class_name, n, lo, hi, request, extra=said)

    page_inputs = [class_choice, size, low, high]
    common = dict(outputs=[grid, status], api_visibility="private", concurrency_limit=None)
    load.click(load_page, page_inputs, **common)
    class_choice.input(load_page, page_inputs, **common)
    like.click(load_like, [like_id, size], **common)
    like_id.submit(load_like, [like_id, size], **common)
    collect = ("(payload, ...rest) => [window.hitlReviewPayload ? window.hitlReviewPayload() "
               ": '{}', ...rest]")
    accept.click(accept_page, [payload, *page_inputs], js=collect, **common)
    undo.click(undo_page, page_inputs, **common)

    # ---- suspects: one at a time, label and out-of-sample prediction side by side -------------
    def overlays(caller, image_id: int, img):
        """A mask suspect: the stored mask and the model's mask over the image, side by side."""
        stored = for_page(service.mask_positions, caller, image_id).get("positions")
        predicted = for_page(service.predicted_mask, caller, image_id).get("mask")
        colours = [c.colour for c in store().classes()]
        return (overlay(img, stored, colours),
                gr.Image(overlay(img, predicted, colours), visible=predicted is not None))

    def show(items: list, extra: str | None = None, request: gr.Request = None):
        if not items:
            return [], note_text(extra, "No suspects to review."), None, gr.Image(visible=False)
        it = items[0]
        img, problem = display_image(service.session, it["image_id"])
        right = gr.Image(visible=False)
        if it["label"] == "mask" and img is not None:
            img, right = overlays(caller_of(request), it["image_id"], img)
        score = (f"probability of its label {it['score']:.0%}" if it["label"] != "mask"
                 else f"IoU with the model's mask {it['score']:.0%}")
        text = (f"### Image {it['image_id']} · `{html.escape(it['filename'])}`  \n"
                f"| label | model trained without it |\n|---|---|\n"
                f"| **{html.escape(str(it['label']))}** | "
                f"**{html.escape(str(it.get('oos_prediction') or '—'))}** ({score}) |")
        return items, "  \n".join(filter(None, [note_text(extra, problem), text])), img, right

    def load_suspects(request: gr.Request = None):
        found = for_page(service.suspects, caller_of(request), 48)
        if not found.get("ok"):
            return [], note_text(found.get("error")), None, gr.update()
        return show(found["items"], found.get("note"), request)

    def act(kind: str):
        def run(items, new_class, request: gr.Request = None):
            if not items:
                return show([], None, request)
            image_id, caller = items[0]["image_id"], caller_of(request)
            seen = items[0]["label"]  # what the labeler saw: refused if it changed since
            if kind == "keep":
                done = for_page(service.keep_suspect, caller, image_id, seen)
            elif kind == "remove":
                done = for_page(service.remove_suspect, caller, image_id, seen)
            else:
                done = for_page(service.relabel_suspect, caller, image_id, new_class, seen)
            if not done.get("ok"):
                return items, note_text(done.get("error")), gr.update(), gr.update()
            return show(items[1:], f"Image {image_id}: {kind} done.", request)
        return run

    suspect_out = dict(outputs=[queue, suspect_md, suspect_img, predicted_img],
                       api_visibility="private",
                       concurrency_limit=None)
    suspects_btn.click(load_suspects, None, **suspect_out)
    keep_btn.click(act("keep"), [queue, fix_class], **suspect_out)
    remove_btn.click(act("remove"), [queue, fix_class], **suspect_out)
    fix_btn.click(act("relabel"), [queue, fix_class], **suspect_out)

    def refresh():
        names = [c.name for c in store().classes()]
        return gr.Dropdown(choices=names), gr.Dropdown(choices=names)

    return {"refresh": (refresh, None, [class_choice, fix_class])}
