"""Request bodies with a ceiling per route, enforced before they are read.

A route that reads its body reads all of it: a 300 MB `PUT /api/v1/images/{id}/mask` was
buffered (+593 MB of server memory) before the mask decoder could refuse it. This ASGI
middleware answers 413 to a `Content-Length` over the route's cap without reading a byte, and
cuts a body sent without one (chunked) as soon as it passes the cap: the route's read raises
a 413 HTTPException, which FastAPI and Starlette answer as any refusal, and what was read is
dropped.
"""
from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException

from hitl import mask_png

KB, MB = 1024, 1024 * 1024
MASK_PUT = re.compile(r"/api/v1/images/[^/]+/mask/?$")
REST_CAP = 1 * MB  # JSON bodies of the REST API: a page of ids, a label
MASK_CAP = mask_png.MAX_BYTES  # PUT /api/v1/images/{id}/mask: the PNG itself
LOGIN_CAP = 64 * KB  # a user name and a password
# Gradio's routes: the painter's edit (a data URL of at most 16 MB, as base64) or a mask
# through gr.api's /annotate_mask; bigger masks go through REST's PUT.
GRADIO_CAP = 32 * MB


def cap_for(method: str, path: str) -> int:
    """The most bytes a request to `path` may send."""
    if method == "PUT" and MASK_PUT.search(path):
        return MASK_CAP
    if "/api/v1/" in path or path.endswith("/api/v1"):
        return REST_CAP
    if path.rstrip("/").endswith("/login"):
        return LOGIN_CAP
    return GRADIO_CAP


def too_large(cap: int) -> str:
    return f"The request body is larger than this route takes ({cap // KB:,} KB at most)."


class BodyTooLarge(HTTPException):
    def __init__(self, cap: int):
        super().__init__(413, too_large(cap))


class BodyLimit:
    """ASGI middleware: each request's body within `cap_for` its route."""

    def __init__(self, app, cap=cap_for):
        self.app, self.cap = app, cap

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cap = self.cap(scope.get("method", "GET"), scope.get("path", ""))
        length = next((v for k, v in scope.get("headers") or [] if k == b"content-length"),
                      None)
        if length is not None and (not length.isdigit() or int(length) > cap):
            return await refuse(send, cap)
        received = 0

        async def capped():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise BodyTooLarge(cap)
            return message
        await self.app(scope, capped, send)


async def refuse(send, cap: int) -> None:
    """413 with a one-line JSON message, the body left unread (the server closes the
    connection afterwards)."""
    body = json.dumps({"error": too_large(cap)}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
