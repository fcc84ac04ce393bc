"""The launched app driven by gradio_client: labeling, task lock, reset, logins, leases."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from hitl import demo as demo_set
from tests.conftest import wait_for


def truth(filename: str) -> str:
    return filename.rsplit("_", 1)[1].removesuffix(".png")




def mask_png(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8), "L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_classification_session_through_the_api(app_factory):
    app = app_factory(task="classification")
    client = app.client()
    assert client.predict(api_name="/classes") == list(demo_set.SHAPES)
    for _ in range(9):
        view = client.predict("uncertain", None, api_name="/next_image")
        result = client.predict(view["image_id"], truth(view["filename"]), api_name="/annotate")
        assert result["ok"], result
    stats = wait_for(lambda: (s := client.predict(50, api_name="/stats"))["model_version"] and s)
    assert stats["labeled"] == 9 and sum(stats["per_class"].values()) == 9
    assert stats["total"] == 30
    preds = wait_for(lambda: client.predict(100, api_name="/predictions"))
    assert {p["label"] for p in preds} <= set(demo_set.SHAPES)
    assert all(0 <= p["probability"] <= 1 for p in preds)
    # a labeled image shows its label; a prediction comes with the next image
    view = client.predict("sequential", None, api_name="/next_image")
    assert view["label"] is None and view["prediction"] is not None
    bad = client.predict(99999, "circle", api_name="/annotate")
    assert bad == {"ok": False, "error": "There is no image with id 99999."}
    odd = client.predict(view["image_id"], "no such class", api_name="/annotate")
    assert not odd["ok"] and "no class named" in odd["error"]
    skipped = client.predict(view["image_id"], api_name="/skip")
    assert skipped["ok"]
    undone = client.predict(api_name="/undo")
    assert undone == {"ok": True, "image_id": view["image_id"]}


def test_task_lock_and_reset(app_factory):
    app = app_factory()
    client = app.client()
    assert app.session.store.task() is None
    view = client.predict("sequential", None, api_name="/next_image")
    # the demo has its classes before the task is chosen; the first action chooses it
    assert [c.name for c in app.session.store.classes()] == \
        list(demo_set.FIRST_LAUNCH_CLASSES)
    mask = np.zeros((demo_set.SIZE[1], demo_set.SIZE[0]), np.uint8)
    mask[:10, :10] = 1
    first = client.predict(view["image_id"], mask_png(mask), api_name="/annotate_mask")
    assert first["ok"] and app.session.store.task() == "segmentation"
    refused = client.predict(view["image_id"], "circle", api_name="/annotate")
    assert not refused["ok"]
    assert refused["error"] == ("The task of this session is segmentation. To do another task, "
                                "reset the app (this archives the current session).")
    assert client.predict(False, api_name="/reset_session")["ok"] is False
    result = client.predict(True, api_name="/reset_session")
    assert result["ok"] and "session-" in result["archive"]
    assert app.session.store.task() is None and app.session.store.counts()["masks"] == 0
    from pathlib import Path

    from hitl.store import Store
    archived = Store(Path(result["archive"]) / "hitl.duckdb")
    assert archived.counts()["masks"] == 1 and archived.task() == "segmentation"
    archived.close()
    # the fresh session takes classification now
    view = client.predict("sequential", None, api_name="/next_image")
    assert client.predict(view["image_id"], "square", api_name="/annotate")["ok"]
    assert app.session.store.task() == "classification"


def test_segmentation_masks_through_the_api(app_factory):
    app = app_factory(task="segmentation")
    client = app.client()
    classes = client.predict(api_name="/classes")
    assert classes == list(demo_set.SEG_CLASSES)
    folder = app.session.settings.demo_dir
    for _ in range(6):
        view = client.predict("random", None, api_name="/next_image")
        gt = demo_set.ground_truth_mask(folder, view["filename"])
        partial = np.where(np.random.default_rng(0).random(gt.shape) < 0.3, gt, 0)
        assert client.predict(view["image_id"], mask_png(partial), api_name="/annotate_mask")["ok"]
        stored = app.session.store.mask_positions(view["image_id"])
        assert (stored == partial).all()  # bit-exact
    wrong = client.predict(view["image_id"], mask_png(np.zeros((5, 5))), api_name="/annotate_mask")
    assert not wrong["ok"] and "image is 192x144" in wrong["error"]
    pred = wait_for(lambda: (p := client.predict(view["image_id"],
                                                 api_name="/predicted_mask"))["ok"] and p)
    decoded = np.array(Image.open(io.BytesIO(base64.b64decode(pred["mask_png"]))))
    assert decoded.shape == (144, 192) and decoded.min() >= 1 and decoded.max() <= len(classes)
    assert abs(sum(pred["fractions"].values()) - 1) < 1e-3
    stats = wait_for(lambda: (s := client.predict(50, api_name="/stats"))["model_version"] and s)
    assert stats["labeled"] == 6 and set(stats["per_class_iou"]) <= set(classes)


def test_login_required_and_users_recorded(app_factory):
    from gradio_client import Client
    app = app_factory(auth=[("ann", "pw1"), ("bob", "pw2")], task="classification")
    with pytest.raises(Exception):
        Client(app.url, verbose=False).predict("sequential", None, api_name="/next_image")
    with pytest.raises(Exception):
        app.client(auth=("ann", "wrong"))
    ann, bob = app.client(auth=("ann", "pw1")), app.client(auth=("bob", "pw2"))
    a = ann.predict("sequential", None, api_name="/next_image")
    b = bob.predict("sequential", None, api_name="/next_image")
    assert a["image_id"] != b["image_id"]  # leased to ann, so bob gets another
    assert ann.predict(a["image_id"], "circle", api_name="/annotate")["ok"]
    assert bob.predict(b["image_id"], "square", api_name="/annotate")["ok"]
    frame = app.session.store.label_rows()
    assert dict(zip(frame.image_id, frame.user)) == {a["image_id"]: "ann", b["image_id"]: "bob"}
    assert bob.predict(api_name="/undo")["image_id"] == b["image_id"]
    assert app.session.store.label_of(a["image_id"]) is not None  # ann's label untouched
    users = {u["user"] for u in bob.predict(50, api_name="/stats")["users"]}
    assert users == {"ann"}
