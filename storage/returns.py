"""A rental's return as the booking row records it: each fact (the return checklist done, GPS
home) set once by a guarded UPDATE, and the confirmed return set once when both hold."""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.models import Booking, BookingState

#: Bookings whose item may be out or coming back: under way, or ended and not yet returned.
RETURNABLE_STATES = (BookingState.CONFIRMED, BookingState.ACTIVE, BookingState.COMPLETED)


async def locked_booking(conn: BaseDBAsyncClient, booking_id: int) -> Booking:
    """The booking in the caller's transaction, its row locked on PostgreSQL until it commits:
    the checklist and GPS, arriving at once, see each other's fact."""
    return await Booking.filter(id=booking_id).using_db(conn).select_for_update().get()


async def note_checklist_done(conn: BaseDBAsyncClient, booking: Booking, at: datetime) -> bool:
    """Record that the return checklist is done; False when it was already (nothing changed)."""
    changed = await (
        Booking.filter(id=booking.id, return_checklist_at__isnull=True)
        .using_db(conn)
        .update(return_checklist_at=at)
    )
    if changed:
        booking.return_checklist_at = at
    return bool(changed)


async def note_back_home(conn: BaseDBAsyncClient, booking: Booking, at: datetime) -> bool:
    """Record that GPS saw the item home; False when it had already (the first sighting holds)."""
    changed = await (
        Booking.filter(id=booking.id, returned_home_at__isnull=True)
        .using_db(conn)
        .update(returned_home_at=at)
    )
    if changed:
        booking.returned_home_at = at
    return bool(changed)


async def note_left_home(conn: BaseDBAsyncClient, asset_id: int, at: datetime) -> int:
    """GPS saw the item leave its yard at ``at``: a homecoming seen before, of a rental not yet
    returned, no longer holds (the item passed through its yard and went on)."""
    return await (
        Booking.filter(
            asset_id=asset_id,
            state__in=RETURNABLE_STATES,
            returned_at__isnull=True,
            returned_home_at__lt=at,
        )
        .using_db(conn)
        .update(returned_home_at=None)
    )


async def note_returned(
    conn: BaseDBAsyncClient, booking: Booking, at: datetime, timing: str, late_fee_cents: int
) -> bool:
    """Record the confirmed return; False when it was confirmed already."""
    changed = await (
        Booking.filter(id=booking.id, returned_at__isnull=True)
        .using_db(conn)
        .update(returned_at=at, return_timing=timing, late_fee_cents=late_fee_cents)
    )
    if changed:
        booking.returned_at = at
        booking.return_timing = timing
        booking.late_fee_cents = late_fee_cents
    return bool(changed)


async def out_on_rental(
    conn: BaseDBAsyncClient | None, asset_id: int, at: datetime, left_at: datetime | None
) -> Booking | None:
    """The booking whose renter has the item out, GPS seeing it home at ``at`` after it left its
    yard at ``left_at`` (None when its leaving was not seen). Of the bookings not cancelled, not
    yet back home by GPS nor returned, whose access window opened by ``at``: the one whose
    window was open when the item left (it took the item; a next rental whose window opened
    since never had it, and a no-show's closed window took nothing); else one whose renter
    said DONE (the item on its way back); else the latest."""
    candidates = (
        await Booking.filter(
            asset_id=asset_id,
            state__in=RETURNABLE_STATES,
            blocked_from__lte=at,
            returned_home_at__isnull=True,
            returned_at__isnull=True,
        )
        .using_db(conn)
        .order_by("-start_at", "-id")
    )
    if left_at is not None:
        for booking in candidates:
            if booking.blocked_from <= left_at <= booking.blocked_until:
                return booking
    done = [booking for booking in candidates if booking.return_checklist_at is not None]
    return next(iter(done or candidates), None)
