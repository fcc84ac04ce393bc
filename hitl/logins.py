"""Taking logins away while the app runs: `python -m hitl deluser NAME` and
`python -m hitl revoke NAME`, and the app following the auth file as it changes.

The Authenticator and the TokenChecker re-read their files when they change
(hitl/file_watch.py). What they cannot reach is a browser that logged in before: Gradio keeps
its login cookies (token -> name; hitl/gradio_compat.py) and never asks again. `FollowLogins`
looks (cheaply) on every request; when the auth file changed, it forgets the cookies of names
that are no longer logins and gives everyone the role the file now says.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hitl.atomic import atomic_file
from hitl.auth import _parse_line, read_entries
from hitl.gradio_compat import forget_logins
from hitl.tokens import remove_token, tokens_path


class FollowLogins:
    """ASGI middleware: after the auth file changed, removed users lose their login cookies
    (Gradio's, on `server`: hitl/server.py) and roles are as the file says (`access`, the
    Service's)."""

    def __init__(self, app, auth, server, access):
        self.app, self.auth, self.server, self.access = app, auth, server, access
        self.seen = auth.version

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            self.auth.users()  # looks at the file (at most once a second)
            if self.auth.version != self.seen:
                self.seen = self.auth.version
                self.follow()
        await self.app(scope, receive, send)

    def follow(self) -> None:
        users = self.auth.users()
        forget_logins(self.server.switch.app, users)
        if self.access.hf is None:
            self.access.roles = self.auth.roles()


def remove_user(path: Path, username: str) -> None:
    """Delete username's line from the auth file (and their API token); ValueError when they
    are not in it or are its only user (an auth file without users is refused at start)."""
    path = Path(path)
    entries = read_entries(path)
    if username not in {name for name, _, _ in entries}:
        raise ValueError(f"{username!r} is not a user of {path}")
    if len(entries) == 1:
        raise ValueError(f"{username!r} is the only user of {path}: add another first")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines()
             if (_parse_line(line) or ("",))[0] != username]
    with atomic_file(path, mode=0o600) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    remove_token(tokens_path(path), username)


def _parser(command: str, what: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m hitl {command}", description=what)
    default = os.environ.get("HITL_AUTH_FILE")
    parser.add_argument("--auth-file", required=not default, default=default, type=Path,
                        help="file of username:hash lines (default: $HITL_AUTH_FILE)")
    parser.add_argument("username")
    return parser


def deluser_main(argv: list[str]) -> int:
    """`python -m hitl deluser --auth-file FILE NAME`: NAME can no longer log in, and a
    running app drops their login cookie and API token within seconds."""
    args = _parser("deluser", "Remove a user (and their API token) from an auth file.") \
        .parse_args(argv)
    try:
        remove_user(args.auth_file, args.username)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"removed {args.username} from {args.auth_file}")
    return 0


def revoke_main(argv: list[str]) -> int:
    """`python -m hitl revoke --auth-file FILE NAME`: NAME's REST API token stops working
    (a running app notices within seconds); their password stays."""
    args = _parser("revoke", "Revoke a user's REST API token.").parse_args(argv)
    try:
        removed = remove_token(tokens_path(args.auth_file), args.username)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not removed:
        print(f"error: {args.username} has no API token in {tokens_path(args.auth_file)}",
              file=sys.stderr)
        return 2
    print(f"revoked the API token of {args.username}")
    return 0
