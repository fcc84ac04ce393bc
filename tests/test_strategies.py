"""Next-image strategies: pure functions and the labeling service's fallbacks."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hitl import strategies
from hitl.service import Caller, Service
from hitl.tasks.segmentation.strategies import seg_of_class, seg_uncertain

LOCAL = Caller("local", "admin")


def cands(ids, cls, prob, margin=None, entropy=None):
    ids = np.asarray(ids, np.int64)
    prob = np.asarray(prob, float)
    return {"ids": ids, "class_id": np.asarray(cls, float), "probability": prob,
            "margin": np.asarray(margin if margin is not None else prob, float),
            "entropy": np.asarray(entropy if entropy is not None else 1 - prob, float)}


def test_uncertain_orders_and_ignores_missing_predictions():
    c = cands([1, 2, 3, 4], [1, 2, 1, np.nan], [0.9, 0.4, 0.4, np.nan],
              margin=[0.8, 0.05, 0.3, np.nan], entropy=[0.1, 0.6, 0.9, np.nan])
    assert strategies.uncertain(c).tolist() == [2, 3, 1]  # tie broken by id
    assert strategies.uncertain(c, "margin").tolist()[0] == 2
    assert strategies.uncertain(c, "entropy").tolist()[0] == 3
    empty = cands([5], [np.nan], [np.nan])
    assert strategies.uncertain(empty).size == 0


def test_minority_counts_zero_label_classes_first():
    c = cands([1, 2, 3, 4], [10, 10, 20, 30], [0.9, 0.6, 0.7, 0.8])
    counts = {10: 5, 20: 0, 30: 0}
    # 20 and 30 both have zero labels: class order breaks the tie
    assert strategies.minority(c, counts, [10, 20, 30]).tolist() == [3]
    assert strategies.minority(c, counts, [10, 30, 20]).tolist() == [4]
    # least confident of the class first
    assert strategies.minority(c, {10: 0, 20: 3, 30: 3}, [10, 20, 30]).tolist() == [2, 1]
    # a minority class with no predicted candidate passes to the next
    assert strategies.minority(c, {10: 9, 20: 1, 30: 9, 40: 0}, [40, 10, 20, 30]).tolist() \
        == [3]


def test_class_strategy_most_confident_first():
    c = cands([1, 2, 3], [7, 7, 8], [0.6, 0.95, 0.99])
    assert strategies.of_class(c, 7).tolist() == [2, 1]
    assert strategies.of_class(c, 9).size == 0


def test_random_and_sequential():
    c = cands(range(1, 101), [1] * 100, [0.5] * 100)
    assert strategies.sequential(c).tolist() == list(range(1, 33))
    a, b = strategies.random_order(c, 1), strategies.random_order(c, 2)
    assert len(set(a.tolist())) == len(a) and a.tolist() != b.tolist()


def test_segmentation_strategies():
    c = {"ids": np.array([1, 2, 3]), "entropy": np.array([0.2, 0.9, np.nan]),
         "fractions": np.array([[0.9, 0.1], [0.2, 0.8], None], dtype=object)}
    assert seg_uncertain(c).tolist() == [2, 1]
    assert seg_of_class(c, 1).tolist() == [2, 1]


def predict_all(store, class_id_for):
    ids = store.readable_image_ids()
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.34, 1.0, len(ids))
    store.write_predictions(pd.DataFrame({
        "image_id": ids, "model_version": 1, "class_id": [class_id_for(i) for i in ids],
        "probability": prob, "margin": prob - 0.3, "entropy": 1 - prob}))
    return dict(zip(ids.tolist(), prob.tolist()))


def test_service_fallbacks_and_end_states(session_factory):
    session = session_factory(task="classification", train=False)
    service = Service(session)
    # no predictions: uncertain falls back to sequential and says why
    view = service.next_image(LOCAL, "classification", "uncertain")
    assert view["image_id"] == 1 and "no predictions yet" in view["note"]
    assert service.next_image(LOCAL, "classification", "last class")["strategy"] != "last class"
    classes = session.store.classes()
    probs = predict_all(session.store, lambda i: classes[i % 3].id)
    view = service.next_image(LOCAL, "classification", "uncertain")
    assert view["image_id"] == min(probs, key=probs.get) and view["note"] is None
    assert view["prediction"]["probability"] == np.float32(probs[view["image_id"]])
    service.annotate(LOCAL, view["image_id"], classes[1].name)
    last = service.next_image(LOCAL, "classification", "last class")
    assert last["strategy"] == "last class" and last["image_id"] % 3 == 1
    cls_view = service.next_image(LOCAL, "classification", "class", classes[2].name)
    assert cls_view["prediction"]["label"] == classes[2].name
    # everything labeled: a clear state, not an error
    for image_id in session.store.readable_image_ids().tolist():
        session.store.set_label(image_id, classes[0].id)
    done = service.next_image(LOCAL, "classification", "minority")
    assert done["image_id"] is None and done["note"] == "No images left to label."


def test_single_class_session(session_factory):
    session = session_factory(classes=["only"], train=False, images=["/nonexistent"])
    assert session.store.image_count() == 0
    service = Service(session)
    assert service.next_image(LOCAL, "classification", "minority")["image_id"] is None


def test_live_accuracy_uses_the_prediction_shown(session_factory):
    session = session_factory(task="classification", train=False)
    service = Service(session)
    classes = session.store.classes()
    predict_all(session.store, lambda i: classes[0].id)
    service.annotate(LOCAL, 1, classes[0].name)   # prediction right
    service.annotate(LOCAL, 2, classes[1].name)   # wrong
    service.annotate(LOCAL, 3, classes[0].name)   # right
    session.store.clear_predictions()
    service.annotate(LOCAL, 4, classes[0].name)   # no prediction shown: not counted
    accuracy, counted = session.store.live_accuracy(10)
    assert counted == 3 and abs(accuracy - 2 / 3) < 1e-9
    assert session.store.live_accuracy(1) == (1.0, 1)
