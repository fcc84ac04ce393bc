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
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class HuggingFaceAccess:
    """Sign in with Hugging Face (gr.LoginButton on a Space with hf_oauth: true): listed
    accounts and members of listed organisations label, listed admins and the Space's owner
    administer; anyone else is a guest who can do nothing. Without lists (`open`), on a Space
    whose owner signs in to administer, everyone else labels."""

    def __init__(self, users=(), orgs=(), admins=(), owner: str | None = None,
                 open: bool = False):
        self.users, self.orgs, self.admins = set(users), set(orgs), set(admins)
        self.owner, self.open = owner, open

    @classmethod
    def from_settings(cls, settings) -> HuggingFaceAccess | None:
        lists = [getattr(settings, k, None) or [] for k in ("hf_users", "hf_orgs", "hf_admins")]
        owner = getattr(settings, "space_owner", None) if getattr(settings, "hf_oauth", False) \
            else None
        if any(lists):
            return cls(*lists, owner=owner)
        if owner and not (settings.auth or settings.auth_file):
            return cls(owner=owner, open=True)  # a Space's owner administers, others label
        return None

    def role_of(self, name: str, orgs=()) -> str:
        if name in self.admins or (self.owner is not None and name == self.owner):
            return "admin"
        if self.open or name in self.users or self.orgs & set(orgs):
            return "labeler"
        return GUEST


def anonymous_role(settings, logins: bool) -> str:
    """The role of a caller without a login or sign-in. Admin only on a launch for this
    machine alone (no Space, no share link, listening on loopback, no logins): the quick
    start. A Space, a share link or a public address without logins labels openly; admin
    actions then need a login, --hf-admins or the Space's owner signed in."""
    shared = settings.share or getattr(settings, "space_id", None) \
        or settings.host not in LOCAL_HOSTS
    return "labeler" if logins or shared else "admin"


def admin_hint(settings) -> str:
    """How someone becomes admin where anonymous visitors are labelers: said on the page."""
    if getattr(settings, "space_id", None) and getattr(settings, "hf_oauth", False):
        return ("To administer this Space, sign in with Hugging Face as its owner (or an "
                "account in HITL_HF_ADMINS), or set HITL_AUTH in its settings.")
    if getattr(settings, "space_id", None):
        return ("To administer this Space, set HITL_AUTH (user:password:admin) or "
                "HITL_AUTH_FILE in its settings; or add `hf_oauth: true` to its README "
                "metadata and sign in with Hugging Face as its owner (or set HITL_HF_ADMINS).")
    return ("To administer, restart with a login (--auth USER:PASS:admin or --auth-file), "
            "or --hf-admins with Sign in with Hugging Face.")


def hf_sign_in_problem(settings) -> str | None:
    """Why Sign in with Hugging Face cannot work here, in one line, or None: on a Space it
    needs `hf_oauth: true` in the Space's README metadata (which sets OAUTH_CLIENT_ID)."""
    hf = settings.hf_users or settings.hf_orgs or settings.hf_admins
    if hf and getattr(settings, "space_id", None) and not getattr(settings, "hf_oauth", False):
        return ("--hf-users/--hf-orgs/--hf-admins need Sign in with Hugging Face: add "
                "`hf_oauth: true` to this Space's README metadata (OAUTH_CLIENT_ID is not set)")
    return None


class Access:
    """Who may do what: the role of each login, and of a caller without one.

    Without logins on a local launch the local user is admin; anonymous callers of a Space,
    a share link (`--allow-anonymous`) or a public address are labelers (`anonymous_role`)."""

    def __init__(self, roles: dict[str, str] | None = None, anonymous_role: str = "admin"):
        self.roles = dict(roles or {})
        self.anonymous_role = anonymous_role
        self.admin_hint = ""

    hf: HuggingFaceAccess | None = None

    @classmethod
    def from_settings(cls, settings) -> Access:
        hf = HuggingFaceAccess.from_settings(settings)
        entries = read_entries(settings.auth_file) if settings.auth_file else []
        roles = users_and_roles(settings.auth, entries)
        if hf is not None:
            access = cls({}, "labeler" if hf.open else GUEST)
            access.hf = hf
        else:
            access = cls(roles, anonymous_role(settings, bool(roles)))
        if access.anonymous_role != "admin":
            access.admin_hint = admin_hint(settings)
        return access

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
        """The role of a login (or a signed-in account) by name; callers without one get
        `anonymous_role` (Service.caller_of)."""
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

