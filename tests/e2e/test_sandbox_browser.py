"""The sandbox page in a real browser: a person rents an item by clicking, as the README says.

`keyturn demo` runs as a newcomer starts it, and headless Chromium (driven through ChromeDriver)
clicks through the page: the greeting's buttons, the quote's YES, the sandbox checkout, the ID
photo, the operator's Approve, the PIN in the chat, and the simulated keypad that opens with that
PIN and refuses another.
"""

from __future__ import annotations

import re
import shutil
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.e2e.demo_process import running_demo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
T = TypeVar("T")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    """`keyturn demo` as a newcomer starts it; yields the sandbox page's URL."""
    with running_demo(tmp_path) as url:
        yield url


@pytest.fixture
def time_lapse(tmp_path: Path) -> Iterator[str]:
    """`keyturn demo --speed 600`: ten minutes of the demo a real second."""
    with running_demo(tmp_path, "--speed", "600") as url:
        yield url


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "the browser tests need Debian's chromium and chromium-driver (make test installs them)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="keyturn-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _until(find: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    """Poll the page the way a person waits for it; fail naming what never appeared."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = find()
        except (StaleElementReferenceException, WebDriverException):
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"the page never showed {what}")


def _bubbles(driver: WebDriver) -> list[str]:
    return [b.text for b in driver.find_elements(By.CSS_SELECTOR, "#chat .bubble.out")]


def _reply_containing(driver: WebDriver, pattern: str, timeout: float = 30) -> str:
    regex = re.compile(pattern, re.S)
    try:
        return _until(
            lambda: next((text for text in _bubbles(driver) if regex.search(text)), None),
            f"a reply matching {pattern!r}",
            timeout,
        )
    except AssertionError as missing:
        raise AssertionError(f"{missing}; the chat says: {_bubbles(driver)}") from None


def _button(driver: WebDriver, scope: str, label: str) -> WebElement:
    def find() -> WebElement | None:
        buttons = driver.find_elements(By.CSS_SELECTOR, f"{scope} button")
        return next((b for b in reversed(buttons) if label in b.text), None)

    return _until(find, f"a button {label!r} in {scope}")


def _type(driver: WebDriver, text: str) -> None:
    box = driver.find_element(By.ID, "text")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def _png(path: Path) -> Path:
    """A small real PNG, as a phone camera would not make it but a browser accepts."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    width = height = 16
    rows = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def _soon_slot() -> tuple[str, str, str, str]:
    """A location, item, its lock and local times for a rental that starts in a few minutes today.

    The demo runs on real time; its PIN is sent an hour before the window opens, so a rental
    starting now shows the whole journey. Harbor Yard (New York) or Altstadt (Berlin), whichever
    has two hours left before its midnight.
    """
    for location, item, lock, zone in (
        ("Harbor Yard", "T1", "Trailer Bay 1", "America/New_York"),
        ("Altstadt Depot", "B1", "Bike box 1", "Europe/Berlin"),
    ):
        now = datetime.now(UTC).astimezone(ZoneInfo(zone))
        start = (now + timedelta(minutes=10)).replace(second=0, microsecond=0)
        start -= timedelta(minutes=start.minute % 5)
        end = start + timedelta(hours=2)
        if end.date() == now.date():
            return location, item, lock, f"today {start:%H:%M}-{end:%H:%M}"
    raise AssertionError("no demo location has two hours left today")


def test_a_person_rents_and_opens_the_door_by_clicking(
    demo: str, browser: WebDriver, tmp_path: Path
) -> None:
    browser.get(demo)
    assert "Keyturn sandbox" in browser.title

    _type(browser, "hi")
    assert "Welcome to Keyturn!" in _reply_containing(browser, "Welcome")
    location, item, lock_label, when = _soon_slot()
    _button(browser, "#chat", location).click()
    _button(browser, "#chat", item).click()
    _reply_containing(browser, r"(?i)when")
    _type(browser, when)
    quote = _reply_containing(browser, r"YES")
    assert item in quote and "Price" in quote

    _button(browser, "#chat", "YES").click()
    link = _until(
        lambda: next(
            (
                a
                for a in browser.find_elements(By.CSS_SELECTOR, "#chat .bubble.out a")
                if "/sandbox/pay/" in (a.get_attribute("href") or "")
            ),
            None,
        ),
        "the payment link",
    )
    chat_window = browser.current_window_handle
    link.click()
    _until(lambda: len(browser.window_handles) > 1 or None, "the checkout tab")
    browser.switch_to.window(next(h for h in browser.window_handles if h != chat_window))
    _until(lambda: browser.find_element(By.TAG_NAME, "button"), "the Pay button").click()
    assert "Paid" in _until(
        lambda: "Paid" in browser.page_source and browser.page_source, "the paid checkout"
    )
    browser.close()
    browser.switch_to.window(chat_window)

    _reply_containing(browser, r"Payment received.*photo of your ID")
    photo = browser.find_element(By.ID, "photo")
    photo.send_keys(str(_png(tmp_path / "id.png")))
    _until(
        lambda: any("📎" in b.text for b in browser.find_elements(By.CSS_SELECTOR, "#chat .in")),
        "the photo sent in the chat",
    )
    _button(browser, "#reviews", "Approve").click()
    _until(
        lambda: "No ID waiting" in browser.find_element(By.ID, "reviews").text,
        "the review decided",
    )

    assert "checking your ID" in _reply_containing(browser, "checking your ID")
    assert "is confirmed" in _reply_containing(browser, "is confirmed")
    # A rental booked at the last minute gets its PIN as soon as the lock has the code.
    pin_pattern = rf"door codes.*{lock_label}: \d{{4,8}}"
    pin_message = _reply_containing(browser, pin_pattern, timeout=60)
    pin = re.findall(rf"{lock_label}: (\d{{4,8}})", pin_message)[0]

    lock = Select(browser.find_element(By.ID, "lock"))
    lock.select_by_visible_text(f"{lock_label} · {location}")
    wrong = "1" + pin[1:] if pin[0] != "1" else "2" + pin[1:]
    keypad = browser.find_element(By.ID, "pin")
    keypad.send_keys(wrong)
    keypad.send_keys(Keys.ENTER)
    result = browser.find_element(By.ID, "keypad-result")
    assert "wrong PIN" in _until(lambda: result.text, "the keypad's answer")
    browser.execute_script("document.getElementById('keypad-result').textContent = ''")
    keypad.send_keys(pin)
    keypad.send_keys(Keys.ENTER)
    assert "the door opens" in _until(lambda: result.text, "the keypad's answer")
    audit = browser.find_element(By.ID, "audit").text
    assert "keypad" in audit


def _place_time(driver: WebDriver, location: str) -> str:
    """The demo's local time the page shows for ``location``."""

    def find() -> str | None:
        for place in driver.find_elements(By.CSS_SELECTOR, "#clock-places .place"):
            if place.find_element(By.TAG_NAME, "b").text == location:
                return place.find_element(By.TAG_NAME, "time").text or None
        return None

    return _until(find, f"the local time at {location}")


def _clock_click(driver: WebDriver, button: str) -> None:
    """Click a clock control and wait until the clock has answered (the controls are back)."""
    control = driver.find_element(By.ID, button)
    _until(lambda: control.is_enabled() or None, f"{button} enabled")
    control.click()
    _until(lambda: control.is_enabled() or None, f"the clock's answer to {button}")


def _keypad_says(driver: WebDriver, lock: str, pin: str) -> str:
    driver.execute_script("document.getElementById('keypad-result').textContent = ''")
    keypad = driver.find_element(By.ID, "pin")
    keypad.send_keys(pin)
    keypad.send_keys(Keys.ENTER)
    result = driver.find_element(By.ID, "keypad-result")
    return _until(lambda: result.text, "the keypad's answer")


def test_a_person_watches_a_rental_play_out_on_the_time_lapse_clock(
    time_lapse: str, browser: WebDriver, tmp_path: Path
) -> None:
    browser.get(time_lapse)
    state = browser.find_element(By.ID, "clock-state")
    assert "600× real time" in _until(lambda: state.text, "the clock's speed")
    harbor = _place_time(browser, "Harbor Yard")
    assert re.match(r"\w{3}, \w{3} \d+ \d+:\d\d\s?[AP]M", harbor), harbor
    assert _place_time(browser, "Altstadt Depot")
    _until(lambda: _place_time(browser, "Harbor Yard") != harbor or None, "the clock running")

    # Paused, the 30-minute hold waits while the person pays and sends an ID.
    _clock_click(browser, "clock-pause")
    assert state.text == "paused" and browser.find_element(By.ID, "clock-pause").text == "Resume"
    stopped = _place_time(browser, "Harbor Yard")
    time.sleep(1.5)
    assert _place_time(browser, "Harbor Yard") == stopped, "a paused clock stands still"

    _type(browser, "BOOK T1 tomorrow 10am to 2pm")
    _reply_containing(browser, r"Reply YES")
    _button(browser, "#chat", "YES").click()
    link = _until(
        lambda: next(
            (
                a
                for a in browser.find_elements(By.CSS_SELECTOR, "#chat .bubble.out a")
                if "/sandbox/pay/" in (a.get_attribute("href") or "")
            ),
            None,
        ),
        "the payment link",
    )
    chat_window = browser.current_window_handle
    link.click()
    _until(lambda: len(browser.window_handles) > 1 or None, "the checkout tab")
    browser.switch_to.window(next(h for h in browser.window_handles if h != chat_window))
    _until(lambda: browser.find_element(By.TAG_NAME, "button"), "the Pay button").click()
    _until(lambda: "Paid" in browser.page_source or None, "the paid checkout")
    browser.close()
    browser.switch_to.window(chat_window)
    _reply_containing(browser, r"photo of your ID")
    browser.find_element(By.ID, "photo").send_keys(str(_png(tmp_path / "id.png")))
    _button(browser, "#reviews", "Approve").click()
    _reply_containing(browser, "is confirmed")

    # "Next event" jumps from timer to timer until the PIN goes out, an hour before the window.
    pin_pattern = r"door codes.*Trailer Bay 1: (\d{4,8})"
    for _ in range(12):
        if any(re.search(pin_pattern, text, re.S) for text in _bubbles(browser)):
            break
        _clock_click(browser, "clock-next")
        time.sleep(0.5)  # the chat's next poll
    pin = re.findall(pin_pattern, _reply_containing(browser, pin_pattern), re.S)[0]
    assert state.text == "paused", "jumping leaves the clock paused"
    Select(browser.find_element(By.ID, "lock")).select_by_visible_text(
        "Trailer Bay 1 · Harbor Yard"
    )
    assert "outside its window" in _keypad_says(browser, "harbor-t1", pin)
    for _ in range(4):  # on to the rental's start, inside the window
        _clock_click(browser, "clock-next")
        said = _keypad_says(browser, "harbor-t1", pin)
        if "the door opens" in said:
            break
    assert "the door opens" in said

    # At an hour a second, the four-hour rental ends within seconds of resuming.
    speed = browser.find_element(By.ID, "clock-speed")
    speed.clear()
    speed.send_keys("3600")
    _clock_click(browser, "clock-set-speed")
    _clock_click(browser, "clock-pause")
    assert "3600× real time" in _until(lambda: "3600" in state.text and state.text, "3600×")
    thanks = _reply_containing(browser, r"Thank you for renting", timeout=30)
    assert "deposit is released" in thanks
    _clock_click(browser, "clock-pause")
    time.sleep(1)  # the window's buffer after the end has passed at 3600×
    assert "outside its window" in _keypad_says(browser, "harbor-t1", pin)

    speed.clear()
    speed.send_keys("5000")
    _clock_click(browser, "clock-set-speed")
    error = browser.find_element(By.ID, "clock-error").text
    assert "from 1 to 3600" in error
