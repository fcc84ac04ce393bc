"""Who asks and what they may do: the Caller, role checks that turn into one-line refusals,
and the checks on input made before any work (a mask PNG's header)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from hitl import mask_png
from hitl.errors import Refused
from hitl.store import StoreError

ADMIN, LABELER = "admin", "labeler"
IMPORT_USER = "import"  # labels brought in by --import / python -m hitl import
ROLES = (ADMIN, LABELER)
RESET_COOLDOWN_S = 10.0
EXPORT_KEEP_S = 600.0
MASK_DECODES_AT_ONCE = mask_png.DECODES_AT_ONCE
PNG_SIGNATURE, MASK_PNG_MAX_BYTES = mask_png.PNG_SIGNATURE, mask_png.MAX_BYTES


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
            return {"ok": False, "error": one_line(str(exc))}
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
           "recolour_class": "change class colours",
           "start_trainer": "start the trainer", "stop_trainer": "stop the trainer",
           "configure_trainer": "change the backbone, mode or resolution",
           "export": "export the whole session", "reset": "reset the session"}


def one_line(text: str, limit: int = 300) -> str:
    """Messages are one short line: never a traceback, never a huge echoed input."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def mask_from_png(data: bytes, width: int, height: int) -> np.ndarray:
    """An 8-bit single-channel PNG -> class positions, through the one mask decoder
    (hitl/mask_png.py: header and size checked before decoding, few decodes at once)."""
    return mask_png.decode(data, (width, height))


def require(result: dict) -> dict:
    """For page code that shows errors through StoreError: raise on a refused answer."""
    if not result.get("ok", True):
        raise StoreError(result.get("error") or "Refused.")
    return result
