"""11. The REST API against the original tool's figures (issue 12), 100,000 images.

Setup (in this process, as bench_next_image.py): 100k image rows, 3 classes, predictions for
all of them, 1,000 labels, leases of 19 other users; then `Store.set_labels` of 1,000 more in
one call (bulk import path). The session is closed and `app.py --session … --no-train` is
launched in a subprocess, 3 times (`--relaunches`), medians: relaunch to the page's first
answer (GET /, the starting page until Gradio's app is up), to the REST API's first answer, and
to Gradio's app (/config). Then over HTTP with keep-alive (httpx): REST `GET /api/v1/next` for every
strategy, `PUT /api/v1/images/{id}/label` with `next_strategy` (save + next in one request),
and Gradio's raw HTTP API (`POST /gradio_api/call/next_image` + its event stream) for
comparison. Last, RSS of the app over N mixed calls on both APIs (REST next/label/classes/
stats, raw gr.api classes/next_image/stats), after a warm-up of 300 calls.
`--quick`: 20 calls per row and 2,000 mixed calls (instead of 100 and 10,000).
"""
from __future__ import annotations

import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.app_process import AppProcess, proc_status  # noqa: E402
from bench.common import (  # noqa: E402
    Report,
    Timer,
    fresh_dir,
    parser,
    summary,
)

MB = 1024 ** 2
# the original Flask + SQLite tool, same machine, same 100k images (issue 12): p50 / p95 ms
ORIGINAL = {
    "sequential": (15.6, 90.6), "random": (68.8, 169), "minority": (54.2, 188),
    "class": (39.0, 105), "save+next": (40.2, 133), "relaunch_s": (4.9, 5.6),
    "gr.api before": (73.7, 309.8), "rss_after_3000": 795,
}
STRATEGIES = ("uncertain", "margin", "entropy", "minority", "random", "sequential", "class",
              "last class")


def raw_call(http, name: str, data: list):
    """Gradio's raw HTTP API: POST the inputs, read the result from the event stream."""
    event_id = http.post(f"gradio_api/call/{name}", json={"data": data}).json()["event_id"]
    text = http.get(f"gradio_api/call/{name}/{event_id}").text
    last = text.strip().splitlines()[-1]
    return json.loads(last.removeprefix("data: "))[0]


def timed(fn, n: int) -> tuple[list[float], list[float], object]:
    """Client-side ms per call, server-side ms (the REST answer's Server-Timing), last result."""
    times, server, result = [], [], None
    for _ in range(n):
        with Timer() as t:
            response = fn()
        times.append(t.seconds * 1000)
        timing = getattr(response, "headers", {}).get("server-timing", "")
        if timing.startswith("app;dur="):
            server.append(float(timing.removeprefix("app;dur=")))
        result = response.json() if hasattr(response, "json") else response
    return times, server, result


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--relaunches", type=int, default=3, help="relaunches for the medians")
    args = p.parse_args(argv)
    count = args.images
    calls = 20 if args.quick else 100
    mixed = 2_000 if args.quick else 10_000
    report = Report("rest", args.quick)
    report.details.update(images=count, calls_per_row=calls, mixed_calls=mixed,
                          original=ORIGINAL)

    import httpx
    import numpy as np

    from bench.bench_next_image import USER, build_session

    tmp = fresh_dir("rest")
    app = None
    try:
        with Timer() as t:
            session, _ = build_session(tmp, count, 1_000)
        report.details["setup_s"] = round(t.seconds, 1)
        store = session.store
        rng = np.random.default_rng(2)
        unlabeled = np.setdiff1d(store.readable_image_ids(),
                                 store.label_rows()["image_id"].to_numpy())
        pick = rng.choice(unlabeled, 1_000, replace=False)
        classes = [c.id for c in store.classes()]
        with Timer() as t:
            store.set_labels(pick, rng.choice(classes, 1_000), user="import")
        report.add("1,000 labels in bulk (Store.set_labels)", t.seconds, "s", "<=", 1.0,
                   note="original tool: 8.5 s through Store.set_label one by one")
        session.close()

        # Relaunches, median: the page's address (GET /: the starting page until the app is
        # up, hitl/starting.py), the REST API, and Gradio's app itself (/config), polled together.
        answers = []
        for k in range(args.relaunches):
            if app is not None:
                app.stop()
            app = AppProcess(["--session", str(tmp / "session"), "--no-train",
                              "--no-pretrained", "--backbone", "test_vit"], tmp / f"app{k}.log")
            answers.append(app.first_answers(["", "api/v1/classes", "config"], timeout=300))
        report.details["relaunches_s"] = [{k or "/": round(v, 3) for k, v in a.items()}
                                          for a in answers]
        median = {path: statistics.median(a[path] for a in answers) for path in answers[0]}
        http = httpx.Client(base_url=app.url, timeout=120)
        report.add("relaunch with 100k stored -> page answers (GET /)", median[""], "s", "<=",
                   3.0, note="original 4.9-5.6 s; a starting page that becomes the app")
        report.add("relaunch -> REST API answers", median["api/v1/classes"], "s", "<=", 3.0)
        report.add("relaunch -> Gradio app ready (/config)", median["config"], "s",
                   note="Gradio's import alone is ~2.2 s of it")

        api = "api/v1/"
        auth = {}  # no logins: local client
        worst_p50 = worst_p95 = 0.0
        for strategy in STRATEGIES:
            params = {"strategy": strategy, "class_name": "dog"}
            http.get(api + "next", params=params, headers=auth)  # warm-up
            times, server, view = timed(lambda: http.get(api + "next", params=params), calls)
            s, srv = summary(times), summary(server)
            worst_p50, worst_p95 = max(worst_p50, s["p50"]), max(worst_p95, s["p95"])
            ref = ORIGINAL.get(strategy)
            report.details[f"next {strategy}"] = s | {"returned": view.get("strategy"),
                                                      "server": srv}
            report.add(f"REST next '{strategy}' p50", s["p50"], "ms", "<=", 8,
                       note=f"p95 {s['p95']:.1f} ms; server p50 {srv['p50']:.1f} / p95 "
                            f"{srv['p95']:.1f} ms"
                            + (f"; original {ref[0]} / {ref[1]}" if ref else ""))
        report.add("REST next p95, worst strategy", worst_p95, "ms", "<=", 30)
        times, server, _ = timed(lambda: http.get(api + "classes"), calls)
        report.add("REST GET /classes p50 (the HTTP floor on this machine now)",
                   summary(times)["p50"], "ms",
                   note=f"server p50 {summary(server)['p50']:.2f} ms")

        names = ["cat", "dog", "bird"]
        current = http.get(api + "next", params={"strategy": "sequential"}).json()

        def save_next():
            nonlocal current
            body = {"label": names[current["image_id"] % 3], "next_strategy": "sequential"}
            out = http.put(f"{api}images/{current['image_id']}/label", json=body)
            current = out.json()["next"]
            return out
        times, server, _ = timed(save_next, calls)
        s, srv = summary(times), summary(server)
        report.details["save+next"] = s | {"server": srv}
        report.add("REST save + next (sequential) p50", s["p50"], "ms", "<=", 15,
                   note=f"p95 {s['p95']:.1f} ms; server p50 {srv['p50']:.1f} / p95 "
                        f"{srv['p95']:.1f} ms; original 40.2 / 133")

        raw_call(http, "next_image", ["sequential", None])
        times, _, _ = timed(lambda: raw_call(http, "next_image", ["sequential", None]), calls)
        s = summary(times)
        report.details["gr.api raw next"] = s
        report.add("gr.api next via raw HTTP p50", s["p50"], "ms", "<=", 73.7,
                   note=f"p95 {s['p95']:.1f} ms; before: 73.7 / 309.8")

        def mixed_call(i: int) -> None:
            k = i % 8
            if k == 0:
                view = http.get(api + "next", params={"strategy": "random"}).json()
                if view.get("image_id") is not None:
                    http.put(f"{api}images/{view['image_id']}/label",
                             json={"label": names[i % 3]})
            elif k == 1:
                http.get(api + "classes")
            elif k == 2:
                http.get(api + "stats")
            elif k == 3:
                http.get(api + "next", params={"strategy": "uncertain"})
            elif k == 4:
                raw_call(http, "classes", [])
            elif k == 5:
                raw_call(http, "next_image", ["uncertain", None])
            elif k == 6:
                raw_call(http, "stats", [50])
            else:
                http.get(api + "predictions", params={"limit": 10})
        for i in range(300):
            mixed_call(i)
        start_rss = proc_status(app.pid)["VmRSS"]
        timeline = []
        with Timer() as t:
            for i in range(mixed):
                mixed_call(i)
                if i % 500 == 0:
                    timeline.append((i, round(proc_status(app.pid)["VmRSS"] / MB, 1)))
        end_rss = proc_status(app.pid)["VmRSS"]
        timeline.append((mixed, round(end_rss / MB, 1)))
        report.details["rss_timeline_mb"] = timeline
        half = [mb for i, mb in timeline if i >= mixed // 2]
        report.add(f"RSS growth over the second {mixed // 2:,} calls", half[-1] - half[0], "MB",
                   note="bounded caches (Gradio keeps the last 10,000 events' analytics) fill "
                        "in the first half")
        report.add(f"RSS growth over {mixed:,} mixed calls (REST + raw gr.api)",
                   (end_rss - start_rss) / MB, "MB", "<=", 30,
                   note=f"{start_rss / MB:.0f} -> {end_rss / MB:.0f} MB in {t.seconds:.0f} s; "
                        "original: 795 MB flat; hitl before: +200 MB per 600 raw calls")
        report.add("server RSS at the end", end_rss / MB, "MB",
                   note="original 795 MB after ~3,000 calls; hitl before 1,390 MB, growing")
        http.close()
    finally:
        if app is not None:
            app.stop()
            report.details["app_log_tail"] = app.tail(2000)
        shutil.rmtree(tmp, ignore_errors=True)
    report.details["user"] = USER
    return report.finish()


if __name__ == "__main__":
    main()
