"""Bookings: the state machine, prices, availability and nearest free alternatives."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from storage.models import SLOT_HOLDING_STATES, Asset, Booking, BookingState
from storage.money import Money

S = BookingState
#: Every legal move; anything else is refused.
TRANSITIONS: dict[BookingState, frozenset[BookingState]] = {
    S.DRAFT: frozenset({S.AWAITING_PAYMENT, S.CANCELLED, S.EXPIRED}),
    S.AWAITING_PAYMENT: frozenset({S.AWAITING_ID, S.CONFIRMED, S.CANCELLED, S.EXPIRED}),
    S.AWAITING_ID: frozenset({S.CONFIRMED, S.CANCELLED}),
    S.CONFIRMED: frozenset({S.ACTIVE, S.CANCELLED, S.COMPLETED}),
    S.ACTIVE: frozenset({S.COMPLETED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}
REFERENCE_ALPHABET = "ACDEFGHJKLMNPQRTUVWXY34679"  # no look-alikes (0/O, 1/I, 5/S, 8/B, 2/Z)


class IllegalTransition(Exception):
    def __init__(self, booking: Booking, to: BookingState) -> None:
        super().__init__(f"booking {booking.reference} cannot go from {booking.state} to {to}")


async def move(conn: BaseDBAsyncClient, booking: Booking, to: BookingState) -> None:
    """Move ``booking`` to ``to`` if the table allows it and nobody moved it meanwhile."""
    if to not in TRANSITIONS[booking.state]:
        raise IllegalTransition(booking, to)
    moved = await Booking.filter(id=booking.id, state=booking.state).using_db(conn).update(state=to)
    if moved != 1:
        raise IllegalTransition(booking, to)
    booking.state = to


def new_reference() -> str:
    return "K" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))


@dataclass(frozen=True)
class Quote:
    price: Money
    deposit: Money


class QuoteRefused(ValueError):
    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


def quote(asset: Asset, start: datetime, end: datetime, now: datetime) -> Quote:
    """The cheaper of hourly and daily pricing for whole started hours or days."""
    if start < now - timedelta(minutes=5):
        raise QuoteRefused("journey.in_the_past")
    minutes = (end - start).total_seconds() / 60
    if minutes < asset.min_duration_minutes:
        raise QuoteRefused("journey.too_short", minutes=asset.min_duration_minutes)
    if minutes > asset.max_duration_minutes:
        raise QuoteRefused("journey.too_long", minutes=asset.max_duration_minutes)
    hours = math.ceil(minutes / 60)
    days, rest = divmod(hours, 24)
    hourly = Money(asset.price_per_hour_cents, asset.currency)
    daily = Money(asset.price_per_day_cents, asset.currency)
    candidates = [hours * hourly]
    if daily:
        candidates.append(math.ceil(hours / 24) * daily)
        candidates.append(days * daily + rest * hourly)
    positive = [c for c in candidates if c] or [Money.zero(asset.currency)]
    return Quote(min(positive), Money(asset.deposit_cents, asset.currency))


def _occupied(asset_id: int) -> QuerySet[Booking]:
    """Bookings whose time the item is not free in: those holding their slot, and cancelled
    ones whose offline code could not be taken off the lock (it works until its end, so the
    time is not sold again)."""
    return Booking.filter(
        Q(state__in=SLOT_HOLDING_STATES)
        | Q(
            state=BookingState.CANCELLED,
            access_codes__offline=True,
            access_codes__provider_ref__isnull=False,
        ),
        asset_id=asset_id,
    )


async def is_free(
    asset_id: int,
    start: datetime,
    end: datetime,
    *,
    ignore: int | None = None,
    conn: BaseDBAsyncClient | None = None,
) -> bool:
    clashes = _occupied(asset_id).filter(start_at__lt=end, end_at__gt=start)
    if ignore is not None:
        clashes = clashes.exclude(id=ignore)
    return not await clashes.using_db(conn).exists()


async def alternatives(
    asset: Asset, start: datetime, end: datetime, *, now: datetime, count: int = 3
) -> list[tuple[datetime, datetime]]:
    """The nearest free slots of the same length, earlier or later, by steps of 30 minutes,
    up to a week away. The bookings of that fortnight are read once."""
    length = end - start
    step = timedelta(minutes=30)
    reach = 7 * 48
    held = (
        await _occupied(asset.id)
        .filter(start_at__lt=end + reach * step, end_at__gt=start - reach * step)
        .distinct()
        .values_list("start_at", "end_at")
    )

    def free(candidate: datetime) -> bool:
        return all(
            not (b_start < candidate + length and b_end > candidate) for b_start, b_end in held
        )

    found: list[tuple[datetime, datetime]] = []
    for n in range(1, reach):
        for candidate in (start + n * step, start - n * step):
            if candidate < now or len(found) >= count:
                continue
            if free(candidate):
                found.append((candidate, candidate + length))
        if len(found) >= count:
            break
    return sorted(found)
