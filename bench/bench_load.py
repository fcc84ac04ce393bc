"""10. Load test: 20 concurrent scripted labelers through gradio_client.

Launches app.py in a subprocess on the generated demo set (files demo_NNNN_<class>.png) with
--auth u1:p1 .. u20:p20, the default backbone (random init) and the trainer on, so features
are being extracted while people label. 20 labelers, each a gradio_client.Client logged in
as its own user in its own thread, spread over 4 client processes (one Python process with
20 gradio_client threads was itself the bottleneck: its GIL capped it near one core). Each
loops next_image -> annotate(image_id, class from the file name) for 2 minutes or 2,000
labels, whichever comes first (--quick: 20 s). Then the app is stopped and its database
checked: zero lost labels (every ok annotate is in the labels table, same user and class),
zero duplicates (no image labeled twice, none handed to two users). Reports p95 next_image
latency (client side), labels/s, and the CPU the app and the clients used.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import shutil
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.app_process import AppProcess, cpu_seconds  # noqa: E402
from bench.common import (  # noqa: E402
    Report,
    Timer,
    demo_folder,
    fresh_dir,
    parser,
    percentile,
)

CLASSES = ["circle", "square", "triangle"]
NAME = re.compile(r"demo_\d+_(\w+)\.png$")
PROCESSES = 4


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def client_process(url: str, users: list[tuple[str, str]], barrier, stop, labels_done,
                   max_labels: int, out_path: str) -> None:
    """One client process: a thread per user, results written to out_path as JSON."""
    from gradio_client import Client
    clients = [Client(url, auth=up, verbose=False) for up in users]
    lock = threading.Lock()
    result = {"ok_labels": [], "served": [], "next_ms": [], "annotate_ms": [], "errors": {}}
    errors: Counter = Counter()

    def labeler(user: str, client) -> None:
        while not stop.is_set():
            try:
                with Timer() as t:
                    view = client.predict("uncertain", None, api_name="/next_image")
                image_id = view.get("image_id")
                with lock:
                    result["next_ms"].append(t.seconds * 1000)
                    if image_id is not None:
                        result["served"].append((int(image_id), user))
                if image_id is None:
                    with lock:
                        errors["no image: " + str(view.get("note") or view.get("error"))] += 1
                    if "No images left" in str(view.get("note")):
                        stop.set()
                    time.sleep(0.2)
                    continue
                label = NAME.search(view["filename"]).group(1)
                with Timer() as t:
                    answer = client.predict(image_id, label, api_name="/annotate")
                with lock:
                    result["annotate_ms"].append(t.seconds * 1000)
                    if answer.get("ok"):
                        result["ok_labels"].append((user, int(image_id), label))
                    else:
                        errors["annotate: " + str(answer.get("error"))[:80]] += 1
                if answer.get("ok"):
                    with labels_done.get_lock():
                        labels_done.value += 1
                        if labels_done.value >= max_labels:
                            stop.set()
            except Exception as exc:   # count it and keep going, as a labeler would
                with lock:
                    errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                time.sleep(0.2)

    threads = [threading.Thread(target=labeler, args=(u, c), daemon=True)
               for (u, _), c in zip(users, clients)]
    barrier.wait()
    cpu0 = _cpu()
    for t in threads:
        t.start()
    stop.wait()
    deadline = time.monotonic() + 60      # calls in flight get a minute to return
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    result["cpu_s"] = _cpu() - cpu0
    result["stuck_threads"] = sum(t.is_alive() for t in threads)
    result["errors"] = dict(errors)
    for c in clients:
        try:
            c.close()
        except Exception:
            pass
    Path(out_path).write_text(json.dumps(result))
    os._exit(0)   # do not wait for stuck client threads


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--no-train", action="store_true", help="start the app with --no-train")
    p.add_argument("--backbone", help="backbone for the app (default: the app's default)")
    args = p.parse_args(argv)
    duration = 20.0 if args.quick else 120.0
    max_labels = 2000
    users = [(f"u{i}", f"p{i}") for i in range(1, args.users + 1)]
    images = 600 if args.quick else 2400
    report = Report("load" + ("-notrain" if args.no_train else ""), args.quick)
    report.details.update(users=len(users), duration_s=duration, max_labels=max_labels,
                          images=images, trainer=not args.no_train, client_processes=PROCESSES,
                          backbone=args.backbone or "default")

    folder = demo_folder(images)
    tmp = fresh_dir("load")
    app = None
    procs: list = []
    try:
        cmd = ["--images", str(folder), "--session", str(tmp / "session"), "--no-pretrained",
               "--task", "classification", "--classes", ",".join(CLASSES)]
        for u, pw in users:
            cmd += ["--auth", f"{u}:{pw}"]
        if args.no_train:
            cmd.append("--no-train")
        if args.backbone:
            cmd += ["--backbone", args.backbone]
        app = AppProcess(cmd, tmp / "app.log")
        report.details["ready_s"] = round(app.wait_ready(timeout=600), 1)

        # one labeler alone first (its own process, so no client threads exist before the
        # client processes start): the latency without concurrency
        ctx = mp.get_context("spawn")
        solo_path = tmp / "solo.json"
        solo = ctx.Process(target=solo_labeler, args=(app.url, users[0], str(solo_path)))
        solo.start()
        solo.join(120)
        solo_ms = json.loads(solo_path.read_text()) if solo_path.exists() else []
        report.add("1 user alone: API call p50 (next_image / annotate)",
                   percentile(solo_ms, 50), "ms")

        barrier = ctx.Barrier(PROCESSES + 1)
        stop = ctx.Event()
        labels_done = ctx.Value("i", 0)
        groups = [users[i::PROCESSES] for i in range(PROCESSES)]
        outs = [tmp / f"clients{i}.json" for i in range(PROCESSES)]
        procs = [ctx.Process(target=client_process,
                             args=(app.url, g, barrier, stop, labels_done, max_labels, str(o)))
                 for g, o in zip(groups, outs)]
        for proc in procs:
            proc.start()
        barrier.wait(timeout=300)
        began = time.perf_counter()
        app_cpu0 = cpu_seconds(app.pid)
        while not stop.wait(5.0) and time.perf_counter() - began < duration:
            print(f"  [load] {time.perf_counter() - began:5.0f} s: {labels_done.value} labels",
                  flush=True)
        stop.set()
        elapsed = time.perf_counter() - began
        app_cpu = cpu_seconds(app.pid) - app_cpu0
        for proc in procs:
            proc.join(90)
        app.stop()
        report.details["app_exit_code"] = app.proc.returncode

        ok_labels, next_ms, annotate_ms = [], [], []
        served: dict[int, set[str]] = defaultdict(set)
        errors: Counter = Counter()
        client_cpu, stuck = 0.0, 0
        for out in outs:
            if not out.exists():
                errors["a client process wrote no result"] += 1
                continue
            r = json.loads(out.read_text())
            ok_labels += [tuple(x) for x in r["ok_labels"]]
            next_ms += r["next_ms"]
            annotate_ms += r["annotate_ms"]
            for image_id, user in r["served"]:
                served[image_id].add(user)
            errors.update(r["errors"])
            client_cpu += r["cpu_s"]
            stuck += r["stuck_threads"]

        # ---- the database after the run ---------------------------------------------------
        from hitl.store import Store
        store = Store(tmp / "session" / "hitl.duckdb")
        names = {c.id: c.name for c in store.classes()}
        rows = store._rows('SELECT image_id, class_id, "user" FROM labels')
        table = {image_id: (names[class_id], user) for image_id, class_id, user in rows}
        label_events = Counter(r[0] for r in store._rows(
            "SELECT image_id FROM events WHERE action = 'label' AND NOT undone"))
        store.close()

        lost = [x for x in ok_labels if table.get(x[1]) != (x[2], x[0])]
        per_image = Counter(image_id for _, image_id, _ in ok_labels)
        duplicated = sorted(i for i, n in per_image.items() if n > 1)
        twice_in_db = sorted(i for i, n in label_events.items() if n > 1)
        shared = sorted(i for i, who in served.items() if len(who) > 1)
        calls = max(1, len(next_ms) + len(annotate_ms))
        report.details.update(
            ok_labels=len(ok_labels), labels_in_db=len(table), elapsed_s=elapsed,
            errors=dict(errors.most_common(10)), lost=lost[:20], duplicated=duplicated[:20],
            label_events_twice=twice_in_db[:20], served_to_two_users=shared[:20],
            stuck_client_threads=stuck, app_cpu_s=app_cpu, client_cpu_s=client_cpu,
            next_image_ms={"p50": percentile(next_ms, 50), "p95": percentile(next_ms, 95),
                           "max": max(next_ms) if next_ms else None, "n": len(next_ms)},
            annotate_ms={"p50": percentile(annotate_ms, 50),
                         "p95": percentile(annotate_ms, 95), "n": len(annotate_ms)},
            app_log_tail=app.tail(3000))
        report.add("labels saved (ok annotate calls)", len(ok_labels), "",
                   note=f"{len(users)} users, {elapsed:.0f} s")
        report.add("labels/s", len(ok_labels) / elapsed, "labels/s")
        report.add("lost labels (ok but not in the labels table)", len(lost), "", "==", 0)
        report.add("duplicated labels (image labeled twice)", len(duplicated) + len(twice_in_db),
                   "", "==", 0)
        report.add("images handed to two users by next_image", len(shared), "", "==", 0)
        report.add("client errors / refusals", sum(errors.values()), "",
                   note="; ".join(f"{k} x{n}" for k, n in errors.most_common(3)))
        report.add("next_image p95 (client side)", percentile(next_ms, 95), "ms",
                   note=f"p50 {percentile(next_ms, 50) or 0:.0f} ms")
        report.add("annotate p95 (client side)", percentile(annotate_ms, 95), "ms")
        report.add("app exit code after SIGINT (Ctrl-C)", app.proc.returncode, "",
                   note="-6 = SIGABRT ('terminate called without an active exception')")
        report.add("app CPU per API call (server, incl. trainer)", app_cpu / calls * 1000, "ms",
                   note=f"app used {app_cpu / elapsed:.2f} cores")
        report.add("client CPU per API call (gradio_client)", client_cpu / calls * 1000, "ms",
                   note=f"the 20 clients used {client_cpu / elapsed:.2f} cores")
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        if app is not None:
            app.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return report.finish()


def solo_labeler(url: str, user: tuple[str, str], out_path: str) -> None:
    from gradio_client import Client
    client = Client(url, auth=user, verbose=False)
    times = []
    for _ in range(10):
        with Timer() as t:
            view = client.predict("uncertain", None, api_name="/next_image")
        times.append(t.seconds * 1000)
        if view.get("image_id") is None:
            continue
        with Timer() as t:
            client.predict(view["image_id"], NAME.search(view["filename"]).group(1),
                           api_name="/annotate")
        times.append(t.seconds * 1000)
    Path(out_path).write_text(json.dumps(times))
    os._exit(0)


if __name__ == "__main__":
    main()
