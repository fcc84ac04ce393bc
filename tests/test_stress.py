"""Everything at once on one launched app, with a watchdog: no call may stall.

Three labelers (two over REST, one through the classification board's server functions), an
admin adding, reordering and removing classes, a reviewer leasing and accepting review pages,
a stats ticker, session resets (each fresh session's first label locks the task again) and
the trainer, for STRESS_SECONDS on a demo session. A watchdog dumps every thread's stack and
fails the test when a call has been running for more than STALL_S: the app froze for
everyone once (the trainer's idle wait and a first label took two locks in opposite orders).
The lock-order checker (tests/conftest.py) fails it on any inversion, even one that did not
happen to deadlock this time.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import random
import sys
import threading
import time
import traceback

import httpx
import numpy as np

from hitl.errors import HitlError
from hitl.service import ADMIN, Caller
from tests.conftest import make_settings
from tests.page_protocol import PageSession

STRESS_SECONDS = float(os.environ.get("HITL_STRESS_SECONDS", "30"))
STALL_S = 10.0
USERS = [("admin", "pw-admin", "admin"), ("ann", "pw-ann"), ("bob", "pw-bob"), ("cy", "pw-cy")]


class Watchdog:
    """Calls in flight by thread; a thread that watches them and dumps every stack once one
    runs past STALL_S."""

    def __init__(self):
        self.running: dict[int, tuple[str, float]] = {}
        self.problems: list[str] = []
        self.calls = 0
        self.labels = 0  # labels the server acknowledged (REST and board)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)

    def call(self, what: str, fn, *args, **kwargs):
        me = threading.get_ident()
        self.running[me] = (what, time.monotonic())
        try:
            return fn(*args, **kwargs)
        finally:
            self.running.pop(me, None)
            self.calls += 1

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            stalled = [(what, now - t0) for what, t0 in list(self.running.values())
                       if now - t0 > STALL_S]
            if stalled:
                self.problem(f"stalled > {STALL_S:.0f} s: {stalled}\n{all_stacks()}")
                return


def all_stacks() -> str:
    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(f"--- {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame))
                     for ident, frame in sys._current_frames().items())


@contextlib.contextmanager
def logged_in(url: str, user: str, password: str):
    with httpx.Client(base_url=url, timeout=STALL_S + 20) as client:
        answer = client.post("login", data={"username": user, "password": password})
        assert answer.status_code == 200, answer.text
        yield client


def checked(dog: Watchdog, what: str, response: httpx.Response) -> httpx.Response:
    """A refusal (4xx: a class removed meanwhile; 503: a reset under way) is an answer; any
    other 5xx is a bug."""
    if response.status_code >= 500 and response.status_code != 503:
        dog.problem(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response


def rest_labeler(dog, url, user, password, until):
    rng = random.Random(user)
    with logged_in(url, user, password) as http:
        while time.monotonic() < until:
            names = checked(dog, "classes", dog.call("GET classes", http.get,
                                                     "api/v1/classes")).json()
            view = checked(dog, "next", dog.call("GET next", http.get, "api/v1/next",
                                                 params={"strategy": "uncertain"}))
            image_id = view.json().get("image_id") if view.status_code == 200 else None
            if image_id is None or not isinstance(names, list) or not names:
                time.sleep(0.05)
                continue
            stored = checked(dog, "label", dog.call(
                "PUT label", http.put, f"api/v1/images/{image_id}/label",
                json={"label": rng.choice(names), "next_strategy": "uncertain"}))
            dog.labels += stored.status_code == 200
            if rng.random() < 0.1:
                checked(dog, "undo", dog.call("POST undo", http.post, "api/v1/undo"))


def board_labeler(dog, url, user, password, until):
    rng = random.Random(user)
    page = PageSession(url, (user, password), timeout=STALL_S + 20)
    board = next(cid for cid, name in page.server_functions if name == "cls_take")
    try:
        while time.monotonic() < until:
            sync = dog.call("cls_sync", page.call_server, board, "cls_sync", {"held": []})
            if "status" in sync and sync["status"] >= 500:
                dog.problem(f"cls_sync: {sync}")
            took = dog.call("cls_take", page.call_server, board, "cls_take",
                            {"strategy": "uncertain", "n": 3})
            if "status" in took and took["status"] >= 500:
                dog.problem(f"cls_take: {took}")
            items = took.get("items") or []
            classes = [c["name"] for c in sync.get("classes") or []]
            for item in items:
                if not classes:
                    break
                acted = dog.call("cls_act", page.call_server, board, "cls_act",
                                 {"image_id": item["image_id"], "rev": sync.get("rev"),
                                  "class_name": rng.choice(classes)})
                dog.labels += acted.get("ok") is True
            if rng.random() < 0.1:
                dog.call("cls_undo", page.call_server, board, "cls_undo", {})
            if not items:
                time.sleep(0.05)
    finally:
        page.close()


def admin(dog, url, service_of, until):
    rng = random.Random("admin")
    with logged_in(url, "admin", "pw-admin") as http:
        for n in itertools.count():
            if time.monotonic() >= until:
                return
            name = f"extra{n}"
            checked(dog, "add class", dog.call("POST classes", http.post, "api/v1/classes",
                                               json={"name": name}))
            service = service_of()
            caller = Caller("admin", ADMIN)
            try:
                names = [c.name for c in service.session.store.classes()]
            except HitlError:  # a reset under way: an answer, not a fault
                names = []
            if names:
                try:  # a refusal (the class went, a reset under way) is an answer, not a fault
                    dog.call("move class", service.move_class, caller, rng.choice(names),
                             rng.choice([-1, 1]))
                except HitlError:
                    pass
            time.sleep(0.2)
            checked(dog, "remove class", dog.call("DELETE class", http.delete,
                                                  f"api/v1/classes/{name}"))
            time.sleep(0.2)


def reviewer(dog, url, until):
    with logged_in(url, "ann", "pw-ann") as http:  # a second tab of a labeler
        while time.monotonic() < until:
            names = checked(dog, "classes", dog.call("GET classes", http.get,
                                                     "api/v1/classes")).json()
            if not isinstance(names, list) or not names:
                time.sleep(0.1)
                continue
            page = checked(dog, "review", dog.call("GET review", http.get, "api/v1/review",
                                                   params={"class_name": names[0], "n": 4}))
            ids = [item["image_id"] for item in page.json().get("items") or []] \
                if page.status_code == 200 else []
            if ids:
                checked(dog, "accept", dog.call("POST accept", http.post,
                                                "api/v1/review/accept",
                                                json={"image_ids": ids, "class_name": names[0]}))
            time.sleep(0.3)


def ticker(dog, url, until):
    with logged_in(url, "bob", "pw-bob") as http:
        while time.monotonic() < until:
            checked(dog, "stats", dog.call("GET stats", http.get, "api/v1/stats"))
            checked(dog, "predictions", dog.call("GET predictions", http.get,
                                                 "api/v1/predictions", params={"limit": 5}))
            time.sleep(0.25)


def resetter(dog, service_of, until):
    """A fresh session every ~12 s: its first label locks the task (and drops the demo's
    spare class) while the trainer of the new session idles."""
    while time.monotonic() + 12 < until:
        time.sleep(12)
        service = service_of()
        try:
            dog.call("reset", service.reset, Caller("admin", ADMIN), confirm=True)
        except HitlError:  # a refusal (a reset a moment ago) is an answer, not a fault
            pass


def store_agrees_with_database(store) -> None:
    """The in-memory index says what the database says (no copy left stale)."""
    readable = np.asarray(sorted(r[0] for r in store._rows(
        "SELECT id FROM images WHERE readable")), dtype=np.int64)
    assert np.array_equal(store.readable_image_ids(), readable)
    done = {r[0] for r in store._rows(
        "SELECT image_id FROM labels UNION SELECT image_id FROM skips "
        "UNION SELECT image_id FROM masks")}
    for image_id in readable.tolist():
        assert store.is_open(image_id) == (image_id not in done), image_id
    assert [c.name for c in store.classes()] == [r[0] for r in store._rows(
        "SELECT name FROM classes ORDER BY position, id")]
    assert store.task() == store._one("SELECT value FROM settings WHERE key = 'task'")


def test_everything_at_once_never_stalls(tmp_path):
    from hitl.app_build import build

    app = build(make_settings(tmp_path, auth=USERS, demo_count=60))
    url = app.launch(quiet=True).rstrip("/") + "/"
    session = app.session
    service_of = lambda: app.service  # noqa: E731
    dog = Watchdog()
    until = time.monotonic() + STRESS_SECONDS
    workers = [
        threading.Thread(target=rest_labeler, args=(dog, url, "ann", "pw-ann", until)),
        threading.Thread(target=rest_labeler, args=(dog, url, "bob", "pw-bob", until)),
        threading.Thread(target=board_labeler, args=(dog, url, "cy", "pw-cy", until)),
        threading.Thread(target=admin, args=(dog, url, service_of, until)),
        threading.Thread(target=reviewer, args=(dog, url, until)),
        threading.Thread(target=ticker, args=(dog, url, until)),
        threading.Thread(target=resetter, args=(dog, service_of, until)),
    ]

    def run(worker):
        try:
            worker()
        except Exception:
            dog.problem(f"{threading.current_thread().name}:\n{traceback.format_exc()}")
    threads = [threading.Thread(target=run, args=(w.run,), name=f"stress-{w._target.__name__}",
                                daemon=True) for w in workers]
    dog.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STRESS_SECONDS + 3 * STALL_S)
    dog.stop()
    alive = [t.name for t in threads if t.is_alive()]
    if alive:
        dog.problem(f"workers still running: {alive}\n{all_stacks()}")
    if dog.problems:  # a frozen app would hang its own shutdown: leave it to the process
        raise AssertionError("\n\n".join(dog.problems[:3]))
    try:
        assert dog.calls > 200, f"only {dog.calls} calls in {STRESS_SECONDS:.0f} s"
        store = session.store
        assert dog.labels > 20, f"only {dog.labels} labels stored"
        assert store.classes(), "the session has no classes"
        store_agrees_with_database(store)
    finally:
        app.close()
