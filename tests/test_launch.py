"""The real entry point: `python app.py` on the real images, then driven over HTTP."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gradio_client import Client

from hitl.starting import TITLE
from tests.conftest import TEST_DATA, free_port

ROOT = Path(__file__).resolve().parents[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"app exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("app did not answer")


def test_app_launches_on_hymenoptera(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--images", str(TEST_DATA / "hymenoptera"), "--session",
         str(tmp_path / "s"), "--port", str(port), "--no-pretrained", "--backbone", "test_vit",
         "--classes", "ants,bees"], cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(url + "config", proc)  # 503 while the page is built (hitl/starting.py)
        client = Client(url, verbose=False)
        view = client.predict("sequential", None, api_name="/next_image")
        assert view["image_id"] == 1 and view["filename"].endswith(".jpg")
        assert client.predict(1, "ants", api_name="/annotate")["ok"]
        stats = client.predict(10, api_name="/stats")
        assert stats["total"] == 10 and stats["per_class"] == {"ants": 1, "bees": 0}
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "hitl" in page
    finally:
        proc.terminate()
        proc.wait(30)


def small_app(tmp_path, port: int) -> subprocess.Popen:
    """app.py on 12 demo images with the trainer off: the quick launch the start-up tests
    watch from its first instant (stderr piped for their failure messages)."""
    return subprocess.Popen(
        [sys.executable, "app.py", "--session", str(tmp_path / "s"), "--port", str(port),
         "--no-pretrained", "--backbone", "test_vit", "--no-train", "--demo-count", "12",
         "--task", "classification"], cwd=ROOT, stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL, text=True)


def test_rest_and_a_starting_page_answer_while_gradio_loads(tmp_path):
    """The port opens before Gradio is imported: the first page is the starting page, the REST
    API already answers then, and the same address becomes the app."""
    port = free_port()
    proc = small_app(tmp_path, port)
    url = f"http://127.0.0.1:{port}/"
    pages, rest_while_starting = [], None
    try:
        end = time.time() + 180
        while time.time() < end and not (pages and TITLE not in pages[-1]):
            assert proc.poll() is None, proc.stderr.read()
            try:
                pages.append(urllib.request.urlopen(url, timeout=5).read().decode())
            except OSError:
                time.sleep(0.02)
                continue
            if TITLE in pages[-1] and rest_while_starting is None:
                rest_while_starting = urllib.request.urlopen(url + "api/v1/classes",
                                                             timeout=5).status
        assert TITLE in pages[0]  # Gradio takes ~2 s to import: the starting page came first
        assert rest_while_starting == 200
        assert TITLE not in pages[-1] and "gradio" in pages[-1]
        with urllib.request.urlopen(url + "config", timeout=10) as config:
            assert config.status == 200
    finally:
        proc.terminate()
        proc.wait(30)


def test_ctrl_c_while_gradio_loads_keeps_labels_and_prints_no_traceback(tmp_path):
    """The REST API answers before Gradio is imported, so a label can be stored and Ctrl-C
    pressed while the page is still loading: the label stays, the app says it stopped."""
    import json
    import signal

    from hitl.store import Store
    port = free_port()
    proc = small_app(tmp_path, port)
    api = f"http://127.0.0.1:{port}/api/v1/"
    try:
        wait_http(api + "classes", proc)
        with urllib.request.urlopen(api + "next?strategy=sequential", timeout=10) as response:
            image_id = json.load(response)["image_id"]
        put = urllib.request.Request(f"{api}images/{image_id}/label", method="PUT",
                                     data=json.dumps({"label": "circle"}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(put, timeout=10) as response:
            assert json.load(response)["ok"]
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        err = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait(30)
    # 130: stopped while Gradio loaded; 0: Gradio was up already and closed its server
    assert code in (0, 130) and "Traceback" not in err and "leaked" not in err, (code, err)
    store = Store(tmp_path / "s" / "hitl.duckdb")
    assert store.label_of(image_id) == store.class_by_name("circle").id
    store.close()
