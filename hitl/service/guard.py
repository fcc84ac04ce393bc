"""Who asks and what they may do: the Caller, role checks that turn into one-line refusals,
and the checks on input made before any work (a mask PNG's header)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from hitl.errors import Refused
from hitl.store import StoreError

ADMIN, LABELER = "admin", "labeler"
IMPORT_USER = "import"  # labels brought in by --import / python -m hitl import
ROLES = (ADMIN, LABELER)
RESET_COOLDOWN_S = 10.0
EXPORT_KEEP_S = 600.0
MASK_DECODES_AT_ONCE = 2


@dataclass(frozen=True)
class Caller:
    """Who is asking; built from the request at the edge (`Service.caller_of`)."""
    name: str  # login name, HF username, or a per-browser anonymous id
    role: str  # "admin" | "labeler"

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def answer(fn):
    """A public Service method: a StoreError becomes {"ok": False, "error": ...}; a dict
    without "ok" gets "ok": True."""
    @functools.wraps(fn)
    def run(self, caller: Caller, *args, **kwargs) -> dict:
        if not isinstance(caller, Caller):
            return {"ok": False, "error": "No caller: every action needs to know who asks."}
        if caller.role not in ROLES:
            return {"ok": False, "error": f"{caller.name or 'You'} may not label here: sign in "
                                          "with an account the owner has added."}
        try:
            result = fn(self, caller, *args, **kwargs)
        except StoreError as exc:
            refused = {"ok": False, "error": one_line(str(exc))}
            if exc.status >= 500:  # a fault, not the caller's doing: REST answers its status
                refused["status"] = exc.status
            return refused
        if isinstance(result, dict):
            result.setdefault("ok", True)
        return result
    return run


def admin_only(fn):
    """An admin action: refused for labelers before anything is read or changed."""
    @functools.wraps(fn)
    def run(self, caller: Caller, *args, **kwargs):
        if not caller.is_admin:
            raise Refused(f"Only an admin can {ACTIONS.get(fn.__name__, fn.__name__)}; "
                          f"{caller.name} is a labeler.")
        return fn(self, caller, *args, **kwargs)
    return answer(run)


ACTIONS = {"add_class": "add classes", "rename_class": "rename classes",
           "move_class": "reorder classes", "remove_class": "remove classes",
           "start_trainer": "start the trainer", "stop_trainer": "stop the trainer",
           "configure_trainer": "change the backbone, mode or resolution",
           "export": "export the whole session", "reset": "reset the session"}


def one_line(text: str, limit: int = 300) -> str:
    """Messages are one short line: never a traceback, never a huge echoed input."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MASK_PNG_MAX_BYTES = 64 * 1024 * 1024


def mask_from_png(data: bytes, width: int, height: int) -> np.ndarray:
    """An 8-bit single-channel PNG -> class positions; the size is read from the PNG header
    and compared with the image before anything is decoded (a 14000x14000 PNG is 190 KB on
    the wire and 196 MB decoded). Only PNG: a lossy format changes class values."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > MASK_PNG_MAX_BYTES:
        raise StoreError("The mask must be a PNG of at most 64 MB.")
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 33:
        raise StoreError("The mask must be a PNG (other formats change class values).")
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    bit_depth, colour_type = data[24], data[25]
    if (w, h) != (width, height):
        raise StoreError(f"The mask is {w}x{h} but the image is {width}x{height}.")
    if bit_depth != 8 or colour_type not in (0, 3):  # 8-bit grey or palette
        raise StoreError("The mask must be an 8-bit single-channel PNG (grey or palette).")
    import io

    from PIL import Image
    try:
        with Image.open(io.BytesIO(bytes(data)), formats=["PNG"]) as img:
            return np.array(img, dtype=np.uint8)
    except Exception as exc:
        raise StoreError(f"The mask PNG cannot be read ({type(exc).__name__}).") from exc


def require(result: dict) -> dict:
    """For page code that shows errors through StoreError: raise on a refused answer."""
    if not result.get("ok", True):
        raise StoreError(result.get("error") or "Refused.")
    return result
