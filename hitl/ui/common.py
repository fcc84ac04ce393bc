"""Pieces both labeling tabs share: the image for display, messages.

Who the caller is comes from `Service.caller_of(request)` (hitl/service/), the one edge.
"""
from __future__ import annotations

import html
import inspect
from collections.abc import Callable

import gradio as gr
from PIL import Image

from hitl.access import login_cookie_user
from hitl.imaging import ImageError, load_image
from hitl.session import Session


def with_request(fn: Callable, n_inputs: int) -> Callable:
    """`fn(*inputs, request=...)` as an event handler that really gets the gr.Request.

    Gradio 6.31 hands the request only to a positional parameter annotated gr.Request; a
    keyword-only one after `*args` silently gets None, so every caller looked anonymous.
    The handler gets an explicit signature of `n_inputs` values and the request.
    """
    def run(*args, **kwargs):
        request = kwargs.pop("request", None)
        if request is None and len(args) == n_inputs + 1:
            *args, request = args
        return fn(*args, request=request, **kwargs)
    params = [inspect.Parameter(f"value_{i}", inspect.Parameter.POSITIONAL_OR_KEYWORD)
              for i in range(n_inputs)]
    params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=None, annotation=gr.Request))
    run.__signature__ = inspect.Signature(params)
    run.__annotations__ = {"request": gr.Request}
    run.__name__ = getattr(fn, "__name__", "run")
    return run


def may_label(service, request) -> bool:
    """For the page's reads that are no action (the stats ticks): whether the caller may see
    what a labeler sees. A guest of Sign in with Hugging Face gets nothing."""
    from hitl.service import ROLES
    return service.caller_of(request).role in ROLES


DISPLAY_SIDE = 1024  # large photos are shrunk for the page; labels never depend on it


def page_request(request) -> gr.Request:
    """A gr.HTML server function gets the plain HTTP request: Gradio's route checks the login
    but does not name the user. Name them as that check does, for Service.caller_of."""
    if getattr(request, "username", None):
        return request
    name = None
    app = getattr(request, "app", None)
    dependency = getattr(app, "auth_dependency", None)
    if dependency is not None:
        name = dependency(request)
        if inspect.isawaitable(name):  # an async dependency cannot be awaited on this thread
            name.close()
            name = None
    else:
        name = login_cookie_user(app, request.cookies)
    # a Hugging Face sign-in is read from the wrapped request by Service.caller_of
    return gr.Request(request=request, username=name)


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
