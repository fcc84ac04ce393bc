"""The real entry point: `python app.py` on the real images, then driven over HTTP."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
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


def put_label(api: str, image_id: int, label: str) -> dict:
    put = urllib.request.Request(f"{api}images/{image_id}/label", method="PUT",
                                 data=json.dumps({"label": label}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(put, timeout=30) as response:
        return json.load(response)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def stopped_by(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    """Send `sig`; the exit code and stderr once the app has gone (killed if it hangs)."""
    try:
        proc.send_signal(sig)
        return proc.wait(60), proc.stderr.read()
    finally:
        proc.kill()
        proc.wait(30)


def assert_stopped(code: int, err: str) -> None:
    """A graceful stop: exit code 0, "hitl: stopped" last, no traceback."""
    assert code == 0 and err.rstrip().splitlines()[-1] == "hitl: stopped", (code, err)
    assert "Traceback" not in err and "leaked" not in err, err


def label_name(session_dir: Path, image_id: int) -> str | None:
    """The class name an image is labeled with in a stopped app's session, or None."""
    from hitl.store import Store
    store = Store(session_dir / "hitl.duckdb")
    try:
        label = store.label_of(image_id)
        return None if label is None else next(c.name for c in store.classes() if c.id == label)
    finally:
        store.close()


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


def small_app(tmp_path, port: int, *flags: str, python: tuple[str, ...] = ("app.py",)
              ) -> subprocess.Popen:
    """app.py on 12 demo images with the trainer off (unless `flags` say "--train"): the
    quick launch the start-up tests watch from its first instant (stderr piped for their
    failure messages). SIGINT is let through even when the tests run from a script (a
    non-interactive shell starts background jobs with it ignored)."""
    train = [] if "--train" in flags else ["--no-train"]
    return subprocess.Popen(
        [sys.executable, *python, "--session", str(tmp_path / "s"), "--port", str(port),
         "--no-pretrained", "--backbone", "test_vit", *train, "--demo-count", "12",
         "--task", "classification", *(f for f in flags if f != "--train")], cwd=ROOT,
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


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
    port = free_port()
    proc = small_app(tmp_path, port)
    api = f"http://127.0.0.1:{port}/api/v1/"
    try:
        wait_http(api + "classes", proc)
        image_id = get_json(api + "next?strategy=sequential")["image_id"]
        assert put_label(api, image_id, "circle")["ok"]
    finally:
        code, err = stopped_by(proc, signal.SIGINT)
    assert_stopped(code, err)  # while Gradio loaded or once it was up: the same graceful stop
    assert label_name(tmp_path / "s", image_id) == "circle"


def test_sigterm_once_up_finishes_checkpoints_says_stopped_and_exits_0(tmp_path):
    """What Docker and Spaces send: the server stops taking requests, the trainer saves the
    model it has (not only the one it saved up to a minute ago), one line, exit 0."""
    from hitl.model_file import read_state
    port = free_port()
    proc = small_app(tmp_path, port, "--train")
    url, api = f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/api/v1/"
    try:
        wait_http(url + "config", proc)  # 503 while loading, then 200: Gradio is up
        for image_id, label in ((1, "circle"), (2, "square")):
            assert put_label(api, image_id, label)["ok"]
            wait_for_model = time.time() + 120
            while (get_json(api + "stats")["model_version"] or 0) < image_id:
                assert time.time() < wait_for_model, "the trainer made no model"
                time.sleep(0.2)
        version = get_json(api + "stats")["model_version"]
    finally:
        code, err = stopped_by(proc, signal.SIGTERM)
    assert_stopped(code, err)
    saved = read_state(tmp_path / "s" / "checkpoints" / "model_state.pt")
    assert saved["model_version"] >= version  # the model of both labels, saved on the way out
    assert label_name(tmp_path / "s", 2) == "square"


def test_sigterm_while_gradio_loads_stops_too(tmp_path):
    port = free_port()
    proc = small_app(tmp_path, port)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v1/classes", proc)
    finally:
        code, err = stopped_by(proc, signal.SIGTERM)
    assert_stopped(code, err)


# Records, for every ast.parse, which thread made it and whether Gradio was fully imported
# then; and which threads were alive while Gradio imported. Run before app.py.
AST_WATCH = """
import ast, json, runpy, sys, threading
parse, seen = ast.parse, {"calls": [], "alive": set()}
def gradio_done():
    return getattr(sys.modules.get("gradio"), "__version__", None) is not None
def watched(*args, **kwargs):
    importing = "gradio" in sys.modules and not gradio_done()
    seen["calls"].append([threading.current_thread().name, importing])
    if importing:
        seen["alive"].update(t.name for t in threading.enumerate())
    return parse(*args, **kwargs)
ast.parse = watched
sys.argv = ["app.py"] + sys.argv[1:]
try:
    runpy.run_path("app.py", run_name="__main__")
finally:
    seen["alive"] = sorted(seen["alive"])
    with open(sys.argv[sys.argv.index("--session") + 1] + ".ast.json", "w") as out:
        json.dump(seen, out)
"""


def test_no_other_thread_runs_python_parsing_code_while_gradio_imports(tmp_path):
    """Python 3.11 keeps one AST recursion counter per interpreter: ast.parse (which
    inspect.signature calls for builtins, as torch, timm and Gradio do) on two threads at
    once crashed a launch with "AST constructor recursion depth mismatch". So Gradio is
    imported while the only other threads are the server's, and they answer REST meanwhile
    without parsing anything: the trainer and the image registration start afterwards."""
    port = free_port()
    proc = small_app(tmp_path, port, "--train", python=("-c", AST_WATCH))
    api = f"http://127.0.0.1:{port}/api/v1/"
    try:
        wait_http(api + "classes", proc)
        answered = 0
        while True:  # REST calls all the while Gradio imports, until the page is up
            answered += get_json(api + "next?strategy=sequential")["image_id"] is not None
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/config").status == 200:
                    break
            except urllib.error.HTTPError:
                pass
    finally:
        code, err = stopped_by(proc, signal.SIGTERM)
    assert_stopped(code, err)
    seen = json.loads((tmp_path / "s.ast.json").read_text())
    assert answered and any(importing for _, importing in seen["calls"])
    assert not [c for c in seen["calls"] if c[1] and c[0] != "MainThread"], seen
    assert not {"hitl-trainer", "hitl-catalog"} & set(seen["alive"]), seen["alive"]


def test_sigterm_under_load_stores_exactly_the_answered_labels(tmp_path):
    """Labels stream in when SIGTERM comes: every label that was answered is stored, and
    nothing that was not answered (requests in flight finish; new ones are refused)."""
    import threading
    port = free_port()
    proc = small_app(tmp_path, port)
    api = f"http://127.0.0.1:{port}/api/v1/"
    answered, stopping, writer = [], threading.Event(), threading.Thread()

    def label_all():
        for image_id in range(1, 13):
            while proc.poll() is None:
                try:
                    if put_label(api, image_id, "circle")["ok"]:
                        answered.append(image_id)
                    break
                except OSError:  # refused or reset once the server stops taking requests
                    if stopping.is_set():
                        return
                    time.sleep(0.01)

    try:
        wait_http(api + "classes", proc)
        writer = threading.Thread(target=label_all)
        writer.start()
        while len(answered) < 3 and writer.is_alive():
            time.sleep(0.005)
    finally:
        stopping.set()
        code, err = stopped_by(proc, signal.SIGTERM)  # while the writer goes on
        if writer.ident is not None:
            writer.join(60)
    assert_stopped(code, err)
    stored = [i for i in range(1, 13) if label_name(tmp_path / "s", i)]
    assert len(answered) >= 3 and stored == sorted(set(answered)), (answered, stored)
