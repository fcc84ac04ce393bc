"""JSON endpoints for scripted clients (gradio_client), behind the same login as the page.

Each function is typed, so gr.api derives the endpoint's schema from its signature; the types
are checked again here (a client can send anything). Every call goes through the Service,
which knows the caller's role. A refusal comes back as {"ok": false, "error": "..."} (the
gr.api adapter, hitl/adapters.py) rather than an exception, so a client loop can go on.
"""
from __future__ import annotations

import base64
import functools
import inspect
import io
import logging
import typing

import gradio as gr
import numpy as np
from PIL import Image

from hitl.adapters import for_api
from hitl.errors import BadInput, HitlError
from hitl.service import Service, one_line

log = logging.getLogger(__name__)
# Work per request is bounded: these endpoints decode or encode whole masks, or reset.
CONCURRENCY = {"annotate_mask": 2, "predicted_mask": 2, "reset_session": 1, "stats": 4,
               "predictions": 4, "suspects": 2, "similar": 2}


class BadArgument(BadInput):
    """An argument of the wrong type or size; the message names it, never echoes it whole."""


def _int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadArgument(f"{name} must be a whole number, got {type(value).__name__}.")
    return value


def _str(value, name: str, limit: int = 200, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise BadArgument(f"{name} must be text, got {type(value).__name__}.")
    if len(value) > limit:
        raise BadArgument(f"{name} is longer than {limit} characters.")
    return value


MAX_LIST = 1000
TEXT_LIMITS = {"mask_png": 90_000_000}  # base64 of the 64 MB PNG limit (hitl/service/)


def _check(value, hint, name: str):
    """One argument against its type hint (int, float, bool, str, list[...], dict[str, str],
    X | None): the value as the function gets it, or BadArgument naming the argument."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else hint
    origin = typing.get_origin(hint)
    if hint is int:
        return _int(value, name)
    if hint is bool:
        if not isinstance(value, bool):
            raise BadArgument(f"{name} must be true or false, got {type(value).__name__}.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadArgument(f"{name} must be a number, got {type(value).__name__}.")
        return float(value)
    if hint is str:
        return _str(value, name, TEXT_LIMITS.get(name, 200))
    if origin is list:
        if not isinstance(value, list) or len(value) > MAX_LIST:
            raise BadArgument(f"{name} must be a list of at most {MAX_LIST} items.")
        inner = typing.get_args(hint)[0]
        return [_check(v, inner, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or len(value) > MAX_LIST:
            raise BadArgument(f"{name} must be an object of at most {MAX_LIST} entries.")
        return {_str(k, f"{name} key"): _str(v, f"{name}[{k!s:.20}]") for k, v in value.items()}
    return value


def checked(fn):
    """An API function whose arguments are checked against its type hints first; a wrong one
    answers {ok: false, error} in one line, and so does anything unexpected (logged once,
    without the input), never a traceback to the client or an echo of a huge input."""
    hints = typing.get_type_hints(fn)
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "request"]

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs)
            for param in params:
                if param.name in bound.arguments:
                    bound.arguments[param.name] = _check(bound.arguments[param.name],
                                                         hints.get(param.name), param.name)
            return fn(*bound.args, **bound.kwargs)
        except HitlError as exc:
            return for_api(exc)
        except TypeError as exc:
            return {"ok": False, "error": one_line(f"Wrong arguments: {exc}", 200)}
        except Exception as exc:  # a bug: one log line, a one-line answer
            log.error("api %s failed: %s: %s", fn.__name__, type(exc).__name__,
                      one_line(str(exc), 200))
            return {"ok": False, "error": f"{fn.__name__} failed ({type(exc).__name__}); "
                                          "the server log has one line about it."}
    return run


def _mask_bytes(mask_png: str) -> bytes:
    try:
        return base64.b64decode(mask_png, validate=True)
    except (ValueError, TypeError) as exc:
        raise BadArgument("mask_png is not base64 text.") from exc


def encode_mask(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def register(service: Service) -> None:
    """Add every endpoint to the Blocks being built; a refusal raised by the Service is
    answered by `checked` (the gr.api adapter)."""

    def next_image(strategy: str = "uncertain", class_name: str | None = None,
                   request: gr.Request = None) -> dict:
        """The next image to label for this user (leased to them), or image_id null."""
        view = service.next_image(service.caller_of(request), service.task(),
                                  _str(strategy, "strategy", 40),
                                  _str(class_name, "class_name", optional=True))
        return {k: view.get(k) for k in ("image_id", "filename", "prediction", "label",
                                         "note", "strategy")}

    def annotate(image_id: int, label: str, request: gr.Request = None) -> dict:
        """Label one image with a class name."""
        return service.annotate(service.caller_of(request), _int(image_id, "image_id"),
                                _str(label, "label"))

    def annotate_mask(image_id: int, mask_png: str, request: gr.Request = None) -> dict:
        """Save a mask: base64 8-bit PNG of the image's size, 0 = unlabeled, k = k-th class."""
        caller = service.caller_of(request)
        image_id = _int(image_id, "image_id")
        return service.annotate_mask_png(
            caller, image_id, _mask_bytes(_str(mask_png, "mask_png", 90_000_000)))

    def predicted_mask(image_id: int, request: gr.Request = None) -> dict:
        """The model's mask for one image (every pixel 1..K), class fractions, model version."""
        result = service.predicted_mask(service.caller_of(request), _int(image_id, "image_id"))
        return {"ok": True, "mask_png": encode_mask(result["mask"]),
                "fractions": result["fractions"], "model_version": result["model_version"]}

    def skip(image_id: int, request: gr.Request = None) -> dict:
        """Skip an image: strategies pass over it until undone."""
        return service.skip(service.caller_of(request), _int(image_id, "image_id"))

    def undo(request: gr.Request = None) -> dict:
        """Undo this user's last label, mask or skip."""
        return service.undo(service.caller_of(request))

    def stats(live_window: int = 50, request: gr.Request = None) -> dict:
        """Counts, model version, training state and validation numbers."""
        return service.stats(service.caller_of(request), _int(live_window, "live_window"))

    def predictions(limit: int = 100, request: gr.Request = None) -> list[dict] | dict:
        """Current class predictions, by image id."""
        return service.predictions(service.caller_of(request), _int(limit, "limit"))["predictions"]

    def reset_session(confirm: bool = False, request: gr.Request = None) -> dict:
        """Archive the session folder and start a fresh session (admin; needs confirm=true)."""
        result = service.reset(service.caller_of(request), confirm)
        return {"ok": True, "archive": result["archive"]}

    def classes_list(request: gr.Request = None) -> list[str] | dict:
        """Class names in order (mask value k is the k-th name)."""
        return [c["name"] for c in service.classes(service.caller_of(request))["classes"]]

    for fn in (next_image, annotate, annotate_mask, predicted_mask, skip, undo, stats,
               predictions, reset_session, classes_list):
        name = fn.__name__.removesuffix("_list")
        gr.api(checked(fn), api_name=name, concurrency_limit=CONCURRENCY.get(name))
    register_review(service, service.caller_of)


def register_review(service, caller_of) -> None:
    """Review endpoints (issue 13): pages of one predicted class, suspects, more like this.
    caller_of(request) names who asks; the service checks it and answers plain dicts."""

    def review_batch(class_name: str, n: int = 24, band: list[float] | None = None,
                     request: gr.Request = None) -> dict:
        """Up to n unlabeled images predicted as class_name, most confident first (or with a
        probability in band = [low, high]), leased to the caller as one page."""
        return service.review_batch(caller_of(request), class_name, n, band)

    def accept_batch(image_ids: list[int], class_name: str, rejected_ids: list[int] | None = None,
                     relabels: dict[str, str] | None = None, request: gr.Request = None) -> dict:
        """Label the page: image_ids not in rejected_ids (nor relabels) become class_name;
        relabels maps image id -> another class; rejected ones stay unlabeled. /undo reverts
        the whole page."""
        return service.accept_batch(caller_of(request), image_ids, class_name, rejected_ids,
                                    relabels)

    def suspects(n: int = 24, request: gr.Request = None) -> dict:
        """Labeled images whose out-of-sample prediction disagrees most with their label."""
        return service.suspects(caller_of(request), n)

    def keep_suspect(image_id: int, seen_label: str | None = None,
                     request: gr.Request = None) -> dict:
        """Keep a suspect's label as it is (it leaves the suspects list); refused when the
        label is no longer seen_label."""
        return service.keep_suspect(caller_of(request), image_id, seen_label)

    def remove_suspect(image_id: int, seen_label: str | None = None,
                       request: gr.Request = None) -> dict:
        """Remove a suspect's label or mask (undoable); refused when it is no longer
        seen_label."""
        return service.remove_suspect(caller_of(request), image_id, seen_label)

    def similar(image_id: int, n: int = 24, request: gr.Request = None) -> dict:
        """The n unlabeled images nearest to image_id by cached features, leased as a page."""
        return service.similar(caller_of(request), image_id, n)

    for fn in (review_batch, accept_batch, suspects, keep_suspect, remove_suspect, similar):
        gr.api(checked(fn), api_name=fn.__name__,
               concurrency_limit=CONCURRENCY.get(fn.__name__))
