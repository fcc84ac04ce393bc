"""Failed logins, counted per user name and per address, so guessing passwords is slow."""

from __future__ import annotations

import collections
import threading
import time

LOGIN_WINDOW_S = 60.0
LOGIN_FAILURES_PER_USER = 5
LOGIN_FAILURES_PER_ADDRESS = 10


class Throttle:
    """Failures per key (a user name, an address) in a sliding window: at `limit` the key is
    blocked until its oldest failure is `window_s` old."""

    def __init__(self, limit: int, window_s: float):
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def _recent(self, key: str):
        times = self._failures[key]
        while times and time.monotonic() - times[0] > self.window_s:
            times.popleft()
        return times

    def blocked(self, key: str) -> bool:
        with self._lock:
            return len(self._recent(key)) >= self.limit

    def failed(self, key: str) -> None:
        with self._lock:
            times = self._recent(key)
            times.append(time.monotonic())
            if len(self._failures) > 10_000:  # never grows without bound under a spray
                for stale in [k for k, v in self._failures.items() if not v][:5_000]:
                    del self._failures[stale]


class LoginThrottle:
    """ASGI middleware: too many failed logins from one address -> 429 for a while.

    Behind the share tunnel every request comes from the local tunnel client, so for a
    loopback peer the first X-Forwarded-For address is the one counted."""

    def __init__(self, app, throttle: Throttle | None = None):
        self.app = app
        self.throttle = throttle or Throttle(LOGIN_FAILURES_PER_ADDRESS, LOGIN_WINDOW_S)

    @staticmethod
    def address(scope) -> str:
        host = (scope.get("client") or ("?", 0))[0]
        if host in ("127.0.0.1", "::1"):
            for name, value in scope.get("headers") or []:
                if name == b"x-forwarded-for" and value:
                    return value.decode("latin-1").split(",")[0].strip()
        return host

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or \
                not scope.get("path", "").rstrip("/").endswith("/login"):
            return await self.app(scope, receive, send)
        address = self.address(scope)
        if self.throttle.blocked(address):
            body = b'{"detail": "Too many failed logins from this address; wait a minute."}'
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        status = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
        await self.app(scope, receive, watch)
        if status.get("code") in (400, 401):
            self.throttle.failed(address)
