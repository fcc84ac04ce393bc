"""The task registry: tasks are objects that satisfy the Task protocol, registered by a
decorator; their strategies are objects that fall back and say why they had nothing."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import hitl.tasks as tasks
from hitl import export, strategies
from hitl.errors import HitlError
from hitl.model_file import Predictor
from hitl.service import Caller, Service
from hitl.settings import MODES
from hitl.strategies import Pick, Strategies, Strategy
from hitl.tasks import TASKS, Task, UnknownTask, current_task, get_task, register_task

LOCAL = Caller("local", "admin")


def protocol_members() -> set[str]:
    """Every attribute and method the Task protocol declares (read from the class itself)."""
    declared = set(Task.__annotations__) | {n for n, v in vars(Task).items() if callable(v)}
    return {n for n in declared if not n.startswith("_")}


def test_the_protocol_lists_what_a_task_offers():
    assert {"candidates", "describe", "score_suspects", "learner", "stats", "exports",
            "board", "demo_classes", "score", "strategies", "open_pool", "predictor",
            "name"} <= protocol_members()


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_has_every_member_of_the_protocol(name):
    task = get_task(name)
    missing = [m for m in protocol_members() if not hasattr(task, m)]
    assert not missing, f"{name} lacks {missing}"
    methods = {n for n, v in vars(Task).items() if callable(v) and not n.startswith("_")}
    assert all(callable(getattr(task, m)) for m in methods)
    assert task.name == name


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_names_code_that_exists(name):
    task = get_task(name)
    for mode in MODES:
        learner = task.learner(mode)
        assert learner.task == name
        assert callable(getattr(learner, "step")) and callable(getattr(learner, "model_state"))
    assert issubclass(task.predictor(), Predictor)
    assert set(task.exports) <= set(export.FORMATS)
    assert isinstance(task.strategies, Strategies) and task.strategies.names
    assert task.demo_classes and task.score in ("val_accuracy", "val_miou")


def test_the_decorator_registers_and_an_unknown_task_raises():
    @register_task
    class Boxes:
        name = "boxes-test"

    try:
        assert isinstance(get_task("boxes-test"), Boxes)
        assert "boxes-test" in tasks.task_names()
        with pytest.raises(ValueError, match="registered twice"):
            register_task(Boxes)
        with pytest.raises(ValueError, match="Two default tasks"):
            register_task(type("Other", (), {"name": "other-test"}), default=True)
    finally:
        TASKS.pop("boxes-test")
    assert "other-test" not in TASKS
    for bad in ("detection", None, ""):
        with pytest.raises(UnknownTask, match="hitl knows: classification, segmentation"):
            get_task(bad)
    with pytest.raises(ValueError, match="Unknown training mode"):
        get_task("classification").learner("lora")


def test_before_a_task_is_set_the_declared_default_is_used(session_factory):
    assert current_task(None).name == "classification"
    assert current_task("segmentation").name == "segmentation"
    with pytest.raises(UnknownTask):
        current_task("detection")
    session = session_factory(train=False, demo_count=12)
    service = Service(session)
    assert session.store.task() is None and service.task() == "classification"
    session.lock_task("segmentation")
    assert service.task() == "segmentation"


def test_importing_the_tasks_imports_no_torch_nor_gradio():
    code = ("import sys, hitl.tasks as t; t.get_task('segmentation'); "
            "print(sorted(m for m in ('torch', 'gradio', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"


# ---- strategies as objects ----------------------------------------------------------------
def _order(ids):
    return lambda pick: np.asarray(ids, dtype=np.int64)


def test_strategies_look_up_by_name_and_follow_fallbacks():
    chain = Strategies(Strategy("a", _order([]), "b", "a is empty"),
                       Strategy("b", _order([]), "a"), Strategy("c", _order([3]), None))
    assert chain.names == ("a", "b", "c")
    a = chain["a"]
    assert chain.after(a, ["a"]).name == "b"
    assert chain.after(chain["b"], ["a", "b"]) is None  # a loop ends once all are tried
    assert chain.after(chain["c"], ["c"]) is None
    pick = Pick(store=None, user="ann", pool=None)
    assert a.empty_reason(pick) == "a is empty"
    assert chain["b"].empty_reason(pick) == strategies.TAKEN
    with pytest.raises(HitlError, match="Unknown strategy 'z'; choose one of: a, b, c"):
        chain["z"]
    with pytest.raises(ValueError, match="not listed"):
        Strategies(Strategy("a", _order([]), "missing"))


@pytest.mark.parametrize("name", list(TASKS))
def test_every_fallback_of_a_task_is_its_own(name):
    listed = get_task(name).strategies
    for s in listed:
        assert s.fallback is None or s.fallback in listed.names
    assert any(s.fallback is None for s in listed)  # every chain ends


def test_a_strategy_with_nothing_says_why_and_falls_back(session_factory):
    session = session_factory(task="classification", train=False, demo_count=12)
    service = Service(session)
    chosen = get_task("classification").strategies["class"]
    pool = get_task("classification").open_pool(session.store, "local")
    name = session.store.classes()[0].name
    pick = Pick(session.store, "local", pool, name)
    assert chosen.order(pick).size == 0  # no predictions yet
    assert chosen.empty_reason(pick) == f"no unlabeled image predicted as {name}"
    view = service.next_image(LOCAL, "classification", "class", name)
    assert view["strategy"] == "sequential"  # class -> uncertain -> sequential
    assert f"'class' had no candidate (no unlabeled image predicted as {name})" in view["note"]
    last = get_task("classification").strategies["last class"]
    assert last.empty_reason(pick) == "no label yet" and last.follows_labels
    with pytest.raises(HitlError, match="Choose a class"):
        chosen.order(Pick(session.store, "local", pool, None))
