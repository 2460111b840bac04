"""Bookings: the state machine, prices, the turnaround, availability and nearest free
alternatives.

An item is taken for its booking's whole access window, buffers included (the turnaround), on
locks that are not shared: the range is computed once, when the booking is made, and stored
with it; availability compares those stored ranges, never today's buffers."""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from locks.windows import AccessWindow, access_window
from storage.availability import taken_ranges
from storage.bookings import move as move  # the state machine lives in storage
from storage.models import Asset, Booking, BookingState, Renter
from storage.money import Money
from storage.transitions import IllegalTransition as IllegalTransition

REFERENCE_ALPHABET = "ACDEFGHJKLMNPQRTUVWXY34679"  # no look-alikes (0/O, 1/I, 5/S, 8/B, 2/Z)


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


class Priced(Protocol):
    """What a quote reads of an item (an ``Asset``, or any value with these fields)."""

    @property
    def currency(self) -> str: ...
    @property
    def price_per_hour_cents(self) -> int: ...
    @property
    def price_per_day_cents(self) -> int: ...
    @property
    def deposit_cents(self) -> int: ...
    @property
    def min_duration_minutes(self) -> int: ...
    @property
    def max_duration_minutes(self) -> int: ...


def quote(asset: Priced, start: datetime, end: datetime, now: datetime) -> Quote:
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


def extension_price(asset: Priced, extra: timedelta) -> int:
    """What ``extra`` time on a booking costs, in minor units of the item's currency: whole
    started hours, or whole started days where that is cheaper."""
    hours = -(-int(extra.total_seconds()) // 3600)
    price = hours * asset.price_per_hour_cents
    if asset.price_per_day_cents:
        price = min(price, -(-hours // 24) * asset.price_per_day_cents)
    return price


class UnpaidLimitReached(IntegrityError):
    """The renter already has as many bookings awaiting payment as one may: the database-side
    check of a hold, which makes the engine recompute the turn (and its pre-check answer)."""

    def __init__(self, renter_id: int) -> None:
        super().__init__(f"renter {renter_id} is at the limit of unpaid bookings")


async def unpaid_bookings(
    renter_id: int, *, conn: BaseDBAsyncClient | None = None, lock: bool = False
) -> int:
    """How many of the renter's bookings await payment. With ``lock`` (inside the hold's
    transaction) the renter's row is locked first on PostgreSQL, so two holds of one renter
    are counted one after the other."""
    if lock:
        await Renter.filter(id=renter_id).using_db(conn).select_for_update().first()
    return (
        await Booking.filter(renter_id=renter_id, state=BookingState.AWAITING_PAYMENT)
        .using_db(conn)
        .count()
    )


def blocked_range(asset: Asset, start: datetime, end: datetime) -> AccessWindow:
    """What a rental of ``asset`` from ``start`` to ``end`` takes: ``[start − buffer_before,
    end + buffer_after]``, the item's own buffers else its location's (asset with its location
    loaded). A new booking stores it; its codes' window is this range."""
    before = asset.buffer_before_minutes
    after = asset.buffer_after_minutes
    return access_window(
        start,
        end,
        buffer_before=timedelta(
            minutes=before if before is not None else asset.location.buffer_before_minutes
        ),
        buffer_after=timedelta(
            minutes=after if after is not None else asset.location.buffer_after_minutes
        ),
    )


async def hold_booking(
    conn: BaseDBAsyncClient,
    *,
    reference: str,
    renter_id: int,
    asset: Asset,
    start: datetime,
    end: datetime,
    blocked: AccessWindow,
    price: int,
    deposit: int,
    hold_expires_at: datetime | None,
) -> Booking:
    """The one place a booking is made: awaiting payment, with the range it takes
    (``blocked_range``) stored so that later buffer changes never move it."""
    return await Booking.create(
        reference=reference,
        renter_id=renter_id,
        asset_id=asset.id,
        start_at=start,
        end_at=end,
        blocked_from=blocked.starts_at,
        blocked_until=blocked.ends_at,
        state=BookingState.AWAITING_PAYMENT,
        currency=asset.currency,
        price_cents=price,
        deposit_cents=deposit,
        hold_expires_at=hold_expires_at,
        using_db=conn,
    )


def stored_range(booking: Booking) -> AccessWindow:
    """The range a booking took when it was made (its codes' window)."""
    return AccessWindow(booking.blocked_from, booking.blocked_until)


def extended_range(booking: Booking, new_end: datetime) -> AccessWindow:
    """The booking's range with its end moved to ``new_end``: the buffer after stays the one
    stored with it, whatever the location's is today."""
    return AccessWindow(booking.blocked_from, new_end + (booking.blocked_until - booking.end_at))


async def is_free(
    asset_id: int,
    blocked: AccessWindow,
    *,
    ignore: int | None = None,
    conn: BaseDBAsyncClient | None = None,
) -> bool:
    """Whether ``blocked`` (a range from ``blocked_range`` or ``extended_range``) reaches no
    other booking's stored range on the item, nor a lapsing offline code's window
    (``storage.availability``: one statement, through indexes)."""
    taken = await taken_ranges(
        asset_id, blocked.starts_at, blocked.ends_at, ignore=ignore, first_only=True, conn=conn
    )
    return not taken


async def alternatives(
    asset: Asset, start: datetime, end: datetime, *, now: datetime, count: int = 3
) -> list[tuple[datetime, datetime]]:
    """The nearest free slots of the same length, earlier or later, by steps of 30 minutes,
    up to a week away, each with its own turnaround clear of the others' stored ranges (asset
    with its location loaded). The ranges taken in that fortnight are read once."""
    wanted = blocked_range(asset, start, end)
    held = await taken_ranges(asset.id, *alternatives_reach(wanted))
    return free_slots(held, wanted, start, end, now=now, count=count)


#: Alternatives are looked for by steps of 30 minutes, up to a week either way.
ALTERNATIVE_STEP = timedelta(minutes=30)
ALTERNATIVE_STEPS = 7 * 48


def alternatives_reach(wanted: AccessWindow) -> tuple[datetime, datetime]:
    """The time whose taken ranges decide the alternatives to ``wanted``."""
    reach = ALTERNATIVE_STEPS * ALTERNATIVE_STEP
    return (wanted.starts_at - reach, wanted.ends_at + reach)


def free_slots(
    held: Sequence[tuple[datetime, datetime]],
    wanted: AccessWindow,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    count: int = 3,
) -> list[tuple[datetime, datetime]]:
    """The nearest ``count`` slots of ``start``–``end``'s length, not before ``now``, whose own
    range (``wanted``'s buffers around them) reaches none of the ``held`` ranges."""
    length = end - start
    step = ALTERNATIVE_STEP
    reach = ALTERNATIVE_STEPS
    before, after = start - wanted.starts_at, wanted.ends_at - end

    def free(candidate: datetime) -> bool:
        takes_from, takes_until = candidate - before, candidate + length + after
        return all(not (b_from < takes_until and b_until > takes_from) for b_from, b_until in held)

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
