"""Logins for the public share link.

A share link is reachable by anyone who has the URL, so the app can require
a username and password. Users come either as plain ``user:pass`` pairs on
the command line (quick, for a session) or from an auth file that stores only
salted scrypt hashes (so the file can sit next to the data without leaking
passwords). Each line of the file is ``username:scrypt$n=..,r=..,p=..$SALT$HASH``
with SALT and HASH in base64; ``#`` comments and blank lines are ignored.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import getpass
import hashlib
import hmac
import os
import secrets
import sys
from collections.abc import Iterable
from pathlib import Path

from hitl.atomic import atomic_file
from hitl.throttle import LOGIN_ADDRESS, LoginLimits

SCHEME = "scrypt"
# n=2**14, r=8 needs 16 MiB and ~50 ms per check: slow for guessing, fine for logins.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_USERNAME = 64
ROLES = ("admin", "labeler")
# Refuse parameters from a file that would need more memory than this.
_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=dklen
    )


def hash_password(password: str, salt: bytes | None = None) -> str:
    """Return ``scrypt$n=..,r=..,p=..$SALT$HASH`` for password; a fresh random salt unless given."""
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    params = f"n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}"
    return f"{SCHEME}${params}${_b64(salt)}${_b64(digest)}"


def _parse_stored(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """Split a stored hash into (n, r, p, salt, digest); ValueError saying what is wrong."""
    parts = stored.split("$")
    if len(parts) != 4:
        raise ValueError("expected scheme$params$salt$hash")
    scheme, params, salt_b64, hash_b64 = parts
    if scheme != SCHEME:
        raise ValueError(f"unknown hash scheme {scheme!r} (expected {SCHEME!r})")
    try:
        kv = dict(item.split("=", 1) for item in params.split(","))
        n, r, p = int(kv["n"]), int(kv["r"]), int(kv["p"])
    except (ValueError, KeyError) as exc:
        raise ValueError(f"bad scrypt parameters {params!r} (expected n=..,r=..,p=..)") from exc
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * n * r > _MAXMEM // 2:
        raise ValueError(f"unsupported scrypt parameters {params!r}")
    try:
        salt = base64.b64decode(salt_b64, validate=True)
        digest = base64.b64decode(hash_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("salt or hash is not valid base64") from exc
    if not salt or not digest:
        raise ValueError("empty salt or hash")
    return n, r, p, salt, digest


def verify_password(password: str, stored: str) -> bool:
    """True when password matches stored (a hash_password result); compares in constant time.

    A malformed stored hash raises ValueError: a broken auth file should be loud, not lock
    everyone out.
    """
    n, r, p, salt, digest = _parse_stored(stored)
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(digest)), digest)


def check_username(username: str) -> None:
    """Raise ValueError with the reason when username cannot be stored in an auth file."""
    if not username:
        raise ValueError("username is empty")
    if ":" in username:
        raise ValueError(f"username {username!r} contains ':'")
    if any(ch.isspace() for ch in username):
        raise ValueError(f"username {username!r} contains whitespace")
    if len(username) > MAX_USERNAME:
        raise ValueError(f"username is longer than {MAX_USERNAME} characters")
    if not username.isprintable():
        raise ValueError(f"username {username!r} contains control characters")


def _parse_line(line: str) -> tuple[str, str, str | None] | None:
    """(username, stored, role or None) for a user line, None for a comment or blank line;
    else ValueError. A line is ``username:HASH`` or ``username:HASH:admin|labeler``."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    username, sep, stored = text.partition(":")
    if not sep:
        raise ValueError("expected username:hash")
    check_username(username)
    stored, _, role = stored.partition(":")  # a hash holds no ':' (base64 and '$')
    if role and role not in ROLES:
        raise ValueError(f"unknown role {role!r} (expected {' or '.join(ROLES)})")
    _parse_stored(stored)
    return username, stored, role or None


def read_entries(path: Path) -> list[tuple[str, str, str | None]]:
    path = Path(path)
    entries: list[tuple[str, str, str | None]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = _parse_line(line)
            if entry and entry[0] in seen:
                raise ValueError(f"user {entry[0]!r} appears twice")
        except ValueError as exc:
            raise ValueError(f"{path}, line {lineno}: {exc}") from None
        if entry:
            seen.add(entry[0])
            entries.append(entry)
    return entries


def read_auth_file(path: Path) -> dict[str, str]:
    """Map username -> stored hash; a malformed line raises ValueError naming file and line."""
    return {name: stored for name, stored, _ in read_entries(path)}


def read_auth_roles(path: Path) -> dict[str, str | None]:
    """Map username -> role written in the file (None when the line names none), in order."""
    return {name: role for name, _, role in read_entries(path)}


def add_user(path: Path, username: str, password: str, admin: bool = False) -> str:
    """Create or update username in the auth file, keeping other lines; atomic write, mode 0600.

    The first user of a fresh file is an admin; `admin` makes anyone one. Updating a user's
    password keeps their role unless `admin` asks for more. Returns the user's role."""
    path = Path(path)
    check_username(username)
    if not password:
        raise ValueError("password is empty")
    lines: list[str] = []
    entries: list[tuple[str, str, str | None]] = []
    if path.exists():
        entries = read_entries(path)  # refuse to rewrite a file we cannot parse
        lines = path.read_text(encoding="utf-8").splitlines()
    old_role = next((r for n, _, r in entries if n == username), None)
    role = "admin" if admin or not entries or old_role == "admin" else old_role
    new_line = f"{username}:{hash_password(password)}" + (f":{role}" if role else "")
    for i, line in enumerate(lines):
        entry = _parse_line(line)
        if entry and entry[0] == username:
            lines[i] = new_line
            break
    else:
        lines.append(new_line)
    with atomic_file(path, mode=0o600) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return users_and_roles(entries=read_entries(path))[username]


def parse_auth_pair(value: str) -> tuple[str, str] | tuple[str, str, str]:
    """Split ``user:pass`` or ``user:pass:admin`` from --auth (the password may contain ':',
    but not end in ':admin'); ValueError otherwise."""
    username, sep, password = value.partition(":")
    if sep and password.endswith(":admin") and len(password) > len(":admin"):
        check_username(username)
        return username, password.removesuffix(":admin"), "admin"
    if not sep:
        raise ValueError(f"--auth expects USER:PASSWORD, got no ':' in {value!r}")
    check_username(username)
    if not password:
        raise ValueError(f"--auth: empty password for user {username!r}")
    return username, password


@functools.cache
def _dummy_hash() -> str:
    """Checked against unknown usernames so they take as long as known ones."""
    return hash_password("", salt=b"\0" * SALT_BYTES)


class Authenticator:
    """The callable Gradio's launch(auth=...) takes: (username, password) -> bool.

    Users of the auth file are read again when the file changes (hitl/file_watch.py): a user
    added by `adduser` can log in, one removed by `deluser` cannot, without a restart. Failed
    logins are counted per (user, address) and per user (hitl/throttle.py)."""

    def __init__(
        self, pairs: Iterable[tuple[str, str]] = (), hashed: dict[str, str] | None = None,
        auth_file: Path | None = None,
    ) -> None:
        """Plain pairs come from --auth, hashed users (username -> stored hash) from --auth-file
        (given as `hashed` once, or as the `auth_file` to follow)."""
        self._pairs = [tuple(pair) for pair in pairs]
        self._plain: dict[str, str] = {}
        for username, password, *_ in self._pairs:
            check_username(username)
            if not password:
                raise ValueError(f"empty password for user {username!r}")
            self._plain[username] = password
        self._file = None
        if auth_file is not None:
            from hitl.file_watch import FileWatch
            self._file = FileWatch(Path(auth_file), read_entries, [])
            hashed = {name: stored for name, stored, _ in self._file.value}
        self._given = dict(hashed or {})
        for username, stored in self._given.items():
            try:
                _parse_stored(stored)
            except ValueError as exc:
                raise ValueError(f"user {username!r}: {exc}") from None
        both = sorted(self._plain.keys() & self._given.keys())
        if both:
            raise ValueError(f"user(s) {', '.join(both)} given both by --auth and in the auth file")
        self._plain_hashed: dict[str, str] = {}
        self.limits = LoginLimits()

    @classmethod
    def from_settings(cls, settings) -> Authenticator:
        """Logins from --auth pairs and the --auth-file (followed as it changes)."""
        return cls(settings.auth, auth_file=settings.auth_file)

    @property
    def _hashed(self) -> dict[str, str]:
        if self._file is None:
            return self._given
        return {name: stored for name, stored, _ in self._file.get()
                if name not in self._plain}

    @property
    def version(self) -> int:
        """Grows when the auth file is read again (hitl/logins.py follows it)."""
        return self._file.version if self._file is not None else 0

    def users(self) -> set[str]:
        """Every login name now: --auth pairs and the auth file as it is now."""
        return set(self._plain) | set(self._hashed)

    def roles(self) -> dict[str, str]:
        """Every login's role now (hitl/auth.py users_and_roles)."""
        entries = self._file.get() if self._file is not None else \
            [(name, stored, None) for name, stored in self._given.items()]
        return users_and_roles(self._pairs, entries)

    def __call__(self, username: str, password: str, address: str | None = None) -> bool:
        """One scrypt check whoever asks — a plain --auth user, a file user or an unknown
        name — so the answer's time tells nothing; a name with too many recent failures from
        this address is refused from it even with the right password, until they age out."""
        address = LOGIN_ADDRESS.get() if address is None else address
        stored = self._stored(username)
        right = verify_password(password, stored or _dummy_hash()) and stored is not None
        if self.limits.refused_from(username, address):
            return False
        if not right:
            self.limits.failed(username, address)
        return right

    async def check(self, username: str, password: str) -> bool:
        """For launch(auth=...): Gradio awaits a coroutine, so the ~50 ms scrypt runs in a
        worker thread instead of stalling every page of the server. A name guessed at from
        many addresses waits a growing delay first (asleep, holding no thread)."""
        import anyio
        from starlette.exceptions import HTTPException
        address = LOGIN_ADDRESS.get()
        if self.limits.refused_from(username, address):
            raise HTTPException(429, "Too many failed logins for this name from this "
                                     "address; wait a minute.")
        delay = self.limits.delay(username)
        if delay:
            await anyio.sleep(delay)
        return await anyio.to_thread.run_sync(self, username, password, address)

    def _stored(self, username: str) -> str | None:
        if username in self._plain:
            if username not in self._plain_hashed:
                self._plain_hashed[username] = hash_password(self._plain[username])
            return self._plain_hashed[username]
        return self._hashed.get(username)

    def __bool__(self) -> bool:
        return bool(self._plain or self._file is not None or self._given)

    def __len__(self) -> int:
        return len(self.users())


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise ValueError("no password on stdin")
        return line.rstrip("\n").rstrip("\r")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != password:
        raise ValueError("passwords do not match")
    return password


def adduser_main(argv: list[str] | None = None) -> int:
    """``python -m hitl adduser --auth-file FILE USERNAME``; argv excludes 'adduser'.

    Returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m hitl adduser",
        description="Add a user to an auth file (or change their password).",
    )
    default = os.environ.get("HITL_AUTH_FILE")
    parser.add_argument("--auth-file", required=not default, default=default, type=Path,
                        help="file of username:hash lines (default: $HITL_AUTH_FILE, as for "
                             "app.py)")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password as one line from stdin"
    )
    parser.add_argument(
        "--token", action="store_true",
        help="print a new REST API token for the user instead (see hitl/tokens.py)",
    )
    parser.add_argument("--admin", action="store_true",
                        help="an admin (classes, trainer, reset, export all); the first user "
                             "of a new file is one anyway")
    parser.add_argument("username")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return exc.code if isinstance(exc.code, int) else 2
    if args.token:
        from hitl.tokens import token_main
        return token_main(args.auth_file, args.username)
    try:
        password = _read_password(args.password_stdin)
        role = add_user(args.auth_file, args.username, password, admin=args.admin)
    except (ValueError, OSError, EOFError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 2
    print(f"added {args.username} ({role}) to {args.auth_file}")
    return 0


def users_and_roles(pairs: Iterable[tuple] = (), entries: Iterable[tuple] = ()) -> dict[str, str]:
    """Every login's role: as written (`--auth USER:PASS:admin`, a file line ending in
    `:admin`), else labeler; when nobody is marked admin, the first user is (auth-file users
    come first), so an app with logins always has an admin."""
    roles: dict[str, str | None] = {}
    for name, _, role in entries:
        roles[name] = role
    for pair in pairs:
        roles.setdefault(pair[0], pair[2] if len(pair) > 2 else None)
    if roles and "admin" not in roles.values():
        roles[next(iter(roles))] = "admin"
    return {name: role or "labeler" for name, role in roles.items()}
