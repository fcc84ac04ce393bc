"""Flat memory under Gradio's raw HTTP API (`POST /gradio_api/call/<name>`, then `GET
/gradio_api/call/<name>/<event_id>`).

Without a session hash of its own, each raw call runs in a new session named after its event id
(gradio/queueing.py: an Event's session_hash defaults to its id). Gradio keeps every session's
state (gradio/state_holder.py: a SessionState with a copy of the config of every component of
the page, a few hundred KB for hitl's page) up to `state_session_capacity` = 10,000 sessions,
plus its message queue and event-id set: server memory grew ~200 MB per 600 raw calls, and
past 10,000 calls the oldest sessions — open pages' gr.State included — were evicted.
gradio_client sends one session hash for all its calls, so it never grew.

This ASGI middleware forgets such a one-call session once its result stream has ended and the
event is complete. A session a client named itself (a page, gradio_client) is never touched:
its hash is not an event id. A result that is never read (a POST without its GET) is
forgotten after a while, so such calls cannot grow memory either (issue 18: 960 -> 1,120 MB over
600 unread calls).
"""
from __future__ import annotations

import re
import time

from hitl.gradio_compat import forget_call_session

CALL_PATH = re.compile(r"^(?:.*)/gradio_api/call/(?:v2/)?[^/]+/?$")
EVENT_ID = re.compile(rb'"event_id"\s*:\s*"([0-9A-Za-z_-]{1,64})"')
RESULT_PATH = re.compile(r"^(?:.*)/gradio_api/call/(?:v2/)?[^/]+/(?P<event_id>[^/]+)/?$")


class ForgetRawCalls:
    """After a raw call's result stream ends, forget the session it was run in (the queue may
    still be finishing its bookkeeping then: such ids are retried after later requests and on
    a short timer). A result nobody reads is forgotten too, once it is UNREAD_MAX_AGE_S old or
    when more than UNREAD_MAX are waiting, oldest first."""

    RETRY_SECONDS = 0.5
    UNREAD_MAX, UNREAD_MAX_AGE_S = 100, 60.0

    def __init__(self, app, blocks):
        self.app, self.blocks = app, blocks
        self.waiting: set[str] = set()
        self.unread: dict[str, float] = {}  # event id -> when it was posted, oldest first
        self.retry_at: float | None = None  # when the sweep timer fires next (None: none)

    async def __call__(self, scope, receive, send):
        posted = scope["type"] == "http" and scope.get("method") == "POST" and \
            CALL_PATH.match(scope.get("path", ""))
        await self.app(scope, receive, self._watch(send) if posted else send)
        if scope["type"] == "http" and scope.get("method") == "GET":
            match = RESULT_PATH.match(scope.get("path", ""))
            if match:
                self.unread.pop(match["event_id"], None)
                self.waiting.add(match["event_id"])
        if self.waiting or self.unread:
            self.sweep()

    def _watch(self, send):
        """The event id of a raw call, read from its answer ({"event_id": ...})."""
        async def watched(message):
            if message["type"] == "http.response.body":
                found = EVENT_ID.search(message.get("body") or b"")
                if found:
                    self.unread[found[1].decode()] = time.monotonic()
            await send(message)
        return watched

    def sweep(self, from_timer: bool = False) -> None:
        if from_timer:
            self.retry_at = None
        old, extra = time.monotonic() - self.UNREAD_MAX_AGE_S, len(self.unread) - self.UNREAD_MAX
        for i, (event_id, posted) in enumerate(list(self.unread.items())):
            if posted > old and i >= extra:
                break
            if forget_call_session(self.blocks, event_id, unread=True):  # else still running
                del self.unread[event_id]
        self.waiting = {eid for eid in self.waiting
                        if not forget_call_session(self.blocks, eid)}
        if self.waiting or self.unread:
            # a finished call is retried after RETRY_SECONDS, not the unread results' slower timer
            delay = self.RETRY_SECONDS if self.waiting else self.UNREAD_MAX_AGE_S / 4
            due = time.monotonic() + delay
            if self.retry_at is None or due < self.retry_at:
                import asyncio
                self.retry_at = due
                asyncio.get_running_loop().call_later(delay, self.sweep, True)
