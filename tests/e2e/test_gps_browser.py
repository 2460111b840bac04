"""The sandbox page's simulated GPS in a real browser: a person takes a tracked trailer out of
its yard with the page's control while nobody has rented it, and the operators' pane shows the
unknown pickup; bringing it back shows it in its yard again."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.e2e.test_sandbox_browser import browser, demo

__all__ = ["browser", "demo"]  # the fixtures, `keyturn demo` and headless Chromium
T = TypeVar("T")


def wait_for(find: Callable[[], T | None], what: str, timeout: float = 30) -> T:
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


def gps_button(driver: WebDriver, code: str, label: str) -> WebElement:
    def find() -> WebElement | None:
        for button in driver.find_elements(By.CSS_SELECTOR, f'#gps button[data-gps="{code}"]'):
            # textContent: the ops pane scrolls, and Selenium's .text is empty out of view
            if label in (button.get_attribute("textContent") or ""):
                browser_scroll(driver, button)
                return button
        return None

    return wait_for(find, f"the GPS control {label!r} for {code}")


def browser_scroll(driver: WebDriver, element: WebElement) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)


def texts(driver: WebDriver, selector: str) -> list[str]:
    return [
        item.get_attribute("textContent") or ""
        for item in driver.find_elements(By.CSS_SELECTOR, selector)
    ]


def test_a_person_moves_a_trailer_out_of_its_yard_and_ops_see_an_unknown_pickup(
    demo: str, browser: WebDriver
) -> None:
    browser.get(demo)
    gps_button(browser, "T1", "Move out of yard").click()
    alert = wait_for(
        lambda: next((t for t in texts(browser, "#alerts li") if "Unknown pickup" in t), None),
        "an unknown pickup alert",
    )
    assert "T1" in alert and "Harbor Yard" in alert and "unknown_pickup" in alert
    assert "43.6" not in alert and "-70.2" not in alert  # never the position
    row = wait_for(
        lambda: next((t for t in texts(browser, "#gps li") if t.startswith("T1")), None),
        "T1's GPS row",
    )
    assert "out of its yard" in row
    gps_button(browser, "T1", "Bring back to yard").click()
    gps_button(browser, "T1", "Move out of yard")  # back home: the control offers to move it out
