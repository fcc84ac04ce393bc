"""Review endpoints through the real Gradio server and gradio_client."""

import pandas as pd


def test_review_page_accept_undo_and_suspects_over_the_api(app_factory):
    app = app_factory(train=False)
    store = app.session.store
    app.session.lock_task("classification")
    circle = store.class_by_name("circle").id
    ids = store.readable_image_ids().tolist()
    store.write_predictions(pd.DataFrame({
        "image_id": ids, "model_version": 1, "class_id": circle,
        "probability": [0.99 - 0.01 * n for n in range(len(ids))], "margin": 0.5,
        "entropy": 0.5}))
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
    undone = client.predict(api_name="/undo")
    assert undone["ok"] and store.labeled_pairs()[0].size == 0
    bad = client.predict("nope", 6, None, api_name="/review_batch")
    assert bad == {"ok": False, "error": "There is no class named 'nope'."}
    assert client.predict(6, api_name="/suspects")["items"] == []
    assert "cached features" in client.predict(ids[0], 4, api_name="/similar")["error"]
