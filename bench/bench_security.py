"""14. What a hostile client costs the server: a burst of huge masks, and login timing.

- Mask burst: 8 clients post a 14000x14000 mask PNG (about 190 KB on the wire, 196 MB decoded)
  to /annotate_mask at once, several rounds; the app's peak RSS (VmHWM) may grow at most
  200 MB (the size is read from the PNG header and refused before decoding; before: 1.1 GB ->
  4.3 GB with 8 at once).
- Login timing: one Authenticator, median time of a wrong password for a plain --auth user,
  an auth-file user and an unknown name; they must match within 25 % (before: 8 ms vs 90 ms,
  so user names could be probed).
"""
from __future__ import annotations

import base64
import io
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.app_process import AppProcess, proc_status  # noqa: E402
from bench.common import Report, fresh_dir, parser  # noqa: E402

MB = 1024 * 1024
SIDE = 14000


def huge_mask_png() -> str:
    import numpy as np
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.zeros((SIDE, SIDE), np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def login_timing(report: Report, tries: int) -> None:
    from hitl.auth import Authenticator, hash_password
    checker = Authenticator([("plain", "pw")], {"filed": hash_password("pw")})
    checker.limits.pairs.limit = 10**9  # timing only: no lockout during the bench
    times = {}
    for name in ("plain", "filed", "unknown-user"):
        samples = []
        for _ in range(tries):
            start = time.perf_counter()
            checker(name, "wrong")
            samples.append((time.perf_counter() - start) * 1000)
        times[name] = statistics.median(samples)
        report.add(f"wrong password, {name}", times[name], "ms")
    spread = max(times.values()) / min(times.values())
    report.add("slowest / fastest wrong-password time", spread, "x", "<=", 1.25,
               note="before: 8 ms (known) vs 90 ms (unknown)")


def mask_burst(report: Report, tmp: Path, clients: int, rounds: int) -> None:
    from gradio_client import Client
    app = AppProcess(["--session", str(tmp / "session"), "--task", "segmentation",
                      "--no-train", "--no-pretrained", "--backbone", "test_vit",
                      "--demo-count", "12"], tmp / "app.log")
    try:
        app.wait_ready(timeout=300)
        payload = huge_mask_png()
        report.details["mask_png_bytes"] = len(base64.b64decode(payload))
        users = [Client(app.url, verbose=False) for _ in range(clients)]
        view = users[0].predict("sequential", None, api_name="/next_image")
        before = proc_status(app.pid)
        answers = []
        with ThreadPoolExecutor(clients) as pool:
            for _ in range(rounds):
                answers += list(pool.map(lambda c: c.predict(view["image_id"], payload,
                                                             api_name="/annotate_mask"), users))
        after = proc_status(app.pid)
        refused = sum(1 for a in answers if a.get("ok") is False and "14000x14000" in a["error"])
        report.add("huge masks refused with the size message", refused, "", "==", len(answers))
        report.add("peak RSS growth over the burst", (after["VmHWM"] - before["VmHWM"]) / MB,
                   "MB", "<=", 200, note=f"{clients} clients x {rounds} rounds; before the fix "
                                         "1.1 GB -> 4.3 GB with 8 at once")
        report.add("server RSS after the burst", after["VmRSS"] / MB, "MB")
    finally:
        app.stop()
        report.details["app_log_tail"] = app.tail(1500)


def main(argv: list[str] | None = None) -> dict:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    report = Report("security", quick=args.quick)
    tmp = fresh_dir("security")
    try:
        login_timing(report, tries=5 if args.quick else 30)
        mask_burst(report, tmp, clients=8, rounds=1 if args.quick else 3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report.finish()


if __name__ == "__main__":
    main()
