"""The port opens before Gradio (hitl/starting.py) and Gradio's app takes the same server over
(hitl/server.py): REST and a starting page first, then the real page, logins and all. Each
app is made by hitl/app_build.py's build(), as app.py makes it."""
from __future__ import annotations

import socket

import httpx
import pytest

from hitl.app_build import CannotStart, build
from hitl.starting import TITLE
from tests.conftest import make_settings


def test_rest_and_a_starting_page_answer_before_the_page_then_gradio_takes_over(
        app_factory):
    app = app_factory(task="classification", classes=["cat", "dog"], train=False,
                      launch=False)
    server = app.server
    http = httpx.Client(base_url=server.url, timeout=30)
    page = http.get("/")  # built, not launched yet: the starting page
    assert page.status_code == 200 and TITLE in page.text
    config = http.get("config")
    assert config.status_code == 503 and config.headers["retry-after"] == "1"
    assert http.get("api/v1/classes").json() == ["cat", "dog"]

    url = app.launch(quiet=True)
    assert url == server.url  # the same server and port: nothing reopened
    assert http.get("config").status_code == 200
    page = http.get("/")
    assert page.status_code == 200 and TITLE not in page.text and "gradio" in page.text
    assert http.get("api/v1/classes").json() == ["cat", "dog"]
    # the page's Gradio API runs on its queue (started by Gradio's own start-up)
    from gradio_client import Client
    stats = Client(server.url, verbose=False).predict(10, api_name="/stats")
    assert stats["total"] == app.session.store.image_count()
    app.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "api/v1/classes", timeout=5)


def test_before_gradio_the_rest_api_wants_a_login_and_the_cookie_works_after(app_factory):
    app = app_factory(task="classification", classes=["cat"], train=False,
                      auth=[("ann", "pw", "admin")], launch=False)
    http = httpx.Client(base_url=app.server.url, timeout=30)
    assert http.get("api/v1/classes").status_code == 401
    app.launch(quiet=True)
    assert http.get("config").status_code == 401  # Gradio's login now guards the page
    assert http.post("login", data={"username": "ann", "password": "pw"}).status_code == 200
    assert http.get("api/v1/classes").json() == ["cat"]


def test_a_busy_port_is_one_clear_error_and_the_session_is_closed(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        settings = make_settings(tmp_path, port=holder.getsockname()[1], train=False)
        with pytest.raises(CannotStart, match="port is in use"):
            build(settings)
    from hitl.store import Store
    Store(settings.db_path).close()  # build let the database go: it opens again
