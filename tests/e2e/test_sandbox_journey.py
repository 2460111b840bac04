"""A renter's whole rental on the sandbox, through the page's HTTP API and an injected clock:
book, pay, send an ID, get the PIN, open the keypad, extend, and check out."""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from bot.app import Runtime, build_runtime, create_app
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from flows.inventory import apply_inventory, load_inventory
from flows.staging import run_unit
from storage import db
from storage.models import (
    AccessCode,
    AccessCodeState,
    Asset,
    Booking,
    BookingState,
    Conversation,
    IdentityCheck,
    Message,
    OpsAlert,
    OutboxEffect,
    Payment,
)
from storage.models import Renter as TheRenter
from storage.money import Money
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.integration.conftest import booked, codes_of
from tests.support import RecordingChannel, inbound

ADDRESS = "+15550100001"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
NOW = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)  # Monday 12:00 in New York


@pytest.fixture
async def journey(
    sqlite_template: Path, tmp_path: Path
) -> AsyncIterator[tuple[TestClient[Any, Any], Runtime, FakeClock]]:
    path = tmp_path / "journey.sqlite3"
    shutil.copy(sqlite_template, path)
    url = f"sqlite://{path}"
    clock = FakeClock(NOW)
    await db.open_database(url)
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
    await db.close_database()
    settings = Settings.from_env(
        {"KEYTURN_DATABASE_URL": url, "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    )
    runtime = build_runtime(settings, clock=clock, sandbox=True)
    app = create_app(runtime, sandbox=True, workers=False)
    async with TestClient(TestServer(app)) as client:
        yield client, runtime, clock


async def run(runtime: Runtime) -> None:
    for _ in range(4):
        await runtime.timers.run_due()
        await runtime.dispatcher.run_once()


class Renter:
    def __init__(self, client: TestClient[Any, Any], runtime: Runtime, address: str = ADDRESS):
        self.client, self.runtime, self.address = client, runtime, address
        self.seen = 0

    async def say(self, text: str = "", image: str | None = None) -> list[str]:
        body: dict[str, str] = {"address": self.address, "text": text}
        if image:
            body["image"] = f"data:image/png;base64,{image}"
        response = await self.client.post("/sandbox/api/messages", json=body)
        assert response.status == 202, await response.text()
        return await self.inbox()

    async def inbox(self) -> list[str]:
        await run(self.runtime)
        listing = await self.client.get("/sandbox/api/messages", params={"address": self.address})
        out = [m for m in (await listing.json())["messages"] if m["direction"] == "out"]
        assert all(m["status"] == "sent" for m in out)
        new = [m["text"] for m in out[self.seen :]]
        self.seen = len(out)
        return new


async def pay(client: TestClient[Any, Any], link_text: str) -> None:
    match = re.search(r"/sandbox/pay/(\S+)", link_text)
    assert match, link_text
    page = await client.get(f"/sandbox/pay/{match.group(1)}")
    assert "Pay " in await page.text()
    paid = await client.post(f"/sandbox/pay/{match.group(1)}", allow_redirects=False)
    assert paid.status == 303


async def test_a_whole_rental_on_the_sandbox(
    journey: tuple[TestClient[Any, Any], Runtime, FakeClock],
) -> None:
    client, runtime, clock = journey
    renter = Renter(client, runtime)
    [quote] = await renter.say("BOOK T1 tomorrow 10am to 2pm")
    assert "From Tue, Jun 2 10:00\u202fAM" in quote and "Until Tue, Jun 2 2:00\u202fPM" in quote
    assert "$50.00" in quote and "$100.00" in quote
    holding, link = await renter.say("yes")
    assert "holding T1" in holding
    booking = await Booking.get()
    assert booking.state == BookingState.AWAITING_PAYMENT
    await pay(client, link)
    [ask_id] = await renter.inbox()
    assert "photo of your ID" in ask_id
    back = await client.get(f"/paid/{booking.reference}")
    assert "went through" in await back.text()
    left = await client.get(f"/paid/{booking.reference}", params={"cancelled": "1"})
    assert "You left the payment page" in await left.text()
    assert (await client.get("/paid/KNOPE00")).status == 404
    [thanks] = await renter.say(image=PNG)
    assert "checking your ID" in thanks
    await run(runtime)
    [check] = (await (await client.get("/sandbox/api/identity")).json())["checks"]
    document = await client.get(f"/sandbox/api/identity/{check['id']}/document")
    assert document.status == 200 and (await document.read()).startswith(b"\x89PNG")
    decided = await client.post(
        f"/sandbox/api/identity/{check['id']}/decision", json={"approve": True}
    )
    assert decided.status == 200
    gone = await client.get(f"/sandbox/api/identity/{check['id']}/document")
    assert gone.status == 410, "the ID image is deleted once decided"
    assert (await IdentityCheck.get()).document_encrypted is None
    [confirmed] = await renter.inbox()
    assert "is confirmed" in confirmed
    await booking.refresh_from_db()
    assert booking.state == BookingState.CONFIRMED
    assert await Payment.filter(booking=booking, purpose="deposit", status="held").exists()

    clock.current = booking.start_at - timedelta(hours=1)  # the PIN goes out before the window
    [pin_message] = await renter.inbox()
    assert "Main gate: " in pin_message and "Trailer Bay 1: " in pin_message
    assert "Tue, Jun 2 9:45\u202fAM" in pin_message, "the window, buffers included, local time"
    pins = set(re.findall(r": (\d{6})", pin_message))
    assert len(pins) == 1
    [pin] = pins
    [resent] = await renter.say("CODE")
    assert pin in resent
    # The PIN is shown to the renter, but kept encrypted in the database and the outbox.
    stored = await Message.filter(direction="out", sealed=True).count()
    assert stored == 2
    assert not await Message.filter(body__contains=pin).exists()
    assert not [e for e in await OutboxEffect.all() if pin in json.dumps(e.payload)]
    [too_early] = await renter.say("OPEN")
    assert "only open remotely during your rental" in too_early

    clock.current = booking.start_at + timedelta(minutes=5)
    await run(runtime)
    await booking.refresh_from_db()
    assert booking.state == BookingState.ACTIVE
    opened = await client.post("/sandbox/api/keypad", json={"lock": "harbor-t1", "pin": pin})
    assert (await opened.json())["opens"] is True
    asking, *opened = await renter.say("OPEN")
    assert "Asking Main gate, Trailer Bay 1 to open" in asking, asking
    assert opened == ["Main gate is open now.", "Trailer Bay 1 is open now."], "once confirmed"
    assert await OpsAlert.filter(kind="remote_open").exists()

    [extend_quote] = await renter.say("EXTEND 1h")
    assert "$12.50" in extend_quote
    [paying, extension_link] = await renter.say("YES")
    assert "payment link for the extension" in paying
    await pay(client, extension_link)
    [extended] = await renter.inbox()
    assert "now ends" in extended
    await booking.refresh_from_db()
    assert booking.end_at == datetime(2026, 6, 2, 19, 0, tzinfo=UTC)

    clock.current = booking.end_at - timedelta(minutes=30)
    [ending] = await renter.inbox()
    assert "EXTEND" in ending
    clock.current = booking.end_at
    [thank_you] = await renter.inbox()
    assert "Thank you" in thank_you
    await booking.refresh_from_db()
    assert booking.state == BookingState.COMPLETED
    # The clock alone releases nothing: the deposit waits for the confirmed return.
    assert await Payment.filter(booking=booking, purpose="deposit", status="held").exists()
    clock.current = booking.end_at + timedelta(minutes=15)  # the buffer after the rental
    await run(runtime)
    assert {c.state for c in await AccessCode.filter(booking=booking)} == {AccessCodeState.REMOVED}
    late = await client.post("/sandbox/api/keypad", json={"lock": "harbor-t1", "pin": pin})
    assert (await late.json())["opens"] is False

    # Back in the yard, the renter says so: T1 asks no photos or checklist, only DONE.
    rules = runtime.journey.settings.returns
    returned = clock.now()
    *asked, _, lock_it = await renter.say("RETURN")
    # Past the end and its grace, the not-returned check asked for it.
    assert all("reply RETURN when it is back" in text for text in asked), asked
    assert "reply DONE" in lock_it
    noted, confirmed = await renter.say("DONE")
    assert "noted" in noted and "confirmed" in confirmed
    clock.current = returned + rules.damage_review - timedelta(minutes=1)
    assert await renter.inbox() == []
    assert await Payment.filter(booking=booking, purpose="deposit", status="held").exists()
    clock.current = returned + rules.damage_review
    [receipt] = await renter.inbox()
    assert await Payment.filter(booking=booking, purpose="deposit", status="released").exists()
    assert f"Receipt for booking {booking.reference}:" in receipt
    assert "Rental: Tue, Jun 2 10:00\u202fAM to Tue, Jun 2 3:00\u202fPM" in receipt
    assert "Price: $50.00" in receipt and "Extensions (1): $12.50" in receipt
    assert "Deposit of $100.00: released" in receipt


async def test_an_unpaid_hold_expires_and_frees_the_slot(
    journey: tuple[TestClient[Any, Any], Runtime, FakeClock],
) -> None:
    client, runtime, clock = journey
    first = Renter(client, runtime)
    await first.say("BOOK T1 tomorrow 10-14")
    await first.say("YES")
    second = Renter(client, runtime, "+15550100002")
    [taken] = await second.say("BOOK T1 tomorrow 10-14")
    assert "That time is taken" in taken
    clock.advance(timedelta(minutes=31))
    [expired] = await first.inbox()
    assert "was not paid in time" in expired
    assert (await Booking.get()).state == BookingState.EXPIRED
    assert (await Payment.get(purpose="rental")).status == "expired"
    [quote] = await second.say("BOOK T1 tomorrow 10-14")
    assert "Reply YES" in quote


async def test_cancel_before_the_start_refunds_and_revokes(
    journey: tuple[TestClient[Any, Any], Runtime, FakeClock],
) -> None:
    client, runtime, _ = journey
    renter = Renter(client, runtime)
    await renter.say("BOOK T1 in 3 days 10-14")
    _, link = await renter.say("YES")
    await pay(client, link)
    await renter.say(image=PNG)
    [check] = (await (await client.get("/sandbox/api/identity")).json())["checks"]
    await client.post(f"/sandbox/api/identity/{check['id']}/decision", json={"approve": True})
    await renter.inbox()
    [offer] = await renter.say("CANCEL")
    assert "$50.00 back" in offer
    [done] = await renter.say("YES")
    assert "is cancelled" in done
    booking = await Booking.get()
    assert booking.state == BookingState.CANCELLED
    assert {c.state for c in await AccessCode.filter(booking=booking)} == {AccessCodeState.REMOVED}
    assert await OpsAlert.filter(kind="booking_cancelled").exists()


async def test_stop_silences_and_start_resumes(
    journey: tuple[TestClient[Any, Any], Runtime, FakeClock],
) -> None:
    client, runtime, _ = journey
    renter = Renter(client, runtime)
    [stopped] = await renter.say("STOP")
    assert "no more messages" in stopped
    assert await renter.say("hi") == []
    [started] = await renter.say("START")
    assert "Welcome back" in started
    [greeting] = await renter.say("hi")
    assert greeting.startswith("Welcome to Keyturn")


async def book_and_confirm(
    client: TestClient[Any, Any], runtime: Runtime, renter: Renter, when: str
) -> Booking:
    await renter.say(f"BOOK T1 {when}")
    _, link = await renter.say("YES")
    await pay(client, link)
    await renter.say(image=PNG)
    [check] = (await (await client.get("/sandbox/api/identity")).json())["checks"]
    await client.post(f"/sandbox/api/identity/{check['id']}/decision", json={"approve": True})
    await renter.inbox()
    booking = await Booking.get(state=BookingState.CONFIRMED)
    return booking


async def test_extension_conflict_is_refused_and_ops_told(
    journey: tuple[TestClient[Any, Any], Runtime, FakeClock],
) -> None:
    client, runtime, _ = journey
    first = Renter(client, runtime)
    booking = await book_and_confirm(client, runtime, first, "tomorrow 10-14")
    second = Renter(client, runtime, "+15550100002")
    await second.say("BOOK T1 tomorrow 15-17")
    await second.say("YES")
    [conflict] = await first.say("EXTEND 1h")
    assert "cannot be extended" in conflict
    await booking.refresh_from_db()
    assert booking.end_at == datetime(2026, 6, 2, 18, 0, tzinfo=UTC)
    assert await OpsAlert.filter(kind="extension_conflict").exists()


async def test_cancel_after_the_start_refunds_nothing_and_locks_out(
    journey: tuple[TestClient[Any, Any], Runtime, FakeClock],
) -> None:
    client, runtime, clock = journey
    renter = Renter(client, runtime)
    booking = await book_and_confirm(client, runtime, renter, "tomorrow 10-14")
    clock.current = booking.start_at + timedelta(minutes=30)
    await renter.inbox()
    [offer] = await renter.say("CANCEL")
    assert "You get $0.00 back" in offer
    done, off = await renter.say("YES")
    assert "is cancelled" in done
    assert "no longer opens anything" in off, "told once the lock has taken the code off"
    assert not await Payment.filter(booking=booking, purpose="refund").exists()
    assert {c.state for c in await AccessCode.filter(booking=booking)} == {AccessCodeState.REMOVED}
    # The renter may have had the item: the hold stays through the damage review, for ops to
    # look and claim, and is released only once it is over.
    review = runtime.journey.settings.returns.damage_review
    clock.current += review - timedelta(minutes=1)
    await run(runtime)
    assert await Payment.filter(booking=booking, purpose="deposit", status="held").exists()
    clock.current += timedelta(minutes=1)
    await run(runtime)
    assert await Payment.filter(booking=booking, purpose="deposit", status="released").exists()


async def test_an_operator_claims_part_of_the_deposit(
    journey: tuple[TestClient[Any, Any], Runtime, FakeClock],
) -> None:
    client, runtime, clock = journey
    renter = Renter(client, runtime)
    booking = await book_and_confirm(client, runtime, renter, "tomorrow 10-14")
    part = Money(2500, booking.currency)
    claimed, record = await runtime.journey.claim_deposit(booking.reference, part, actor="staff:1")
    await run_unit(record, clock.now())
    assert claimed.amount == part and claimed.paid
    assert await Payment.filter(booking=booking, purpose="claim", amount_cents=2500).exists()
    clock.current = booking.end_at
    await renter.inbox()
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == "claimed", "a claimed deposit is not released at check-out"
    with pytest.raises(LookupError):
        await runtime.journey.claim_deposit(
            booking.reference, Money(100, booking.currency), actor="staff:1"
        )


async def test_confirmation_waits_for_the_deposit_hold(
    journey: tuple[TestClient[Any, Any], Runtime, FakeClock],
) -> None:
    client, runtime, _ = journey
    renter = Renter(client, runtime)
    await renter.say("BOOK T1 tomorrow 10-14")
    _, link = await renter.say("YES")
    original = runtime.payments.place_hold

    async def card_refuses(*args: Any, **kwargs: Any) -> str:
        from flows.payments import PaymentRefused

        raise PaymentRefused("card declined")

    runtime.payments.place_hold = card_refuses  # type: ignore[method-assign]
    await pay(client, link)
    told = await renter.say(image=PNG)
    [check] = (await (await client.get("/sandbox/api/identity")).json())["checks"]
    await client.post(f"/sandbox/api/identity/{check['id']}/decision", json={"approve": True})
    told += await renter.inbox()
    booking = await Booking.get()
    assert any(
        "did not accept the $100.00 deposit hold" in text and booking.reference in text
        for text in told
    ), told
    assert booking.state == BookingState.AWAITING_ID, "no code without the deposit"
    assert await OpsAlert.filter(kind="deposit_not_held").exists()
    assert not await AccessCode.filter(booking=booking).exists()
    runtime.payments.place_hold = original  # type: ignore[method-assign]


async def test_a_sandbox_user_typing_a_real_renters_number_gets_nothing_of_theirs(
    journey: tuple[TestClient[Any, Any], Runtime, FakeClock],
) -> None:
    client, runtime, clock = journey
    sms = RecordingChannel("sms")
    runtime.channels["sms"] = sms
    start = NOW + timedelta(minutes=30)
    booking = await booked(
        runtime,
        (await Asset.get(code="T1")).id,
        start,
        start + timedelta(hours=4),
        reference="KTREAL1",
        phone=ADDRESS,
    )
    await run(runtime)  # the codes are set on the locks
    await runtime.engine.handle(inbound("CODE", channel="sms", address=ADDRESS, at=clock.now()))
    await run(runtime)
    [pin] = {runtime.journey.sealer.open(c.pin_encrypted) for c in await codes_of(booking)}
    assert any(pin in text for text in sms.texts()), "the real renter has their PIN by SMS"
    texts_before = len(sms.sent)

    stranger = Renter(client, runtime)  # types the real renter's number as their address
    replies = await stranger.say("CODE")
    replies += await stranger.say("CANCEL")
    replies += await stranger.say("YES")
    replies += await stranger.say("OPEN")
    assert replies and not any(pin in text or "KTREAL1" in text for text in replies), replies
    await booking.refresh_from_db()
    assert booking.state == BookingState.CONFIRMED
    assert len(sms.sent) == texts_before, "the real renter hears nothing of it"
    sandbox = await Conversation.get(channel="sandbox", address=ADDRESS)
    assert sandbox.renter_id != booking.renter_id
    assert (await TheRenter.get(id=booking.renter_id)).phone == ADDRESS
    assert await TheRenter.filter(phone=ADDRESS).count() == 1


async def test_the_sandbox_page_never_shows_or_decides_a_real_renters_id(
    journey: tuple[TestClient[Any, Any], Runtime, FakeClock],
) -> None:
    """Next to real channels (serve --sandbox), an SMS renter's ID waiting for review is the
    operators' business in the ops group, not the sandbox page's."""
    client, runtime, _ = journey
    start = NOW + timedelta(days=1)
    booking = await booked(
        runtime,
        (await Asset.get(code="T1")).id,
        start,
        start + timedelta(hours=4),
        reference="KTREAL2",
        phone=ADDRESS,
    )
    await Booking.filter(id=booking.id).update(state=BookingState.AWAITING_ID)
    real = await IdentityCheck.create(
        renter_id=booking.renter_id,
        booking=booking,
        method="manual",
        document_encrypted=runtime.journey.sealer.seal_bytes(b"\xff\xd8\xff\xe0 a real ID"),
        document_content_type="image/jpeg",
    )
    listed = (await (await client.get("/sandbox/api/identity")).json())["checks"]
    assert listed == []
    document = await client.get(f"/sandbox/api/identity/{real.id}/document")
    assert document.status in (404, 410) and b"a real ID" not in await document.read()
    decided = await client.post(f"/sandbox/api/identity/{real.id}/decision", json={"approve": True})
    assert decided.status == 404
    await real.refresh_from_db()
    assert real.status == "pending" and real.document_encrypted is not None
