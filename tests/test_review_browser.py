"""The Review tab in headless Chromium: mark two cells, Enter accepts the rest of the page."""
from __future__ import annotations

import pandas as pd
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser_util import WAIT, browser
from tests.conftest import wait_for


@pytest.fixture(scope="module")
def driver():
    with browser(width=1200, height=1000) as d:
        yield d


def shown_ids(driver) -> list[int]:
    """Read in one script: the grid may re-render between two element reads."""
    return driver.execute_script("return Array.from(document.querySelectorAll("
                                 "'#rev-grid .rev-cell')).map(c => Number(c.dataset.id))")


def test_mark_two_cells_and_accept_with_enter(driver, app_factory):
    app = app_factory(task="classification", train=False)
    store = app.session.store
    circle = store.class_by_name("circle").id
    ids = store.readable_image_ids().tolist()
    store.write_predictions(pd.DataFrame({
        "image_id": ids, "model_version": 1, "class_id": circle,
        "probability": [0.99 - 0.01 * n for n in range(len(ids))], "margin": 0.5,
        "entropy": 0.5}))
    driver.get(app.url)
    WebDriverWait(driver, WAIT).until(
        lambda d: d.find_element(By.XPATH, "//button[@role='tab'][normalize-space()='Review']"))
    driver.find_element(By.XPATH, "//button[@role='tab'][normalize-space()='Review']").click()
    # choose the class: the dropdown's options come from the tab's select event
    box = WebDriverWait(driver, WAIT).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#rev-class input"))
    box.click()
    option = WebDriverWait(driver, WAIT).until(
        lambda d: d.find_element(By.XPATH, "//*[@role='option'][contains(., 'circle')]"))
    option.click()
    WebDriverWait(driver, WAIT).until(lambda d: len(shown_ids(d)) == 24)
    page = shown_ids(driver)
    assert page == ids[:24]

    # click marks the third cell; the key X marks the fifth (cursor moved with arrows)
    driver.find_elements(By.CSS_SELECTOR, "#rev-grid .rev-cell")[2].click()
    driver.execute_script("if (document.activeElement) document.activeElement.blur();")
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, "x")
    marked = driver.find_elements(By.CSS_SELECTOR, "#rev-grid .rev-cell.marked")
    assert [int(c.get_attribute("data-id")) for c in marked] == [page[2], page[4]]

    body.send_keys(Keys.ENTER)
    wait_for(lambda: len(store.labeled_pairs()[0]) == 22, timeout=WAIT)
    labeled = dict(zip(*(a.tolist() for a in store.labeled_pairs())))
    assert labeled == {i: circle for i in page if i not in (page[2], page[4])}
    # the next page loads: the two marked images stay off it (marked "not circle")
    WebDriverWait(driver, WAIT).until(lambda d: shown_ids(d) and shown_ids(d) != page)
    assert not set(shown_ids(driver)) & set(page)

    # U undoes the whole page
    driver.execute_script("if (document.activeElement) document.activeElement.blur();")
    driver.find_element(By.TAG_NAME, "body").send_keys("u")
    wait_for(lambda: len(store.labeled_pairs()[0]) == 0, timeout=WAIT)
