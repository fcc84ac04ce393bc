"""The real page in headless Chromium: keyboard labeling and a brushed mask reach the store.

These drive the UI the way a person does (keys sent to the page, a stroke dragged on the
editor's canvas) and check the result in the session's store, not in the page.
"""
from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser_util import WAIT, browser_available, chromium
from tests.conftest import wait_for

TITLE = re.compile(r"Image (\d+) · (\S+)")


@pytest.fixture(scope="module")
def driver():
    why_not = browser_available()
    if why_not is not None:  # the README's test command installs them: a failure, not a skip
        pytest.fail(f"browser tests need Chromium: {why_not}")
    with chromium() as d:
        yield d


def title_id(driver, elem_id: str) -> int | None:
    """The image id in a tab's title, or None while it shows no image."""
    try:
        text = driver.find_element(By.ID, elem_id).text
    except Exception:  # noqa: BLE001 - re-rendered while read: try again
        return None
    m = TITLE.search(" ".join(text.split()))
    return int(m.group(1)) if m else None


def wait_title(driver, elem_id: str, predicate, what: str) -> int:
    """Wait until the title shows an image id for which predicate(id) holds; return it."""
    found = {}

    def check(d):
        image_id = title_id(d, elem_id)
        if image_id is not None and predicate(image_id):
            found["id"] = image_id
            return True
        return False
    try:
        WebDriverWait(driver, WAIT, poll_frequency=0.1).until(check)
    except Exception as exc:
        shot = f"/tmp/hitl-browser-{elem_id}.png"
        driver.save_screenshot(shot)
        raise AssertionError(f"{what}: title is {title_id(driver, elem_id)!r} "
                             f"(screenshot {shot})") from exc
    return found["id"]


def press(driver, key: str) -> None:
    """A key pressed on the page itself, with no input focused (as a labeler does)."""
    driver.execute_script("if (document.activeElement) document.activeElement.blur();")
    driver.find_element(By.TAG_NAME, "body").send_keys(key)


def label_count(store) -> int:
    return len(store.labeled_pairs()[0])


# --------------------------------------------------------------------------- classification

def test_classification_keys(driver, app_factory):
    app = app_factory(task="classification")  # locked: the demo classes are there at once
    session, url = app.session, app.url
    store = session.store
    classes = store.classes()
    assert [c.name for c in classes][:3] == ["circle", "square", "triangle"]
    driver.get(url)
    first = wait_title(driver, "cls-title", lambda i: True, "the first image never showed")
    # the class buttons carry their keys: "2: square"
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.ID, "cls-btn-1"), f"2: {classes[1].name}"))

    # `2` labels the image with the second class and moves on
    press(driver, "2")
    second = wait_title(driver, "cls-title", lambda i: i != first,
                        "key 2 did not move to another image")
    wait_for(lambda: store.label_of(first) == classes[1].id, timeout=WAIT)  # sent behind
    assert label_count(store) == 1

    # `S` skips the image shown and moves on, labeling nothing
    press(driver, "s")
    wait_title(driver, "cls-title", lambda i: i not in (first, second),
               "key S did not move to another image")
    wait_for(lambda: store.is_skipped(second), timeout=WAIT)
    assert store.label_of(second) is None
    assert label_count(store) == 1

    # `U` undoes the skip and shows that image again; a second `U` undoes the label
    press(driver, "u")
    wait_title(driver, "cls-title", lambda i: i == second, "key U did not go back")
    wait_for(lambda: not store.is_skipped(second), timeout=WAIT)
    assert store.label_of(first) == classes[1].id
    press(driver, "u")
    wait_title(driver, "cls-title", lambda i: i == first, "second U did not go back")
    wait_for(lambda: store.label_of(first) is None, timeout=WAIT)
    assert label_count(store) == 0

    # digits typed in "go to id" are text, not labels; Enter opens that id
    box = driver.find_element(By.CSS_SELECTOR, "#cls-goto input, #cls-goto textarea")
    box.click()
    target = 12 if first != 12 else 13
    box.send_keys(str(target))
    assert box.get_attribute("value") == str(target)
    box.send_keys(Keys.ENTER)
    wait_title(driver, "cls-title", lambda i: i == target, "go to id did not open the image")
    assert label_count(store) == 0, "digits typed in the go-to box labeled an image"
    assert not store.is_skipped(target)


KEY_BURSTS = """
const [keys, gap, every, done] = arguments;
const fire = (key) => document.body.dispatchEvent(
    new KeyboardEvent("keydown", {key, bubbles: true, cancelable: true}));
const pause = (ms) => { const end = performance.now() + ms; while (performance.now() < end); };
let at = 0;
keys.forEach((pair) => {
  // the second key follows `gap` ms after the first one's handler, in the same task: no
  // frame is drawn in between, as when a labeler's two keys beat the screen
  setTimeout(() => { fire(pair[0]); pause(gap); fire(pair[1]); }, at);
  at += every;
});
setTimeout(done, at + gap + 50);
"""


def key_bursts(driver, pairs: list[str], gap_ms: int, every_ms: int) -> None:
    """Key pairs dispatched by the page's clock (selenium's send_keys and DevTools input
    take 50-200 ms per key on this machine, far slower than a fast labeler)."""
    driver.set_script_timeout(WAIT)
    driver.execute_async_script(KEY_BURSTS, pairs, gap_ms, every_ms)


def settled(driver) -> bool:
    """The board has sent everything and shows an image with no key waiting."""
    return driver.execute_script(
        "const s = window.hitlBoard && window.hitlBoard.state;"
        "return !!s && s.sending.size === 0 && s.keys.length === 0 && !!s.shown"
        " && s.shown.painted;")


def displayed(driver) -> list[dict]:
    return driver.execute_script("return window.__hitlLog.displayed;")


def test_key_bursts_label_only_displayed_images(driver, app_factory):
    """`1`,`2` within 20 ms, ten times: each key labels the next image actually drawn on
    screen, once, with the class its button showed there."""
    app = app_factory(task="classification")
    store = app.session.store
    driver.get(app.url)
    wait_title(driver, "cls-title", lambda i: True, "the first image never showed")
    WebDriverWait(driver, WAIT).until(lambda d: settled(d))
    start = len(displayed(driver)) - 1  # the image on screen takes the first key
    keys = "12" * 10
    driver.execute_script(
        "if (document.activeElement) document.activeElement.blur();"
        "window.__keyTimes = [];"
        "document.addEventListener('keydown', (e) => window.__keyTimes.push(e.timeStamp));")
    key_bursts(driver, ["12"] * 10, gap_ms=2, every_ms=80)
    assert len(driver.execute_script("return window.__keyTimes;")) == 20
    WebDriverWait(driver, WAIT, poll_frequency=0.1).until(
        lambda d: settled(d) and len(displayed(d)) >= start + 21)
    shown = displayed(driver)[start:start + 20]
    try:
        wait_for(lambda: label_count(store) >= 20, timeout=WAIT)
    except AssertionError:
        raise AssertionError((label_count(store), driver.find_element(By.ID, "cls-note").text,
                              displayed(driver), driver.execute_script(
                                  "return window.__hitlLog.sent;"))) from None
    ids = [d["image_id"] for d in shown]
    assert len(set(ids)) == 20, ids
    by_name = {c.name: c.id for c in store.classes()}
    for key, entry in zip(keys, shown):
        expected = entry["classes"][int(key) - 1]  # the button for that key on that screen
        assert store.label_of(entry["image_id"]) == by_name[expected], entry
    labeled, _ = store.labeled_pairs()
    assert set(labeled.tolist()) == set(ids)
    events = store.events(1000)
    assert (events["action"] == "label").sum() == 20  # no label written twice


def test_stale_class_list_is_refused_and_redrawn(driver, app_factory):
    """After a class moves in another tab, its old digit stores nothing: the page redraws
    its buttons and shows the same image again."""
    app = app_factory(task="classification")
    store = app.session.store
    driver.get(app.url)
    first = wait_title(driver, "cls-title", lambda i: True, "the first image never showed")
    WebDriverWait(driver, WAIT).until(lambda d: settled(d))
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.ID, "cls-btn-2"), "3: triangle"))
    driver.execute_script("window.hitlBoard.pause = true;")  # no tick between move and key
    names = [c.name for c in store.classes()]
    ids = [c.id for c in store.classes()]
    store.reorder_classes([ids[2], ids[0], ids[1]])  # triangle first, as the Classes tab does
    press(driver, "3")
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.ID, "cls-btn-2"), f"3: {names[1]}"))
    WebDriverWait(driver, WAIT).until(lambda d: settled(d))
    assert title_id(driver, "cls-title") == first
    assert "Not saved" in driver.find_element(By.ID, "cls-note").text
    assert driver.find_element(By.ID, "cls-btn-0").text.startswith(f"1: {names[2]}")
    assert label_count(store) == 0
    # pressed again on the redrawn buttons, the same digit means the class it shows now
    press(driver, "3")
    wait_for(lambda: store.label_of(first) == ids[1], timeout=WAIT)


def test_first_launch_demo_shows_class_buttons(driver, app_factory):
    """The demo without --task: class buttons at once, before anything locks the task."""
    app = app_factory()
    assert app.session.store.task() is None
    driver.get(app.url)
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.ID, "cls-btn-0"), "1: circle"))
    wait_title(driver, "cls-title", lambda i: True, "the first image never showed")


# ----------------------------------------------------------------------------- segmentation
#
# Every event makes gr.ImageEditor reload and re-upload its value, so the page pauses its fast
# stats timer while the Segmentation tab is open (test_segmentation_editor_is_idle checks it).


def editor_shows_image(driver) -> bool:
    """The editor's canvas shows a picture (not a blank canvas): many distinct colours."""
    from PIL import Image
    canvas = driver.find_element(By.CSS_SELECTOR, "#seg-editor canvas")
    shot = Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB")
    w, h = shot.size
    centre = np.asarray(shot.crop((w // 2 - 60, h // 2 - 60, w // 2 + 60, h // 2 + 60)))
    return len(np.unique(centre.reshape(-1, 3), axis=0)) > 50


def open_segmentation(driver, url: str) -> int:
    """Load the page, open the Segmentation tab, wait for an image in the editor; its id."""
    driver.get(url)
    tab = WebDriverWait(driver, WAIT).until(EC.element_to_be_clickable(
        (By.XPATH, "//button[@role='tab'][contains(., 'Segmentation')]")))
    tab.click()
    image_id = wait_title(driver, "seg-title", lambda i: True,
                          "the Segmentation tab showed no image")
    # the whole canvas in view: element screenshots and pointer offsets use the visible part
    canvas = driver.find_element(By.CSS_SELECTOR, "#seg-editor canvas")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", canvas)
    left, top, width, height, view_w, view_h = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height, window.innerWidth, window.innerHeight];",
        canvas)
    assert left >= 0 and top >= 0 and left + width <= view_w and top + height <= view_h, \
        f"the editor ({width}x{height}) does not fit the {view_w}x{view_h} window"
    WebDriverWait(driver, WAIT, poll_frequency=0.25).until(
        editor_shows_image, "the editor never showed the image")
    return image_id


def editor_zoom(driver) -> float:
    text = driver.find_element(By.CSS_SELECTOR, "#seg-editor .zoom-number").text
    m = re.search(r"(\d+(?:\.\d+)?)\s*%", text)
    assert m, f"no zoom level shown in the editor ({text!r})"
    return float(m.group(1)) / 100.0


def test_segmentation_brush_stroke_saved(driver, app_factory):
    from hitl.imaging import Letterbox
    from hitl.ui.segmentation import CANVAS

    app = app_factory(task="segmentation")
    session, url = app.session, app.url
    store = session.store
    brush_class = store.classes()[0]  # the brush starts on the first class
    image_id = open_segmentation(driver, url)
    assert title_id(driver, "seg-title") == image_id
    assert store.mask(image_id) is None

    row = store.image(image_id)
    box = Letterbox.fit(row.width, row.height, CANVAS)
    zoom = editor_zoom(driver)

    # A horizontal stroke above the centre. Selenium offsets are CSS pixels from the
    # element's centre (it is fully in view); the editor draws its 512 px canvas centred
    # in that element, scaled by the zoom it shows (60% in a 1000 px wide window).
    canvas = driver.find_element(By.CSS_SELECTOR, "#seg-editor canvas")
    dx0, dx1, dy = -60, 60, -30
    chain = ActionChains(driver, duration=50)
    chain.move_to_element_with_offset(canvas, dx0, dy).click_and_hold()
    chain.move_to_element_with_offset(canvas, (dx0 + dx1) // 2, dy)
    chain.move_to_element_with_offset(canvas, dx1, dy)
    chain.release().perform()

    def to_image(dx: float, dy: float) -> tuple[float, float]:
        cx, cy = CANVAS / 2 + dx / zoom, CANVAS / 2 + dy / zoom
        return ((cx - box.left) * box.width / box.scaled_w,
                (cy - box.top) * box.height / box.scaled_h)
    (x0, y), (x1, _) = to_image(dx0, dy), to_image(dx1, dy)
    assert 0 <= x0 < x1 < row.width and 0 <= y < row.height, "stroke is off the image"

    press(driver, Keys.ENTER)  # save and go on
    wait_for(lambda: store.mask(image_id) is not None, timeout=WAIT)
    mask = store.mask(image_id)
    wait_title(driver, "seg-title", lambda i: i != image_id, "saving did not move on")
    note = driver.find_element(By.ID, "seg-note").text
    assert f"Saved image {image_id}" in note, note

    assert mask.shape == (row.height, row.width)
    labeled = mask > 0
    assert set(np.unique(mask[labeled]).tolist()) == {brush_class.id}
    ys, xs = np.nonzero(labeled)
    scale = box.width / box.scaled_w  # image pixels per canvas pixel
    reach = 20 * scale + 3  # brush radius (canvas px) and rounding, in image pixels
    assert mask[int(round(y)), int(round((x0 + x1) / 2))] == brush_class.id
    assert x0 - reach <= xs.min() <= x0 + 3 and x1 - 3 <= xs.max() <= x1 + reach, \
        (xs.min(), xs.max(), x0, x1)
    assert y - reach <= ys.min() <= y <= ys.max() <= y + reach, (ys.min(), ys.max(), y)
    assert labeled.sum() < 0.2 * labeled.size


COUNT_UPLOADS = """
return performance.getEntriesByType('resource')
    .filter(e => e.name.includes('/gradio_api/upload')).length;
"""




def test_segmentation_editor_is_idle(driver, app_factory):
    """With nothing done on the Segmentation tab, the page uploads nothing (real timer)."""
    url = app_factory(task="segmentation").url
    open_segmentation(driver, url)
    driver.execute_script("performance.setResourceTimingBufferSize(100000);"
                          "performance.clearResourceTimings();")
    deadline = time.monotonic() + 6.5  # three timer ticks
    uploads = 0
    while uploads <= 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        uploads = driver.execute_script(COUNT_UPLOADS)
    assert uploads <= 2, f"{uploads} editor uploads while idle"  # it was ~10 per event
