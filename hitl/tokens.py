"""API tokens for scripts that call the REST API (`Authorization: Bearer <token>`).

`python -m hitl adduser --auth-file users.txt NAME --token` prints a fresh token once and
keeps only its SHA-256 in a file next to the auth file (`users.txt.tokens`), one
``username:sha256-hex`` line per user. A token is 32 random bytes, so a plain hash is enough
(a slow password hash would only slow every request); a new token replaces the user's old one.
"""
from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from hitl.atomic import atomic_file

PREFIX = "hitl_"


def tokens_path(auth_file: Path) -> Path:
    """Where the tokens of an auth file's users live."""
    auth_file = Path(auth_file)
    return auth_file.with_name(auth_file.name + ".tokens")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def read_tokens(path: Path) -> dict[str, str]:
    """username -> token digest; a missing file means no tokens, a bad line raises ValueError."""
    path = Path(path)
    if not path.exists():
        return {}
    tokens: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        username, sep, digest = text.partition(":")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"{path}, line {lineno}: expected username:sha256-hex")
        tokens[username] = digest
    return tokens


def add_token(path: Path, username: str) -> str:
    """Make a new token for username (replacing theirs), store its digest, return the token."""
    path = Path(path)
    token = PREFIX + secrets.token_urlsafe(32)
    tokens = read_tokens(path)
    tokens[username] = _digest(token)
    with atomic_file(path, mode=0o600) as tmp:
        tmp.write_text("".join(f"{user}:{digest}\n" for user, digest in tokens.items()),
                       encoding="utf-8")
    return token


def remove_token(path: Path, username: str) -> bool:
    """Revoke username's token (rewrite the file without it); False when they had none."""
    path = Path(path)
    tokens = read_tokens(path)
    if tokens.pop(username, None) is None:
        return False
    with atomic_file(path, mode=0o600) as tmp:
        tmp.write_text("".join(f"{user}:{digest}\n" for user, digest in tokens.items()),
                       encoding="utf-8")
    return True


class TokenChecker:
    """token -> username, or None for an unknown token. Made `from_file`, it follows the file
    (hitl/file_watch.py): a replaced or revoked token stops working within seconds, a new one
    works; with `users`, a token of a name that is no longer a login works no more."""

    def __init__(self, digests: dict[str, str] | None = None, watch=None, users=None):
        self._digests, self._watch, self._users = dict(digests or {}), watch, users
        self._version, self._by_digest = -1, {}

    @classmethod
    def from_file(cls, path: Path | None, users=None) -> TokenChecker:
        """`users`: a callable naming every login now (Authenticator.users), or None."""
        if path is None:
            return cls()
        from hitl.file_watch import FileWatch
        return cls(watch=FileWatch(Path(path), read_tokens, {}), users=users)

    def _table(self) -> dict[str, str]:
        if self._watch is None:
            if self._version < 0:
                self._version = 0
                self._by_digest = {d: user for user, d in self._digests.items()}
            return self._by_digest
        digests = self._watch.get()
        if self._watch.version != self._version:
            self._version = self._watch.version
            self._by_digest = {d: user for user, d in digests.items()}
        return self._by_digest

    def __call__(self, token: str) -> str | None:
        # a lookup by digest: timing can only tell about hashes, which reveal nothing
        name = self._table().get(_digest(token))
        if name is not None and self._users is not None and name not in self._users():
            return None  # deleted from the auth file: their token goes with them
        return name

    def __bool__(self) -> bool:
        return self._watch is not None or bool(self._digests)


def token_main(auth_file: Path, username: str) -> int:
    """`python -m hitl adduser --auth-file FILE NAME --token`: print a new token once."""
    import sys

    from hitl.auth import check_username
    try:
        check_username(username)
        token = add_token(tokens_path(auth_file), username)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"API token for {username} (shown once; stored hashed in {tokens_path(auth_file)}):",
          file=sys.stderr)
    print(token)
    return 0
