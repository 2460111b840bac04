"""The declared state machines of bookings, payments and identity checks: every legal move is
made by one guarded UPDATE, and an illegal one is refused and changes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from storage.bookings import BOOKING_TRANSITIONS, move, move_booking
from storage.identity import IDENTITY_TRANSITIONS, IdentityStatus, move_identity
from storage.models import Asset, Booking, BookingState, IdentityCheck, Payment
from storage.payments import PAYMENT_TRANSITIONS, PaymentStatus, move_payment
from storage.transitions import IllegalTransition
from storage.uow import unit_of_work
from tests.support import a_renter, rental_times, small_inventory

START = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
_numbers = count()


async def in_unit(step: Callable[..., Awaitable[Any]], *args: Any, **fields: Any) -> Any:
    """One move in a unit of work of its own, as a runner would make it."""
    async with unit_of_work() as conn:
        return await step(conn, *args, **fields)


async def _booking(state: BookingState) -> Booking:
    asset = await Asset.first()
    if asset is None:
        _, _, asset = await small_inventory()
    n = next(_numbers)
    renter = await a_renter(phone=f"+1555011{n:04d}")
    start = START + timedelta(days=n)
    return await Booking.create(
        reference=f"KT{n:05d}",
        renter=renter,
        asset=asset,
        **await rental_times(asset.id, start, start + timedelta(hours=1)),
        state=state,
        currency="USD",
        price_cents=100,
    )


async def test_every_legal_booking_move_is_made(database: str) -> None:
    for was, nexts in BOOKING_TRANSITIONS.items():
        for to in nexts:
            booking = await _booking(was)
            assert await in_unit(move_booking, booking.id, to=to), f"{was} → {to}"
            assert (await Booking.get(id=booking.id)).state == to


async def test_an_illegal_booking_move_raises_and_changes_nothing(database: str) -> None:
    booking = await _booking(BookingState.COMPLETED)
    with pytest.raises(IllegalTransition):
        await in_unit(move, booking, BookingState.ACTIVE)
    with pytest.raises(IllegalTransition):
        await in_unit(move_booking, booking.id, to=BookingState.DRAFT)
    assert (await Booking.get(id=booking.id)).state == BookingState.COMPLETED
    # Legal somewhere, but not from where the row is: nothing moves.
    assert not await in_unit(move_booking, booking.id, to=BookingState.ACTIVE)
    assert (await Booking.get(id=booking.id)).state == BookingState.COMPLETED


async def test_a_booking_moved_meanwhile_is_refused(database: str) -> None:
    booking = await _booking(BookingState.AWAITING_PAYMENT)
    stale = await Booking.get(id=booking.id)
    await in_unit(move, booking, BookingState.EXPIRED)
    with pytest.raises(IllegalTransition):
        await in_unit(move, stale, BookingState.AWAITING_ID)
    assert (await Booking.get(id=booking.id)).state == BookingState.EXPIRED


async def test_every_legal_payment_move_is_made(database: str) -> None:
    booking = await _booking(BookingState.AWAITING_PAYMENT)
    keys = count()
    for was, nexts in PAYMENT_TRANSITIONS.items():
        for to in nexts:
            payment = await Payment.create(
                booking=booking,
                provider="sandbox",
                purpose="rental",
                amount_cents=100,
                currency="USD",
                status=was,
                idempotency_key=f"t:{next(keys)}",
            )
            assert await in_unit(move_payment, payment.id, to=to), f"{was} → {to}"
            assert (await Payment.get(id=payment.id)).status == to


async def test_an_illegal_payment_move_raises_and_changes_nothing(database: str) -> None:
    booking = await _booking(BookingState.CONFIRMED)
    payment = await Payment.create(
        booking=booking,
        provider="sandbox",
        purpose="deposit",
        amount_cents=100,
        currency="USD",
        status=PaymentStatus.RELEASED,
        idempotency_key="released",
    )
    with pytest.raises(IllegalTransition):
        await in_unit(move_payment, payment.id, to=PaymentStatus.CREATED)
    with pytest.raises(IllegalTransition):
        await in_unit(move_payment, payment.id, to=PaymentStatus.HELD, was=PaymentStatus.RELEASED)
    assert not await in_unit(move_payment, payment.id, to=PaymentStatus.CLAIMED)
    assert (await Payment.get(id=payment.id)).status == PaymentStatus.RELEASED


async def test_identity_moves_are_declared(database: str) -> None:
    booking = await _booking(BookingState.AWAITING_ID)
    for was, nexts in IDENTITY_TRANSITIONS.items():
        for to in nexts:
            check = await IdentityCheck.create(
                renter_id=booking.renter_id, booking=booking, method="manual", status=was
            )
            assert await in_unit(move_identity, check.id, to=to, reason="r"), f"{was} → {to}"
            stored = await IdentityCheck.get(id=check.id)
            assert (stored.status, stored.reason) == (to, "r")
    decided = await IdentityCheck.create(
        renter_id=booking.renter_id, booking=booking, method="manual", status="approved"
    )
    with pytest.raises(IllegalTransition):
        await in_unit(move_identity, decided.id, to=IdentityStatus.PENDING)
    assert not await in_unit(move_identity, decided.id, to=IdentityStatus.REJECTED)
    assert (await IdentityCheck.get(id=decided.id)).status == IdentityStatus.APPROVED
