"""Several labelers at once through the real server: leases, expiry, no lost labels."""
from __future__ import annotations

import threading
import time

from tests.test_app import truth


def test_leases_expire_between_two_clients(app_factory):
    app = app_factory(auth=[("ann", "a"), ("bob", "b")], task="classification",
                      lease_seconds=1.0, train=False)
    ann, bob = app.client(auth=("ann", "a")), app.client(auth=("bob", "b"))
    first = ann.predict("sequential", None, api_name="/next_image")
    other = bob.predict("sequential", None, api_name="/next_image")
    assert other["image_id"] != first["image_id"]
    assert app.session.store.lease_holder(first["image_id"]) == "ann"
    time.sleep(1.3)  # ann walked away: her lease runs out
    again = bob.predict("sequential", None, api_name="/next_image")
    assert again["image_id"] == first["image_id"]
    assert app.session.store.lease_holder(first["image_id"]) == "bob"
    # a skip releases the lease at once
    bob.predict(again["image_id"], api_name="/skip")
    assert app.session.store.lease_holder(again["image_id"]) is None


def test_twenty_concurrent_labelers_lose_and_duplicate_nothing(app_factory):
    users = [(f"u{i}", f"pw{i}") for i in range(20)]
    app = app_factory(auth=users, task="classification", demo_count=160, train=False)
    acknowledged: dict[int, str] = {}
    collisions, errors = [], []
    lock = threading.Lock()

    def labeler(user, password):
        try:
            client = app.client(auth=(user, password))
            for _ in range(6):
                view = client.predict("random", None, api_name="/next_image")
                if view["image_id"] is None:
                    return
                holder = app.session.store.lease_holder(view["image_id"])
                if holder != user:
                    collisions.append((user, view["image_id"], holder))
                result = client.predict(view["image_id"], truth(view["filename"]),
                                        api_name="/annotate")
                with lock:
                    if result["ok"]:
                        if view["image_id"] in acknowledged:
                            collisions.append((user, view["image_id"], "twice"))
                        acknowledged[view["image_id"]] = user
        except Exception as exc:  # reported by the assertion below
            errors.append(repr(exc))
    threads = [threading.Thread(target=labeler, args=u) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == [] and collisions == []
    assert len(acknowledged) == 120
    frame = app.session.store.label_rows()
    assert dict(zip(frame.image_id, frame.user)) == acknowledged  # none lost, none extra
    per_user = {user: count for user, count, _ in app.session.store.user_stats()}
    assert per_user == {u: 6 for u, _ in users}
