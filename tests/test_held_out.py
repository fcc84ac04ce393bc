"""Validation scores are held-out or absent, and the learning curve is a function of labels."""
from __future__ import annotations

from hitl.service import Caller, Service
from hitl.stats import learning_curve
from hitl.ui.classification import held_out
from tests.conftest import wait_for

LOCAL = Caller("local", "admin")


def label_split(session, split: str, n: int) -> list[int]:
    """Label n images of one split with their true class (demo file names hold it)."""
    service, store = Service(session), session.store
    done = []
    for row in store.images_by_ids(store.readable_image_ids()):
        if row.split == split and len(done) < n:
            truth = row.filename.rsplit("_", 1)[1][:-4]
            assert service.annotate(LOCAL, row.id, truth)["ok"]
            done.append(row.id)
    assert len(done) == n
    return done


def latest(session):
    return session.store.latest_model()


def test_no_validation_score_until_a_model_learns_without_validation_labels(session_factory):
    session = session_factory(task="classification")
    label_split(session, "val", 3)
    first = wait_for(lambda: latest(session))
    assert first["val_accuracy"] is None and first["metrics"]["held_out"] is False
    assert held_out(first["val_accuracy"], first["version"]) == "— (no held-out labels yet)"
    label_split(session, "train", 4)
    model = wait_for(lambda: (m := latest(session)) and m["n_labels"] == 7 and m)
    assert model["metrics"]["held_out"] is True and model["val_accuracy"] is not None
    assert held_out(model["val_accuracy"], model["version"]).endswith("%")


def test_learning_curve_has_one_point_per_label_count(session_factory):
    session = session_factory(task="classification", train=False)
    store = session.store
    for version, n, score in [(1, 4, 0.5), (2, 5, 0.6), (3, 4, 0.55), (4, 6, 0.7)]:
        store.record_model(version, "classification", "test_vit", "frozen", n,
                           val_accuracy=score)  # version 3: after an undo back to 4 labels
    curve = learning_curve(session, "classification")
    assert curve["labels"].tolist() == [4, 5, 6]
    assert curve["score"].round(2).tolist() == [0.55, 0.6, 0.7]  # the latest model at 4
