"""Paid extensions through Stripe's signed webhook, when something else moves the booking as
the payment comes in: each paid extension is applied, or refunded with ops told, never lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from storage.models import (
    Asset,
    Booking,
    BookingState,
    Conversation,
    Extension,
    OpsAlert,
    Payment,
    Renter,
)
from tests.conftest import FakeClock, asyncpg_url
from tests.integration.conftest import END, START, confirmed_booking, settle
from tests.integration.stripe_world import PHONE, World, stripe_world
from tests.support import rental_times


@pytest.fixture
async def world(database: str, clock: FakeClock) -> AsyncIterator[World]:
    async with stripe_world(database, clock) as started:
        yield started


async def rented(world: World) -> Booking:
    """A confirmed rental of T1, under way, its renter texting on the sandbox."""
    booking = await confirmed_booking(world.runtime)
    await Conversation.create(
        channel="sandbox", address=PHONE, renter=await Renter.get(phone=PHONE)
    )
    world.clock.current = START + timedelta(minutes=30)
    await settle(world.runtime)
    return booking


async def extension_link(world: World, duration: str) -> str:
    """The renter asks for ``duration`` more and says YES; the Checkout Session of its link."""
    before = set(world.stripe.sessions)
    await world.say(f"EXTEND {duration}")
    await world.say("YES")
    [session] = set(world.stripe.sessions) - before
    return session


#: Races between two workers' transactions: only PostgreSQL runs two at once (SQLite runs one
#: transaction at a time, so no other write can come between), so these run there alone.
ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@asynccontextmanager
async def holding(world: World, statement: str, *args: Any) -> AsyncIterator[asyncpg.Connection]:
    """Another worker's transaction that has run ``statement`` and not committed yet; it
    commits when the block ends."""
    other = await asyncpg.connect(asyncpg_url(world.database))
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute(statement, *args)
        yield other
        await transaction.commit()
    finally:
        await other.close()


async def waiting_on_locks(world: World, count: int) -> None:
    """Until ``count`` transactions wait on a lock (another's row, or its conflicting row)."""
    watcher = await asyncpg.connect(asyncpg_url(world.database))
    try:
        for _ in range(200):
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{count} transactions never waited on a lock")
    finally:
        await watcher.close()


async def refunded_intents(world: World) -> dict[str, int]:
    return {str(r["payment_intent"]): int(r["amount"]) for r in world.stripe.refunds.values()}


def intent_of(world: World, session: str) -> str:
    return str(world.stripe.sessions[session]["payment_intent"])


@ON_POSTGRES
async def test_an_extension_whose_time_was_just_booked_by_another_is_refunded_on_the_retry(
    world: World,
) -> None:
    """Another renter's booking of the hour after this one commits while the extension's
    payment event is being applied: the event is answered with an error (nothing of it kept),
    and Stripe's retry refunds the extension and tells ops."""
    booking = await rented(world)
    session = await extension_link(world, "2h")
    paid = world.stripe.complete(session)
    asset = await Asset.get(id=booking.asset_id)
    times = await rental_times(asset.id, END + timedelta(hours=1), END + timedelta(hours=3))
    other = await Renter.create(phone="+15550100099")
    insert = (
        "INSERT INTO booking (reference, renter_id, asset_id, start_at, end_at, blocked_from,"
        " blocked_until, state, currency, price_cents, deposit_cents, cancel_reason,"
        " return_timing, late_fee_cents, created_at, updated_at)"
        " VALUES ('KT2002', $1, $2, $3, $4, $5, $6, 'confirmed', 'USD', 100, 0, '', '', 0, $7, $7)"
    )
    values = [
        other.id,
        asset.id,
        times["start_at"],
        times["end_at"],
        times["blocked_from"],
        times["blocked_until"],
        world.clock.now(),
    ]
    async with holding(world, insert, *values):
        delivered = asyncio.create_task(world.deliver(paid))
        await waiting_on_locks(world, 1)  # its UPDATE waits on the uncommitted booking
    assert await delivered == 500, "a failed event is not taken as one seen before"
    extension_payment = await Payment.get(booking=booking, purpose="extension")
    assert extension_payment.status == "open", "nothing of the failed delivery was kept"

    assert await world.deliver(paid) == 200  # Stripe delivers it again
    await settle(world.runtime)
    await booking.refresh_from_db()
    assert booking.end_at == END, "the extension's time is the other renter's"
    assert (await Payment.get(booking=booking, purpose="extension")).status == "paid"
    assert await refunded_intents(world) == {intent_of(world, session): 2500}
    [alert] = await OpsAlert.filter(kind="late_payment_refunded")
    assert alert.params["why"] == "extension_taken" and alert.params["booking"] == "KT1001"


@ON_POSTGRES
async def test_two_extensions_paid_at_once_apply_one_and_refund_the_other(world: World) -> None:
    """The renter asks for 1h and then 2h from the same end, and pays both links; the two
    events are applied at the same moment by two workers. One extension holds, the other is
    given back, and ops hear of it."""
    booking = await rented(world)
    first = await extension_link(world, "1h")
    second = await extension_link(world, "2h")
    deliveries = [world.stripe.complete(first), world.stripe.complete(second)]
    # Both events read the booking as it is now, then wait on a row another worker holds.
    async with holding(world, "SELECT id FROM booking WHERE id = $1 FOR UPDATE", booking.id):
        delivered = [asyncio.create_task(world.deliver(d)) for d in deliveries]
        await waiting_on_locks(world, 2)
    assert [await d for d in delivered] == [200, 200]
    await settle(world.runtime)
    await booking.refresh_from_db()
    applied = await Extension.filter(booking=booking, state="applied")
    assert len(applied) == 1, "one extension holds"
    [kept] = applied
    assert booking.end_at == kept.new_end_at
    refunded = await refunded_intents(world)
    assert len(refunded) == 1, "the other is given back"
    lost = second if kept.new_end_at == END + timedelta(hours=1) else first
    assert refunded == {intent_of(world, lost): 1250 if lost == first else 2500}
    [alert] = await OpsAlert.filter(kind="late_payment_refunded")
    assert alert.params["why"] == "extension_superseded"
    assert booking.state == BookingState.CONFIRMED, "still the renter's, under way"


async def test_a_retried_payment_event_is_applied_once(world: World) -> None:
    """A redelivered extension event changes nothing the second time, on either database."""
    booking = await rented(world)
    session = await extension_link(world, "1h")
    paid = world.stripe.complete(session)
    assert [await world.deliver(paid), await world.deliver(paid)] == [200, 200]
    await settle(world.runtime)
    await booking.refresh_from_db()
    assert booking.end_at == END + timedelta(hours=1)
    assert await Extension.filter(booking=booking, state="applied").count() == 1
    assert await refunded_intents(world) == {}
