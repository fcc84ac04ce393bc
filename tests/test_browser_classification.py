"""The Classification board in headless Chromium: keys, bursts, stale class lists, resets.

These drive the page the way a person does (keys sent to the page) and check the result in
the session's store, not in the page.
"""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser_util import WAIT, browser, label_count, press, title_id, wait_title
from tests.conftest import wait_for


@pytest.fixture(scope="module")
def driver():
    with browser() as d:
        yield d


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
    # the board says who is signed in, with a way out
    WebDriverWait(driver, WAIT).until(EC.text_to_be_present_in_element(
        (By.ID, "cls-progress"), "Signed in as ann"))
    logout = driver.find_element(By.CSS_SELECTOR, "#cls-progress a")
    assert logout.text == "Log out" and logout.get_attribute("href").endswith("/logout")
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
