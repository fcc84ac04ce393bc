"""The port opens before Gradio (hitl/starting.py) and Gradio's app takes the same server over
(hitl/server.py): REST and a starting page first, then the real page, logins and all."""
from __future__ import annotations

import socket

import httpx
import pytest

from hitl.service import Service
from hitl.starting import TITLE, open_port


def test_rest_and_a_starting_page_answer_before_the_page_then_gradio_takes_over(
        session_factory):
    from hitl.ui.app import build_app, launch
    session = session_factory(task="classification", classes=["cat", "dog"], train=False)
    service = Service(session)
    server = open_port(session, service)
    demo = None
    try:
        http = httpx.Client(base_url=server.url, timeout=30)
        page = http.get("/")
        assert page.status_code == 200 and TITLE in page.text
        config = http.get("config")
        assert config.status_code == 503 and config.headers["retry-after"] == "1"
        assert http.get("api/v1/classes").json() == ["cat", "dog"]

        demo = build_app(session, service=service)
        _, url, _ = launch(demo, session, server=server, prevent_thread_lock=True, quiet=True)
        assert url == server.url  # the same server and port: nothing reopened
        assert http.get("config").status_code == 200
        page = http.get("/")
        assert page.status_code == 200 and TITLE not in page.text and "gradio" in page.text
        assert http.get("api/v1/classes").json() == ["cat", "dog"]
        # the page's Gradio API runs on its queue (started by Gradio's own start-up)
        from gradio_client import Client
        stats = Client(server.url, verbose=False).predict(10, api_name="/stats")
        assert stats["total"] == session.store.image_count()
    finally:
        (demo.close if demo is not None else server.close)()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "api/v1/classes", timeout=5)


def test_before_gradio_the_rest_api_wants_a_login_and_the_cookie_works_after(
        session_factory):
    from hitl.ui.app import build_app, launch
    session = session_factory(task="classification", classes=["cat"], train=False,
                              auth=[("ann", "pw", "admin")])
    service = Service(session)
    server = open_port(session, service)
    demo = build_app(session, service=service)
    try:
        http = httpx.Client(base_url=server.url, timeout=30)
        assert http.get("api/v1/classes").status_code == 401
        launch(demo, session, server=server, prevent_thread_lock=True, quiet=True)
        assert http.get("config").status_code == 401  # Gradio's login now guards the page
        assert http.post("login", data={"username": "ann", "password": "pw"}).status_code == 200
        assert http.get("api/v1/classes").json() == ["cat"]
    finally:
        demo.close()


def test_a_busy_port_is_one_clear_error(session_factory):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        session = session_factory(port=holder.getsockname()[1], train=False)
        with pytest.raises(OSError, match="port is in use"):
            open_port(session, Service(session))
