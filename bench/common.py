"""Shared pieces of the benchmarks: result tables, timing, generated data (app subprocesses:
bench/app_process.py).

Every bench script builds a `Report`, adds rows (metric, measured, target) and calls
`report.finish()`, which prints the table and writes bench/out/<name>.json. Generated data
lives in a temp folder (HITL_BENCH_DATA, default $TMPDIR/hitl-bench-data), never in the repo,
and is reused between runs (a `.done` marker says a folder is complete).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
PYTHON = sys.executable

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ---- results ---------------------------------------------------------------------------------

OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "==": lambda a, b: a == b,
       "<": lambda a, b: a < b, ">": lambda a, b: a > b}


@dataclass
class Row:
    metric: str
    measured: float | int | None
    unit: str = ""
    op: str | None = None          # "<=", ">=", "=="; None: reported only
    target: float | int | None = None
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.op is None or self.target is None:
            return None
        if self.measured is None:
            return False
        return bool(OPS[self.op](self.measured, self.target))

    def as_dict(self) -> dict:
        return {"metric": self.metric, "measured": self.measured, "unit": self.unit,
                "op": self.op, "target": self.target, "passed": self.passed, "note": self.note}


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        text = f"{value:,}"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def table(rows: Sequence[Row], title: str | None = None) -> str:
    lines = []
    head = ("metric", "measured", "target", "result")
    cells = [(r.metric, fmt(r.measured, r.unit),
              "" if r.op is None else f"{r.op} {fmt(r.target, r.unit)}",
              {True: "PASS", False: "FAIL", None: "info"}[r.passed]) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(head)]
    if title:
        lines.append(title)
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines.append("  ".join("-" * w for w in widths))
    for c in cells:
        lines.append("  ".join(x.ljust(w) for x, w in zip(c, widths)))
    return "\n".join(lines)


def machine_info() -> dict:
    info = {"python": platform.python_version(), "cpus": os.cpu_count(),
            "platform": platform.platform(), "loadavg_start": os.getloadavg()}
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
    except Exception:
        pass
    return info


@dataclass
class Report:
    name: str
    quick: bool = False
    rows: list[Row] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    machine: dict = field(default_factory=machine_info)

    def add(self, metric: str, measured, unit: str = "", op: str | None = None,
            target=None, note: str = "") -> Row:
        if isinstance(measured, float) and measured != measured:  # NaN -> None
            measured = None
        row = Row(metric, measured, unit, op, target, note)
        self.rows.append(row)
        print(f"  [{self.name}] {metric}: {fmt(measured, unit)}"
              + ("" if op is None else f"  (target {op} {fmt(target, unit)}: "
                 f"{'PASS' if row.passed else 'FAIL'})"), flush=True)
        return row

    def finish(self) -> dict:
        self.machine["loadavg_end"] = os.getloadavg()
        result = {"bench": self.name, "quick": self.quick, "started": self.started,
                  "seconds": round(time.time() - self.started, 2), "machine": self.machine,
                  "rows": [r.as_dict() for r in self.rows], "details": self.details}
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{self.name}{'.quick' if self.quick else ''}.json"
        path.write_text(json.dumps(result, indent=2, default=_json_default))
        print()
        print(table(self.rows, f"== {self.name}{' (quick)' if self.quick else ''} "
                               f"— {result['seconds']:.0f} s, load avg at start "
                               f"{self.machine['loadavg_start'][0]:.1f} =="))
        print(f"-> {path}", flush=True)
        return result


def _json_default(obj):
    try:
        import numpy as np
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:
        pass
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a short version (seconds, not minutes)")
    return p


# ---- timing ------------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict:
    return {"n": len(values), "min": min(values) if values else None,
            "p50": percentile(values, 50), "p95": percentile(values, 95),
            "max": max(values) if values else None,
            "mean": sum(values) / len(values) if values else None}


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def wait_until(check: Callable[[], object], timeout: float, interval: float = 0.02):
    """Poll check() until it returns something truthy; returns it, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def in_worker_thread(fn, *args, **kwargs):
    """Run fn in a fresh thread and return its result: the app runs model code in threads
    (the trainer, Gradio's worker pool), and torch's CPU threading can behave differently
    there than in the main thread, so benches time it where the app runs it."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1, thread_name_prefix="bench-worker") as pool:
        return pool.submit(fn, *args, **kwargs).result()


# ---- generated data -------------------------------------------------------------------------

def data_root() -> Path:
    root = Path(os.environ.get("HITL_BENCH_DATA")
                or Path(tempfile.gettempdir()) / "hitl-bench-data")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _sample_images() -> list[tuple[str, bytes]]:
    """A handful of distinct small encoded images (PNG and JPEG, varied sizes)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    out = []
    sizes = [(96, 64), (128, 128), (160, 120), (200, 150), (64, 96), (120, 90), (256, 192),
             (144, 144)]
    for i, (w, h) in enumerate(sizes):
        base = rng.integers(0, 255, (1, 1, 3))
        arr = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        fmt_ = "PNG" if i % 2 == 0 else "JPEG"
        Image.fromarray(arr).save(buf, format=fmt_, **({"quality": 85} if fmt_ == "JPEG" else {}))
        out.append((".png" if fmt_ == "PNG" else ".jpg", buf.getvalue()))
    return out


def image_folder(count: int, per_dir: int = 1000) -> Path:
    """A folder of `count` small image files in sub-folders of `per_dir` (made once, reused)."""
    folder = data_root() / f"images_{count}"
    done = folder / ".done"
    if done.exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    start = time.perf_counter()
    samples = _sample_images()
    for i in range(count):
        sub = folder / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            sub.mkdir(parents=True, exist_ok=True)
        suffix, data = samples[i % len(samples)]
        with open(sub / f"img_{i:06d}{suffix}", "wb") as f:
            f.write(data)
    done.write_text(str(count))
    print(f"  generated {count:,} image files in {time.perf_counter() - start:.1f} s "
          f"under {folder}", flush=True)
    return folder


def square_images(count: int, side: int = 512) -> Path:
    """`count` distinct-looking side x side PNGs (copies of 8 encoded ones)."""
    import numpy as np
    from PIL import Image
    folder = data_root() / f"square{side}_{count}"
    done = folder / ".done"
    if done.exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    blobs = []
    for _ in range(8):
        small = rng.integers(0, 255, (side // 16, side // 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((side, side), Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        blobs.append(buf.getvalue())
    for i in range(count):
        (folder / f"sq_{i:05d}.png").write_bytes(blobs[i % len(blobs)])
    done.write_text(str(count))
    return folder


def demo_folder(count: int) -> Path:
    """The app's own demo set (names demo_NNNN_<class>.png), made once."""
    from hitl import demo
    folder = data_root() / f"demo_{count}"
    start = time.perf_counter()
    images = demo.generate(folder, count, seed=0)
    took = time.perf_counter() - start
    if took > 1:
        print(f"  generated a demo set of {count} in {took:.1f} s", flush=True)
    return images


def random_masks(count: int, side: int, classes: int, seed: int = 0):
    """Full masks (every pixel 1..classes) of blobs, as a painter would leave them."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        small = rng.integers(1, classes + 1, (8, 8), dtype=np.uint8)
        out.append(np.asarray(Image.fromarray(small).resize((side, side), Image.NEAREST)))
    return out


# ---- processes --------------------------------------------------------------------------------

def fresh_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"hitl-bench-{prefix}-"))
