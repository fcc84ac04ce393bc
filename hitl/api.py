"""JSON endpoints for scripted clients (gradio_client), behind the same login as the page.

Each function is typed, so gr.api derives the endpoint's schema from its signature. Errors
come back as {"ok": false, "error": "..."} rather than exceptions, so a client loop can go on.
"""
from __future__ import annotations

import base64
import io
from types import SimpleNamespace

import gradio as gr
import numpy as np
from PIL import Image

from hitl.labeling import Labeling
from hitl.review import ReviewService
from hitl.store import StoreError
from hitl.tasks import get_task


def user_of(request: gr.Request | None) -> str:
    """The Gradio login, or 'local' without auth."""
    name = getattr(request, "username", None) if request is not None else None
    return name or "local"


def _error(exc: Exception) -> dict:
    return {"ok": False, "error": str(exc)}


def _decode_mask(mask_png: str) -> np.ndarray:
    try:
        data = base64.b64decode(mask_png, validate=True)
        with Image.open(io.BytesIO(data)) as img:
            if img.mode not in ("L", "P"):
                raise StoreError(f"mask_png must be an 8-bit single-channel PNG, got mode "
                                 f"{img.mode}.")
            return np.array(img, dtype=np.uint8)
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"mask_png is not a base64 PNG ({type(exc).__name__}).") from exc


def encode_mask(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def register(labeling: Labeling) -> None:
    """Add every endpoint to the Blocks being built."""
    session = labeling.session

    def task() -> str:
        return session.store.task() or "classification"

    def next_image(strategy: str = "uncertain", class_name: str | None = None,
                   request: gr.Request = None) -> dict:
        """The next image to label for this user (leased to them), or image_id null."""
        try:
            view = labeling.next_image(task(), strategy, class_name, user_of(request))
            return {k: view.get(k) for k in ("image_id", "filename", "prediction", "label",
                                             "note", "strategy")}
        except StoreError as exc:
            return _error(exc) | {"image_id": None}

    def annotate(image_id: int, label: str, request: gr.Request = None) -> dict:
        """Label one image with a class name."""
        try:
            return labeling.annotate(image_id, label, user_of(request))
        except StoreError as exc:
            return _error(exc)

    def annotate_mask(image_id: int, mask_png: str, request: gr.Request = None) -> dict:
        """Save a mask: base64 8-bit PNG of the image's size, 0 = unlabeled, k = k-th class."""
        try:
            return labeling.annotate_positions(image_id, _decode_mask(mask_png),
                                               user_of(request))
        except StoreError as exc:
            return _error(exc)

    def predicted_mask(image_id: int) -> dict:
        """The model's mask for one image (every pixel 1..K), class fractions, model version."""
        try:
            if session.store.image(int(image_id)) is None:
                raise StoreError(f"There is no image with id {image_id}.")
            result = session.trainer.predicted_mask(int(image_id))
            if result is None:
                return {"ok": False, "error": "No segmentation model yet.", "mask_png": None}
            names = {c.id: c.name for c in session.store.classes()}
            return {"ok": True, "mask_png": encode_mask(result["mask"]),
                    "fractions": {names.get(cid, str(cid)): f for cid, f in
                                  zip(result["class_ids"], result["fractions"])},
                    "model_version": result["model_version"]}
        except StoreError as exc:
            return _error(exc)

    def skip(image_id: int, request: gr.Request = None) -> dict:
        """Skip an image: strategies pass over it until undone."""
        try:
            return labeling.skip(image_id, user_of(request))
        except StoreError as exc:
            return _error(exc)

    def undo(request: gr.Request = None) -> dict:
        """Undo this user's last label, mask or skip."""
        return labeling.undo(user_of(request))

    def stats(live_window: int = 50) -> dict:
        """Counts, model version, training state and validation numbers."""
        return get_task(task()).stats_of(session, live_window)

    def predictions(limit: int = 100) -> list[dict]:
        """Current class predictions, by image id."""
        frame = session.store.predictions_frame(limit)
        return [{"image_id": int(r.image_id), "filename": r.filename, "label": r.label,
                 "probability": float(r.probability), "model_version": int(r.model_version)}
                for r in frame.itertuples()]

    def reset_session(confirm: bool = False) -> dict:
        """Archive the session folder and start a fresh session (needs confirm=true)."""
        if not confirm:
            return {"ok": False, "error": "Resetting archives every label of this session: "
                                          "call again with confirm=true."}
        archive = session.reset()
        return {"ok": True, "archive": str(archive)}

    def classes_list() -> list[str]:
        """Class names in order (mask value k is the k-th name)."""
        return [c.name for c in session.store.classes()]

    for fn in (next_image, annotate, annotate_mask, predicted_mask, skip, undo, stats,
               predictions, reset_session, classes_list):
        gr.api(fn, api_name=fn.__name__.removesuffix("_list"), concurrency_limit=None)
    register_review(ReviewService.of(session), lambda request: SimpleNamespace(
        name=user_of(request), role="labeler"))


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

    def keep_suspect(image_id: int, request: gr.Request = None) -> dict:
        """Keep a suspect's label as it is (it leaves the suspects list)."""
        return service.keep_suspect(caller_of(request), image_id)

    def remove_suspect(image_id: int, request: gr.Request = None) -> dict:
        """Remove a suspect's label or mask (undoable)."""
        return service.remove_suspect(caller_of(request), image_id)

    def similar(image_id: int, n: int = 24, request: gr.Request = None) -> dict:
        """The n unlabeled images nearest to image_id by cached features, leased as a page."""
        return service.similar(caller_of(request), image_id, n)

    for fn in (review_batch, accept_batch, suspects, keep_suspect, remove_suspect, similar):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=None)
