"""Shared fixtures: sessions on generated images with a tiny random-init model, launched apps."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# every hitl lock checks the written lock order (hitl/locks.py), here and in launched apps
os.environ["HITL_LOCK_CHECK"] = "1"

from hitl.settings import Settings  # noqa: E402

TEST_DATA = Path(__file__).resolve().parent / "data"  # real sample images, see data/README.md


def wait_for(predicate, timeout: float = 120.0, every: float = 0.2):
    """Poll until predicate() is truthy (the trainer is a thread); returns its value."""
    import time
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value is not None and value is not False:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_settings(tmp_path: Path, **overrides) -> Settings:
    base = dict(session_dir=tmp_path / "session", backbone="test_vit", pretrained=False,
                demo_count=30, port=free_port(), weights_dir=tmp_path / "weights",
                finetune_model="test_resnet", seg_long_side=64)
    base.update(overrides)
    return Settings(**base)


@pytest.fixture(autouse=True)
def lock_order_kept():
    """Fail any test during which a lock was taken out of hitl's written order, on any
    thread (the trainer's errors are only logged, so the record is checked here)."""
    from hitl import locks
    assert locks.CHECK, "HITL_LOCK_CHECK was not set before hitl was imported"
    del locks.violations[:]
    yield
    assert not locks.violations, "lock order broken:\n" + "\n".join(locks.violations)


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a busy 2-core box, 2 threads wait on each other, 10x slower."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def settings_factory(tmp_path):
    return lambda **kw: make_settings(tmp_path, **kw)


@pytest.fixture
def session_factory(tmp_path):
    from hitl.session import Session
    opened = []

    def make(**kw):
        session = Session(make_settings(tmp_path, **kw))
        opened.append(session)
        return session
    yield make
    for session in opened:
        session.close()


class RunningApp:
    """A launched hitl.app_build.App, with the names the tests use."""

    def __init__(self, app, auth=None):
        self.app, self.auth = app, auth
        self.session, self.demo, self.service = app.session, app.blocks, app.service
        self.url = app.url.rstrip("/") + "/"

    def client(self, auth=None):
        from gradio_client import Client
        return Client(self.url, auth=auth or self.auth, verbose=False,
                      httpx_kwargs={"timeout": 180})


@pytest.fixture
def app_factory(tmp_path):
    """Launch the real app (hitl/app_build.py, as app.py does) on a free port; close it
    afterwards."""
    from hitl.app_build import build
    running = []

    def make(auth=None, tokens=None, launch=True, **kw):
        """auth: [(user, password[, "admin"]), ...]; without a role the first user is admin.
        launch=False: the built App itself, its port open with REST and the starting page."""
        app = build(make_settings(tmp_path, auth=list(auth or []), **kw), tokens=tokens)
        running.append(app)
        if not launch:
            return app
        app.launch(quiet=True)
        return RunningApp(app)
    yield make
    for app in running:
        app.close()
