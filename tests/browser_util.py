"""Headless Chromium for the real-browser tests (Debian's chromium and chromium-driver)."""
from __future__ import annotations

import importlib.util
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 30  # seconds for any one thing to appear in the page


def browser_available() -> str | None:
    """None when the browser tests can run here, else why not."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@contextmanager
def chromium(width: int = 1000, height: int = 1000):
    """Headless Chromium with a throwaway profile.

    A modest window keeps the editor's canvas small: WebGL is software-rendered here (no
    GPU), and with a 720 px wide canvas every pointer event took about a second.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="hitl-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync", f"--user-data-dir={profile}",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(WAIT)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def browser(width: int = 1000, height: int = 1000):
    """The tests' browser: the README's test command installs Chromium, so its absence is a
    failure, not a skip."""
    import pytest
    why_not = browser_available()
    if why_not is not None:
        pytest.fail(f"browser tests need Chromium: {why_not}")
    with chromium(width, height) as driver:
        yield driver


# ---- reading and driving a labeling board ----------------------------------------------------
TITLE = re.compile(r"Image (\d+) · (\S+)")


def title_id(driver, elem_id: str) -> int | None:
    """The image id in a tab's title, or None while it shows no image."""
    from selenium.webdriver.common.by import By
    try:
        text = driver.find_element(By.ID, elem_id).text
    except Exception:  # noqa: BLE001 - re-rendered while read: try again
        return None
    m = TITLE.search(" ".join(text.split()))
    return int(m.group(1)) if m else None


def wait_title(driver, elem_id: str, predicate, what: str) -> int:
    """Wait until the title shows an image id for which predicate(id) holds; return it."""
    from selenium.webdriver.support.ui import WebDriverWait
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
    from selenium.webdriver.common.by import By
    driver.execute_script("if (document.activeElement) document.activeElement.blur();")
    driver.find_element(By.TAG_NAME, "body").send_keys(key)


def label_count(store) -> int:
    return len(store.labeled_pairs()[0])


