"""The task registry: every task names real code, and an unknown task raises."""
from __future__ import annotations

import pytest

from hitl import export, strategies
from hitl.model_file import Predictor
from hitl.settings import MODES
from hitl.store import Store
from hitl.tasks import TASKS, UnknownTask, get_task


@pytest.mark.parametrize("name", list(TASKS))
def test_every_entry_names_code_that_exists(name):
    task = get_task(name)
    assert task.name == name
    for mode in MODES:
        learner = task.learner(mode)
        assert callable(getattr(learner, "step")) and callable(getattr(learner, "model_state"))
    assert issubclass(task.predictor_class(), Predictor)
    assert set(task.exports) <= set(export.FORMATS)
    assert set(task.strategies) <= set(strategies.FALLBACK)
    assert task.demo_classes and task.score in ("val_accuracy", "val_miou")
    assert callable(getattr(Store, task.candidates))


def test_an_unknown_task_raises(tmp_path):
    for bad in ("detection", None, ""):
        with pytest.raises(UnknownTask, match="hitl knows: classification, segmentation"):
            get_task(bad)
    with pytest.raises(ValueError, match="Unknown training mode"):
        get_task("classification").learner("lora")
    store = Store(tmp_path / "s.duckdb")
    try:
        with pytest.raises(UnknownTask):
            store.candidates("detection", "ann")
    finally:
        store.close()
