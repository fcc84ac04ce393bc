"""The starting page in headless Chromium: opened while Gradio still loads (hitl/starting.py),
it turns into the app by itself, without a reload by the person."""
from __future__ import annotations

import time
import urllib.request

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from hitl.starting import TITLE
from tests.browser_util import WAIT, browser
from tests.conftest import free_port
from tests.test_launch import small_app


def test_the_starting_page_becomes_the_app(tmp_path):
    with browser() as driver:  # Chromium first: its start would otherwise eat the window
        port = free_port()
        proc = small_app(tmp_path, port)
        url = f"http://127.0.0.1:{port}/"
        try:
            end = time.time() + 120
            while True:
                assert proc.poll() is None and time.time() < end, "app did not answer"
                try:
                    urllib.request.urlopen(url, timeout=5)
                    break
                except OSError:
                    time.sleep(0.02)
            driver.get(url)
            assert driver.title == TITLE  # Gradio takes ~2 s to import: the page came first
            WebDriverWait(driver, WAIT * 4).until(
                EC.presence_of_element_located((By.ID, "tabs")))
            assert driver.title == "hitl" and driver.current_url == url
        finally:
            proc.terminate()
            proc.wait(30)
