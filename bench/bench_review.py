"""12. Review in bulk vs one-by-one, and suspect labels (issue 13).

A simulated annotator who knows the truth labels two data sets: the demo set (240 images,
3 classes; the generated demo images with their true classes) and generated data (3,000
image files, 10 classes, `--quick` 1,000). Features are generated, not extracted: class
centres plus unit noise (64-d), separable enough that a linear head passes 90 % accuracy
after a few hundred labels and tops out near 95 % — random-init backbones (the only ones
offline) would not separate the shapes at all. So it runs offline in a few minutes.

Cost model (simulated seconds): 1.5 s per single label; 3 s per grid page of 24 plus 0.7 s
per marked cell. One-by-one therefore gives 40 labels/min whatever the model does.
Review: one-by-one in random order until the model's accuracy on the unlabeled images
passes 90 %, then pages from `Review.review_batch` (the class with the most unlabeled
predictions first, most confident first); the annotator marks every wrong cell (marked cells
stay unlabeled, the conservative choice) and `Review.accept_batch` stores the rest. After
each page or 10 single labels the bench retrains a linear head (`hitl.ml.heads`, as the frozen
learner does) and publishes predictions. Both workflows store only true labels (equal
accuracy, checked against the truth). Target: review labels/min ≥ 3× one-by-one.

Suspects, end to end: the app's real trainer (frozen mode, `test_vit`, its feature cache
pre-filled with the generated vectors under the learner's own key) and the real server; labels
go in through the REST API (`PUT /api/v1/images/{id}/label`) with 5 % of them wrong (the next
class), then `GET /api/v1/suspects` with n = 2 × injected (one request each: a loop of 1,000
gradio_client calls was cancelled mid-stream once on this loaded machine). Precision and
recall of that top list; target recall ≥ 70 %.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.app_process import free_port  # noqa: E402
from bench.common import Report, fresh_dir, image_folder, parser, wait_until  # noqa: E402

COST_SINGLE, COST_PAGE, COST_MARK = 1.5, 3.0, 0.7
PAGE = 24
DIM = 64
SWITCH_ACCURACY = 0.90
USER = "sim"


def generated_features(truth, classes: int, spread: float, dim: int = DIM, seed: int = 0):
    import numpy as np
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1000 + classes).normal(size=(classes, dim)) * spread
    return (centres[truth] + rng.normal(size=(len(truth), dim))).astype(np.float16)


def open_set(name: str, quick: bool, tmp: Path, **settings):
    """A Session over the data set, with the truth (class index per image id)."""
    import numpy as np

    from hitl import demo
    from hitl.session import Session
    from hitl.settings import Settings
    base = dict(session_dir=tmp / name / "session", train=False, pretrained=False,
                task="classification", weights_dir=tmp / "weights")
    if name == "demo":
        session = Session(Settings(**base, demo_count=240, **settings))
        names = [c.name for c in session.store.classes()]
        by_file = demo.ground_truth(session.settings.demo_dir)
        ids = session.store.readable_image_ids()
        rows = {r.id: r.filename for r in session.store.images_by_ids(ids)}
        truth = np.array([names.index(by_file[rows[i]]) for i in ids.tolist()])
        return session, ids, truth, 0.4
    count = 1000 if quick else 3000
    classes = [f"c{k}" for k in range(10)]
    session = Session(Settings(**base, images=[str(image_folder(count))], classes=classes,
                               **settings))
    ids = session.store.readable_image_ids()
    truth = np.random.default_rng(7).integers(0, 10, len(ids))
    return session, ids, truth, 0.5


class Simulation:
    """The annotator's clock, the truth, and the bench standing in for the trainer."""

    def __init__(self, session, ids, truth, feats):
        from hitl.review import Review
        self.session, self.store, self.review = session, session.store, Review(session)
        self.ids, self.truth, self.feats = ids, truth, feats
        self.class_ids = [c.id for c in self.store.classes()]
        self.names = [c.name for c in self.store.classes()]
        self.truth_of = dict(zip(ids.tolist(), truth.tolist()))
        self.head, self.version, self.clock = None, 0, 0.0

    def publish(self) -> None:
        import numpy as np
        import pandas as pd

        from hitl.ml import heads
        labeled, cls = self.store.labeled_pairs()
        if len(labeled) < 2:
            return
        pos = np.searchsorted(self.ids, labeled)
        y = np.array([self.class_ids.index(c) for c in cls])
        self.head = heads.train_linear_head(self.feats[pos], y, len(self.class_ids),
                                            previous=self.head, steps=60 if self.head else 150)
        self.version += 1
        pred, prob, margin, entropy = heads.prediction_stats(self.head.predict_proba(self.feats))
        self.store.write_predictions(pd.DataFrame({
            "image_id": self.ids, "model_version": self.version,
            "class_id": np.asarray(self.class_ids)[pred], "probability": prob,
            "margin": margin, "entropy": entropy}))

    def accuracy(self) -> float:
        """The model's accuracy on the images still unlabeled."""
        import numpy as np
        labeled = self.store.labeled_pairs()[0]
        rest = ~np.isin(self.ids, labeled)
        if self.head is None or not rest.any():
            return 0.0
        pred = self.head.predict_proba(self.feats[rest]).argmax(1)
        return float((pred == self.truth[rest]).mean())

    def label_one(self, image_id: int) -> None:
        self.store.set_label(image_id, self.class_ids[self.truth_of[image_id]], USER)
        self.clock += COST_SINGLE

    def page(self) -> tuple[int, int] | None:
        """Review one page of the class with the most unlabeled predictions; (labels, marks)."""
        import numpy as np
        c = self.store.label_candidates(USER)
        for cid in sorted(self.class_ids, key=lambda k: -int((c["class_id"] == k).sum())):
            got = self.review.review_batch(USER, self.names[self.class_ids.index(cid)], PAGE)
            shown = [it["image_id"] for it in got["items"]]
            if not shown:
                continue
            wrong = [i for i in shown if self.class_ids[self.truth_of[i]] != cid]
            self.review.accept_batch(USER, shown, got["class_name"], rejected_ids=wrong)
            self.clock += COST_PAGE + COST_MARK * len(wrong)
            return len(shown) - len(wrong), len(wrong)
        del np
        return None

    def stored_accuracy(self) -> float:
        labeled, cls = self.store.labeled_pairs()
        right = sum(self.class_ids[self.truth_of[i]] == c
                    for i, c in zip(labeled.tolist(), cls.tolist()))
        return right / max(1, len(labeled))


def throughput(report: Report, name: str, quick: bool, tmp: Path) -> None:
    import numpy as np
    session, ids, truth, spread = open_set(name, quick, tmp)
    try:
        sim = Simulation(session, ids, truth,
                         generated_features(truth, len(set(truth.tolist())), spread))
        order = np.random.default_rng(3).permutation(ids).tolist()
        while order and (sim.head is None or sim.accuracy() < SWITCH_ACCURACY):
            for image_id in order[:10]:
                sim.label_one(image_id)
            order = order[10:]
            sim.publish()
        switch_labels, switch_acc, switch_clock = \
            len(sim.store.labeled_pairs()[0]), sim.accuracy(), sim.clock
        pages = accepted = marked = 0
        while (done := sim.page()) is not None:
            pages, accepted, marked = pages + 1, accepted + done[0], marked + done[1]
            sim.publish()
        review_clock = sim.clock - switch_clock
        rate_review = accepted / (review_clock / 60) if review_clock else None
        rate_single = 60 / COST_SINGLE
        left = [i for i in ids.tolist() if sim.store.label_of(i) is None]
        total_review = sim.clock + COST_SINGLE * len(left)
        report.details[name] = dict(
            images=len(ids), switch_labels=switch_labels, switch_accuracy=switch_acc,
            pages=pages, accepted=accepted, marked=marked, review_seconds=review_clock,
            left_one_by_one=len(left), stored_label_accuracy=sim.stored_accuracy())
        tag = f"{name} ({len(ids)} images, {len(sim.class_ids)} classes)"
        report.add(f"{tag}: model accuracy when review starts", switch_acc * 100, "%",
                   note=f"after {switch_labels} single labels")
        report.add(f"{tag}: review labels per simulated min", rate_review, "/min",
                   note=f"{pages} pages of {PAGE}, {accepted} accepted, {marked} marked")
        report.add(f"{tag}: one-by-one labels per simulated min", rate_single, "/min")
        report.add(f"{tag}: review speed-up after {SWITCH_ACCURACY:.0%}",
                   rate_review / rate_single if rate_review else None, "x", ">=", 3.0)
        report.add(f"{tag}: stored labels correct (review workflow)",
                   sim.stored_accuracy() * 100, "%", ">=", 100.0,
                   note="one-by-one: 100 % by construction")
        report.add(f"{tag}: time to label everything, review vs one-by-one",
                   (COST_SINGLE * len(ids)) / total_review, "x",
                   note=f"{total_review / 60:.1f} vs {COST_SINGLE * len(ids) / 60:.1f} min, "
                        f"{len(left)} rejected left for one-by-one")
    finally:
        session.close()


def suspects_end_to_end(report: Report, name: str, quick: bool, tmp: Path) -> None:
    """Real trainer and server; wrong labels in through /annotate; top 2x from /suspects."""
    import httpx
    import numpy as np
    import torch

    from hitl.app_build import build
    from hitl.backbones import create_model
    from hitl.ml.features import FeatureCache, FeatureExtractor
    session, ids, truth, spread = open_set(name, quick, tmp / "suspects",
                                           backbone="test_vit", port=free_port())
    demo_app = None
    try:
        s = session.settings
        loaded = create_model(s.backbone, s.weights_dir, torch.device("cpu"),
                              pretrained=False, num_classes=0)
        extractor = FeatureExtractor(loaded, batch_size=s.batch_size)
        dim = int(extractor.global_features([]).shape[1])
        FeatureCache(s.features_dir, extractor.key).put_global(
            ids, generated_features(truth, len(set(truth.tolist())), spread, dim=dim))
        names = [c.name for c in session.store.classes()]
        n_label = min(len(ids), 240 if name == "demo" else (500 if quick else 1000))
        chosen = np.random.default_rng(5).choice(len(ids), n_label, replace=False)
        wrong = set(chosen[:: 20].tolist())  # every 20th: 5 %
        session.close()  # the app opens it again, as app.py would (hitl/app_build.py)
        demo_app = build(session.settings)
        session = demo_app.session
        url = demo_app.launch(quiet=True)
        api = httpx.Client(base_url=url.rstrip("/") + "/api/v1", timeout=120)
        start = time.perf_counter()
        for k in chosen.tolist():
            given = (truth[k] + 1) % len(names) if k in wrong else truth[k]
            api.put(f"/images/{int(ids[k])}/label",
                    json={"label": names[given]}).raise_for_status()
        report.details[f"{name}_label_requests_s"] = round(time.perf_counter() - start, 1)
        session.trainer.start()
        ok = wait_until(lambda: len(session.store.suspect_rows("nobody", 10 ** 6)) == n_label,
                        timeout=600, interval=0.5)
        if not ok:
            raise RuntimeError(f"suspects never refreshed: {session.trainer.status_dict()}")
        injected = {int(ids[k]) for k in wrong}
        answer = api.get("/suspects", params={"n": 2 * len(injected)})
        if answer.status_code != 200:
            raise RuntimeError(f"/suspects refused: {answer.text}")
        top = answer.json()["items"]
        found = injected & {it["image_id"] for it in top}
        tag = f"{name} suspects ({n_label} labels, {len(injected)} wrong)"
        report.add(f"{tag}: recall in top {2 * len(injected)}",
                   100 * len(found) / len(injected), "%", ">=", 70.0)
        report.add(f"{tag}: precision in top {2 * len(injected)}",
                   100 * len(found) / max(1, len(top)), "%",
                   note="at most 50 % by construction: the list is twice the injected count")
        first = injected & {it["image_id"] for it in top[:len(injected)]}
        report.add(f"{tag}: precision = recall in top {len(injected)}",
                   100 * len(first) / len(injected), "%")
    finally:
        (demo_app or session).close()


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--part", choices=("all", "throughput", "suspects"), default="all")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    report = Report("review", args.quick)
    report.details.update(cost_single_s=COST_SINGLE, cost_page_s=COST_PAGE,
                          cost_mark_s=COST_MARK, page=PAGE, switch_accuracy=SWITCH_ACCURACY)
    tmp = fresh_dir("review")
    try:
        for name in ("demo", "generated10"):
            if args.part in ("all", "throughput"):
                throughput(report, name, args.quick, tmp)
        for name in ("demo", "generated10"):
            if args.part in ("all", "suspects"):
                suspects_end_to_end(report, name, args.quick, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report.finish()


if __name__ == "__main__":
    main()
