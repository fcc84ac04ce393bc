"""The real page in headless Chromium: keyboard labeling and a brushed mask reach the store.

These drive the UI the way a person does (keys sent to the page, a stroke dragged on the
editor's canvas) and check the result in the session's store, not in the page.
"""
from __future__ import annotations

import io
import re

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


def test_a_reset_reaches_the_open_page(driver, app_factory):
    """After a reset (from any page) the open page drops what it held within a tick: it
    shows an image of the fresh session, and its next key labels there."""
    app = app_factory(task="classification")
    session = app.session
    driver.get(app.url)
    wait_title(driver, "cls-title", lambda i: True, "the first image never showed")
    WebDriverWait(driver, WAIT).until(lambda d: settled(d))
    before = driver.execute_script("return window.hitlBoard.state.epoch;")
    shown = len(displayed(driver))
    session.reset()
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
        "return window.hitlBoard.state.epoch;") != before)
    WebDriverWait(driver, WAIT).until(lambda d: settled(d) and len(displayed(d)) > shown)
    press(driver, "1")
    wait_for(lambda: label_count(session.store) == 1, timeout=WAIT)


def test_classes_tab_keeps_selection_and_reaches_the_board(driver, app_factory):
    """Add clears the typed name, Move keeps the moved class selected, and both reach the
    Classification buttons within a tick."""
    app = app_factory(task="classification")
    driver.get(app.url)
    wait_title(driver, "cls-title", lambda i: True, "the first image never showed")
    driver.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Classes')]").click()
    box = WebDriverWait(driver, WAIT).until(
        EC.element_to_be_clickable((By.CSS_SELECTOR, "#class-new textarea, #class-new input")))
    box.send_keys("hexagon")
    driver.find_element(By.ID, "class-add").click()
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.ID, "classes-table"), "hexagon"))
    WebDriverWait(driver, WAIT).until(lambda d: box.get_attribute("value") == "")
    chosen = driver.find_element(By.CSS_SELECTOR, "#class-chosen input")
    chosen.click()
    assert chosen.get_attribute("value") == "hexagon"  # the class just added is selected
    chosen.send_keys(Keys.CONTROL, "a")
    chosen.send_keys("triangle", Keys.ENTER)  # the dropdown takes the first match
    WebDriverWait(driver, WAIT).until(lambda d: chosen.get_attribute("value") == "triangle")
    driver.find_element(By.XPATH, "//button[contains(., 'Move up')]").click()
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.ID, "class-message"), "position 2"))
    assert chosen.get_attribute("value") == "triangle"  # still selected for the next move
    assert [c.name for c in app.session.store.classes()] == \
        ["circle", "triangle", "square", "hexagon"]
    driver.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Classification')]").click()
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.ID, "cls-btn-1"), "2: triangle"))
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.ID, "cls-btn-3"), "4: hexagon"))


def test_labels_from_the_board_carry_the_login(driver, app_factory):
    """Behind a login, a key on the board stores the label under that user's name."""
    app = app_factory(task="classification", auth=[("boss", "pw-boss", "admin"),
                                                   ("ann", "pw-ann", "labeler")])
    driver.delete_all_cookies()
    driver.get(app.url)
    user = WebDriverWait(driver, WAIT).until(EC.element_to_be_clickable(
        (By.CSS_SELECTOR, "input[type='text'], input:not([type])")))
    user.send_keys("ann")
    driver.find_element(By.CSS_SELECTOR, "input[type='password']").send_keys("pw-ann",
                                                                             Keys.ENTER)
    first = wait_title(driver, "cls-title", lambda i: True, "no image after the login")
    WebDriverWait(driver, WAIT).until(lambda d: settled(d))
    press(driver, "1")
    wait_for(lambda: app.session.store.label_of(first) is not None, timeout=WAIT)
    users = app.session.store._cursor().execute(
        'SELECT DISTINCT "user" FROM labels').fetchall()
    assert users == [("ann",)]
    driver.delete_all_cookies()


def test_first_launch_demo_shows_class_buttons(driver, app_factory):
    """The demo without --task: class buttons at once, before anything locks the task."""
    app = app_factory()
    assert app.session.store.task() is None
    driver.get(app.url)
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.ID, "cls-btn-0"), "1: circle"))
    wait_title(driver, "cls-title", lambda i: True, "the first image never showed")
    driver.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Segmentation')]").click()
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.ID, "seg-brush-3"), "4 background"))
    wait_title(driver, "seg-title", lambda i: True, "the Segmentation tab showed no image")


# ----------------------------------------------------------------------------- segmentation

def stage_shot(driver):
    """The painter's stage as drawn on screen (image, overlay and mask layer), RGB array."""
    from PIL import Image
    stage = driver.find_element(By.CSS_SELECTOR, "#seg-board .hb-stage")
    return np.asarray(Image.open(io.BytesIO(stage.screenshot_as_png)).convert("RGB"))


def shows_picture(shot: np.ndarray) -> bool:
    """Many distinct colours in the middle: a picture, not a blank or flat layer."""
    h, w = shot.shape[:2]
    centre = shot[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    return len(np.unique(centre.reshape(-1, 3), axis=0)) > 50


def seg_ready(driver) -> bool:
    return driver.execute_script(
        "const s = window.hitlSeg && window.hitlSeg.state;"
        "return !!s && !!s.shown && s.shown.painted && s.sending.size === 0;")


def open_segmentation(driver, url: str) -> int:
    """Load the page, open the Segmentation tab, wait for a painted image; its id."""
    driver.get(url)
    tab = WebDriverWait(driver, WAIT).until(EC.element_to_be_clickable(
        (By.XPATH, "//button[@role='tab'][contains(., 'Segmentation')]")))
    tab.click()
    wait_title(driver, "seg-title", lambda i: True, "the Segmentation tab showed no image")
    stage = driver.find_element(By.CSS_SELECTOR, "#seg-board .hb-stage")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", stage)
    WebDriverWait(driver, WAIT, poll_frequency=0.1).until(seg_ready)
    WebDriverWait(driver, WAIT, poll_frequency=0.25).until(
        lambda d: shows_picture(stage_shot(d)), "the painter never showed the image")
    return title_id(driver, "seg-title")


def layer_box(driver) -> dict:
    """Where the mask layer is on screen and the displayed image size it paints at."""
    return driver.execute_script(
        "const c = document.getElementById('seg-canvas'), r = c.getBoundingClientRect();"
        "return {left: r.left, top: r.top, width: r.width, height: r.height,"
        " w: c.width, h: c.height};")


def test_brush_class_chosen_then_stroke_at_once(driver, app_factory):
    """`2` then a stroke right after: the whole stroke is class 2 in the saved mask."""
    app = app_factory(task="segmentation")
    store = app.session.store
    image_id = open_segmentation(driver, app.url)
    row = store.image(image_id)
    box = layer_box(driver)
    assert (box["w"], box["h"]) == (row.width, row.height)  # demo images show at full size
    driver.execute_script(
        "window.__t = {};"
        "document.addEventListener('keydown', e => window.__t.key = e.timeStamp, true);"
        "document.getElementById('seg-canvas').addEventListener('pointerdown',"
        " e => window.__t.down = window.__t.down || e.timeStamp, true);")
    canvas = driver.find_element(By.ID, "seg-canvas")
    # offsets are CSS pixels from the layer's centre
    dx0, dx1, dy = -0.3 * box["width"], 0.3 * box["width"], -0.15 * box["height"]
    driver.execute_script("if (document.activeElement) document.activeElement.blur();")
    chain = ActionChains(driver, duration=10)
    chain.send_keys("2")
    chain.move_to_element_with_offset(canvas, int(dx0), int(dy)).click_and_hold()
    for f in (0.25, 0.5, 0.75, 1.0):
        chain.move_to_element_with_offset(canvas, int(dx0 + f * (dx1 - dx0)), int(dy))
    chain.release().perform()
    t = driver.execute_script("return window.__t;")
    delay = t["down"] - t["key"]
    press(driver, Keys.ENTER)  # save and go on
    wait_for(lambda: store.mask(image_id) is not None, timeout=WAIT)
    wait_title(driver, "seg-title", lambda i: i != image_id, "saving did not move on")
    positions = store.mask_positions(image_id)
    scale_x, scale_y = row.width / box["width"], row.height / box["height"]
    y = int((box["height"] / 2 + dy) * scale_y)
    xs = range(int((box["width"] / 2 + dx0) * scale_x) + 1,
               int((box["width"] / 2 + dx1) * scale_x) - 1)
    under = [int(positions[y, x]) for x in xs]
    assert set(under) == {2}, (under, delay)  # class 2 from the stroke's first pixel
    assert set(np.unique(positions).tolist()) == {0, 2}
    print(f"key -> stroke start {delay:.0f} ms")
    assert delay < 1000, delay  # the stroke began right after the key


def test_save_after_a_class_moved_is_refused_then_kept_in_its_class(driver, app_factory):
    """A save drawn with a class list that changed since is refused and comes back with its
    paint; the paint keeps its class (by name) and the next Enter stores it."""
    app = app_factory(task="segmentation")
    store = app.session.store
    image_id = open_segmentation(driver, app.url)
    box = layer_box(driver)
    circle = store.class_by_name("circle")
    canvas = driver.find_element(By.ID, "seg-canvas")
    driver.execute_script("if (document.activeElement) document.activeElement.blur();")
    dx0, dx1 = int(-0.3 * box["width"]), int(0.3 * box["width"])
    chain = ActionChains(driver, duration=10).send_keys("2")  # circle is class 2 here
    chain.move_to_element_with_offset(canvas, dx0, 0).click_and_hold()
    chain.move_to_element_with_offset(canvas, dx1, 0).release().perform()
    driver.execute_script("window.hitlSeg.pause = true;")  # no tick between move and save
    ids = [c.id for c in store.classes()]
    store.reorder_classes([circle.id] + [i for i in ids if i != circle.id])
    press(driver, Keys.ENTER)
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.ID, "seg-note"), "Not saved"))
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.ID, "seg-brush-0"), "1 circle"))
    WebDriverWait(driver, WAIT, poll_frequency=0.1).until(seg_ready)
    assert title_id(driver, "seg-title") == image_id and store.mask(image_id) is None
    press(driver, Keys.ENTER)
    wait_for(lambda: store.mask(image_id) is not None, timeout=WAIT)
    mask = store.mask(image_id)
    assert set(np.unique(mask).tolist()) == {0, store.class_by_name("circle").mask_value}


def test_accept_keeps_the_image_visible(driver, app_factory):
    """`A` lays the prediction over the image as a see-through layer to correct."""
    app = app_factory(task="segmentation")
    session = app.session
    store = session.store
    from hitl.service import Service
    svc = Service(session)
    me = svc.caller_of(None)
    # two masks so the trainer makes a model and predicts every image
    for _ in range(2):
        view = svc.next_image(me, "segmentation", "sequential")
        mask = np.zeros((view["height"], view["width"]), np.uint8)
        mask[:, : view["width"] // 2] = 1
        mask[:, view["width"] // 2:] = 2
        assert svc.annotate_positions(me, view["image_id"], mask)["ok"]
    svc.leave(me)
    image_id = open_segmentation(driver, app.url)
    wait_for(lambda: session.trainer.predicted_mask(image_id) is not None, timeout=180)
    before = stage_shot(driver)
    press(driver, "a")
    WebDriverWait(driver, WAIT).until(lambda d: "Prediction loaded" in d.find_element(
        By.ID, "seg-note").text)
    painted = driver.execute_script(
        "const c = document.getElementById('seg-canvas');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;")
    assert painted > 0, "no prediction layer was drawn"
    after = stage_shot(driver)
    assert shows_picture(after), "the image is hidden under the prediction"
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 2, "no layer to see"
    assert store.mask(image_id) is None  # nothing is saved until Enter
