"""Pieces both labeling tabs share: the image for display, messages.

Who the caller is comes from `Service.caller_of(request)` (hitl/service/), the one edge;
`with_request` and `page_request` lean on Gradio's internals, so they live in
hitl/gradio_compat.py.
"""
from __future__ import annotations

import html

from PIL import Image

from hitl.gradio_compat import page_request, with_request
from hitl.imaging import ImageError, load_image
from hitl.session import Session


def may_label(service, request) -> bool:
    """For the page's reads that are no action (the stats ticks): whether the caller may see
    what a labeler sees. A guest of Sign in with Hugging Face gets nothing."""
    from hitl.service import ROLES
    return service.caller_of(request).role in ROLES


DISPLAY_SIDE = 1024  # large photos are shrunk for the page; labels never depend on it


__all__ = ["page_request", "with_request", "may_label", "DISPLAY_SIDE", "data_url", "display_image",
           "header", "note_text", "parse_id"]


def data_url(img: Image.Image | None, quality: int = 85) -> str | None:
    """An image as a JPEG data URL, for pages that show it without another request."""
    if img is None:
        return None
    import base64
    import io
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def display_image(session: Session, image_id: int | None) -> tuple[Image.Image | None, str | None]:
    """The registered image by id, shrunk for display; (None, message) if it cannot be shown.

    Only ids from the catalogue are ever opened: the browser never names a path.
    """
    if image_id is None:
        return None, None
    row = session.store.image(int(image_id))
    if row is None:
        return None, f"There is no image with id {image_id}."
    if not row.readable:
        return None, f"Image {row.id} ({row.filename}) is unreadable: {row.error}"
    try:
        img = load_image(row.path, session.settings.max_image_pixels)
    except ImageError as exc:
        session.store.mark_unreadable(row.id, str(exc))
        return None, f"Image {row.id} is unreadable: {exc}"
    img.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    return img, None


def header(view: dict) -> str:
    """Image id and file name, always visible."""
    if view.get("image_id") is None:
        return "### No image"
    split = " · validation" if view.get("split") == "val" else ""
    skipped = " · skipped" if view.get("skipped") else ""
    return (f"### Image {view['image_id']} · `{html.escape(view['filename'] or '')}`"
            f"{split}{skipped}")


def note_text(*parts: str | None) -> str:
    return "  \n".join(html.escape(p) for p in parts if p)


def parse_id(text: str | float | int | None) -> int | None:
    if text is None or str(text).strip() == "":
        return None
    try:
        return int(float(str(text).strip()))
    except ValueError:
        return None
