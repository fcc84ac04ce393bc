"""Review endpoints through the real Gradio server and gradio_client."""

import httpx
import pandas as pd

from hitl.ui.classification import stats_markdown


def predicted_circles(app) -> list[int]:
    store = app.session.store
    app.session.lock_task("classification")
    ids = store.readable_image_ids().tolist()
    store.write_predictions(pd.DataFrame({
        "image_id": ids, "model_version": 1, "class_id": store.class_by_name("circle").id,
        "probability": [0.99 - 0.01 * n for n in range(len(ids))], "margin": 0.5,
        "entropy": 0.5}))
    return ids


def test_review_page_accept_undo_and_suspects_over_the_api(app_factory):
    app = app_factory(train=False)
    store = app.session.store
    ids = predicted_circles(app)
    circle = store.class_by_name("circle").id
    client = app.client()
    page = client.predict("circle", 6, None, api_name="/review_batch")
    shown = [it["image_id"] for it in page["items"]]
    assert page["ok"] and shown == ids[:6]
    done = client.predict(shown, "circle", [shown[0]], {str(shown[1]): "square"},
                          api_name="/accept_batch")
    assert done["ok"] and sorted(done["accepted"]) == sorted(shown[2:])
    labeled = dict(zip(*(a.tolist() for a in store.labeled_pairs())))
    assert labeled == {**{i: circle for i in shown[2:]},
                       shown[1]: store.class_by_name("square").id}
    stats = client.predict(50, api_name="/stats")
    assert stats["review"]["per_class"]["circle"]["accept_rate"] == round(4 / 6, 4)
    assert "accept rate circle: 66.7% of 6" in stats_markdown(stats)  # the stats panel
    undone = client.predict(api_name="/undo")
    assert undone["ok"] and store.labeled_pairs()[0].size == 0
    bad = client.predict("nope", 6, None, api_name="/review_batch")
    assert bad == {"ok": False, "error": "There is no class named 'nope'."}
    assert client.predict(6, api_name="/suspects")["items"] == []
    assert "cached features" in client.predict(ids[0], 4, api_name="/similar")["error"]


def test_review_routes_over_rest(app_factory):
    app = app_factory(train=False)
    ids = predicted_circles(app)
    store = app.session.store
    with httpx.Client(base_url=app.url + "api/v1", timeout=60) as api:
        page = api.get("/review", params={"class_name": "circle", "n": 5, "low": 0.9}).json()
        shown = [it["image_id"] for it in page["items"]]
        assert shown == ids[:5]
        done = api.post("/review/accept", json={"image_ids": shown, "class_name": "circle",
                                                "rejected_ids": [shown[4]]})
        assert done.status_code == 200 and done.json()["rejected"] == [shown[4]]
        assert sorted(store.labeled_pairs()[0].tolist()) == sorted(shown[:4])
        again = api.post("/review/accept", json={"image_ids": shown, "class_name": "circle"})
        assert again.status_code == 400 and "out of date" in again.json()["error"]
        assert api.get("/review", params={"class_name": "nope"}).status_code == 404
        assert api.get("/suspects").json()["items"] == []
        assert api.post(f"/suspects/{shown[0]}/keep").status_code == 200
        assert api.post(f"/suspects/{shown[4]}/remove").status_code == 409  # it has no label
        assert api.get("/images/99999/similar").status_code == 404
        assert "/review/accept" in api.get("/openapi.json").json()["paths"]
