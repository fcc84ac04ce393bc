"""The app's one HTTP server, open before Gradio is even imported.

Importing Gradio costs ~2 s of a ~3 s start-up, and the REST API and a "starting…" page need
none of it. So the port opens first on a small app (hitl/starting.py), and when the page is
built, Gradio's app takes over the same server and port: no moment without a listener, no
request refused. `Blocks.launch` still does all of its own work (logins, share links, Sign in
with Hugging Face, the queue, max_file_size): hitl.gradio_compat.launch_on only hands it this
server where it would start its own. This module imports no Gradio.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import uvicorn

from hitl.gradio_compat import login_cookie_user

START_TIMEOUT = 10.0  # seconds for uvicorn to start on the bound socket


class Switch:
    """An ASGI app that forwards every request to the app plugged in now."""

    def __init__(self, app) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lifespans = contextlib.AsyncExitStack()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        """The server's own start and stop: a plugged-in app's lifespan ends with it."""
        await receive()  # lifespan.startup
        self.loop = asyncio.get_running_loop()
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await self._lifespans.aclose()
        await send({"type": "lifespan.shutdown.complete"})

    def plug(self, app, timeout: float = 30.0) -> None:
        """Start `app`'s lifespan in the server's loop (as a server starting it would), then
        route every new request to it. Called from another thread."""
        async def enter() -> None:
            context = getattr(getattr(app, "router", None), "lifespan_context", None)
            if context is not None:
                await self._lifespans.enter_async_context(context(app))
        asyncio.run_coroutine_threadsafe(enter(), self.loop).result(timeout)
        self.app = app


class Server:
    """uvicorn on host:port in a daemon thread, serving a Switch."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.switch = Switch(None)
        self.rest_api = None  # the REST app it serves before and after Gradio (see start)
        # proxy_headers off: uvicorn would take X-Forwarded-For from any loopback peer as the
        # client; hitl/throttle.py reads it only from proxies the owner names
        self._uvicorn = uvicorn.Server(uvicorn.Config(self.switch, log_level="warning",
                                                      lifespan="on", proxy_headers=False))
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The local address, written as Gradio writes it (0.0.0.0 -> localhost)."""
        return f"http://{'localhost' if self.host == '0.0.0.0' else self.host}:{self.port}/"

    def start(self, app, rest_api=None) -> Server:
        """Serve `app` (hitl/starting.py: `rest_api`, kept for Gradio's app to mount, and a
        starting page). Bind here, so that a busy port is an OSError now; then serve in a
        thread."""
        self.switch.app, self.rest_api = app, rest_api
        bind = self.host[1:-1] if self.host.startswith("[") else self.host
        family, kind, proto, _, address = socket.getaddrinfo(
            bind, self.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot listen on {self.host}:{self.port}: the port is in use or "
                          f"the address is not this machine's ({exc.strerror}); choose another "
                          "--port or --host") from None
        self._socket = sock
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [sock]},
                                        name="hitl-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise OSError(f"the server on {self.host}:{self.port} did not start")
            time.sleep(0.002)
        return self

    def login_user(self, request) -> str | None:
        """The user Gradio's login cookie names, once Gradio's app is plugged in (the REST
        API's gate asks; before Gradio there is no login to read)."""
        return login_cookie_user(self.switch.app, request.cookies)

    def close(self) -> None:
        """Stop serving and free the port (Gradio's Blocks.close and Ctrl-C call this too)."""
        self._uvicorn.should_exit = True
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
