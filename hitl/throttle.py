"""Failed logins, counted so that guessing is slow and nobody can lock the owner out.

Three counts, each over the last LOGIN_WINDOW_S:
- per address: LOGIN_FAILURES_PER_ADDRESS failures from one address -> 429 for that address;
- per (user, address): LOGIN_FAILURES_PER_PAIR failures for a name from one address -> that
  name is refused from that address only;
- per user, from anywhere: past LOGIN_FAILURES_PER_USER failures each login for the name waits
  a growing delay (at most MAX_DELAY_S) before its password is checked — never a lock-out, so
  5 wrong passwords for "ann" from someone else's address cannot keep ann out.

The address is the peer's, unless the peer is a proxy named by --forwarded-allow-ips (then the
nearest X-Forwarded-For entry that is not itself such a proxy, as uvicorn reads it) or the app
runs on a Hugging Face Space (then the address Spaces' proxy appended: the last entry of
X-Forwarded-For that is not an internal one). An X-Forwarded-For from anyone else is ignored:
a client rotating it gains nothing.
"""
from __future__ import annotations

import collections
import contextvars
import ipaddress
import threading
import time

LOGIN_WINDOW_S = 60.0
LOGIN_FAILURES_PER_ADDRESS = 10
LOGIN_FAILURES_PER_PAIR = 5
LOGIN_FAILURES_PER_USER = 5  # free failures before the delay starts
BASE_DELAY_S, MAX_DELAY_S = 0.5, 8.0

# The address of the login request being handled (set by LoginThrottle, read by the
# Authenticator, which Gradio calls with the name and password only).
LOGIN_ADDRESS: contextvars.ContextVar[str] = contextvars.ContextVar("login_address",
                                                                    default="?")


class Throttle:
    """Failures per key in a sliding window of `window_s`; at `limit` the key is blocked
    until its oldest failure is `window_s` old."""

    def __init__(self, limit: int, window_s: float):
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def _recent(self, key: str):
        times = self._failures[key]
        while times and time.monotonic() - times[0] > self.window_s:
            times.popleft()
        return times

    def count(self, key: str) -> int:
        with self._lock:
            return len(self._recent(key))

    def blocked(self, key: str) -> bool:
        return self.count(key) >= self.limit

    def failed(self, key: str) -> None:
        with self._lock:
            times = self._recent(key)
            times.append(time.monotonic())
            if len(self._failures) > 10_000:  # never grows without bound under a spray
                for stale in [k for k, v in self._failures.items() if not v][:5_000]:
                    del self._failures[stale]


class LoginLimits:
    """The per (user, address) and per-user counts of one set of logins."""

    def __init__(self):
        self.pairs = Throttle(LOGIN_FAILURES_PER_PAIR, LOGIN_WINDOW_S)
        self.users = Throttle(LOGIN_FAILURES_PER_USER, LOGIN_WINDOW_S)

    @staticmethod
    def _pair(username: str, address: str) -> str:
        return f"{username}\0{address}"

    def refused_from(self, username: str, address: str) -> bool:
        """Too many failures for this name from this address (other addresses are not)."""
        return self.pairs.blocked(self._pair(username, address))

    def delay(self, username: str) -> float:
        """Seconds a login for `username` waits: 0 until LOGIN_FAILURES_PER_USER recent
        failures, then doubling from BASE_DELAY_S up to MAX_DELAY_S."""
        extra = self.users.count(username) - LOGIN_FAILURES_PER_USER
        return 0.0 if extra < 0 else min(MAX_DELAY_S, BASE_DELAY_S * 2 ** extra)

    def failed(self, username: str, address: str) -> None:
        self.pairs.failed(self._pair(username, address))
        self.users.failed(username)


# Addresses of a hosting platform's own hops (Spaces' proxies and load balancers among them)
INTERNAL = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                              "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
                                              "::1/128", "fc00::/7", "fe80::/10")]


def _ip(text: str):
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


class ClientAddress:
    """Whose address a request is: the peer's, or what a trusted proxy says it forwarded."""

    def __init__(self, allow_ips=(), on_space: bool = False):
        self.on_space = on_space
        self.trust_all = "*" in allow_ips
        self.networks = [ipaddress.ip_network(n.strip(), strict=False)
                         for n in allow_ips if n.strip() and n.strip() != "*"]

    def trusted(self, host: str) -> bool:
        if self.trust_all:
            return True
        ip = _ip(host)
        return ip is not None and any(ip in net for net in self.networks)

    def __call__(self, scope) -> str:
        peer = (scope.get("client") or ("?", 0))[0]
        forwarded = [h.strip() for name, value in scope.get("headers") or []
                     if name == b"x-forwarded-for" for h in value.decode("latin-1").split(",")]
        forwarded = [h for h in forwarded if h]
        if self.on_space:  # Spaces' proxy appends the address it saw; left of it is the client's
            for host in reversed(forwarded):
                ip = _ip(host)
                if ip is not None and not any(ip in net for net in INTERNAL
                                              if net.version == ip.version):
                    return host
            return peer
        if not forwarded or not self.trusted(peer):
            return peer
        if self.trust_all:
            return forwarded[0]
        for host in reversed(forwarded):  # the nearest hop that is not one of our proxies
            if not self.trusted(host):
                return host
        return forwarded[0]


class LoginThrottle:
    """ASGI middleware on POST .../login: too many failures from one address -> 429 for a
    while; the address is handed to the Authenticator (LOGIN_ADDRESS) for its own counts."""

    def __init__(self, app, throttle: Throttle | None = None,
                 address: ClientAddress | None = None):
        self.app = app
        self.throttle = throttle or Throttle(LOGIN_FAILURES_PER_ADDRESS, LOGIN_WINDOW_S)
        self.address = address or ClientAddress()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or \
                not scope.get("path", "").rstrip("/").endswith("/login"):
            return await self.app(scope, receive, send)
        address = self.address(scope)
        if self.throttle.blocked(address):
            body = b'{"detail": "Too many failed logins from this address; wait a minute."}'
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"retry-after", str(int(LOGIN_WINDOW_S)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        status = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
        token = LOGIN_ADDRESS.set(address)
        try:
            await self.app(scope, receive, watch)
        finally:
            LOGIN_ADDRESS.reset(token)
        if status.get("code") in (400, 401):
            self.throttle.failed(address)
