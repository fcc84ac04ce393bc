"""Board states in headless Chromium: progress, the done state, keys after a dropdown, the
task's own tab, and reserved images given back when the page closes.

Each test drives the page as a labeler does and checks the store (labels, leases), not only
the page.
"""
from __future__ import annotations

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser_util import WAIT, browser, label_count, wait_title
from tests.conftest import wait_for


@pytest.fixture(scope="module")
def driver():
    with browser() as d:
        yield d


def held(store) -> list[int]:
    """Every image reserved by anyone now."""
    return sorted(i for i, _ in store.lease_book.others_left("nobody"))


def test_keys_after_a_dropdown_progress_and_the_done_state(driver, app_factory):
    """A strategy chosen in the dropdown leaves the keys to the board; the progress line
    counts; the last label turns the board into 'all labeled' with what to do next."""
    app = app_factory(task="classification", demo_count=5, train=False)
    store = app.session.store
    driver.get(app.url)
    first = wait_title(driver, "cls-title", lambda i: True, "the first image never showed")
    Select(driver.find_element(By.ID, "cls-strategy")).select_by_visible_text("sequential")
    # no click elsewhere: the next key goes to whatever has the focus, as a labeler's would
    ActionChains(driver).send_keys("1").perform()
    wait_for(lambda: label_count(store) == 1, timeout=WAIT)
    WebDriverWait(driver, WAIT).until(EC.text_to_be_present_in_element(
        (By.ID, "cls-progress"), "1 / 5 labeled"))
    assert "1 yours today" in driver.find_element(By.ID, "cls-progress").text
    for n in range(2, 6):
        wait_title(driver, "cls-title", lambda i: store.label_of(i) is None, "no next image")
        ActionChains(driver).send_keys("2").perform()
        wait_for(lambda: label_count(store) == n, timeout=WAIT)
    WebDriverWait(driver, WAIT).until(EC.text_to_be_present_in_element(
        (By.ID, "cls-title"), "All labeled"))
    text = driver.find_element(By.ID, "cls-note").text
    assert "All 5 images are labeled" in text and "Export" in text, text
    assert "someone else" not in text
    assert store.label_of(first) == store.classes()[0].id
    # an undo brings an image back to the idle board by itself
    ActionChains(driver).send_keys("u").perform()
    wait_title(driver, "cls-title", lambda i: store.label_of(i) is None, "undo did not return")


def test_task_tab_first_and_images_given_back_on_close(driver, app_factory):
    """A segmentation session opens on its own tab with the other hidden; when the page goes
    away its reserved images are free at once (pagehide beacon), not after the lease."""
    app = app_factory(task="segmentation", demo_count=8, train=False)
    store = app.session.store
    driver.get(app.url)
    wait_title(driver, "seg-title", lambda i: True, "the segmentation board did not open first")
    tabs = {t.text: t.is_displayed()
            for t in driver.find_elements(By.XPATH, "//button[@role='tab']")}
    assert tabs.get("Segmentation") and not tabs.get("Classification"), tabs
    wait_for(lambda: len(held(store)) >= 2, timeout=WAIT)  # on screen + kept ready
    driver.get("about:blank")
    wait_for(lambda: held(store) == [], timeout=10)


def test_the_beacon_route_frees_only_the_callers_images(app_factory):
    """POST /api/v1/leave (what a closing page's beacon sends, as text/plain) gives back the
    images of the browser that sent it, and nobody else's."""
    from types import SimpleNamespace

    import httpx

    from hitl.service import Service
    app = app_factory(task="classification", demo_count=8, train=False)
    store = app.session.store
    svc = Service(app.session)
    mine, other = "0123456789abcdef", "fedcba9876543210"
    ann, bob = (svc.caller_of(SimpleNamespace(cookies={"hitl_browser": c}, username=None))
                for c in (mine, other))
    taken = []
    for _ in range(3):
        taken.append(svc.next_image(ann if len(taken) < 2 else bob, "classification",
                                    "sequential", exclude=taken, keep_leases=True)["image_id"])
    bobs = taken[2]
    ann_ids = store.lease_book.held_by(ann.name)
    assert len(ann_ids) == 2 and ann.name != bob.name
    with httpx.Client(base_url=app.url, cookies={"hitl_browser": mine}, timeout=30) as http:
        r = http.post("api/v1/leave", content=f'{{"ids": {ann_ids + [bobs]}}}',
                      headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    assert store.lease_book.held_by(ann.name) == []
    assert store.lease_book.held_by(bob.name) == [bobs]


def test_end_of_queue_says_reserved_with_when_then_done(session_factory):
    """With the last images reserved by another labeler the board hears 'reserved' and when
    the first frees, not 'someone else is labeling'; once all are labeled, 'done'."""
    from hitl.service import Caller, Service
    from hitl.ui.board_state import empty_state, progress
    session = session_factory(task="classification", demo_count=4, train=False)
    svc = Service(session)
    ann = Caller("ann", "labeler")
    taken = []
    for _ in range(4):
        taken.append(svc.next_image(ann, "classification", "sequential", exclude=taken,
                                    keep_leases=True)["image_id"])
    state, text = empty_state(session, "classification", "bob", [])
    assert state == "reserved" and "4 image(s) left are reserved" in text, text
    assert "frees in about 10 min" in text, text
    for image_id in taken:
        assert svc.annotate(ann, image_id, "circle")["ok"]
    state, text = empty_state(session, "classification", "bob", [])
    assert state == "done" and "All 4 images are labeled" in text, text
    p = progress(session, "classification", "ann")
    assert (p["labeled"], p["total"], p["left"], p["mine_today"]) == (4, 4, 0, 4)
    assert progress(session, "classification", "bob")["mine_today"] == 0
