"""A booking's states and every legal move between them, each made by one guarded UPDATE."""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.models import Booking, BookingState
from storage.transitions import IllegalTransition, Transitions

S = BookingState
#: Every legal move; anything else is refused.
BOOKING_TRANSITIONS: dict[BookingState, frozenset[BookingState]] = {
    S.DRAFT: frozenset({S.AWAITING_PAYMENT, S.CANCELLED, S.EXPIRED}),
    S.AWAITING_PAYMENT: frozenset({S.AWAITING_ID, S.CONFIRMED, S.CANCELLED, S.EXPIRED}),
    S.AWAITING_ID: frozenset({S.CONFIRMED, S.CANCELLED}),
    S.CONFIRMED: frozenset({S.ACTIVE, S.CANCELLED, S.COMPLETED}),
    S.ACTIVE: frozenset({S.COMPLETED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}
BOOKINGS = Transitions(Booking, "state", BOOKING_TRANSITIONS, "booking")


async def move_booking(
    conn: BaseDBAsyncClient, booking_id: int, *, to: BookingState, **fields: Any
) -> bool:
    """Move a booking to ``to`` from any of its predecessors; False when it was in none."""
    return await BOOKINGS.move(conn, booking_id, to=to, **fields)


async def move(conn: BaseDBAsyncClient, booking: Booking, to: BookingState, **fields: Any) -> None:
    """Move ``booking`` from the state it was read in to ``to``; refused (IllegalTransition,
    nothing changed) when the table forbids it or somebody moved it meanwhile."""
    if not await BOOKINGS.move(conn, booking.id, to=to, was=booking.state, **fields):
        raise IllegalTransition(
            f"booking {booking.reference} cannot go from {booking.state} to {to}: moved meanwhile"
        )
    booking.state = to
