"""Who may do what: the role of each login, Hugging Face sign-ins, and anonymous browsers."""

from __future__ import annotations

import re
import time

from hitl.auth import read_entries, users_and_roles

BROWSER_COOKIE = "hitl_browser"
# Set by the page before its first event: a random id per browser (hitl/ui/app.py's HEAD).
BROWSER_ID_JS = f"""
if (!document.cookie.split("; ").some((c) => c.startsWith("{BROWSER_COOKIE}="))) {{
  const id = Array.from(crypto.getRandomValues(new Uint8Array(16)),
                        (b) => b.toString(16).padStart(2, "0")).join("");
  document.cookie = "{BROWSER_COOKIE}=" + id + "; path=/; max-age=31536000; SameSite=Lax";
}}
"""


GUEST = "guest"  # signed in with an account the owner did not list, or not signed in


class HuggingFaceAccess:
    """Sign in with Hugging Face (gr.LoginButton on a Space with hf_oauth: true): listed
    accounts and members of listed organisations label, listed admins administer; anyone
    else is a guest who can do nothing."""

    def __init__(self, users=(), orgs=(), admins=()):
        self.users, self.orgs, self.admins = set(users), set(orgs), set(admins)

    @classmethod
    def from_settings(cls, settings) -> HuggingFaceAccess | None:
        lists = [getattr(settings, k, None) or [] for k in ("hf_users", "hf_orgs", "hf_admins")]
        return cls(*lists) if any(lists) else None

    def role_of(self, name: str, orgs=()) -> str:
        if name in self.admins:
            return "admin"
        if name in self.users or self.orgs & set(orgs):
            return "labeler"
        return GUEST


class Access:
    """Who may do what: the role of each login, and of a caller without one.

    Without logins on a local launch the local user is admin; anonymous callers on a
    share link (`--allow-anonymous`) are labelers."""

    def __init__(self, roles: dict[str, str] | None = None, anonymous_role: str = "admin"):
        self.roles = dict(roles or {})
        self.anonymous_role = anonymous_role

    hf: HuggingFaceAccess | None = None

    @classmethod
    def from_settings(cls, settings) -> Access:
        hf = HuggingFaceAccess.from_settings(settings)
        if hf is not None:
            access = cls({}, GUEST)
            access.hf = hf
            return access
        entries = read_entries(settings.auth_file) if settings.auth_file else []
        roles = users_and_roles(settings.auth, entries)
        anonymous = "labeler" if roles or settings.share else "admin"
        return cls(roles, anonymous)

    def signed_in(self, request) -> tuple[str, str] | None:
        """(name, role) of a Hugging Face sign-in carried by the request, else None."""
        if self.hf is None:
            return None
        underlying = getattr(request, "request", None) or request  # a gr.Request wraps it
        scope = getattr(underlying, "scope", None)  # the session lives in scope["session"]
        session = scope.get("session") if isinstance(scope, dict) else \
            getattr(underlying, "session", None)
        info = (session or {}).get("oauth_info") or {}
        if (info.get("expires_at") or float("inf")) < time.time():
            return None
        user = info.get("userinfo") or {}
        name = user.get("preferred_username")
        if not name:
            return None
        orgs = [o.get("preferred_username") or o.get("name") for o in user.get("orgs") or []
                if isinstance(o, dict)]
        return name, self.hf.role_of(name, orgs)

    @property
    def logins(self) -> bool:
        return bool(self.roles)

    def role_of(self, name: str) -> str:
        if self.hf is not None:
            return self.hf.role_of(name)
        if self.roles:
            return self.roles.get(name, "labeler")
        return self.anonymous_role

    def anonymous_name(self, request) -> str:
        """The name of a caller without a login: each browser's own id (a cookie the page
        sets, BROWSER_COOKIE), so leases, undo and per-labeler stats work per person; scripted
        clients without it are 'local'."""
        try:
            cookie = request.cookies.get(BROWSER_COOKIE) if request is not None else None
        except (AttributeError, KeyError, TypeError):
            cookie = None
        if isinstance(cookie, str) and re.fullmatch(r"[0-9a-f]{16,64}", cookie):
            return f"browser-{cookie[:10]}"
        return "local"

