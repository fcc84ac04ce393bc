"""Who asks and what they may do: the Caller, the one `@action` decorator every public
Service method declares its role with, and the checks on input made before any work (a mask
PNG's header).

A Service method raises typed errors (hitl/errors.py) and answers a plain dict on success;
each entry point turns a refusal into its own shape in one adapter (hitl/adapters.py).
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import numpy as np

from hitl import mask_png
from hitl.errors import BadInput, Refused

ADMIN, LABELER = "admin", "labeler"
ANYONE = "anyone"  # no role needed (nothing of the session read or changed)
IMPORT_USER = "import"  # labels brought in by --import / python -m hitl import
ROLES = (ADMIN, LABELER)
# what each declarable role lets in: an admin does what a labeler does
ALLOWED = {ANYONE: None, LABELER: {LABELER, ADMIN}, ADMIN: {ADMIN}}
RESET_COOLDOWN_S = 10.0
EXPORT_KEEP_S = 600.0
MASK_DECODES_AT_ONCE = mask_png.DECODES_AT_ONCE
PNG_SIGNATURE, MASK_PNG_MAX_BYTES = mask_png.PNG_SIGNATURE, mask_png.MAX_BYTES


@dataclass(frozen=True)
class Caller:
    """Who is asking; built from the request at the edge (`Service.caller_of`)."""
    name: str  # login name, HF username, or a per-browser anonymous id
    role: str  # "admin" | "labeler" | "guest" (hitl/access.py)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def action(role: str):
    """Declare a public Service method an action that `role` may do ("labeler", "admin",
    "anyone"): the caller is checked before anything is read or changed, and a refusal is a
    typed error. The role is kept on the method (`declared_role`) so tests can list them all.
    A dict answer without "ok" gets "ok": True."""
    if role not in ALLOWED:
        raise ValueError(f"unknown role {role!r}")

    def decorate(fn):
        @functools.wraps(fn)
        def run(self, caller: Caller, *args, **kwargs):
            check_role(caller, role, fn.__name__)
            result = fn(self, caller, *args, **kwargs)
            if isinstance(result, dict):
                result.setdefault("ok", True)
            return result
        run.declared_role = role
        return run
    return decorate


def check_role(caller: Caller, role: str, name: str) -> None:
    """Raise Refused unless `caller` may do an action declared for `role`."""
    if not isinstance(caller, Caller):
        raise Refused("No caller: every action needs to know who asks.")
    allowed = ALLOWED[role]
    if allowed is None or caller.role in allowed:
        return
    if caller.role not in ROLES:
        raise Refused(f"{caller.name or 'You'} may not label here: sign in with an account "
                      "the owner has added.")
    raise Refused(f"Only an admin can {ACTIONS.get(name, name.replace('_', ' '))}; "
                  f"{caller.name} is a labeler.")


def declared_actions(cls) -> dict[str, str]:
    """Every action of a Service class and the role it declares, by method name."""
    return {name: fn.declared_role for name, fn in inspect.getmembers(cls, callable)
            if hasattr(fn, "declared_role")}


def whole(value, name: str) -> int:
    """An id or count as the int it names; BadInput (never a bare ValueError) otherwise."""
    if isinstance(value, bool):
        raise BadInput(f"{name} must be a whole number.")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"{name} must be a whole number.") from None


ACTIONS = {"add_class": "add classes", "rename_class": "rename classes",
           "move_class": "reorder classes", "remove_class": "remove classes",
           "recolour_class": "change class colours", "class_removal": "remove classes",
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
