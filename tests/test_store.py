"""The session database: migrations, durability, concurrent writers, classes, undo."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from hitl.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError

ROOT = Path(__file__).resolve().parents[1]


def add_images(store: Store, n: int, prefix: str = "/img") -> None:
    store.add_images(pd.DataFrame({
        "path": [f"{prefix}/{i:05d}.png" for i in range(n)],
        "filename": [f"{i:05d}.png" for i in range(n)],
        "width": pd.array([64] * n, dtype="Int32"), "height": pd.array([48] * n, dtype="Int32"),
        "readable": [True] * n, "error": [None] * n}))


def test_old_schema_opens_in_new_version(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER)")
    con.execute(MIGRATIONS[0])
    con.execute("INSERT INTO schema_version VALUES (1)")
    con.execute("INSERT INTO images (path, filename, width, height, readable, split) "
                "VALUES ('/a.png', 'a.png', 4, 4, true, 'train')")
    con.execute("INSERT INTO classes (name, colour, position) VALUES ('cat', '#ff0000', 0)")
    con.execute("INSERT INTO labels VALUES (1, 1, 'old', now(), NULL, NULL)")
    con.close()
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION > 1
    assert store.label_of(1) == 1
    store.set_mask(1, np.ones((4, 4), np.uint8))  # a table only the new schema has
    assert store.mask(1).sum() == 16
    store.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.duckdb"
    Store(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_version VALUES (?)", [SCHEMA_VERSION + 1])
    con.close()
    with pytest.raises(StoreError, match="newer hitl"):
        Store(path)


WRITER = """
import sys, pandas as pd
from hitl.store import Store
s = Store(sys.argv[1])
n = 400
s.add_images(pd.DataFrame({"path": [f"/i/{i}.png" for i in range(n)],
    "filename": [f"{i}.png" for i in range(n)], "width": [8] * n, "height": [8] * n,
    "readable": [True] * n, "error": [None] * n}))
c = s.add_class("a")
print("ready", flush=True)
for i in range(1, n + 1):
    s.set_label(i, c.id, "w")
    print(i, flush=True)
"""


def test_acknowledged_labels_survive_sigkill(tmp_path):
    path = tmp_path / "kill.duckdb"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    acked = 0
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.time() + 60
    while acked < 60 and time.time() < deadline:
        acked = int(proc.stdout.readline())
    proc.kill()  # SIGKILL: no chance to flush or close
    proc.wait()
    store = Store(path)
    labeled, _ = store.labeled_pairs()
    assert acked >= 60
    assert set(range(1, acked + 1)) <= set(labeled.tolist())
    store.close()


def test_concurrent_writers_lose_nothing(tmp_path):
    store = Store(tmp_path / "c.duckdb")
    add_images(store, 400)
    cls = store.add_class("x")
    errors = []

    def worker(start):
        try:
            for image_id in range(start, start + 100):
                store.set_label(image_id, cls.id, f"u{start}")
                store.prediction(image_id)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(1 + 100 * k,)) for k in range(4)]
    frame = pd.DataFrame({"image_id": np.arange(1, 401), "model_version": 1, "class_id": cls.id,
                          "probability": 0.5, "margin": 0.1, "entropy": 0.6})
    for t in threads:
        t.start()
    for _ in range(5):
        store.write_predictions(frame)
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.labeled_pairs()[0]) == 400
    store.close()


def test_class_names_are_checked(tmp_path):
    store = Store(tmp_path / "n.duckdb")
    assert store.add_class("  Chat noir 🐈 ").name == "Chat noir 🐈"
    with pytest.raises(StoreError, match="exists already"):
        store.add_class("chat NOIR 🐈")
    with pytest.raises(StoreError, match="empty"):
        store.add_class("   ")
    with pytest.raises(StoreError, match="at most 64"):
        store.add_class("x" * 65)
    with pytest.raises(StoreError, match="control"):
        store.add_class("a\tb")
    other = store.add_class("dog")
    with pytest.raises(StoreError, match="exists already"):
        store.rename_class(other.id, "CHAT NOIR 🐈")
    assert store.rename_class(other.id, "Dog").name == "Dog"
    store.close()


def test_remove_class_deletes_labels_and_mask_pixels(tmp_path):
    store = Store(tmp_path / "r.duckdb")
    add_images(store, 3)
    a, b = store.add_class("a"), store.add_class("b")
    store.set_label(1, a.id)
    store.set_label(2, b.id)
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = a.mask_value
    mask[2:] = b.mask_value
    store.set_mask(3, mask)
    only_a = np.full((4, 4), a.mask_value, np.uint8)
    store.set_mask(2, only_a)
    result = store.remove_class(a.id)
    assert result == {"labels": 1, "masks": 2}
    assert store.label_of(1) is None and store.label_of(2) == b.id
    assert (store.mask(3) == np.where(mask == a.mask_value, 0, mask)).all()
    assert store.mask(2) is None  # nothing left labeled in it
    assert [c.name for c in store.classes()] == ["b"]
    store.close()


def test_undo_chain_restores_each_previous_state(tmp_path):
    store = Store(tmp_path / "u.duckdb")
    add_images(store, 2)
    a, b = store.add_class("a"), store.add_class("b")
    store.set_label(1, a.id, "me")
    store.set_label(1, b.id, "me")
    store.skip(2, "me")
    store.set_label(2, a.id, "other")
    assert store.undo("me") == 2 and not store.is_skipped(2)
    assert store.label_of(2) == a.id  # the other user's label stays
    assert store.undo("me") == 1 and store.label_of(1) == a.id
    assert store.undo("me") == 1 and store.label_of(1) is None
    assert store.undo("me") is None
    assert store.undo("other") == 2 and store.label_of(2) is None and store.is_skipped(2)
    store.close()


def test_unknown_ids_get_clear_errors(tmp_path):
    store = Store(tmp_path / "e.duckdb")
    add_images(store, 1)
    cls = store.add_class("a")
    with pytest.raises(StoreError, match="no image with id 99"):
        store.set_label(99, cls.id)
    with pytest.raises(StoreError, match="no class with id 42"):
        store.set_label(1, 42)
    with pytest.raises(StoreError, match="no class holds"):
        store.set_mask(1, np.full((2, 2), 7, np.uint8))
    store.close()


def test_leases_keep_images_apart_and_expire(tmp_path):
    store = Store(tmp_path / "l.duckdb")
    add_images(store, 3)
    assert store.lease_first([1, 2, 3], "ann", 60) == 1
    assert store.lease_first([1, 2, 3], "bob", 60) == 2
    assert store.lease_holder(1) == "ann"
    assert store.label_candidates("bob")["ids"].tolist() == [2, 3]
    assert store.lease_first([1], "bob", 60) is None
    assert store.lease_first([3], "cat", 0.2) == 3
    time.sleep(0.3)
    assert store.lease_first([3], "bob", 60) == 3  # expired lease frees the image
    store.close()


def test_old_leases_table_is_dropped_and_leases_live_in_memory(tmp_path):
    path = tmp_path / "v4.duckdb"
    Store(path).close()
    con = duckdb.connect(str(path))  # a session written before leases moved to memory
    con.execute("DELETE FROM schema_version WHERE version = 5")
    con.execute('CREATE TABLE leases (image_id INTEGER PRIMARY KEY, "user" VARCHAR, '
                "expires_at TIMESTAMP)")
    con.close()
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION
    assert not store._rows("SELECT 1 FROM information_schema.tables "
                           "WHERE table_name = 'leases'")
    add_images(store, 2)
    assert store.lease_first([1, 2], "ann", 60) == 1 and store.lease_holder(1) == "ann"
    store.close()
    assert Store(path).lease_holder(1) is None  # a reservation, not data: gone on restart


def test_the_next_image_is_never_one_just_labeled_skipped_or_masked(tmp_path):
    """The open flags are kept in step by each write (not read again per key press): every
    way of closing an image must take it out of the next image's candidates at once."""
    store = Store(tmp_path / "o.duckdb")
    add_images(store, 6)
    cat = store.add_class("cat").id
    everything = list(range(1, 7))
    assert store.lease_first(everything, "ann", 60) == 1
    store.set_label(1, cat, "ann")
    assert store.lease_holder(1) is None  # labeling ends the lease
    store.skip(2, "ann")
    store.set_mask(3, np.ones((48, 64), np.uint8), "ann")
    store.set_labels([4], [cat], user="import")
    assert [store.is_open(i) for i in everything] == [False] * 4 + [True] * 2
    assert store.lease_first(everything, "bob", 60) == 5
    # save + next in one call: the label and the next lease see the same state
    assert store.set_label(5, cat, "bob", then_lease=everything) == 6
    assert store.lease_first(everything, "ann", 60) is None
    # undo reopens: the flags are read again
    assert store.undo("bob") == 5 and store.is_open(5)
    assert store.lease_first(everything, "ann", 60) == 5
    store.close()


def test_image_rows_come_from_memory_and_follow_changes(tmp_path):
    store = Store(tmp_path / "c.duckdb")
    add_images(store, 2)
    row = store.image(2)
    assert (row.id, row.filename, row.width, row.height, row.readable) == (2, "00001.png", 64,
                                                                             48, True)
    assert store.image(3) is None and store.image(0) is None
    store.add_images(pd.DataFrame({"path": ["/bad.png"], "filename": ["bad.png"],
                                   "width": pd.array([None], dtype="Int32"),
                                   "height": pd.array([None], dtype="Int32"),
                                   "readable": [False], "error": ["not an image"]}))
    bad = store.image(3)
    assert (bad.width, bad.height, bad.readable, bad.error) == (None, None, False,
                                                                "not an image")
    store.mark_unreadable(2, "truncated")
    assert store.image(2).error == "truncated" and store.readable_image_ids().tolist() == [1]
    assert store.image_state(1)["label"] is None
    store.set_label(1, store.add_class("cat").id, "ann")
    assert store.image_state(1)["label"] == store.class_by_name("cat").id
    store.close()


def test_answers_kept_between_changes_follow_every_change(tmp_path):
    """counts, live accuracy, per-user numbers, the latest model and the predictions list are
    kept in memory between writes (a stats tick reads them all): each write must show at once."""
    store = Store(tmp_path / "k.duckdb")
    add_images(store, 3)
    cat, dog = store.add_class("cat").id, store.add_class("dog").id
    assert store.counts() == {"total": 3, "readable": 3, "labels": 0, "masks": 0, "skips": 0}
    assert store.latest_model() is None and store.live_accuracy(50) == (None, 0)
    store.set_label(1, cat, "ann", shown_class_id=cat, shown_model_version=1)
    assert store.counts()["labels"] == 1 and store.live_accuracy(50) == (1.0, 1)
    store.skip(2, "bob")
    assert store.counts()["skips"] == 1
    assert sorted(u for u, *_ in store.user_stats()) == ["ann", "bob"]
    store.undo("ann")
    assert store.counts()["labels"] == 0 and store.live_accuracy(50) == (None, 0)
    store.record_model(1, "classification", "b", "frozen", 1, val_accuracy=0.5)
    assert store.latest_model()["val_accuracy"] == 0.5
    store.record_model(2, "classification", "b", "frozen", 1, val_accuracy=0.75)
    assert store.latest_model()["version"] == 2
    store.write_predictions(pd.DataFrame({
        "image_id": [3, 1, 2], "model_version": 2, "class_id": [dog, cat, dog],
        "probability": [0.9, 0.8, 0.7], "margin": 0.5, "entropy": 0.1}))
    frame = store.predictions_frame(2)
    assert frame.image_id.tolist() == [1, 2] and frame.label.tolist() == ["cat", "dog"]
    assert frame.filename.tolist() == ["00000.png", "00001.png"]
    store.remove_class(cat)
    assert store.predictions_frame().empty  # predictions go with a removed class
    store.close()
