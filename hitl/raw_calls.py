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
its hash is not an event id.
"""
from __future__ import annotations

import re

from hitl.gradio_compat import forget_call_session

RESULT_PATH = re.compile(r"^(?:.*)/gradio_api/call/(?:v2/)?[^/]+/(?P<event_id>[^/]+)/?$")


class ForgetRawCalls:
    """After a raw call's result stream ends, forget the session it was run in (the queue may
    still be finishing its bookkeeping then: such ids are retried after later requests and on
    a short timer)."""

    RETRY_SECONDS = 0.5

    def __init__(self, app, blocks):
        self.app, self.blocks = app, blocks
        self.waiting: set[str] = set()
        self.retry_scheduled = False

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)
        if scope["type"] == "http" and scope.get("method") == "GET":
            match = RESULT_PATH.match(scope.get("path", ""))
            if match:
                self.waiting.add(match["event_id"])
        if self.waiting:
            self.sweep()

    def sweep(self, from_timer: bool = False) -> None:
        if from_timer:
            self.retry_scheduled = False
        self.waiting = {eid for eid in self.waiting
                        if not forget_call_session(self.blocks, eid)}
        if self.waiting and not self.retry_scheduled:
            import asyncio
            self.retry_scheduled = True
            asyncio.get_running_loop().call_later(self.RETRY_SECONDS, self.sweep, True)
