"""One test per use of Gradio's internals (hitl/gradio_compat.py): a Gradio upgrade that
moves one of them fails here, by name, before anything subtler breaks."""
from __future__ import annotations

import inspect

import gradio as gr
import httpx
import pytest
from gradio import http_server
from gradio_client import Client

from hitl import gradio_compat
from hitl.app_build import build
from tests.conftest import free_port, make_settings
from tests.page_protocol import PageSession

ANN = ("ann", "pw")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """One launched app with a login, built as app.py builds it."""
    settings = make_settings(tmp_path_factory.mktemp("compat"), task="classification",
                             demo_count=12, train=False, auth=[(*ANN, "admin")])
    made = build(settings)
    try:
        made.launch(quiet=True)
        yield made
    finally:
        made.close()


def test_the_installed_gradio_is_the_one_the_uses_were_checked_on():
    assert gr.__version__ == gradio_compat.CHECKED_ON
    assert gradio_compat.version_note() is None


def test_launch_on_plugs_gradio_into_the_open_server_and_puts_start_server_back(app):
    params = list(inspect.signature(http_server.start_server).parameters)
    assert params[:4] == ["app", "server_name", "server_port", "ssl_keyfile"]
    assert app.url == app.server.url  # Gradio's app runs on hitl's server and port
    assert app.server.switch.app is app.blocks.server_app
    assert http_server.start_server.__module__ == "gradio.http_server"  # not left patched


def test_forget_call_session_drops_a_finished_session(app):
    http = httpx.Client(base_url=app.url, timeout=60)
    assert http.post("login", data=dict(zip(("username", "password"), ANN))).status_code == 200
    client = Client(app.url, auth=ANN, verbose=False)
    assert client.predict(api_name="/classes")
    holder = app.blocks.state_holder
    assert client.session_hash in holder.session_data
    assert gradio_compat.forget_call_session(app.blocks, client.session_hash)
    assert client.session_hash not in holder.session_data
    assert client.session_hash not in app.blocks._queue.pending_messages_per_session


def test_login_cookie_user_reads_gradio_login_cookie(app):
    http = httpx.Client(base_url=app.url, timeout=60)
    gradio_app = app.server.switch.app
    assert gradio_compat.login_cookie_user(gradio_app, http.cookies) is None
    assert http.post("login", data=dict(zip(("username", "password"), ANN))).status_code == 200
    assert gradio_compat.login_cookie_user(gradio_app, http.cookies) == "ann"
    assert gradio_compat.login_cookie_user(object(), http.cookies) is None  # not Gradio's


def test_forget_logins_drops_the_cookies_of_removed_users(app):
    http = httpx.Client(base_url=app.url, timeout=60)
    assert http.post("login", data=dict(zip(("username", "password"), ANN))).status_code == 200
    gradio_app = app.server.switch.app
    gradio_compat.forget_logins(gradio_app, {"ann"})
    assert gradio_compat.login_cookie_user(gradio_app, http.cookies) == "ann"  # kept
    gradio_compat.forget_logins(gradio_app, {"bob"})
    assert gradio_compat.login_cookie_user(gradio_app, http.cookies) is None
    assert http.get("config").status_code == 401  # Gradio itself no longer knows the cookie


def test_page_request_names_the_caller_of_a_server_function(app):
    page = PageSession(app.url, auth=ANN)
    board = next(cid for cid, name in page.server_functions if name == "cls_take")
    item = page.call_server(board, "cls_take", {"strategy": "sequential"})["items"][0]
    assert app.session.store.lease_holder(item["image_id"]) == "ann"  # not anonymous
    page.close()


def test_with_request_hands_the_handler_its_request_where_keyword_only_gets_none():
    def seen(value, request=None):
        return f"{value}:{type(request).__name__}"

    def keyword_only(*values, request: gr.Request = None):
        return f"{values[0]}:{type(request).__name__}"

    with gr.Blocks() as demo:
        box, out = gr.Textbox(), gr.Textbox()
        gr.Button().click(gradio_compat.with_request(seen, 1), box, out, api_name="wrapped")
        gr.Button().click(keyword_only, box, out, api_name="plain")
    port = free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert client.predict("x", api_name="/wrapped") == "x:Request"
        # Gradio's behaviour the wrapper exists for; when this fails, with_request can go
        assert client.predict("x", api_name="/plain") == "x:NoneType"
    finally:
        demo.close()
