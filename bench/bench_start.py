"""Start-up: seconds from launching app.py to the REST API's first answer and to the page.

    python -m bench.bench_start                       # this checkout, 5 launches
    python -m bench.bench_start --other ../old -n 5   # interleaved with another checkout

Each launch: a fresh session of 12 demo images, the trainer on, random-init test model;
stopped with SIGTERM once the page answers (its exit code is reported too). Launches of the
two checkouts alternate, so a load change on the machine hits both alike.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.app_process import free_port

REPO = Path(__file__).resolve().parents[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def launch(checkout: Path, folder: Path) -> dict:
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--session", str(folder), "--port", str(port),
         "--no-pretrained", "--backbone", "test_vit", "--demo-count", "12",
         "--task", "classification"], cwd=checkout, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    rest = page = None
    try:
        while time.perf_counter() - start < 120 and proc.poll() is None:
            now = time.perf_counter() - start
            if rest is None and answers(base + "api/v1/classes"):
                rest = now
            if rest is not None and answers(base + "config"):
                page = time.perf_counter() - start
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        proc.kill()
        proc.wait()
    return {"rest_s": rest, "page_s": page, "exit": code}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--other", type=Path, help="another checkout, launched in turn with this")
    p.add_argument("-n", type=int, default=5, help="launches of each checkout")
    args = p.parse_args(argv)
    checkouts = {"this": REPO} | ({"other": args.other.resolve()} if args.other else {})
    runs: dict[str, list[dict]] = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.n):
            for name, checkout in (reversed(checkouts.items()) if k % 2 else checkouts.items()):
                runs[name].append(launch(checkout, Path(tmp) / f"{name}-{k}"))
                print(name, runs[name][-1], "load", os.getloadavg()[0], flush=True)
    for name, rows in runs.items():
        rest = [r["rest_s"] for r in rows if r["rest_s"] is not None]
        page = [r["page_s"] for r in rows if r["page_s"] is not None]
        print(json.dumps({"checkout": name, "rest_median_s": round(statistics.median(rest), 2),
                          "rest_s": [round(x, 2) for x in rest],
                          "page_median_s": round(statistics.median(page), 2),
                          "exits": [r["exit"] for r in rows]}))


if __name__ == "__main__":
    main()
