"""The painter's view and tools in headless Chromium: aspect ratio in any window, zoomed
strokes on exact pixels, and every tool's saved mask.

One app (images of odd shapes, no trainer) and one browser serve the whole module; each test
opens the image it needs by id and checks what the store saved, not what the page shows.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser_util import WAIT, browser, press, wait_title
from tests.conftest import make_settings, wait_for

SHAPES = {"wide.png": (1500, 150), "tall.png": (150, 600), "small.png": (48, 36)}


def picture(w: int, h: int) -> np.ndarray:
    """Gradients and a checker: many colours, no flat area."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1),
                     ((x // 4 + y // 4) % 2) * 160 + 40], -1).astype(np.uint8)


@pytest.fixture(scope="module")
def painter(tmp_path_factory):
    """(driver, session, url, ids by file name): one app and one browser for the module."""
    from hitl.app_build import build
    tmp = tmp_path_factory.mktemp("painter")
    folder = tmp / "images"
    folder.mkdir()
    for name, (w, h) in SHAPES.items():
        Image.fromarray(picture(w, h)).save(folder / name)
    halves = np.zeros((60, 80, 3), np.uint8)
    halves[:, :40] = (200, 30, 30)
    halves[:, 40:] = (30, 30, 200)
    Image.fromarray(halves).save(folder / "halves.png")
    for name in ("grid1.png", "grid2.png", "grid3.png"):
        Image.fromarray(picture(80, 60)).save(folder / name)
    settings = make_settings(tmp, images=[str(folder)], task="segmentation",
                             classes=["a", "b", "c"], train=False)
    app = build(settings)
    url = app.launch(quiet=True).rstrip("/") + "/"
    session = app.session
    rows = session.store.images_by_ids(session.store.readable_image_ids())
    ids = {row.filename: row.id for row in rows}
    try:
        with browser(1000, 900) as driver:
            driver.get(url)
            WebDriverWait(driver, WAIT).until(EC.element_to_be_clickable(
                (By.XPATH, "//button[@role='tab'][contains(., 'Segmentation')]"))).click()
            wait_title(driver, "seg-title", lambda i: True, "the painter showed no image")
            yield driver, session, ids
    finally:
        app.close()


def open_id(driver, image_id: int) -> None:
    """Go to an image by id as a labeler does, and wait until it is drawn and fitted."""
    box = driver.find_element(By.CSS_SELECTOR, "#seg-goto input")
    box.clear()
    box.send_keys(str(image_id), Keys.ENTER)
    wait_title(driver, "seg-title", lambda i: i == image_id, f"image {image_id} did not open")
    WebDriverWait(driver, WAIT, poll_frequency=0.05).until(lambda d: d.execute_script(
        "const s = window.hitlSeg.state; return s.shown && s.shown.painted"
        " && s.shown.image_id === arguments[0] && s.sending.size === 0;", image_id))
    driver.execute_script("document.querySelector('#seg-board .hb-view')"
                          ".scrollIntoView({block: 'center'});")


def boxes(driver) -> dict:
    """The mask layer and the frame on screen, and the mask size."""
    return driver.execute_script(
        "const c = document.getElementById('seg-canvas'), r = c.getBoundingClientRect();"
        "const f = document.querySelector('#seg-board .hb-view').getBoundingClientRect();"
        "return {left: r.left, top: r.top, width: r.width, height: r.height, w: c.width,"
        " h: c.height, fl: f.left, ft: f.top, fw: f.width, fh: f.height};")


def screen_of(b: dict, x: float, y: float) -> tuple[int, int]:
    """Where image pixel coordinates (x, y) are in the window."""
    return (round(b["left"] + x * b["width"] / b["w"]), round(b["top"] + y * b["height"] / b["h"]))


def click_at(driver, points, hold=False) -> None:
    """Left-button clicks (or one drag through the points) at window coordinates."""
    actions = ActionBuilder(driver, duration=10)
    if hold:
        actions.pointer_action.move_to_location(*points[0]).pointer_down()
        for p in points[1:]:
            actions.pointer_action.move_to_location(*p)
        actions.pointer_action.pointer_up()
    else:
        for p in points:
            actions.pointer_action.move_to_location(*p).pointer_down().pointer_up()
    actions.perform()


def save_and_read(driver, session, image_id: int) -> np.ndarray:
    press(driver, Keys.ENTER)
    wait_for(lambda: session.store.mask(image_id) is not None, timeout=WAIT)
    return session.store.mask_positions(image_id)


def set_size(driver, size: int) -> None:
    driver.execute_script(
        "const s = document.getElementById('seg-size'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('input', {bubbles: true}));", size)


def test_aspect_ratio_in_every_window(painter):
    """Three window sizes x three image shapes: the image keeps its shape, fills the frame on
    one side and never leaves it (a small image grows to it, pixelated)."""
    driver, session, ids = painter
    try:
        for width, height in ((1400, 900), (1000, 700), (390, 844)):
            driver.set_window_size(width, height)
            for name, (w, h) in SHAPES.items():
                open_id(driver, ids[name])
                b = boxes(driver)
                assert (b["w"], b["h"]) == (w, h)
                assert b["width"] / b["height"] == pytest.approx(w / h, rel=0.02), (width, name, b)
                fits_w, fits_h = b["width"] <= b["fw"] + 1, b["height"] <= b["fh"] + 1
                assert fits_w and fits_h, (width, name, b)
                assert max(b["width"] / b["fw"], b["height"] / b["fh"]) > 0.98, (width, name, b)
                pixelated = driver.execute_script("return document.querySelector"
                                                  "('#seg-board .hb-stage').className")
                assert ("hb-pixelated" in pixelated) == (b["width"] / w > 2), (name, pixelated)
    finally:
        driver.set_window_size(1000, 900)


def test_one_pixel_stroke_at_8x_zoom_lands_on_its_pixel(painter):
    """Wheel zoom to the pointer past 8x, then a 1-px click: exactly that image pixel."""
    driver, session, ids = painter
    image_id = ids["grid1.png"]
    open_id(driver, image_id)
    set_size(driver, 1)
    frame = driver.find_element(By.CSS_SELECTOR, "#seg-board .hb-view")
    target = (37, 22)
    b = boxes(driver)
    # the pointer over the target pixel: wheel zoom keeps that pixel under it
    sx, sy = screen_of(b, target[0] + 0.5, target[1] + 0.5)
    origin = ScrollOrigin.from_element(frame, int(sx - (b["fl"] + b["fw"] / 2)),
                                       int(sy - (b["ft"] + b["fh"] / 2)))
    while boxes(driver)["width"] / b["w"] < 8:
        ActionChains(driver).scroll_from_origin(origin, 0, -300).perform()
    b = boxes(driver)
    assert b["width"] / b["w"] >= 8
    click_at(driver, [screen_of(b, target[0] + 0.5, target[1] + 0.5)])
    press(driver, "f")  # fit again: the next image starts fitted anyway
    positions = save_and_read(driver, session, image_id)
    assert np.argwhere(positions).tolist() == [[target[1], target[0]]]
    assert positions[target[1], target[0]] == 1


def test_polygon_then_fill_then_undo(painter):
    """A polygon of class 2, then a fill of class 3 outside it: saved as drawn; a stroke
    undone with Ctrl+Z before saving is not in the mask."""
    driver, session, ids = painter
    image_id = ids["grid2.png"]
    open_id(driver, image_id)
    b = boxes(driver)
    corners = [(20, 10), (60, 10), (60, 50), (20, 50)]
    press(driver, "2")
    press(driver, "p")
    click_at(driver, [screen_of(b, x, y) for x, y in corners] + [screen_of(b, *corners[0])])
    press(driver, "3")
    press(driver, "l")
    click_at(driver, [screen_of(b, 5, 5)])
    # a stroke across everything, then taken back
    press(driver, "1")
    press(driver, "d")
    set_size(driver, 5)
    click_at(driver, [screen_of(b, 2, 30), screen_of(b, 78, 30)], hold=True)
    ActionChains(driver).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
    positions = save_and_read(driver, session, image_id)
    inside = positions[11:49, 21:59]
    assert (inside == 2).all()
    assert (positions[:9] == 3).all() and (positions[:, :19] == 3).all()
    assert 1 not in positions


def test_wand_and_eraser(painter):
    """The wand takes the red half at once (a colour-tolerance fill); the eraser then takes a
    stroke out of it."""
    driver, session, ids = painter
    image_id = ids["halves.png"]
    open_id(driver, image_id)
    b = boxes(driver)
    press(driver, "2")
    press(driver, "w")
    click_at(driver, [screen_of(b, 10, 30)])
    press(driver, "e")
    set_size(driver, 4)
    click_at(driver, [screen_of(b, 5, 10.5), screen_of(b, 30, 10.5)], hold=True)
    positions = save_and_read(driver, session, image_id)
    assert (positions[:, 40:] == 0).all()
    assert (positions[30:, :40] == 2).all()
    assert (positions[9:12, 6:29] == 0).all()


def view_state(driver) -> dict:
    return driver.execute_script("const s = window.hitlSeg.state.shown;"
                                 "return {painted: s.pos.some((v) => v > 0),"
                                 " steps: s.history.length};")


def test_pinch_and_space_drag_move_the_view_and_paint_nothing(painter):
    """Two fingers spreading zoom in (the stroke the first finger began is taken back);
    Space + drag pans; neither leaves paint or an undo step."""
    from selenium.webdriver.common.actions.pointer_input import PointerInput
    driver, session, ids = painter
    open_id(driver, ids["grid3.png"])
    before = boxes(driver)
    cx, cy = int(before["fl"] + before["fw"] / 2), int(before["ft"] + before["fh"] / 2)
    a = PointerInput("touch", "finger1")
    actions = ActionBuilder(driver, mouse=a, duration=10)
    b = actions.add_pointer_input("touch", "finger2")
    # one action per finger per tick: the second finger lands after the first has begun
    a.create_pointer_move(duration=10, x=cx - 20, y=cy)
    b.create_pause(0)
    a.create_pointer_down(button=0)
    b.create_pause(0)
    a.create_pointer_move(duration=10, x=cx - 25, y=cy)  # the first finger paints a little
    b.create_pause(0)
    a.create_pause(0)
    b.create_pointer_move(duration=10, x=cx + 20, y=cy)
    a.create_pause(0)
    b.create_pointer_down(button=0)
    for step in range(1, 6):
        a.create_pointer_move(duration=20, x=cx - 25 - 20 * step, y=cy)
        b.create_pointer_move(duration=20, x=cx + 20 + 20 * step, y=cy)
    a.create_pointer_up(0)
    b.create_pointer_up(0)
    actions.perform()
    zoomed = boxes(driver)
    assert zoomed["width"] / before["width"] > 2.5, (before, zoomed)
    assert view_state(driver) == {"painted": False, "steps": 0}
    # Space held: a drag pans by as much as the pointer moved
    start = (cx, cy)
    ActionChains(driver).key_down(" ").perform()
    click_at(driver, [start, (cx + 60, cy + 30)], hold=True)
    ActionChains(driver).key_up(" ").perform()
    panned = boxes(driver)
    assert (round(panned["left"] - zoomed["left"]), round(panned["top"] - zoomed["top"])) \
        == (60, 30)
    assert view_state(driver) == {"painted": False, "steps": 0}
    press(driver, "f")
    assert boxes(driver)["width"] == pytest.approx(before["width"], abs=1)
