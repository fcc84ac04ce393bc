"""The background trainer: start/stop, crash and resume, class changes, restart; learning."""
from __future__ import annotations

import numpy as np

from hitl import demo as demo_set
from hitl import strategies
from hitl.backbones import create_model
from hitl.imaging import load_image
from hitl.ml import heads
from hitl.ml.features import FeatureExtractor
from hitl.service import Caller, Service
from tests.conftest import wait_for

LOCAL = Caller("local", "admin")


def label_from_truth(session, n):
    service = Service(session)
    for _ in range(n):
        view = service.next_image(LOCAL, "classification", "sequential")
        service.annotate(LOCAL, view["image_id"], view["filename"].rsplit("_", 1)[1][:-4])


def latest_version(session):
    model = session.store.latest_model()
    return None if model is None else model["version"]


def test_trains_predicts_and_idles(session_factory):
    session = session_factory(task="classification")
    trainer = session.trainer
    assert trainer.running
    label_from_truth(session, 6)
    wait_for(lambda: latest_version(session))
    wait_for(lambda: trainer.status_dict()["state"] == "idle"
             and trainer.status_dict()["extract_done"] == 30)
    version = latest_version(session)
    frame = session.store.predictions_frame()
    assert len(frame) == 30 and set(frame.model_version) == {version}
    turns = trainer.status_dict()["turns"]  # idle: turns pass, no new model without labels
    wait_for(lambda: trainer.status_dict()["turns"] >= turns + 3)
    assert latest_version(session) == version
    label_from_truth(session, 1)
    wait_for(lambda: latest_version(session) > version)
    trainer.stop()
    assert not trainer.running and trainer.status_dict()["state"] == "stopped"
    turns = trainer.status_dict()["turns"]
    label_from_truth(session, 1)
    trainer.wake()
    assert trainer.status_dict()["turns"] == turns  # stopped: nothing runs any more
    assert session.store.latest_model()["n_labels"] == 7  # so the 8th label is not trained


def test_error_is_shown_and_training_resumes(session_factory):
    session = session_factory(task="classification", backbone="no_such_model_xyz")
    trainer = session.trainer
    status = wait_for(lambda: (s := trainer.status_dict())["state"] == "error" and s)
    assert "unknown model name" in status["error"]
    assert trainer.running  # the thread survives its own errors
    session.settings.backbone = "test_vit"
    trainer.reset_model()
    label_from_truth(session, 4)
    wait_for(lambda: latest_version(session))
    assert trainer.status_dict()["error"] is None


def test_new_class_picked_up_and_removal_resets(session_factory):
    session = session_factory(task="classification")
    label_from_truth(session, 6)
    wait_for(lambda: latest_version(session))
    extra = session.store.add_class("hexagon")
    session.store.set_label(30, extra.id)
    wait_for(lambda: extra.id in session.store.latest_model()["metrics"]["class_ids"])
    version = latest_version(session)
    session.store.remove_class(extra.id)
    session.trainer.reset_model()
    model = wait_for(lambda: (m := session.store.latest_model())["version"] > version and m)
    assert extra.id not in model["metrics"]["class_ids"]
    assert extra.id not in set(session.store.predictions_frame().label)


def test_resumes_after_restart_without_recomputing(session_factory, tmp_path):
    first = session_factory(task="classification")
    label_from_truth(first, 6)
    wait_for(lambda: first.trainer.status_dict()["extract_done"] == 30
             and latest_version(first))
    version = latest_version(first)
    first.close()
    features = sorted(p for p in first.settings.features_dir.rglob("*") if p.is_file())
    stamps = {p: p.stat().st_mtime_ns for p in features}
    second = session_factory(task="classification")
    assert second.settings.session_dir == first.settings.session_dir
    assert second.store.counts()["labels"] == 6
    wait_for(lambda: latest_version(second) > version)
    wait_for(lambda: second.trainer.status_dict()["state"] == "idle")
    assert all(p.stat().st_mtime_ns == stamps[p] for p in features if p.exists())


def simulate(feats, truth, val, strategy, seed, budget=36):
    """Label `budget` images picked by a strategy; validation accuracy after each round."""
    rng = np.random.default_rng(seed)
    pool = np.setdiff1d(np.arange(len(truth)), val)
    labeled = [int(rng.choice(pool[truth[pool] == k])) for k in range(3)]
    curve, head = [], None
    while True:
        head = heads.train_linear_head(feats[labeled], truth[labeled], 3, steps=150)
        curve.append((len(labeled), float((head.predict_proba(feats[val]).argmax(1)
                                           == truth[val]).mean())))
        if len(labeled) >= budget:
            return curve
        rest = np.setdiff1d(pool, labeled)
        probs = head.predict_proba(feats[rest])
        _, top, margin, entropy = heads.prediction_stats(probs)
        c = {"ids": rest.astype(np.int64), "probability": top.astype(float),
             "margin": margin.astype(float), "entropy": entropy.astype(float)}
        order = strategies.uncertain(c) if strategy == "uncertain" else \
            strategies.random_order(c, int(rng.integers(1 << 30)))
        labeled += [int(i) for i in order[:3]]


def labels_to_reach(curve, target):
    return next((n for n, acc in curve if acc >= target), 10**9)


def test_accuracy_rises_and_uncertainty_keeps_up_with_random(tmp_path):
    """Seeded (the random-init backbone gave other features each run, and this test passed or
    failed by luck). On this easy demo set random picks already reach the target within a few
    rounds, so the check is that uncertainty sampling is no worse than random by more than one
    round of 3 labels, averaged over 5 starting picks each."""
    __import__("torch").manual_seed(0)
    folder = demo_set.generate(tmp_path / "demo", 180, seed=3).parent
    gt = demo_set.ground_truth(folder)
    names = sorted(gt)
    loaded = create_model("test_vit", tmp_path, __import__("torch").device("cpu"),
                          pretrained=False, num_classes=0)
    extractor = FeatureExtractor(loaded, batch_size=32)
    feats = extractor.global_features([load_image(folder / "images" / n) for n in names])
    truth = np.array([demo_set.SHAPES.index(gt[n]) for n in names])
    val = np.arange(0, len(names), 4)  # every class, as 4 and 3 are coprime
    feats = feats.astype(np.float32)
    uncertain = [simulate(feats, truth, val, "uncertain", seed=s) for s in range(5)]
    randoms = [simulate(feats, truth, val, "random", seed=s) for s in range(5)]
    for curve in uncertain:
        assert curve[-1][1] > curve[0][1] + 0.1  # accuracy rises with labels
    target = 0.9 * np.mean([r[-1][1] for r in randoms])
    needed_random = np.mean([labels_to_reach(r, target) for r in randoms])
    needed_uncertain = np.mean([labels_to_reach(u, target) for u in uncertain])
    assert needed_uncertain <= needed_random + 3, (needed_uncertain, needed_random)


def test_resolution_or_backbone_change_starts_clean_caches(session_factory):
    session = session_factory(task="segmentation", seg_long_side=64)
    service = Service(session)
    folder = session.settings.demo_dir
    for _ in range(4):
        view = service.next_image(LOCAL, "segmentation", "sequential")
        service.annotate_positions(LOCAL, view["image_id"],
                                    demo_set.ground_truth_mask(folder, view["filename"]))
    first = wait_for(lambda: session.trainer.predicted_mask(1))
    old_key = session.trainer.learner().cache.dir
    session.settings.seg_long_side = 128
    session.trainer.reset_model()
    wait_for(lambda: (lr := session.trainer.learner()) is not None and lr.long_side == 128
             and session.trainer.predicted_mask(1) is not None)
    learner = session.trainer.learner()
    assert learner.cache.dir != old_key and "long128" in learner.cache.dir.name
    assert learner.extractor.working_size(192, 144, 128) == (128, 96)
    second = session.trainer.predicted_mask(1)
    assert second["mask"].shape == first["mask"].shape == (144, 192)  # resized, never cropped
    assert session.store.mask(1) is not None  # labels untouched by the change
    session.settings.backbone = "test_vit2"
    session.trainer.reset_model()
    wait_for(lambda: (lr := session.trainer.learner()) is not None
             and lr.loaded.name == "test_vit2" and session.trainer.predicted_mask(1) is not None)
    assert "test_vit2" in session.trainer.learner().cache.dir.name
