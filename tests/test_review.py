"""Review pages, suspects and more-like-this on a real session (DuckDB file, demo images)."""

import numpy as np
import pandas as pd
import pytest

from hitl.ml.features import FeatureCache
from hitl.review import Review, SuspectRefresher, review_stats
from hitl.store import StoreError
from tests.conftest import wait_for


def predict(store, class_of: dict[int, int], prob_of: dict[int, float]) -> None:
    """Publish predictions as a trainer would (the review layer only reads them)."""
    ids = sorted(class_of)
    store.write_predictions(pd.DataFrame({
        "image_id": ids, "model_version": 1, "class_id": [class_of[i] for i in ids],
        "probability": [prob_of[i] for i in ids], "margin": 0.5, "entropy": 0.5}))


@pytest.fixture
def review(session_factory):
    session = session_factory(train=False)
    session.lock_task("classification")
    store = session.store
    circle, square, _ = [c.id for c in store.classes()]
    ids = store.readable_image_ids().tolist()
    # the first 20 images are predicted circle with falling confidence, the rest square
    predict(store, {i: circle if n < 20 else square for n, i in enumerate(ids)},
            {i: 0.99 - 0.01 * n for n, i in enumerate(ids)})
    return Review(session)


def labels(store) -> dict[int, int]:
    ids, cls = store.labeled_pairs()
    return dict(zip(ids.tolist(), cls.tolist()))


def test_page_is_the_most_confident_of_the_class_and_respects_a_band(review):
    ids = review.store.readable_image_ids().tolist()
    page = review.review_batch("ann", "circle", 8)
    assert [it["image_id"] for it in page["items"]] == ids[:8]
    probs = [it["prediction"]["probability"] for it in page["items"]]
    assert probs == sorted(probs, reverse=True) and page["items"][0]["prediction"]["label"] \
        == "circle"
    band = review.review_batch("ann", "circle", 24, band=[0.795, 0.855])
    got = [it["prediction"]["probability"] for it in band["items"]]
    assert got and all(0.795 <= p <= 0.855 for p in got) and len(got) == 6
    with pytest.raises(StoreError, match="band"):
        review.review_batch("ann", "circle", 8, band=[0.9, 0.1])


def test_accept_stores_exactly_the_unmarked_images_with_the_class(review):
    store = review.store
    circle, square, triangle = [c.id for c in store.classes()]
    page = [it["image_id"] for it in review.review_batch("ann", "circle", 10)["items"]]
    before_events = len(store.events(1000))
    done = review.accept_batch("ann", page, "circle", rejected_ids=page[:3],
                               relabels={str(page[1]): "triangle"})
    assert done["ok"] and sorted(done["accepted"]) == sorted(page[3:])
    assert done["rejected"] == [page[0], page[2]]
    assert done["relabeled"] == {str(page[1]): "triangle"}
    assert labels(store) == {**{i: circle for i in page[3:]}, page[1]: triangle}
    assert store.rejected_ids(circle).tolist() == sorted([page[0], page[2]])
    sources = store._rows("SELECT image_id, source FROM labels ORDER BY image_id")
    assert {i: s for i, s in sources} == {**{i: "review" for i in page[3:]}, page[1]: "click"}
    assert len(store.events(1000)) == before_events + 10  # one event per image, nothing else
    # rejected images stay off the next pages of that class; nothing on the page is re-offered
    nxt = [it["image_id"] for it in review.review_batch("ann", "circle", 24)["items"]]
    assert not set(nxt) & set(page) and len(nxt) == 10
    stats = review_stats(store)
    assert stats["labels"] == 7 and stats["per_class"]["circle"]["accept_rate"] == 0.7


def test_one_undo_reverts_the_whole_page(review):
    store = review.store
    first = [it["image_id"] for it in review.review_batch("ann", "circle", 5)["items"]]
    review.accept_batch("ann", first, "circle")
    page = [it["image_id"] for it in review.review_batch("ann", "circle", 6)["items"]]
    review.accept_batch("ann", page, "circle", rejected_ids=[page[0]],
                        relabels={page[1]: "square"})
    undone = store.undo_details("ann")
    assert undone["image_ids"] == page and undone["batch_id"] is not None
    assert sorted(labels(store)) == sorted(first)  # the earlier page stays
    circle = store.class_by_name("circle").id
    assert store.rejected_ids(circle).size == 0
    assert review_stats(store)["per_class"]["circle"]["shown"] == 5
    assert store.undo("ann") == first[0] and labels(store) == {}


def test_two_users_never_see_the_same_page_images(review):
    a = {it["image_id"] for it in review.review_batch("ann", "circle", 8)["items"]}
    b = {it["image_id"] for it in review.review_batch("bob", "circle", 8)["items"]}
    assert len(a) == 8 and len(b) == 8 and not a & b
    # a page another user holds cannot be accepted by someone else: nothing is stored
    with pytest.raises(StoreError, match="out of date"):
        review.accept_batch("bob", sorted(a), "circle")
    assert labels(review.store) == {}
    # the one-by-one queue passes over another user's page too
    c = review.store.label_candidates("bob")["ids"]
    assert not set(c.tolist()) & a


def test_bad_requests_get_one_line_and_store_nothing(review):
    page = [it["image_id"] for it in review.review_batch("ann", "circle", 4)["items"]]
    cases = [(page, "nope", [], {}, "no class named"),
             ([], "circle", [], {}, "empty"),
             (page, "circle", [99999], {}, "not on the page"),
             (page, "circle", [], {page[0]: "nope"}, "no class named"),
             (page + [99999], "circle", [], {}, "no image with id 99999"),
             (page + page[:1], "circle", [], {}, "twice")]
    for ids, cls, rej, rel, message in cases:
        with pytest.raises(StoreError, match=message):
            review.accept_batch("ann", ids, cls, rej, rel)
    assert labels(review.store) == {}


def _separable_features(session, truth: dict[int, int]) -> FeatureCache:
    """Cached global features where each class is a tight blob: a model can be sure."""
    cache = FeatureCache(session.settings.features_dir, "separable")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 4
    ids = np.asarray(sorted(truth), np.int64)
    cache.put_global(ids, (centres[[truth[i] for i in ids]]
                           + rng.normal(size=(len(ids), 16))).astype(np.float16))
    return cache


class CachedLearner:
    """The two things the idle hook reads from a frozen learner: its cache and model version."""

    def __init__(self, cache):
        self.cache, self.version = cache, 1

    def model_state(self):
        return None


def test_suspects_rank_an_injected_wrong_label_first(session_factory):
    session = session_factory(train=False, demo_count=60)
    session.lock_task("classification")
    store = session.store
    class_ids = [c.id for c in store.classes()]
    ids = store.readable_image_ids().tolist()
    truth = {i: n % 3 for n, i in enumerate(ids)}
    learner = CachedLearner(_separable_features(session, truth))
    wrong = ids[7]
    for i in ids[:45]:
        given = (truth[i] + 1) % 3 if i == wrong else truth[i]
        store.set_label(i, class_ids[given], "ann")
    refresher = SuspectRefresher(store)
    refresher.MIN_INTERVAL_S = 0.0
    refresher(learner)
    review = Review(session)
    top = review.suspects("ann", 5)["items"]
    assert top[0]["image_id"] == wrong and top[0]["score"] < 0.5 < top[1]["score"]
    names = [c.name for c in store.classes()]
    assert top[0]["label"] == names[(truth[wrong] + 1) % 3]
    assert top[0]["oos_prediction"] == names[truth[wrong]]
    # keep: it leaves the list; relabel: so does it (its label changed since it was scored)
    with pytest.raises(StoreError, match="changed meanwhile"):
        review.keep("ann", wrong, seen_label=names[truth[wrong]])  # not what is stored
    review.keep("ann", wrong, seen_label=top[0]["label"])
    assert wrong not in [it["image_id"] for it in review.suspects("ann", 50)["items"]]
    other = top[1]["image_id"]
    review.remove("ann", other)
    assert store.label_of(other) is None
    assert store.undo("ann") == other and store.label_of(other) is not None
    # another labeler does not get the suspects leased to ann
    assert not {it["image_id"] for it in review.suspects("bob", 50)["items"]} & {other}


def test_similar_returns_near_duplicates_first(session_factory):
    session = session_factory(train=False)
    session.lock_task("classification")
    store = session.store
    ids = store.readable_image_ids().tolist()
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(len(ids), 16))
    feats[[5, 11, 17]] = feats[2] + rng.normal(size=(3, 16)) * 0.01  # near-duplicates of ids[2]
    cache = FeatureCache(session.settings.features_dir, "dups")
    cache.put_global(np.asarray(ids, np.int64), feats.astype(np.float16))
    session.trainer.publish(features=cache)  # what a frozen learner hands the trainer
    store.set_label(ids[11], store.classes()[0].id)  # labeled: not offered again
    got = Review(session).similar("ann", ids[2], 4)
    near = [it["image_id"] for it in got["items"]]
    assert near[:2] == sorted(near[:2], key=lambda i: -got["items"][near.index(i)]["similarity"])
    assert set(near[:2]) == {ids[5], ids[17]} and ids[2] not in near and ids[11] not in near
    assert got["items"][0]["similarity"] > 0.99 > got["items"][2]["similarity"]
    with pytest.raises(StoreError, match="no image"):
        Review(session).similar("ann", 99999, 4)


def test_refresher_runs_in_the_real_trainer(session_factory):
    session = session_factory(demo_count=24)
    store = session.store
    session.lock_task("classification")
    class_ids = [c.id for c in store.classes()]
    for n, i in enumerate(store.readable_image_ids().tolist()[:12]):
        store.set_label(i, class_ids[n % 3], "ann")
    wait_for(lambda: len(store.suspect_rows("ann", 50)) == 12, timeout=240)
    rows = store.suspect_rows("ann", 50)
    assert all(0.0 <= r[4] <= 1.0 for r in rows) and rows[0][5] >= 1  # a model version


def test_segmentation_suspects_rank_a_wrong_mask_first(session_factory):
    from hitl import demo
    session = session_factory(train=False, demo_count=12)
    session.lock_task("segmentation")
    store = session.store
    values = store.mask_values()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 4  # one blob per class: background and three shapes
    cache = FeatureCache(session.settings.features_dir, "patches")
    ids = store.readable_image_ids().tolist()
    wrong = ids[4]
    for row in store.images_by_ids(ids):
        truth = demo.ground_truth_mask(session.settings.demo_dir, row.filename)  # positions
        h, w = truth.shape
        centre_px = truth[(np.arange(8) * h // 8 + h // 16)[:, None],
                          (np.arange(8) * w // 8 + w // 16)[None, :]]
        cache.put_patches(row.id, (centres[centre_px - 1]
                                   + rng.normal(size=(8, 8, 16))).astype(np.float16))
        given = truth.copy()
        if row.id == wrong:  # the shape painted as background and the background as the shape
            shape = int(truth.max())
            given = np.where(truth == 1, shape, np.where(truth == shape, 1, truth))
        store.set_mask(row.id, values.from_positions(given.astype(np.uint8)), "ann")
    refresher = SuspectRefresher(store)
    refresher.MIN_INTERVAL_S = 0.0
    refresher(CachedLearner(cache))
    rows = store.suspect_rows("ann", 50)
    assert len(rows) == 12 and rows[0][0] == wrong and rows[0][2] is None  # a mask, no class
    assert rows[0][4] < 0.3 < rows[1][4]  # IoU of the wrong mask vs the others
    items = Review(session).suspects("ann", 3)["items"]
    assert items[0]["image_id"] == wrong and items[0]["label"] == "mask"


def test_similar_in_segmentation_pools_the_patch_grids(session_factory):
    session = session_factory(train=False, demo_count=12)
    session.lock_task("segmentation")
    ids = session.store.readable_image_ids().tolist()
    rng = np.random.default_rng(1)
    cache = FeatureCache(session.settings.features_dir, "patch-grids")
    base = rng.normal(size=(len(ids), 16)) * 3
    base[7] = base[0] + 0.05  # image 7's patches average to image 0's
    for k, image_id in enumerate(ids):
        cache.put_patches(image_id, (base[k] + rng.normal(size=(4, 4, 16)) * 0.1)
                          .astype(np.float16))
    session.trainer.publish(features=cache)  # what a frozen learner hands the trainer
    got = Review(session).similar("ann", ids[0], 3)["items"]
    assert got[0]["image_id"] == ids[7] and ids[0] not in [it["image_id"] for it in got]
