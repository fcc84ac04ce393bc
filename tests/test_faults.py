"""Faults are answers: a full disk refuses a request with 507 / {ok: false} and stores
nothing of it; a damaged or read-only session is one line and exit code 2."""
from __future__ import annotations

import subprocess
import sys

import httpx

from hitl.store import Store
from tests.conftest import free_port
from tests.page_protocol import PageSession
from tests.small_disk import fill, read_only, small_disk
from tests.test_launch import ROOT


def test_a_full_disk_refuses_each_write_and_stores_nothing_of_it(app_factory, tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        app = app_factory(session_dir=disk / "session", task="classification", demo_count=12,
                          train=False)
        db_path = app.session.settings.db_path
        rest = httpx.Client(base_url=app.url + "api/v1/", timeout=60)
        client, page = app.client(), PageSession(app.url)
        board = next(cid for cid, name in page.server_functions if name == "cls_act")

        def by_rest(image_id):
            answer = rest.put(f"images/{image_id}/label", json={"label": "circle"})
            return answer.status_code == 200, answer.status_code, answer.json().get("error")

        def by_api(image_id):
            answer = client.predict(image_id, "circle", api_name="/annotate")
            return answer["ok"], answer.get("status"), answer.get("error")

        def by_board(image_id):
            answer = page.call_server(board, "cls_act", {"image_id": image_id,
                                                          "class_name": "circle"})
            return answer["ok"], None, answer.get("error")

        assert by_rest(1)[0]  # a label while there is room
        stored, refused = {1}, {}
        filler = fill(disk)
        for image_id, send in zip(range(2, 11), [by_rest, by_api, by_board] * 3):
            fill(disk)  # a refused commit gives its bytes back: full again for each request
            ok, status, error = send(image_id)
            if ok:
                stored.add(image_id)
            else:
                refused[image_id] = (send.__name__, status, error)
        assert {how for how, _, _ in refused.values()} == {"by_rest", "by_api", "by_board"}
        for how, status, error in refused.values():
            assert error.startswith("the disk is full"), (how, error)
            assert how != "by_rest" or status == 507, (how, status)
        filler.unlink()
        assert by_rest(11)[0]  # space again: the app goes on, nothing to restart
        stored.add(11)
        page.close()
        app.app.close()
        store = Store(db_path)  # reopened from the file: exactly the answered labels
        try:
            labeled = {i for i in range(1, 13) if store.label_of(i) is not None}
        finally:
            store.close()
        assert labeled == stored, (labeled, stored, refused)


def run_app(session_dir, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "app.py", "--session", str(session_dir), "--port", str(free_port()),
         "--no-pretrained", "--backbone", "test_vit", "--no-train", "--demo-count", "12"],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def make_session(folder):
    store = Store(folder / "hitl.duckdb")
    store.add_class("cat")
    store.close()
    return folder / "hitl.duckdb"


def test_a_truncated_database_is_one_line_naming_it_and_what_to_do(tmp_path):
    db = make_session(tmp_path / "s")
    data = db.read_bytes()
    db.write_bytes(data[:len(data) // 3])
    done = run_app(tmp_path / "s")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(db.resolve()) in lines[0] and "damaged" in lines[0] and "s-*" in lines[0]
    assert "another app" not in lines[0]


def test_a_file_that_is_no_database_is_one_line_too(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "hitl.duckdb").write_bytes(b"not a database" * 1000)
    done = run_app(tmp_path / "s")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "damaged" in done.stderr


def test_a_read_only_session_folder_is_one_line(tmp_path):
    with small_disk(tmp_path / "disk", 8192) as disk:
        make_session(disk / "s")
        read_only(disk)
        done = run_app(disk / "s")
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "read-only" in lines[0] and str(disk / "s") in lines[0], \
            done.stderr


def test_a_session_another_app_holds_is_told_apart_from_damage(tmp_path):
    db = make_session(tmp_path / "s")
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; "
                               f"c = duckdb.connect({str(db)!r}); print('open', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        done = run_app(tmp_path / "s")
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2 and "open in another app" in done.stderr, done.stderr
    assert f"process {holder.pid}" in done.stderr and "damaged" not in done.stderr


def test_fault_of_names_each_fault_and_nothing_else(tmp_path):
    import errno

    import duckdb

    from hitl.errors import BadInput, DiskFull, Unavailable
    from hitl.store.faults import fault_of
    (tmp_path / "bad.duckdb").write_bytes(b"x" * 5000)
    try:
        duckdb.connect(str(tmp_path / "bad.duckdb"))
    except duckdb.Error as exc:
        damaged = exc
    full = OSError(errno.ENOSPC, "No space left on device")
    assert isinstance(fault_of(full), DiskFull) and fault_of(full).status == 507
    assert type(fault_of(damaged)) is Unavailable and "damaged" in str(fault_of(damaged))
    read_only = OSError(errno.EROFS, "Read-only file system")
    assert type(fault_of(read_only)) is Unavailable and "read-only" in str(fault_of(read_only))
    assert fault_of(ValueError("a bug")) is None
    assert fault_of(BadInput("no such class")) is None  # a refusal already


def test_a_refused_write_leaves_no_half_state_in_memory_either(session_factory, tmp_path):
    """The store's in-memory copies (open flags, classes, counts) agree with the file after
    a refused write: the label is not there, the image is still open, the class not added."""
    from hitl.errors import DiskFull
    with small_disk(tmp_path / "disk") as disk:
        session = session_factory(session_dir=disk / "session", task="classification",
                                  demo_count=12, train=False)
        store = session.store
        circle = store.class_by_name("circle").id
        classes, counts = [c.name for c in store.classes()], store.label_counts()
        filler = fill(disk)
        for write in (lambda: store.set_label(3, circle), lambda: store.add_class("zebra"),
                      lambda: store.skip(4)):
            fill(disk)
            try:
                write()
            except DiskFull:
                continue
            raise AssertionError("a write on a full disk was not refused")
        assert store.label_of(3) is None and store.is_open(3) and store.is_open(4)
        assert [c.name for c in store.classes()] == classes and store.label_counts() == counts
        filler.unlink()
        store.set_label(3, circle)  # room again: the same store writes on
        assert store.label_of(3) == circle and not store.is_open(3)
