"""The sandbox's ops pane in a real browser: a return's condition report with the renter's
answers and photo thumbnails served by the sandbox, and the Damage? button that claims part of
the deposit, after which the renter's chat tells them.

Headless Chromium (through ChromeDriver) drives the page of an app served in this test's event
loop, the browser in a thread of its own so the app answers it meanwhile.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from storage.models import Asset, Booking, BookingState, Payment, Renter
from storage.payments import PaymentStatus
from storage.rental_models import ConditionPhoto, Handover, HandoverKind
from tests.e2e.sandbox_apps import ADDRESS, NOW, App, MakeApp, sandbox_apps, say
from tests.e2e.test_sandbox_browser import CHROMEDRIVER, CHROMIUM, _png, _until
from tests.support import rental_times

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def make(database: str, tmp_path: Path) -> AsyncIterator[MakeApp]:
    async with sandbox_apps(database, tmp_path) as making:
        yield making


async def returned_trailer(app: App, photo: bytes) -> Booking:
    """The sandbox renter's trailer rental, returned on time with one answer "no", two photos
    and a $200 deposit held."""
    _, runtime = app
    await say(app, "hi")
    await Asset.filter(code="T1").update(
        return_checklist=["Lights work?", "Tarp folded?"], return_photos=["the hitch", "the rear"]
    )
    trailer = await Asset.get(code="T1")
    start, end = NOW - timedelta(hours=4), NOW - timedelta(minutes=5)
    booking = await Booking.create(
        reference="KSBX01",
        renter=await Renter.get(conversations__address=ADDRESS),
        asset=trailer,
        **await rental_times(trailer.id, start, end),
        state=BookingState.COMPLETED,
        currency="USD",
        price_cents=5000,
        deposit_cents=20000,
        return_checklist_at=NOW - timedelta(minutes=5),
        returned_at=NOW - timedelta(minutes=5),
        return_timing="on_time",
    )
    await Handover.create(
        booking=booking,
        kind=HandoverKind.RETURN,
        photos_done=2,
        answers=[True, False],
        started_at=NOW - timedelta(minutes=15),
        completed_at=NOW - timedelta(minutes=5),
    )
    for position, prompt in enumerate(["the hitch", "the rear"]):
        await ConditionPhoto.create(
            booking=booking,
            kind=HandoverKind.RETURN,
            position=position,
            prompt=prompt,
            image_encrypted=runtime.journey.sealer.seal_bytes(photo),
            content_type="image/png",
            created_at=NOW - timedelta(minutes=10),
        )
    await Payment.create(
        booking=booking,
        provider="sandbox",
        purpose="deposit",
        amount_cents=20000,
        currency="USD",
        status="held",
        provider_ref="sbx_pi_hold_ksbx01",
        idempotency_key="deposit:KSBX01",
        details={"customer": "sbx_cus_sandbox", "payment_method": "sbx_pm_card"},
    )
    return booking


def chromium() -> tuple[WebDriver, str]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="keyturn-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options), profile


def press_damage(url: str) -> dict[str, object]:
    """Open the page, read the report and its thumbnails, claim $45.50 with Damage?."""
    driver, profile = chromium()
    try:
        driver.get(url)
        report = _until(
            lambda: next(
                (
                    r
                    for r in driver.find_elements(By.CSS_SELECTOR, "#reports li.report")
                    if "Return report" in r.text
                ),
                None,
            ),
            "the return's condition report",
        )
        text = report.find_element(By.TAG_NAME, "pre").text
        loaded = _until(
            lambda: (
                [
                    driver.execute_script(
                        "return arguments[0].complete && arguments[0].naturalWidth", image
                    )
                    for image in report.find_elements(By.TAG_NAME, "img")
                ]
                or None
            ),
            "the photo thumbnails",
        )
        _until(lambda: all(loaded) or None, "the thumbnails loaded")
        loaded = [
            driver.execute_script("return arguments[0].naturalWidth", image)
            for image in report.find_elements(By.TAG_NAME, "img")
        ]
        captions = [f.text for f in report.find_elements(By.TAG_NAME, "figcaption")]
        report.find_element(By.XPATH, ".//button[contains(., 'Damage?')]").click()
        asked = _until(lambda: driver.switch_to.alert, "the amount's prompt")
        question = asked.text
        asked.send_keys("45.50")
        asked.accept()
        result = _until(
            lambda: next(
                (
                    r.text
                    for r in driver.find_elements(By.CSS_SELECTOR, "#reports .claim-result")
                    if r.text
                ),
                None,
            ),
            "the claim's result",
        )
        after = _until(
            lambda: next(
                (
                    r.text
                    for r in driver.find_elements(By.CSS_SELECTOR, "#reports li.report")
                    if "claimed" in r.text and "Damage?" not in r.text
                ),
                None,
            ),
            "the report showing the deposit claimed",
        )
        return {
            "text": text,
            "widths": loaded,
            "captions": captions,
            "question": question,
            "result": result,
            "after": after,
        }
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def renter_told(url: str) -> str:
    driver, profile = chromium()
    try:
        driver.get(url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for bubble in driver.find_elements(By.CSS_SELECTOR, "#chat .bubble.out"):
                if "of your deposit" in bubble.text:
                    return str(bubble.text)
            time.sleep(0.2)
        raise AssertionError("the renter's chat never told of the claim")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


async def test_the_ops_pane_shows_a_return_report_and_claims_from_it(
    make: MakeApp, tmp_path: Path
) -> None:
    app = await make()
    client, runtime = app
    photo = _png(tmp_path / "hitch.png").read_bytes()
    booking = await returned_trailer(app, photo)
    url = str(client.make_url("/sandbox"))

    seen = await asyncio.to_thread(press_damage, url)

    assert "KSBX01" in str(seen["text"]) and "T1" in str(seen["text"])
    assert "Lights work? ✅ yes" in str(seen["text"])
    assert "Tarp folded? ❌ no" in str(seen["text"])
    assert "Returned on time" in str(seen["text"])
    assert seen["widths"] == [16, 16], "both thumbnails are the stored photo, served unsealed"
    assert seen["captions"] == ["the hitch", "the rear"]
    assert "KSBX01" in str(seen["question"])
    assert "Claimed $45.50 of the deposit for KSBX01" in str(seen["result"])
    assert "Deposit $200.00: claimed." in str(seen["after"])
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == PaymentStatus.CLAIMED
    [kept] = await Payment.filter(booking=booking, purpose="claim")
    assert kept.amount_cents == 4550

    await runtime.dispatcher.run_once()  # the renter's message goes out
    told = await asyncio.to_thread(renter_told, url)
    assert "$45.50 of your deposit for booking KSBX01" in told
