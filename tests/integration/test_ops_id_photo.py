"""An ID photo shown to the operators is sent once, however often its alert's attempt is
retried, and leaves the ops group when the ID is decided."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from tortoise.transactions import in_transaction

from flows.effects import Alert, Outcome
from flows.staging import stage_outcome
from storage.models import BookingState, IdentityCheck
from tests.integration.ops_harness import (
    OPS_CHAT,
    SUPPORT,
    Ops,
    altstadt_booking,
    ops_app,
)

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8


@pytest.fixture
async def ops(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Ops]:
    async with ops_app(tmp_path, sqlite_template) as running:
        yield running


async def test_an_id_photo_whose_alert_text_failed_is_sent_once_and_deleted(ops: Ops) -> None:
    booking = await altstadt_booking(ops, BookingState.AWAITING_ID)
    check = await IdentityCheck.create(
        renter_id=booking.renter_id,
        booking=booking,
        method="manual",
        document_encrypted=ops.runtime.journey.sealer.seal_bytes(JPEG),
        document_content_type="image/jpeg",
    )
    alert = Alert(
        "id_review",
        f"id-review:{check.id}",
        "ops.id_review",
        {"booking": booking.reference, "check": check.id},
    )
    async with in_transaction() as conn:
        await stage_outcome(conn, Outcome(alerts=[alert]), ops.clock.now())
    ops.fake.fail_next("sendMessage")  # the photo goes; the alert's text after it does not
    await ops.deliver()
    ops.clock.advance(timedelta(minutes=1))
    await ops.deliver()
    photo_calls = ops.fake.calls_to("sendPhoto")
    assert len(photo_calls) == 1, "the ID photo is sent once"
    assert int(photo_calls[0].params["chat_id"]) == OPS_CHAT
    [photo] = [m for m in ops.ops_messages() if "photo" in m]
    [alert_message] = [m for m in ops.ops_messages() if "An ID is waiting" in m.get("text", "")]

    answer = await ops.press(SUPPORT, alert_message, f"ops:approve:{check.id}")
    assert f"ID check {check.id} approved" in answer
    await ops.deliver()
    assert (OPS_CHAT, photo["message_id"]) in ops.fake.deleted, "the ID image leaves the group"
    assert not [m for m in ops.fake.messages.values() if "photo" in m], "no copy stays"
