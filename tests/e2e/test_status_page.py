"""The status page as an operator uses it: a real daemon, a real file, and headless Chromium driven by selenium.

Skipped on a machine without Debian's ``chromium`` and ``chromium-driver`` (``./scripts/test`` installs them as root),
failed in CI. The screenshot it takes is the one the README shows: ``DEEPVA_WATCH_SCREENSHOT=docs/status-page.png``
refreshes it (otherwise it stays in the test's temporary folder, so a test run leaves the checkout as it was).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest
import requests
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException, NoSuchElementException, StaleElementReferenceException, WebDriverException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.conftest import FIXTURES, free_port, ledger_rows, require_program, wait_for, write_config

TOKEN = "status-page-token-4b8e2f0d17c3a9"
HOSTILE_DIR, HOSTILE_FILE = "<script>alert(1)<", "script>.jpg"  # together the path <script>alert(1)</script>.jpg
T = TypeVar("T")


def _browser() -> WebDriver:
    options = Options()
    options.binary_location = require_program("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900", "--force-device-scale-factor=1", "--hide-scrollbars", "--lang=en-US"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=require_program("chromedriver")))


def _status(base: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(base + "/status.json", timeout=5) as response:
            return dict(json.loads(response.read()))
    except (OSError, ValueError):
        return None


def _while_reloading(look: Callable[[], T]) -> T | None:
    """``look()``, or None when the page reloaded itself under it: the element went stale or away, or chromedriver
    lost the document mid-command ("unhandled inspector error"). Anything else is raised."""
    try:
        return look()
    except (StaleElementReferenceException, NoSuchElementException):
        return None
    except WebDriverException as error:
        if "inspector error" in (error.msg or ""):
            return None
        raise


def _state_on_front_page(browser: WebDriver, name: str) -> str | None:
    """The state the front page (as last reloaded by itself) shows for the newest file ending in ``name``."""
    def look() -> str | None:
        for row in browser.find_elements(By.CSS_SELECTOR, "#newest tr[data-asset]"):
            if row.find_element(By.TAG_NAME, "a").text == name:
                return str(row.find_element(By.CSS_SELECTOR, ".state").text)
        return None

    return _while_reloading(look)


def _hold(browser: WebDriver) -> None:
    """Keep the page from reloading itself while the test acts on it: ``window.stop()`` cancels a pending meta
    refresh (the next page loaded reloads itself again), so a click never races a reload."""
    browser.execute_script("window.stop()")


def _text(browser: WebDriver, by: str, value: str) -> str | None:
    return _while_reloading(lambda: str(browser.find_element(by, value).text))


def _click(browser: WebDriver, by: str, value: str) -> None:
    """Click an element of a page that may reload itself between finding and clicking."""
    def attempt() -> bool:
        browser.find_element(by, value).click()
        return True

    wait_for(lambda: _while_reloading(attempt), 10, f"to click {value}")


def _version_state(browser: WebDriver) -> str | None:
    return _while_reloading(lambda: str(browser.find_element(By.CSS_SELECTOR, "section.version.asked .state").text))


def test_an_operator_follows_a_file_on_the_status_page(tmp_path, make_emulator, daemon_factory):
    require_program("chromium")
    require_program("chromedriver")
    emulator = make_emulator(processing_time=3.0)  # long enough to see the file on its way
    watch = tmp_path / "watch"
    watch.mkdir()
    token_file = tmp_path / "page-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    metrics = {"listen": f"127.0.0.1:{port}", "page_refresh_seconds": 1, "page_actions_token_file": str(token_file)}
    config = write_config(tmp_path, emulator.base_url, [watch], metrics=metrics)
    daemon = daemon_factory(config)
    wait_for(lambda: _status(base), 30, "the status page")
    ledger = tmp_path / "ledger.sqlite3"
    browser = _browser()
    try:
        # the file's state changes on the page while the page only reloads itself
        browser.get(base + "/")
        assert browser.title.startswith("Status · deepva-watch on ")
        shutil.copy(FIXTURES / "sample.jpg", watch / "Newsroom-Photo.jpg")
        seen = [wait_for(lambda: _state_on_front_page(browser, "Newsroom-Photo.jpg"), 30, "the file on the page")]
        wait_for(lambda: seen.append(_state_on_front_page(browser, "Newsroom-Photo.jpg")) or seen[-1] == "published",
                 60, "the page to show the file published")
        assert seen[0] != "published", seen  # seen on its way, then published

        # its story, one click away
        _hold(browser)
        _click(browser, By.LINK_TEXT, "Newsroom-Photo.jpg")
        wait_for(lambda: "/file/dvw-" in browser.current_url, 10, "the story page")
        _hold(browser)
        asset_id = browser.current_url.rsplit("/", 1)[1]
        assert browser.find_element(By.ID, "path").text == f"{watch}/Newsroom-Photo.jpg"
        steps = browser.find_element(By.CSS_SELECTOR, "table.steps").text
        assert "→ settling" in steps and "publishing → published" in steps
        assert not browser.find_elements(By.ID, "reprocess")  # not signed in: no buttons

        # found by part of its name, whatever the case
        browser.get(base + "/search")
        browser.find_element(By.NAME, "q").send_keys("newsroom-PHOTO")
        browser.find_element(By.CSS_SELECTOR, "form.search button").click()
        wait_for(lambda: "/search?q=newsroom-PHOTO" in browser.current_url, 10, "the search results")
        [result] = browser.find_elements(By.CSS_SELECTOR, "#results tr[data-asset]")
        assert result.get_attribute("data-asset") == asset_id
        result.find_element(By.TAG_NAME, "a").click()
        wait_for(lambda: browser.current_url.endswith(f"/file/{asset_id}"), 10, "the story from the search")

        # a name that is markup stays text
        (watch / HOSTILE_DIR).mkdir()
        shutil.copy(FIXTURES / "sample.jpg", watch / HOSTILE_DIR / HOSTILE_FILE)
        wait_for(lambda: [r for r in ledger_rows(ledger) if r["relpath"].startswith("<script>")], 30, "the name")
        browser.get(base + "/search?q=<SCRIPT>")
        [link] = browser.find_elements(By.CSS_SELECTOR, "#results a")
        assert link.text == "<script>alert(1)</script>.jpg"
        assert link.get_attribute("title") == f"{watch}/<script>alert(1)</script>.jpg"
        browser.get(base + "/")
        _hold(browser)
        assert "<script>alert(1)</script>.jpg" in browser.find_element(By.ID, "newest").text
        with pytest.raises(NoAlertPresentException):  # no file name ran as a script
            browser.switch_to.alert.accept()

        # a button without the token, or with a forged form, is refused
        action = f"{base}/file/{asset_id}/reprocess"
        assert requests.post(action, data={"csrf": "0" * 64}, headers={"Origin": base}, timeout=10).status_code == 403
        browser.get(base + "/sign-in")
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, "main form button").click()
        wait_for(lambda: browser.current_url == base + "/", 10, "signing in")
        cookie = browser.get_cookie("deepva_watch_session")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert TOKEN not in cookie["value"]
        signed_in = requests.Session()
        signed_in.cookies.set(cookie["name"], cookie["value"])
        assert signed_in.post(action, data={"csrf": "0" * 64}, headers={"Origin": base}, timeout=10).status_code == 403

        browser.get(f"{base}/file/{asset_id}")
        _hold(browser)
        browser.execute_script(  # the button's own form, not the sign-out form's
            "document.querySelector('form[action$=\"/reprocess\"] input[name=csrf]').value = '0'.repeat(64)")
        browser.find_element(By.ID, "reprocess").click()
        wait_for(lambda: "Refused" in (_text(browser, By.TAG_NAME, "h1") or ""), 10, "the refusal")
        assert "the form is stale" in browser.find_element(By.ID, "message").text
        assert {r["asset_id"]: r["state"] for r in ledger_rows(ledger)}[asset_id] == "published"

        # with it, the file goes back for a new job, and the page follows it to published again
        first_job = {r["asset_id"]: r["job_id"] for r in ledger_rows(ledger)}[asset_id]
        browser.get(f"{base}/file/{asset_id}")
        _hold(browser)
        browser.find_element(By.ID, "reprocess").click()
        notice = wait_for(lambda: _text(browser, By.ID, "notice"), 10, "the outcome")
        assert notice.startswith("reprocess: published → uploaded"), notice
        wait_for(lambda: _version_state(browser) == "published", 60, "the page to show the file published again")
        row = {r["asset_id"]: r for r in ledger_rows(ledger)}[asset_id]
        assert row["state"] == "published" and row["job_id"] not in (None, first_job)

        # the screenshot for the README: an upload under way (slowed by a reload) and a refused file
        slow = write_config(tmp_path, emulator.base_url, [watch], metrics=metrics, max_upload_mbps=0.1)
        assert slow == config
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: '"event": "reloaded"' in daemon.log_text(), 20, "the reload")
        shutil.copy(FIXTURES / "text-named.jpg", watch / "notes.jpg")
        wait_for(lambda: (_status(base) or {}).get("recent_failures"), 30, "the refused file")
        shutil.copy(FIXTURES / "sample.mxf", watch / "evening-news.mxf")
        wait_for(lambda: [u for u in (_status(base) or {}).get("uploads", []) if 0.2 < (u["fraction"] or 0) < 0.8],
                 60, "the upload under way")
        browser.get(base + "/")
        _hold(browser)
        assert "evening-news.mxf" in browser.find_element(By.ID, "uploads").text
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, min(2400, int(height) + 140))  # the window's frame takes some of it
        _save_screenshot(browser.get_screenshot_as_png(), tmp_path / "status-page.png")
    finally:
        browser.quit()
    assert daemon.stop() == 0


def _save_screenshot(png: bytes, where: Path) -> None:
    """As a palette PNG (a few hundred kB less than the browser's, the same to the eye for a page of text)."""
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128, dither=Image.Dither.NONE)
    output = io.BytesIO()
    image.save(output, format="PNG", optimize=True)
    assert image.width == 1280 and image.height > 600
    assert len(output.getvalue()) < 400_000
    where.write_bytes(output.getvalue())
    wanted = os.environ.get("DEEPVA_WATCH_SCREENSHOT")
    if wanted:
        Path(wanted).write_bytes(output.getvalue())
