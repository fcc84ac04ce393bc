"""5. Peak RSS of the app with 100,000 images catalogued, frozen mode.

Launches `app.py --images <100k folder> --session <tmp> --no-pretrained` (default backbone
vit_small_patch16_dinov3, random init) in a subprocess, samples /proc/<pid>/status every
0.2 s, and once the server answers drives the API through gradio_client (next_image, annotate,
stats) while the trainer extracts features, for 90 s (--quick: 15 s). Reports RSS at start,
after the catalogue, when the server is ready, and the peak (VmHWM). Target: peak <= 2 GB.
"""
from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.app_process import AppProcess, proc_status, tree_rss  # noqa: E402
from bench.common import (  # noqa: E402
    Report,
    Timer,
    fresh_dir,
    image_folder,
    parser,
    percentile,
)

GB = 1024 ** 3
MB = 1024 ** 2


class Sampler(threading.Thread):
    def __init__(self, pid: int, log_path: Path, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.log_path, self.interval = pid, log_path, interval
        self.samples: list[tuple[float, int, int]] = []   # (t, rss, hwm)
        self.catalogue_rss: int | None = None
        self.catalogue_t: float | None = None
        self.stop = threading.Event()
        self.t0 = time.perf_counter()

    def run(self) -> None:
        while not self.stop.is_set():
            status = proc_status(self.pid)
            if not status:
                break
            t = time.perf_counter() - self.t0
            self.samples.append((t, tree_rss(self.pid), status.get("VmHWM", 0)))
            if self.catalogue_rss is None:
                try:
                    text = self.log_path.read_text(errors="replace")
                except OSError:
                    text = ""
                if re.search(r"hitl: session .* new image", text):
                    self.catalogue_rss, self.catalogue_t = self.samples[-1][1], t
            self.stop.wait(self.interval)

    def rss_at(self, t: float) -> int | None:
        before = [s for s in self.samples if s[0] <= t]
        return before[-1][1] if before else None


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    count = 100_000
    run_for = 15 if args.quick else 90
    report = Report("rss", args.quick)
    report.details.update(images=count, run_for_s=run_for)

    folder = image_folder(count)
    tmp = fresh_dir("rss")
    app = None
    sampler = None
    try:
        app = AppProcess(["--images", str(folder), "--session", str(tmp / "session"),
                          "--no-pretrained", "--task", "classification", "--classes", "a,b,c"],
                         tmp / "app.log")
        sampler = Sampler(app.pid, tmp / "app.log")
        sampler.start()
        ready_s = app.wait_ready(timeout=900)
        ready_rss = tree_rss(app.pid)
        report.details["ready_s"] = round(ready_s, 1)

        from gradio_client import Client
        client = Client(app.url, verbose=False)
        latencies: dict[str, list[float]] = {"next_image": [], "annotate": [], "stats": []}
        labels = 0
        end = time.monotonic() + run_for
        last_stats = None
        while time.monotonic() < end:
            with Timer() as t:
                view = client.predict("uncertain", None, api_name="/next_image")
            latencies["next_image"].append(t.seconds * 1000)
            if view.get("image_id") is not None:
                with Timer() as t:
                    result = client.predict(view["image_id"], "abc"[labels % 3],
                                            api_name="/annotate")
                latencies["annotate"].append(t.seconds * 1000)
                labels += bool(result.get("ok"))
            with Timer() as t:
                last_stats = client.predict(50, api_name="/stats")
            latencies["stats"].append(t.seconds * 1000)
            time.sleep(2.0)
        final = proc_status(app.pid)
        end_rss = tree_rss(app.pid)
        sampler.stop.set()
        sampler.join(2)
        hwm = max([final.get("VmHWM", 0)] + [s[2] for s in sampler.samples])
        peak_tree = max(s[1] for s in sampler.samples)
        start_rss = sampler.rss_at(2.0)
        trainer = (last_stats or {}).get("trainer", {})
        report.details.update(
            labels=labels, latencies_ms={k: {"p50": percentile(v, 50), "p95": percentile(v, 95),
                                             "n": len(v)} for k, v in latencies.items()},
            trainer=trainer, catalogue_done_s=sampler.catalogue_t,
            rss_timeline_mb=[(round(t, 1), round(r / MB)) for t, r, _ in sampler.samples[::10]])
        report.add("RSS at start (2 s after launch)", (start_rss or 0) / MB, "MB")
        report.add("RSS after the catalogue (100k registered)",
                   None if sampler.catalogue_rss is None else sampler.catalogue_rss / MB, "MB",
                   note=f"at {sampler.catalogue_t or 0:.0f} s")
        report.add("RSS when the server is ready", ready_rss / MB, "MB",
                   note=f"ready after {ready_s:.0f} s")
        report.add(f"RSS at the end ({run_for} s of use)", end_rss / MB, "MB")
        report.add("peak RSS (VmHWM)", hwm / GB, "GB", "<=", 2.0)
        if peak_tree > hwm:
            report.add("peak RSS incl. child processes", peak_tree / GB, "GB", "<=", 2.0)
        report.add("features extracted during the run", trainer.get("extract_done"), "",
                   note=f"rate {trainer.get('extract_rate') or 0:.1f} img/s, "
                        f"state {trainer.get('state')}")
        report.add("API next_image p95 (client, trainer busy)",
                   percentile(latencies["next_image"], 95), "ms")
    finally:
        if sampler is not None:
            sampler.stop.set()
        if app is not None:
            app.stop()
            report.details["app_log_tail"] = app.tail(2000)
        shutil.rmtree(tmp, ignore_errors=True)
    return report.finish()


if __name__ == "__main__":
    main()
