"""13. What a labeler feels in a real browser: key -> next image, save -> next editor ready.

app.py in a subprocess with the trainer on (default backbone, random init: it extracts
features for the whole run, so the CPU is busy as it is in real use), driven by headless
Chromium (tests/browser_util.py). Times are taken in the page: from the key's event to the
moment the next image has been decoded and two animation frames have passed (the page logs it
in window.__hitlLog / __hitlSegLog), one key at a time at a labeler's pace.

  - classification, the demo set (240 shapes): key -> next image displayed, p50 / p95
  - classification, photos (the hymenoptera JPEGs in tests/data, copied to 200 files)
  - segmentation, membrane 512x512 (tests/data/membrane, copied): a stroke, then Enter ->
    the next image and its mask layer drawn and ready to paint, p50 / p95
  - the painter on a 4000x3000 photo-like image: one wheel zoom or pan step per animation
    frame for 240 frames; frame time = from the step (in requestAnimationFrame) to the moment
    the frame's work is done (a message posted from it arrives), p50 / p95; and the interval
    between frames (dropped frames), p95. Measured once the full-resolution picture a first
    zoom asks for has arrived (its one-time swap is the first zoom's, not every frame's), with
    the mask still empty (its layer hidden) and again after a stroke
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.app_process import AppProcess  # noqa: E402
from bench.common import (  # noqa: E402
    REPO,
    Report,
    fresh_dir,
    parser,
    summary,
)

# JS tail shared by both measures: resolve with the ms until the next image is displayed
# (`log` and `n` set before the action, which starts the clock)
UNTIL_NEXT_DISPLAYED = """
const check = () => {
  if (log.length > n) done(log[n].at - t0);
  else if (performance.now() - t0 > 20000) done(null);
  else setTimeout(check, 1);
};
check();
"""

KEY_TO_IMAGE = """
const [key, done] = arguments;
const log = window.__hitlLog.displayed, n = log.length, t0 = performance.now();
document.body.dispatchEvent(new KeyboardEvent("keydown", {key, bubbles: true}));
""" + UNTIL_NEXT_DISPLAYED

# a horizontal stroke across canvas `c` (its box `r`), by pointer events
DRAW = """const at = (fx, fy, type) => c.dispatchEvent(new PointerEvent(type, {
  pointerId: 7, bubbles: true, button: 0, buttons: 1, isPrimary: true,
  clientX: r.left + fx * r.width, clientY: r.top + fy * r.height}));
at(0.2, 0.5, "pointerdown");
for (let i = 1; i <= 10; i++) at(0.2 + 0.06 * i, 0.5, "pointermove");
at(0.8, 0.5, "pointerup");
"""

STROKE = """
const c = document.getElementById(arguments[0]), r = c.getBoundingClientRect();
""" + DRAW

STROKE_AND_SAVE = """
const [done] = arguments;
const c = document.getElementById("seg-canvas"), r = c.getBoundingClientRect();
""" + DRAW + """const log = window.__hitlSegLog.displayed, n = log.length, t0 = performance.now();
document.body.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", bubbles: true}));
""" + UNTIL_NEXT_DISPLAYED

ZOOM_PAN = """
const [frames, done] = arguments;
const frame = document.querySelector("#seg-board .hb-view"), r = frame.getBoundingClientRect();
const work = [], gaps = [];
let k = 0, last = null;
const channel = new MessageChannel();
const step = (now) => {
  if (last !== null) gaps.push(now - last);
  last = now;
  const t0 = performance.now();
  if (k % 40 < 20) {  // zoom in and out around a moving pointer
    frame.dispatchEvent(new WheelEvent("wheel", {bubbles: true, cancelable: true,
      deltaY: (k % 40 < 10 ? -60 : 60), clientX: r.left + r.width * (0.3 + 0.02 * (k % 20)),
      clientY: r.top + r.height / 2}));
  } else {  // a middle-button drag
    const x = r.left + r.width / 2 + 8 * ((k % 20) - 10), y = r.top + r.height / 2;
    const type = k % 20 === 0 ? "pointerdown" : k % 20 === 19 ? "pointerup" : "pointermove";
    frame.dispatchEvent(new PointerEvent(type, {pointerId: 3, bubbles: true, button: 1,
      buttons: 4, clientX: x, clientY: y}));
  }
  channel.port1.onmessage = () => {
    work.push(performance.now() - t0);
    if (++k < frames) requestAnimationFrame(step); else done({work, gaps});
  };
  channel.port2.postMessage(0);
};
requestAnimationFrame(step);
"""

READY = """
const s = window.%s && window.%s.state;
return !!s && !!s.shown && s.shown.painted && s.sending.size === 0 && !s.fetching;
"""


def copies(source: list[Path], count: int, folder: Path) -> Path:
    """`count` files named apart, cycling through the sample files."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        src = source[i % len(source)]
        shutil.copyfile(src, folder / f"{i:05d}_{src.name}")
    return folder


def run_app(args: list[str], tmp: Path, name: str) -> AppProcess:
    app = AppProcess(["--session", str(tmp / f"session-{name}"), "--no-pretrained", *args],
                     tmp / f"app-{name}.log")
    app.wait_ready(timeout=600)
    return app


def wait(driver, script: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script(script):
            return
        time.sleep(0.05)
    raise TimeoutError("the page did not get ready")


def classification_keys(driver, url: str, n: int, pause: float) -> list[float]:
    driver.get(url)
    wait(driver, READY % ("hitlBoard", "hitlBoard"))
    driver.set_script_timeout(30)
    times = []
    for k in range(n):
        ms = driver.execute_async_script(KEY_TO_IMAGE, str(1 + k % 2))
        if ms is None:
            raise RuntimeError("a key showed no next image within 20 s")
        times.append(ms)
        time.sleep(pause)  # a labeler's pace: the page refills its queue meanwhile
    return times


def segmentation_saves(driver, url: str, n: int, pause: float) -> list[float]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(url)
    tab = WebDriverWait(driver, 120).until(lambda d: d.find_element(
        By.XPATH, "//button[@role='tab'][contains(., 'Segmentation')]"))
    tab.click()
    wait(driver, READY % ("hitlSeg", "hitlSeg"))
    driver.set_script_timeout(30)
    times = []
    for _ in range(n):
        ms = driver.execute_async_script(STROKE_AND_SAVE)
        if ms is None:
            raise RuntimeError("a save showed no next image within 20 s")
        times.append(ms)
        time.sleep(pause)
        wait(driver, READY % ("hitlSeg", "hitlSeg"), timeout=60)
    return times


def photo(path: Path, width: int = 4000, height: int = 3000) -> Path:
    """A large photo-like JPEG (smooth shapes and noise), written once."""
    import numpy as np
    from PIL import Image
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 128 + 60 * np.sin(x / 180.0) * np.cos(y / 140.0)
    noise = np.random.default_rng(0).normal(0, 12, (height, width))
    rgb = np.stack([base + noise, base * 0.8 + noise, 255 - base + noise], -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path, quality=85)
    return path


def zoom_and_pan(driver, url: str, frames: int) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(url)
    WebDriverWait(driver, 120).until(lambda d: d.find_element(By.ID, "seg-title").is_displayed())
    wait(driver, READY % ("hitlSeg", "hitlSeg"))
    driver.execute_script("document.querySelector('#seg-board .hb-view')"
                          ".scrollIntoView({block: 'center'});")
    for _ in range(4):  # past the display copy's resolution: the full picture comes
        driver.execute_script("window.hitlSeg.key('+');")
    wait(driver, "const s = window.hitlSeg.state.shown;"
                 "return document.getElementById('seg-image').naturalWidth === s.fw;")
    driver.execute_script("window.hitlSeg.key('f');")
    time.sleep(1.0)
    driver.set_script_timeout(120)
    bare = driver.execute_async_script(ZOOM_PAN, frames)
    driver.execute_script(STROKE, "seg-canvas")  # now with paint on the mask layer
    driver.execute_script("window.hitlSeg.key('f');")
    time.sleep(1.0)
    return bare, driver.execute_async_script(ZOOM_PAN, frames)


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    from tests.browser_util import browser_available, chromium
    report = Report("browser", args.quick)
    why_not = browser_available()
    if why_not:
        raise SystemExit(f"bench_browser needs Chromium: {why_not}")
    n_keys = 20 if args.quick else 60
    n_saves = 8 if args.quick else 25
    tmp = fresh_dir("browser")
    data = REPO / "tests" / "data"
    photos = copies(sorted((data / "hymenoptera").rglob("*.jpg")), 200, tmp / "photos")
    membrane = copies(sorted((data / "membrane" / "images").glob("*.png")), 60, tmp / "membrane")
    large = copies([photo(tmp / "large.jpg")], 3, tmp / "large")
    try:
        with chromium() as driver:
            for name, app_args in (("demo", []),
                                   ("photos", ["--images", str(photos), "--task",
                                               "classification", "--classes", "ants,bees"])):
                app = run_app(app_args, tmp, name)
                try:
                    times = classification_keys(driver, app.url, n_keys, pause=0.35)
                finally:
                    app.stop()
                s = summary(times)
                report.details[f"key_to_image_{name}_ms"] = s
                report.add(f"key -> next image displayed, {name}, p50", s["p50"], "ms")
                report.add(f"key -> next image displayed, {name}, p95", s["p95"], "ms", "<=",
                           60, note=f"{s['n']} keys, trainer extracting; max {s['max']:.0f} ms")
            app = run_app(["--images", str(membrane), "--task", "segmentation",
                           "--classes", "membrane,cell"], tmp, "membrane")
            try:
                times = segmentation_saves(driver, app.url, n_saves, pause=0.5)
            finally:
                app.stop()
            s = summary(times)
            report.details["save_to_editor_ms"] = s
            report.add("segmentation save -> next editor ready, membrane 512², p50", s["p50"],
                       "ms")
            report.add("segmentation save -> next editor ready, membrane 512², p95", s["p95"],
                       "ms", "<=", 120, note=f"{s['n']} saves, trainer on; max "
                                             f"{s['max']:.0f} ms")
            app = run_app(["--images", str(large), "--task", "segmentation",
                           "--classes", "a,b"], tmp, "large")
            try:
                runs = zoom_and_pan(driver, app.url, 120 if args.quick else 240)
            finally:
                app.stop()
            for label, measured in zip(("empty mask", "painted mask"), runs):
                s, gaps = summary(measured["work"]), summary(measured["gaps"])
                key = label.replace(" ", "_")
                report.details[f"zoom_pan_frame_ms_{key}"] = s
                report.details[f"zoom_pan_interval_ms_{key}"] = gaps
                report.add(f"zoom/pan frame time, 4000x3000, {label}, p50", s["p50"], "ms")
                report.add(f"zoom/pan frame time, 4000x3000, {label}, p95", s["p95"], "ms",
                           "<=", 16, note=f"{s['n']} frames, trainer on; frame interval p95 "
                                          f"{gaps['p95']:.1f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report.finish()


if __name__ == "__main__":
    main()
