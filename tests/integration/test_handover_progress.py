"""A handover's progress is its row: two photos arriving at once (two workers, two upload
links) answer two prompts, never one twice; a pickup begun twice is one; and the gate-code
message of an item whose PIN waits carries no PIN of the item, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from cryptography.fernet import Fernet
from tortoise.backends.base.client import BaseDBAsyncClient

from bot.app import Runtime
from flows.booking import DELIVER_PIN_TIMER
from flows.effects import Outcome, SetTimer
from flows.staging import run_unit
from flows.upload_links import CONDITION_PHOTO, ID_PHOTO, UploadGrant, UploadLinks
from storage.conversations import add_conversation
from storage.handovers import begin_handover, open_handover_of
from storage.models import (
    AccessCode,
    Asset,
    Booking,
    ConditionPhoto,
    Handover,
    HandoverKind,
    Message,
    OutboxEffect,
)
from tests.integration.conftest import START, booked, settle

PHONE = "+15550100001"
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 500


async def trailer_booking(runtime: Runtime) -> Booking:
    asset = await Asset.get(code="T2")
    booking = await booked(
        runtime,
        asset.id,
        START,
        START + timedelta(hours=4),
        reference="KT2001",
        phone="+15550100001",
    )
    await add_conversation("sms", PHONE, booking.renter_id, at=runtime.clock.now())
    return booking


async def test_two_photos_at_once_answer_two_prompts_in_order(
    runtime: Runtime, database: str
) -> None:
    booking = await trailer_booking(runtime)
    now = runtime.clock.now()

    async def begin(conn: BaseDBAsyncClient) -> Outcome:
        first = await begin_handover(conn, booking.id, HandoverKind.PICKUP, now)
        again = await begin_handover(conn, booking.id, HandoverKind.PICKUP, now)
        assert first.id == again.id
        return Outcome()

    await run_unit(begin, now)
    assert await Handover.filter(booking=booking).count() == 1
    handover = await open_handover_of(booking.renter_id)
    assert handover is not None and handover.kind == HandoverKind.PICKUP
    links = UploadLinks("https://k.example", Fernet.generate_key().decode(), runtime.clock)
    journey = runtime.journey

    def grant(purpose: str) -> UploadGrant:
        token = links.url_for(booking.renter_id, booking.id, purpose).rsplit("/", 1)[1]
        found = links.open(token)
        assert found is not None
        return found

    async def upload(purpose: str) -> Outcome:
        g = grant(purpose)

        async def receive(conn: BaseDBAsyncClient) -> Outcome:
            outcome = await journey.receive_uploaded_photo(conn, g, JPEG, "image/jpeg", now)
            return outcome or Outcome()

        return await run_unit(receive, now)

    await upload(ID_PHOTO)
    assert await ConditionPhoto.all().count() == 0, "an ID link stores no condition photo"
    await asyncio.gather(upload(CONDITION_PHOTO), upload(CONDITION_PHOTO))
    photos = await ConditionPhoto.filter(booking=booking).order_by("position")
    assert [(p.position, p.prompt) for p in photos] == [(0, "the hitch"), (1, "the left side")]
    await handover.refresh_from_db()
    assert handover.photos_done == 2
    await upload(CONDITION_PHOTO)
    assert await ConditionPhoto.filter(booking=booking).count() == 2, "no third photo is kept"


async def test_the_gate_code_message_holds_no_pin_of_the_trailer(
    runtime: Runtime, database: str
) -> None:
    booking = await trailer_booking(runtime)
    runtime.clock.current = START - timedelta(days=1, minutes=15)  # the codes go on the locks
    await settle(runtime)
    runtime.clock.current = START - timedelta(minutes=15 + 60)  # the PIN's lead, buffer included
    pin_timer = SetTimer(
        DELIVER_PIN_TIMER, runtime.clock.now(), "pin:KT2001", {"booking": booking.id}
    )

    async def due(conn: BaseDBAsyncClient) -> Outcome:
        return Outcome(timers=[pin_timer])

    await run_unit(due, runtime.clock.now())
    await settle(runtime)
    codes = await AccessCode.filter(booking=booking).prefetch_related("lock")
    pins = {c.lock.key: runtime.journey.sealer.open(c.pin_encrypted) for c in codes}
    assert pins["harbor-gate"] != pins["harbor-t2"]
    sent = [
        runtime.journey.sealer.open(m.body or "") if m.sealed else m.body or ""
        for m in await Message.filter(direction="out")
    ]
    assert any(pins["harbor-gate"] in text for text in sent), sent
    assert not any(pins["harbor-t2"] in text for text in sent), sent
    assert any("the hitch" in text for text in sent), "the pickup's first photo is asked"
    payloads = [str(e.payload) for e in await OutboxEffect.all()]
    assert not any(pins["harbor-t2"] in p for p in payloads)
