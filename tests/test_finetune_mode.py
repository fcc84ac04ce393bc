"""Fine-tune mode inside the app's trainer: both tasks learn and predict, checkpoints resume."""
from __future__ import annotations

import numpy as np

from hitl import demo as demo_set
from hitl.service import Caller, Service
from tests.conftest import wait_for

LOCAL = Caller("local", "admin")


def test_finetune_classification_predicts_and_checkpoints(session_factory):
    session = session_factory(task="classification", mode="finetune")
    service = Service(session)
    for _ in range(8):
        view = service.next_image(LOCAL, "classification", "sequential")
        service.annotate(LOCAL, view["image_id"], view["filename"].rsplit("_", 1)[1][:-4])
    model = wait_for(session.store.latest_model)
    assert model["mode"] == "finetune" and model["backbone"] == "test_resnet"
    wait_for(lambda: session.store.predictions_frame().shape[0] >= 22)
    frame = session.store.predictions_frame()
    assert set(frame.label) <= set(demo_set.SHAPES)
    checkpoint = session.trainer.learner().checkpoint
    assert checkpoint.exists()
    state = session.trainer.model_state()
    assert state["mode"] == "finetune" and state["classes"] == list(demo_set.SHAPES)


def test_finetune_segmentation_learns_masks(session_factory):
    session = session_factory(task="segmentation", mode="finetune")
    service = Service(session)
    folder = session.settings.demo_dir
    for _ in range(6):
        view = service.next_image(LOCAL, "segmentation", "sequential")
        service.annotate_positions(LOCAL, view["image_id"],
                                    demo_set.ground_truth_mask(folder, view["filename"]))
    wait_for(lambda: session.store.latest_model())
    result = wait_for(lambda: session.trainer.predicted_mask(1))
    assert result["mask"].shape == (144, 192)
    assert 1 <= result["mask"].min() and result["mask"].max() <= 4
    assert np.isclose(sum(result["fractions"]), 1.0)
