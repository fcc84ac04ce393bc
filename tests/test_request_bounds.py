"""Bounded requests on the real server: bodies over a route's cap are refused before they are
read (or cut, when sent without a length), unread raw gr.api results expire, ids past int64
and refused page values answer in one line without a traceback."""
from __future__ import annotations

import json
import logging
import socket
from urllib.parse import urlparse

import httpx
import pytest

from hitl import bounded
from hitl.raw_calls import ForgetRawCalls
from tests.conftest import wait_for
from tests.page_protocol import PageSession


def raw_request(url: str, head: str, body: bytes = b"") -> bytes:
    """Send a request head (and some body) on a socket; return what the server answers."""
    where = urlparse(url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b"}" in answer:
                break
        return answer


@pytest.fixture
def app(app_factory):
    return app_factory(task="segmentation", train=False, demo_count=4)


def test_a_declared_length_over_the_cap_is_refused_before_reading(app):
    image_id = app.session.store.readable_image_ids()[0]
    host = urlparse(app.url).netloc
    # 300 MB announced, 10 bytes sent: the answer comes without the server waiting for more
    answer = raw_request(app.url, f"PUT /api/v1/images/{image_id}/mask HTTP/1.1\r\n"
                                  f"Host: {host}\r\nContent-Length: {300 * 1024 * 1024}\r\n",
                         b"\x89PNG12345")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"larger than this route takes" in answer
    for path in ("/gradio_api/queue/join", "/login"):
        answer = raw_request(app.url, f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
                                      f"Content-Length: {bounded.GRADIO_CAP + 1}\r\n")
        assert answer.startswith(b"HTTP/1.1 413"), (path, answer[:200])
    with httpx.Client(base_url=app.url, timeout=60) as http:
        big = http.post("api/v1/review/accept", content=b" " * (bounded.REST_CAP + 1),
                        headers={"content-type": "application/json"})
        assert big.status_code == 413 and "larger" in big.json()["error"]


def test_a_body_without_a_length_is_cut_at_the_cap(app):
    image_id = app.session.store.readable_image_ids()[0]
    sent = {"bytes": 0}

    def chunks(total: int, size: int = 256 * 1024):
        while sent["bytes"] < total:
            sent["bytes"] += size
            yield b"\0" * size
    with httpx.Client(base_url=app.url, timeout=120) as http:
        cut = http.post("api/v1/review/accept", content=chunks(8 * bounded.REST_CAP),
                        headers={"content-type": "application/json"})
        assert cut.status_code == 413, cut.text
        assert cut.json() == {"error": bounded.too_large(bounded.REST_CAP)}
        sent["bytes"] = 0
        cut = http.put(f"api/v1/images/{image_id}/mask",
                       content=chunks(bounded.MASK_CAP + 4 * 1024 * 1024))
        assert cut.status_code == 413, cut.text
    assert app.session.store.counts()["masks"] == 0


def test_ids_past_int64_are_refused_as_bad_input(app_factory, capfd):
    app = app_factory(task="classification", train=False, demo_count=4)
    big = 2**63
    with httpx.Client(base_url=app.url + "api/v1", timeout=60) as api:
        for method, path, body in [("GET", f"/images/{big}", None),
                                   ("GET", f"/images/{-big - 1}/file", None),
                                   ("PUT", f"/images/{big}/label", {"label": "x"}),
                                   ("POST", f"/images/{10**30}/skip", None),
                                   ("POST", "/review/accept",
                                    {"image_ids": [big], "class_name": "circle"}),
                                   ("POST", "/review/accept",
                                    {"image_ids": [1], "class_name": "circle",
                                     "relabels": {str(big): "square"}})]:
            answer = api.request(method, path, json=body)
            assert answer.status_code in (400, 404, 422), (path, answer.status_code, answer.text)
            assert "\n" not in answer.json()["error"]
        assert api.get(f"/images/{big - 1}").status_code == 404  # in range: no such image
    page = PageSession(app.url)  # the boards' server functions too
    for component_id, name in page.server_functions:
        answer = page.call_server(component_id, name, {"image_id": big, "op": "save",
                                                       "label": "circle", "step": 1})
        assert "status" not in answer, (name, answer)  # an answer, not an HTTP 500
    log = capfd.readouterr()
    assert "Traceback" not in log.out + log.err


def test_refused_page_values_log_one_line_without_a_traceback(app, capfd, caplog):
    page = PageSession(app.url)
    values = {"dropdown": "not-a-choice", "slider": 10**9, "number": 10**30,
              "radio": "not-a-choice"}
    tried = 0
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="hitl.page"):
        for event in page.events:
            kinds = [page.components[i]["type"] for i in event["inputs"]]
            if not any(k in values for k in kinds):
                continue
            answer = page.call(event["id"], [values.get(k) for k in kinds])
            assert answer["success"] is False, answer
            tried += 1
    assert tried >= 5, "the page has dropdowns, sliders and numbers"
    log = capfd.readouterr()
    assert "Traceback" not in log.out + log.err
    refused = [r for r in caplog.records if r.name == "hitl.page"]
    assert len(refused) == tried and all("\n" not in r.getMessage() for r in refused)


def post_unread(http: httpx.Client, n: int) -> None:
    """Raw gr.api calls whose results are never read."""
    for _ in range(n):
        answer = http.post("gradio_api/call/classes", json={"data": []})
        assert answer.status_code == 200 and "event_id" in answer.json()


def test_unread_raw_results_expire_by_count_and_age(app_factory, monkeypatch):
    monkeypatch.setattr(ForgetRawCalls, "UNREAD_MAX", 20)
    monkeypatch.setattr(ForgetRawCalls, "UNREAD_MAX_AGE_S", 2.0)
    app = app_factory(task="classification", train=False, demo_count=4)
    holder, queue = app.demo.state_holder, app.demo._queue
    with httpx.Client(base_url=app.url, timeout=60) as http:
        http.get("config")
        before = len(holder.session_data)
        post_unread(http, 60)
        # by count: at most UNREAD_MAX are kept (plus the few still running)
        wait_for(lambda: len(holder.session_data) <= before + 20 + 2, timeout=20)
        assert len(queue.pending_messages_per_session) <= before + 20 + 2
        # by age: the rest go within a sweep once they are old
        wait_for(lambda: http.get("config") and len(holder.session_data) <= before, timeout=20)
        assert len(queue.pending_event_ids_session) <= before
        # a result that is read still arrives
        event_id = http.post("gradio_api/call/classes", json={"data": []}).json()["event_id"]
        text = http.get(f"gradio_api/call/classes/{event_id}").text
    assert json.loads(text.strip().splitlines()[-1].removeprefix("data: "))[0]
