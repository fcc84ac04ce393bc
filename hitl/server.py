"""The app's one HTTP server, open before Gradio is even imported.

Importing Gradio costs ~2 s of a ~3 s start-up, and the REST API and a "starting…" page need
none of it. So the port opens first on a small app (hitl/starting.py), and when the page is
built, Gradio's app takes over the same server and port: no moment without a listener, no
request refused. `Blocks.launch` still does all of its own work (logins, share links, Sign in
with Hugging Face, the queue, max_file_size): `gradio_launches_here` only hands it this server
where it would start its own (gradio.http_server.start_server, pinned in requirements.txt).
This module imports no Gradio.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

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

    def __init__(self, app, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.switch = Switch(app)
        self.rest_api = None  # the REST app it serves before and after Gradio (hitl/starting.py)
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

    def start(self) -> Server:
        """Bind here, so that a busy port is an OSError now; then serve in a thread."""
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

    def close(self) -> None:
        """Stop serving and free the port (Gradio's Blocks.close and Ctrl-C call this too)."""
        self._uvicorn.should_exit = True
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()

    @contextlib.contextmanager
    def gradio_launches_here(self) -> Iterator[None]:
        """While Blocks.launch runs, its server start plugs Gradio's app into this server.
        Where launch wants another port or https (SSR puts Python behind Node on an internal
        port), this server steps aside and Gradio starts its own, as without it."""
        from gradio import http_server
        original = http_server.start_server

        def start_server(app, server_name=None, server_port=None, ssl_keyfile=None,
                         **kwargs):
            if server_port != self.port or ssl_keyfile is not None:
                self.close()
                return original(app, server_name, server_port, ssl_keyfile=ssl_keyfile,
                                **kwargs)
            self.switch.plug(app)
            return server_name or self.host, self.port, self.url, self

        http_server.start_server = start_server
        try:
            yield
        finally:
            http_server.start_server = original
