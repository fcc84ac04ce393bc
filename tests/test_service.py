"""The service layer in-process: a labeler is refused every admin action and changes nothing;
an admin may; refusals and wrong values are typed errors of one line."""
from __future__ import annotations

from pathlib import Path

import pytest

from hitl.errors import BadInput, Conflict, HitlError, NotFound, Refused
from hitl.service import Caller, Service

ADMIN = Caller("ann", "admin")
LABELER = Caller("bob", "labeler")

ADMIN_ACTIONS = {
    "add_class": ("zebra",),
    "rename_class": ("circle", "disc"),
    "move_class": ("circle", 1),
    "class_removal": ("circle",),
    "remove_class": ("circle",),
    "start_trainer": (),
    "stop_trainer": (),
    "configure_trainer": ("test_resnet", "finetune", "test_resnet", 128),
    "export": ("json",),
    "reset": (True,),
}


def snapshot(session) -> tuple:
    s = session.settings
    return (session.store.table_rows("classes"), session.store.table_rows("labels"),
            session.store.counts(), session.trainer.status_dict()["state"],
            (s.backbone, s.mode, s.finetune_model, s.seg_long_side), s.session_dir.exists(),
            sorted(p.name for p in s.session_dir.parent.iterdir()))


@pytest.mark.parametrize("action", sorted(ADMIN_ACTIONS))
def test_labeler_is_refused_every_admin_action(session_factory, action):
    session = session_factory(task="classification", train=False)
    service = Service(session)
    view = service.next_image(LABELER, "classification", "sequential")
    assert service.annotate(LABELER, view["image_id"], "circle")["ok"]
    before = snapshot(session)
    with pytest.raises(Refused, match="Only an admin") as refused:
        getattr(service, action)(LABELER, *ADMIN_ACTIONS[action])
    assert "\n" not in str(refused.value) and refused.value.status == 403
    assert snapshot(session) == before


def test_admin_may_manage_classes_and_trainer(session_factory):
    session = session_factory(task="classification", train=False)
    service = Service(session)
    assert service.add_class(ADMIN, "zebra")["ok"]
    assert service.rename_class(ADMIN, "zebra", "okapi")["name"] == "okapi"
    assert service.move_class(ADMIN, "okapi", -1)["position"] == len(session.store.classes()) - 1
    assert service.remove_class(ADMIN, "okapi")["ok"]
    assert session.store.class_by_name("okapi") is None
    with pytest.raises(BadInput):
        service.reset(ADMIN, "yes")  # only a real True confirms
    with pytest.raises(BadInput, match="not a timm model"):
        service.configure_trainer(ADMIN, "no_such_net", "frozen", "test_resnet", 64)
    with pytest.raises(NotFound):
        service.remove_class(ADMIN, "okapi")


def test_calls_without_a_caller_or_with_bad_values_answer_one_line(session_factory):
    session = session_factory(task="classification", train=False)
    service = Service(session)
    with pytest.raises(Refused, match="No caller: every action needs to know who asks."):
        service.annotate("local", 1, "circle")
    with pytest.raises(NotFound) as huge:
        service.annotate(ADMIN, 1, "x" * 1_000_000)
    assert len(str(huge.value)) < 400
    with pytest.raises(BadInput, match="image_id must be a whole number"):
        service.skip(ADMIN, "seven")
    with pytest.raises(Conflict, match="Nothing to undo"):
        service.undo(ADMIN)


def test_own_work_stays_own(session_factory):
    session = session_factory(task="classification", train=False)
    service = Service(session)
    alice, bob = Caller("alice", "labeler"), LABELER
    shown = service.next_image(alice, "classification", "sequential")["image_id"]
    # leased to alice: bob may not label or skip it
    with pytest.raises(HitlError, match="alice"):
        service.annotate(bob, shown, "square")
    with pytest.raises(HitlError):
        service.skip(bob, shown)
    assert service.annotate(alice, shown, "circle")["ok"]
    # alice's label: bob may not change it, an admin may (and it is recorded as theirs)
    with pytest.raises(Refused) as refused:
        service.annotate(bob, shown, "square")
    assert str(refused.value) == f"Image {shown} was labeled by alice; only they or an admin " \
                                 "can change it."
    assert service.annotate(ADMIN, shown, "square")["ok"]
    frame = session.store.label_rows().set_index("image_id")
    assert frame.loc[shown, "user"] == "ann"
    # alice's undo leaves the admin's later label alone, and says so
    undone = service.undo(alice)
    assert undone["ok"] and "changed by ann since" in undone["note"]
    assert session.store.label_owner(shown) == "ann"


def test_undo_restores_exactly_the_previous_label(session_factory):
    session = session_factory(task="classification", train=False)
    service = Service(session)
    alice = Caller("alice", "labeler")
    image = service.next_image(alice, "classification", "sequential")["image_id"]
    assert service.annotate(alice, image, "circle")["ok"]
    cols, rows = session.store.table_rows("labels")
    original = rows[0]
    assert service.annotate(ADMIN, image, "square")["ok"]
    assert service.undo(ADMIN)["ok"]
    assert session.store.table_rows("labels")[1] == [original]  # alice's row, her time


def test_export_folders_do_not_pile_up(session_factory):
    session = session_factory(task="classification", train=False)
    service = Service(session)
    first = service.export(ADMIN, "csv")
    folder = Path(first["path"]).parent
    assert folder.name.startswith("hitl-export-") and folder.exists()
    service._prune_exports(0)  # what the next export after EXPORT_KEEP_S, or exit, does
    assert not folder.exists()


def test_a_labeler_exports_only_their_own_labels(session_factory):
    session = session_factory(task="classification", train=False)
    service = Service(session)
    alice = Caller("alice", "labeler")
    for who in (alice, LABELER, alice):
        image = service.next_image(who, "classification", "sequential")["image_id"]
        assert service.annotate(who, image, "circle")["ok"]
    result = service.export_mine(alice)
    text = Path(result["path"]).read_text()
    assert result["labels"] == 2 and text.startswith("image_id,filename,label,created_at")
    assert str(session.settings.session_dir) not in text
