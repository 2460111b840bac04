"""The upload page in a real browser: a renter abroad picks the ID photo and sends it, no script.

Headless Chromium (through ChromeDriver) opens the link an SMS renter on a German number was
sent, chooses a file in the page's file input and presses the button; the photo is then waiting
for review and the renter is told in the chat that it arrived.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from storage.models import IdentityCheck
from tests.e2e.test_channel_journeys import (  # noqa: F401  (world is a fixture)
    BERLIN_PHONE,
    JPEG,
    TwilioRenter,
    World,
    booked_and_paid_by_sms,
    upload_path,
    world,
)
from tests.e2e.test_sandbox_browser import CHROMEDRIVER, CHROMIUM


def upload_in_browser(url: str, photo: Path) -> tuple[str, str]:
    """Open the page, choose the photo, send the form: (the file input's accept, the answer)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="keyturn-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=390,844")  # a phone's screen
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        field = driver.find_element(By.CSS_SELECTOR, 'input[type="file"]')
        accept = str(field.get_attribute("accept"))
        field.send_keys(str(photo))
        form_page = driver.find_element(By.TAG_NAME, "body")
        driver.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
        # Sending the form loads the answer as a new page: read it once the form's page is gone.
        wait = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,))
        wait.until(expected_conditions.staleness_of(form_page))
        answer = str(wait.until(lambda d: d.find_element(By.TAG_NAME, "body").text))
        return accept, answer
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


async def test_a_renter_abroad_sends_the_id_photo_from_a_phone_browser(
    world: World,  # noqa: F811
    tmp_path: Path,
) -> None:
    renter = TwilioRenter(world, BERLIN_PHONE)
    booking, ask_id = await booked_and_paid_by_sms(world, renter)
    photo = tmp_path / "ausweis.jpg"
    photo.write_bytes(JPEG)
    url = str(world.client.make_url(upload_path(ask_id)))

    # The browser runs in a thread: the server it talks to runs on this event loop.
    accept, answer = await asyncio.to_thread(upload_in_browser, url, photo)
    assert accept == "image/*"
    assert "Foto ist angekommen" in answer
    check = await IdentityCheck.get(booking=booking)
    assert check.status == "pending" and check.document_content_type == "image/jpeg"
    assert world.runtime.journey.sealer.open_bytes(str(check.document_encrypted)) == JPEG
    [arrived] = await renter.inbox()
    assert arrived == world.runtime.translator.text("de", "journey.id_received")
