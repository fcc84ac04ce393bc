"""14. What a hostile client costs the server: a burst of huge masks, and login timing.

- Mask burst: 8 clients post a 14000x14000 mask PNG (about 190 KB on the wire, 196 MB decoded)
  to /annotate_mask at once, several rounds; the app's peak RSS (VmHWM) may grow at most
  200 MB (the size is read from the PNG header and refused before decoding; before: 1.1 GB ->
  4.3 GB with 8 at once).
- Login timing: one Authenticator, median time of a wrong password for a plain --auth user,
  an auth-file user and an unknown name; they must match within 25 % (before: 8 ms vs 90 ms,
  so user names could be probed).
- Bombs and big bodies (issue 18), each against the app's peak RSS (VmHWM, reset through
  /proc/<pid>/clear_refs before each), target <= +100 MB: a 19000x19000 grey PNG as the
  painter's edit through the board's seg_act (before: 887 MB -> 4,676 MB, 39.5 s) and as a
  REST mask; a 300 MB PUT /api/v1/images/{id}/mask with its Content-Length (before: +593 MB)
  and the same sent chunked; 600 raw `POST /gradio_api/call/classes` never read (before:
  +160 MB).
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


BOMB_SIDE = 19000


def grey_png(side: int) -> bytes:
    """A side x side 8-bit grey PNG of zeros, compressed row by row (the bench never holds
    the decoded image): about 0.4 MB for 19000 x 19000, 361 MB decoded."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    packer, row, parts = zlib.compressobj(9), b"\0" * (side + 1), []
    for _ in range(side):
        parts.append(packer.compress(row))
    parts.append(packer.flush())
    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts))
            + chunk(b"IEND", b""))


def peak_growth(pid: int, run) -> tuple[float, object]:
    """MB the app's peak RSS rose above its RSS while `run()` ran (the peak is reset first)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    before = proc_status(pid)["VmRSS"]
    result = run()
    time.sleep(0.5)
    return (proc_status(pid)["VmHWM"] - before) / MB, result


def send_declared(url: str, path: str, total: int) -> str:
    """PUT `total` bytes with their Content-Length on a raw socket, as fast as the server takes
    them; returns the status line it answers."""
    import socket
    from urllib.parse import urlparse
    where = urlparse(url)
    with socket.create_connection((where.hostname, where.port), timeout=60) as sock:
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: {where.netloc}\r\n"
                     f"Content-Length: {total}\r\n\r\n".encode())
        block, sent = b"\0" * (1 << 20), 0
        try:
            while sent < total:
                sock.sendall(block)
                sent += len(block)
        except OSError:
            pass  # the server answered and closed: the rest was never read
        try:
            return sock.recv(4096).split(b"\r\n", 1)[0].decode()
        except OSError:
            return "closed"


def hostile_bodies(report: Report, tmp: Path, unread_calls: int) -> None:
    import httpx
    app = AppProcess(["--session", str(tmp / "bodies"), "--task", "segmentation",
                      "--no-train", "--no-pretrained", "--backbone", "test_vit",
                      "--demo-count", "12"], tmp / "bodies.log")
    try:
        app.wait_ready(timeout=300)
        http = httpx.Client(base_url=app.url, timeout=300)
        bomb = grey_png(BOMB_SIDE)
        report.details["bomb_png_bytes"] = len(bomb)
        image_id = http.get("api/v1/next", params={"strategy": "sequential"}).json()["image_id"]
        config = http.get("config").json()
        board = next(c["id"] for c in config["components"]
                     if "seg_act" in (c.get("props", {}).get("server_fns") or []))
        edit = "data:image/png;base64," + base64.b64encode(bomb).decode()

        def painter():
            with ThreadPoolExecutor(4) as pool:
                return list(pool.map(lambda _: http.post("gradio_api/component_server", json={
                    "session_hash": "bench", "component_id": board, "fn_name": "seg_act",
                    "data": {"image_id": image_id, "op": "save", "edit": edit}}).json(),
                    range(4)))
        grown, answers = peak_growth(app.pid, painter)
        refused = sum(1 for a in answers if a.get("ok") is False and "19000x19000" in a["error"])
        report.add("painter bomb (19000x19000 edit, 4 at once): peak RSS growth", grown, "MB",
                   "<=", 100, note=f"{refused}/4 refused by size; before 887 -> 4,676 MB")

        def rest_bomb():
            with ThreadPoolExecutor(4) as pool:
                return list(pool.map(lambda _: http.put(f"api/v1/images/{image_id}/mask",
                                                        content=bomb).status_code, range(4)))
        grown, codes = peak_growth(app.pid, rest_bomb)
        report.add("REST mask bomb (19000x19000, 4 at once): peak RSS growth", grown, "MB",
                   "<=", 100, note=f"statuses {sorted(set(codes))}")

        big = 300 * MB
        grown, line = peak_growth(app.pid, lambda: send_declared(
            app.url, f"/api/v1/images/{image_id}/mask", big))
        report.add("300 MB PUT mask with Content-Length: peak RSS growth", grown, "MB", "<=",
                   100, note=f"answer {line!r}; before +593 MB")

        def chunked():
            def body():
                for _ in range(big // MB):
                    yield b"\0" * MB
            try:
                return http.put(f"api/v1/images/{image_id}/mask", content=body()).status_code
            except httpx.HTTPError as exc:
                return type(exc).__name__
        grown, status = peak_growth(app.pid, chunked)
        report.add("300 MB PUT mask chunked (no length): peak RSS growth", grown, "MB", "<=",
                   100, note=f"status {status}")

        def unread():
            for _ in range(unread_calls):
                http.post("gradio_api/call/classes", json={"data": []})
            time.sleep(2)
            http.get("config")  # a later request sweeps
            return proc_status(app.pid)["VmRSS"]
        before = proc_status(app.pid)["VmRSS"]
        grown, after = peak_growth(app.pid, unread)
        report.add(f"{unread_calls} unread raw gr.api calls: peak RSS growth", grown, "MB", "<=",
                   100, note=f"RSS after {(after - before) / MB:+.1f} MB; before +160 MB")
        report.add("app RSS at the end", proc_status(app.pid)["VmRSS"] / MB, "MB")
    finally:
        app.stop()
        report.details["bodies_log_tail"] = app.tail(1500)


def main(argv: list[str] | None = None) -> dict:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    report = Report("security", quick=args.quick)
    tmp = fresh_dir("security")
    try:
        login_timing(report, tries=5 if args.quick else 30)
        mask_burst(report, tmp, clients=8, rounds=1 if args.quick else 3)
        hostile_bodies(report, tmp, unread_calls=600)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report.finish()


if __name__ == "__main__":
    main()
