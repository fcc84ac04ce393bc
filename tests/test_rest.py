"""The REST API under /api/v1 on the launched app: every route's round trip, errors, auth."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hitl import demo as demo_set
from hitl.tokens import TokenChecker, add_token, read_tokens, tokens_path
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parent.parent


def rest(app, **kw) -> httpx.Client:
    return httpx.Client(base_url=app.url + "api/v1", timeout=60, **kw)


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def publish_predictions(session, label: str, probability: float = 0.7) -> None:
    """Predictions for every image, as the trainer publishes them."""
    store = session.store
    cls = store.class_by_name(label)
    ids = store.readable_image_ids()
    store.write_predictions(pd.DataFrame({
        "image_id": ids, "model_version": 1, "class_id": cls.id,
        "probability": np.linspace(0.4, 0.9, len(ids)), "margin": 0.2, "entropy": 0.5}))
    store.record_model(1, "classification", "test_vit", "frozen", 0)


def test_classification_round_trip(app_factory):
    app = app_factory(task="classification", train=False)
    publish_predictions(app.session, "circle")
    with rest(app) as api:
        assert api.get("/classes").json() == list(demo_set.SHAPES)

        first = api.get("/next", params={"strategy": "sequential"})
        assert first.status_code == 200
        view = first.json()
        assert view["image_id"] == 1 and view["strategy"] == "sequential"
        assert view["width"] > 0 and view["height"] > 0 and view["filename"].endswith(".png")
        assert view["prediction"]["label"] == "circle"
        assert view["probabilities"] == {"circle": pytest.approx(0.4)}
        image_id = view["image_id"]

        meta = api.get(f"/images/{image_id}").json()
        assert meta["image_id"] == image_id and meta["label"] is None

        file = api.get(f"/images/{image_id}/file")
        assert file.status_code == 200 and file.headers["content-type"] == "image/png"
        assert "max-age" in file.headers["cache-control"]
        with Image.open(io.BytesIO(file.content)) as img:
            assert img.size == (view["width"], view["height"])
        again = api.get(f"/images/{image_id}/file", headers={"If-None-Match": file.headers["etag"]})
        assert again.status_code == 304

        truth = view["filename"].rsplit("_", 1)[1].removesuffix(".png")
        saved = api.put(f"/images/{image_id}/label", json={"label": truth})
        assert saved.status_code == 200
        assert saved.json() == {"ok": True, "image_id": image_id, "label": truth}
        assert api.get(f"/images/{image_id}").json()["label"] == truth

        # save + next in one call
        both = api.put("/images/2/label", json={"label": "square", "next_strategy": "sequential"})
        assert both.status_code == 200
        assert both.json()["ok"] and both.json()["next"]["image_id"] == 3

        assert app.session.store.lease_holder(3) == "local"  # leased in the same transaction
        # asking again gives the same image (its lease is kept, nothing is written)
        assert api.get("/next", params={"strategy": "sequential"}).json()["image_id"] == 3
        bad = api.put("/images/3/label", json={"label": "circle", "next_strategy": "best"})
        assert bad.status_code == 422 and app.session.store.label_of(3) is None
        minority = api.put("/images/4/label", json={"label": "circle",
                                                     "next_strategy": "minority"})
        assert minority.json()["next"]["image_id"] not in (None, 4)
        assert api.post("/undo").json() == {"ok": True, "image_id": 4}
        assert api.post("/images/3/skip").json() == {"ok": True, "image_id": 3}
        assert api.post("/undo").json() == {"ok": True, "image_id": 3}
        assert api.post("/undo").json() == {"ok": True, "image_id": 2}

        stats = api.get("/stats").json()
        assert stats["labeled"] == 1 and stats["total"] == 30 and stats["model_version"] == 1
        preds = api.get("/predictions", params={"limit": 5}).json()
        assert len(preds) == 5 and {p["label"] for p in preds} == {"circle"}

        # the class strategy with its class, and the fallback note when it has no candidate
        mine = api.get("/next", params={"strategy": "class", "class_name": "circle"}).json()
        assert mine["strategy"] == "class" and mine["prediction"]["label"] == "circle"
        other = api.get("/next", params={"strategy": "class", "class_name": "square"}).json()
        assert other["strategy"] != "class" and "no unlabeled image predicted" in other["note"]


def test_bad_input_and_unknown_ids(app_factory):
    app = app_factory(task="classification", train=False)
    with rest(app) as api:
        for method, path in [("GET", "/images/9999"), ("GET", "/images/9999/file"),
                             ("GET", "/images/9999/mask"), ("GET", "/images/9999/predicted_mask"),
                             ("POST", "/images/9999/skip")]:
            response = api.request(method, path)
            assert response.status_code == 404, path
            assert response.json() == {"error": "There is no image with id 9999."}
        missing = api.put("/images/9999/label", json={"label": "circle"})
        assert missing.status_code == 404
        bad_class = api.put("/images/1/label", json={"label": "no such class"})
        assert bad_class.status_code == 404 and "no class named" in bad_class.json()["error"]
        bad_strategy = api.get("/next", params={"strategy": "best"})
        assert bad_strategy.status_code == 422
        assert bad_strategy.json()["error"].startswith("Unknown strategy 'best'")
        no_body = api.put("/images/1/label", json={})
        assert no_body.status_code == 422 and no_body.json() == {"error": "label: Field required"}
        not_json = api.put("/images/1/label", content=b"{",
                           headers={"content-type": "application/json"})
        assert not_json.status_code == 422 and "\n" not in not_json.json()["error"]
        not_int = api.get("/images/abc")
        assert not_int.status_code == 422 and not_int.json()["error"].startswith("path.image_id")
        assert api.get("/predictions", params={"limit": -1}).status_code == 422
        assert api.get("/nowhere").status_code == 404
        assert api.post("/undo").status_code == 409  # nothing to undo
        # a mask on a classification session: refused with the task-lock message
        locked = api.put("/images/1/mask", content=png_bytes(np.zeros((4, 4))))
        assert locked.status_code == 409


def test_segmentation_masks(app_factory):
    app = app_factory(task="segmentation", train=False)
    with rest(app) as api:
        view = api.get("/next", params={"strategy": "sequential"}).json()
        image_id, w, h = view["image_id"], view["width"], view["height"]
        assert api.get(f"/images/{image_id}/mask").status_code == 404
        no_model = api.get(f"/images/{image_id}/predicted_mask")
        assert no_model.status_code == 404
        assert no_model.json()["error"].startswith("No predicted mask for this image yet")
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[: h // 2] = 1
        mask[h // 2:, : w // 3] = 2
        saved = api.put(f"/images/{image_id}/mask", content=png_bytes(mask),
                        headers={"content-type": "image/png"})
        assert saved.status_code == 200
        assert saved.json() == {"ok": True, "image_id": image_id,
                                "labeled_pixels": int((mask > 0).sum())}
        back = api.get(f"/images/{image_id}/mask")
        assert back.headers["content-type"] == "image/png"
        assert np.array_equal(np.array(Image.open(io.BytesIO(back.content))), mask)
        assert api.get(f"/images/{image_id}").json()["label"] == "mask"
        wrong_size = api.put(f"/images/{image_id}/mask", content=png_bytes(np.ones((3, 5))))
        assert wrong_size.status_code == 422 and "the image is" in wrong_size.json()["error"]
        rgb = io.BytesIO()
        Image.new("RGB", (w, h)).save(rgb, format="PNG")
        assert api.put(f"/images/{image_id}/mask", content=rgb.getvalue()).status_code == 422
        garbage = api.put(f"/images/{image_id}/mask", content=b"not a png")
        assert garbage.status_code == 422
        assert garbage.json()["error"].startswith("The mask must be a PNG")


def test_docs_list_every_route(app_factory):
    app = app_factory(train=False)
    with rest(app) as api:
        assert "swagger" in api.get("/docs").text.lower()
        paths = set(api.get("/openapi.json").json()["paths"])
    assert paths >= {"/next", "/images/{image_id}", "/images/{image_id}/file",
                     "/images/{image_id}/mask", "/images/{image_id}/predicted_mask",
                     "/images/{image_id}/label", "/images/{image_id}/skip", "/undo", "/stats",
                     "/predictions", "/classes"}


def test_logins_cookie_and_tokens(app_factory, tmp_path):
    token_file = tmp_path / "users.txt.tokens"
    token = add_token(token_file, "bob")
    app = app_factory(auth=[("ann", "pw1"), ("bob", "pw2")], task="classification",
                      train=False, tokens=TokenChecker.from_file(token_file))
    with rest(app) as api:
        refused = api.get("/classes")
        assert refused.status_code == 401 and "Log in" in refused.json()["error"]
        wrong = api.get("/classes", headers={"Authorization": "Bearer hitl_wrong"})
        assert wrong.status_code == 401 and wrong.json() == {"error": "Unknown API token."}
        basic = api.get("/classes", headers={"Authorization": "Basic Ym9iOnB3Mg=="})
        assert basic.status_code == 401
        bearer = {"Authorization": f"Bearer {token}"}
        view = api.get("/next", params={"strategy": "sequential"}, headers=bearer).json()
        api.put(f"/images/{view['image_id']}/label", json={"label": "circle"}, headers=bearer)
    assert app.session.store.label_rows()["user"].tolist() == ["bob"]
    # the page's login cookie opens the REST API too
    with httpx.Client(base_url=app.url, timeout=60) as browser:
        assert browser.post("login", data={"username": "ann", "password": "pw1"}).status_code \
            == 200
        assert browser.get("api/v1/classes").json() == list(demo_set.SHAPES)
        view = browser.get("api/v1/next", params={"strategy": "sequential"}).json()
        browser.put(f"api/v1/images/{view['image_id']}/label", json={"label": "square"})
    assert sorted(app.session.store.label_rows()["user"]) == ["ann", "bob"]


def test_adduser_token_prints_once_and_stores_a_hash(tmp_path):
    auth_file = tmp_path / "users.txt"
    out = subprocess.run([sys.executable, "-m", "hitl", "adduser", "--auth-file", str(auth_file),
                          "ann", "--token"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("hitl_") and len(token) > 40
    stored = tokens_path(auth_file).read_text()
    assert token not in stored and stored.startswith("ann:")
    assert oct(tokens_path(auth_file).stat().st_mode & 0o777) == "0o600"
    checker = TokenChecker(read_tokens(tokens_path(auth_file)))
    assert checker(token) == "ann" and checker(token + "x") is None
    second = add_token(tokens_path(auth_file), "ann")  # a new token replaces the old one
    checker = TokenChecker.from_file(tokens_path(auth_file))
    assert checker(second) == "ann" and checker(token) is None


def test_listening_everywhere_without_logins_is_refused(tmp_path):
    from app import parse_settings
    session = ["--session", str(tmp_path / "s")]
    with pytest.raises(SystemExit) as exc:
        parse_settings([*session, "--host", "0.0.0.0"], env={})
    assert exc.value.code == 2
    assert parse_settings([*session, "--host", "0.0.0.0", "--allow-anonymous"], env={})[0].rest
    assert not parse_settings([*session, "--host", "0.0.0.0", "--no-rest"], env={})[0].rest
    assert parse_settings([*session, "--host", "0.0.0.0", "--auth", "a:b"], env={})[0].rest
    # a Space cannot be given flags: the REST API goes off instead of the app refusing to start
    space = parse_settings(session, env={"SPACE_ID": "x/y", "GRADIO_SERVER_NAME": "0.0.0.0"})[0]
    assert not space.rest


def test_without_logins_only_local_clients(session_factory):
    from starlette.requests import Request

    from hitl.rest import ApiError, Gate
    from hitl.rest_service import RestView
    from hitl.service import Service
    session = session_factory(train=False)
    service = RestView(session, Service(session))

    def request(host: str) -> Request:
        return Request({"type": "http", "headers": [], "client": (host, 5000)})
    assert Gate().caller(request("127.0.0.1"), service).name == "local"
    with pytest.raises(ApiError) as exc:
        Gate().caller(request("10.1.2.3"), service)
    assert exc.value.status == 403
    assert Gate(allow_anonymous=True).caller(request("10.1.2.3"), service).name == "local"


def raw_call(http: httpx.Client, name: str, data: list) -> object:
    """Gradio's raw HTTP API: POST the inputs, then read the result's event stream."""
    import json
    event_id = http.post(f"gradio_api/call/{name}", json={"data": data}).json()["event_id"]
    text = http.get(f"gradio_api/call/{name}/{event_id}").text
    lines = text.strip().splitlines()
    assert lines[-2] == "event: complete", text
    return json.loads(lines[-1].removeprefix("data: "))[0]


def test_raw_gradio_calls_leave_no_session_behind(app_factory):
    app = app_factory(task="classification", train=False)
    holder, queue = app.demo.state_holder, app.demo._queue
    with httpx.Client(base_url=app.url, timeout=60) as http:
        raw_call(http, "classes", [])
        before = len(holder.session_data)
        for _ in range(30):
            assert raw_call(http, "classes", []) == list(demo_set.SHAPES)
            view = raw_call(http, "next_image", ["sequential", None])
            assert raw_call(http, "skip", [view["image_id"]])["ok"]
    wait_for(lambda: len(holder.session_data) <= before, timeout=10)
    wait_for(lambda: len(queue.pending_messages_per_session) <= before, timeout=10)
    wait_for(lambda: len(queue.pending_event_ids_session) <= before, timeout=10)
    # a client that names its session (gradio_client, the page) keeps it
    client = app.client()
    assert client.predict(api_name="/classes") == list(demo_set.SHAPES)
    assert client.session_hash in holder.session_data


def test_roles_apply_through_the_service(app_factory, tmp_path):
    token_file = tmp_path / "users.txt.tokens"
    bob_token, ann_token = add_token(token_file, "bob"), add_token(token_file, "ann")
    app = app_factory(auth=[("ann", "pw1", "admin"), ("bob", "pw2")], task="classification",
                      train=False, tokens=TokenChecker.from_file(token_file))
    bob = {"Authorization": f"Bearer {bob_token}"}
    ann = {"Authorization": f"Bearer {ann_token}"}
    with rest(app) as api:
        refused = api.post("/classes", json={"name": "hexagon"}, headers=bob)
        assert refused.status_code == 403 and "Only an admin" in refused.json()["error"]
        assert api.delete("/classes/circle", headers=bob).status_code == 403
        # a labeler still labels
        view = api.get("/next", params={"strategy": "sequential"}, headers=bob).json()
        assert api.put(f"/images/{view['image_id']}/label", json={"label": "circle"},
                       headers=bob).json()["ok"]
        added = api.post("/classes", json={"name": "hexagon"}, headers=ann)
        assert added.status_code == 200, added.text
        assert api.get("/classes", headers=bob).json() == [*demo_set.SHAPES, "hexagon"]
        assert api.delete("/classes/nothing", headers=ann).status_code == 404
        removed = api.delete("/classes/circle", headers=ann)
        assert removed.status_code == 200 and removed.json()["labels"] == 1
        # undo is the caller's own: ann has no label to undo, bob's label went with its class
        assert api.post("/undo", headers=ann).status_code == 409
