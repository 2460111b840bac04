"""What operators type to name a record (a conversation number, a reference, a phone, a lock
key) and the subjects alerts name find nothing when no column could hold them, on SQLite and on
PostgreSQL alike: PostgreSQL refuses an id past its 32-bit column where SQLite would look."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flows.handoff import Handoff
from flows.i18n import Translator
from flows.ops import alert_locations
from storage.models import Booking, BookingState, Conversation, OpsAlert
from tests.conftest import FakeClock
from tests.support import a_renter, rental_times, small_inventory

TRANSLATOR = Translator()


@pytest.mark.parametrize(
    "ident",
    ["3000000000", "9" * 30, "+" + "1" * 30, "K" * 13, "ß" * 7, "²", "٣٠"],
)
async def test_a_conversation_nothing_could_be_is_not_found(
    database: str, clock: FakeClock, ident: str
) -> None:
    await small_inventory()
    await Conversation.create(channel="sms", address="+15550100009", renter=await a_renter())
    assert await Handoff(TRANSLATOR, clock).find(ident) is None


@pytest.mark.parametrize(
    "group_key",
    [
        "effect:9223372036854775808",  # one past a 64-bit id
        "effect:" + "9" * 40,
        "agent:3000000000",
        "id-review:3000000000",
        "asset-without-lock:3000000000",
        "code-cannot-be-revoked:²",
        "payment-failed:" + "K" * 13,
        "lock-offline:" + "gate" * 20,
    ],
)
async def test_an_alert_about_nothing_that_could_exist_is_about_no_location(
    database: str, clock: FakeClock, group_key: str
) -> None:
    alert = OpsAlert(
        kind="test", group_key=group_key, message_key="ops.test", created_at=clock.now()
    )
    assert await alert_locations(alert) == frozenset()


async def test_an_alert_about_a_booking_is_about_its_location(
    database: str, clock: FakeClock
) -> None:
    _, _, trailer = await small_inventory()
    await Booking.create(
        reference="KHARB01",
        renter=await a_renter(),
        asset=trailer,
        **await rental_times(trailer.id, clock.now(), clock.now() + timedelta(hours=2)),
        state=BookingState.CONFIRMED,
        currency="USD",
        price_cents=2500,
    )
    alert = OpsAlert(kind="test", group_key="payment-failed:KHARB01", message_key="ops.test")
    assert await alert_locations(alert) == frozenset({"harbor"})
