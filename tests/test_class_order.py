"""Moving a class up or down is not a model change: the learner (and its backbone) stays, the
head's rows move with their classes, and the predictions keep naming the same classes."""
from __future__ import annotations

import pytest

from hitl.errors import HitlError, Refused
from hitl.service import Caller, Service
from tests.conftest import wait_for

ADMIN = Caller("local", "admin")


def test_a_reorder_keeps_the_learner_and_moves_the_head(session_factory):
    session = session_factory(task="classification")
    service, trainer, store = Service(session), session.trainer, session.store
    for _ in range(6):
        view = service.next_image(ADMIN, "classification", "sequential")
        service.annotate(ADMIN, view["image_id"], view["filename"].rsplit("_", 1)[1][:-4])
    wait_for(lambda: store.latest_model() is not None and trainer.learner() is not None
             and trainer.learner().head is not None)
    wait_for(lambda: trainer.status_dict()["state"] == "idle")
    learner = trainer.learner()
    backbone, head, before = learner.loaded, learner.head, list(learner.class_ids)
    version = store.latest_model()["version"]
    assert service.move_class(ADMIN, store.classes()[0].name, +1)["ok"]
    wait_for(lambda: store.latest_model()["version"] > version)  # a head round, on the cache
    assert trainer.learner() is learner and learner.loaded is backbone
    assert learner.class_ids == [c.id for c in store.classes()] == [before[1], before[0],
                                                                     *before[2:]]
    assert learner.head is not head and learner.head.num_classes == head.num_classes


def test_a_class_colour_is_set_by_an_admin_only_and_reaches_the_pages(session_factory):
    from hitl.ui.classes import as_hex
    session = session_factory(task="classification", train=False)
    service, store = Service(session), session.store
    rev = store.class_revision
    with pytest.raises(Refused, match="Only an admin"):
        service.recolour_class(Caller("bob", "labeler"), "circle", "#123456")
    with pytest.raises(HitlError, match="#rrggbb") as bad:
        service.recolour_class(ADMIN, "circle", "blue; drop table")
    assert "\n" not in str(bad.value)
    assert store.class_revision == rev
    assert service.recolour_class(ADMIN, "circle", as_hex("rgba(18, 52, 86, 1)"))["ok"]
    assert store.class_by_name("circle").colour == "#123456"
    assert store.class_revision != rev  # the boards' tick redraws their buttons and masks
    assert as_hex("#AbCdEf") == "#AbCdEf" and as_hex("#abcdef80") == "#abcdef"
