"""A rental's return, confirmed: the return checklist done (DONE) and, for an item with GPS,
the tracker back inside its location's home geofence, in either order. The return's moment is
the later of the two; it is marked on time, early or late, a late one's fee is staged, and the
damage review starts, at whose end the deposit is released unless damage was claimed. Nothing
else releases a deposit: not the clock, not the end of the rental.

Both facts arrive through runners (the renter's turn, the Traccar webhook); each calls in here
inside its unit of work, and the booking's row is locked, so the second to arrive sees the first.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access.kinds import LIVE_STATES
from flows.effects import Audit, Effect, Outcome, SetTimer
from flows.i18n import Translator
from flows.notify import Notifier
from flows.return_alerts import resolve_not_returned
from storage.gps import note_home_state
from storage.kinds import EffectKind, TimerKind
from storage.models import AccessCode, Asset, Booking, Location
from storage.money import Money
from storage.returns import (
    locked_booking,
    note_back_home,
    note_checklist_done,
    note_returned,
    out_on_rental,
)

DAMAGE_REVIEW_TIMER = TimerKind.BOOKING_DAMAGE_REVIEW
LATE_FEE_EFFECT = EffectKind.PAYMENT_LATE_FEE
RECEIPT_EFFECT = EffectKind.BOOKING_RECEIPT
ON_TIME = "on_time"
EARLY = "early"
LATE = "late"


@dataclass(frozen=True)
class ReturnRules:
    #: How long after a confirmed return damage may be claimed before the deposit is released.
    damage_review: timedelta = timedelta(hours=12)
    #: False when Keyturn has no GPS (no Traccar settings): returns are confirmed by the
    #: checklist alone, whatever trackers the inventory names.
    gps_on: bool = False


def damage_review_key(reference: str) -> str:
    return f"damage-review:{reference}"


def timing_of(booking: Booking, asset: Asset, at: datetime) -> str:
    """On time within the item's grace either side of the booked end; early or late past it."""
    grace = timedelta(minutes=asset.late_grace_minutes)
    if at > booking.end_at + grace:
        return LATE
    if at < booking.end_at - grace:
        return EARLY
    return ON_TIME


def late_fee(booking: Booking, asset: Asset, at: datetime) -> Money:
    """The item's late fee per started hour past the booked end, once past the grace."""
    fee = Money(asset.late_fee_per_hour_cents, booking.currency)
    if fee.minor <= 0 or timing_of(booking, asset, at) != LATE:
        return Money.zero(booking.currency)
    hours = math.ceil((at - booking.end_at) / timedelta(hours=1))
    return fee * hours


async def confirms_by_gps(conn: BaseDBAsyncClient | None, asset: Asset, rules: ReturnRules) -> bool:
    """Whether the item's return waits for GPS: it has a tracker, its location a home geofence,
    and Keyturn has GPS."""
    if not rules.gps_on or asset.traccar_device_id is None:
        return False
    location = await Location.filter(id=asset.location_id).using_db(conn).get()
    return location.home_geofence_id is not None


@functools.cache
def _default_notifier() -> Notifier:
    """The renter is told of a confirmed return by whichever path confirms it; a caller
    without a notifier of its own (the GPS webhook) gets this one (the message holds no PIN)."""
    return Notifier(Translator())


def seen_home(asset: Asset) -> bool:
    """Whether GPS has the item home now: its latest sighting is inside its yard, or its tracker
    has not reported yet (which tells nothing against the renter's word). An item last seen
    outside its yard waits for its tracker, even if it passed through the yard earlier in the
    rental (leaving again takes that homecoming back)."""
    return asset.gps_home is not False


async def note_return_checklist(
    conn: BaseDBAsyncClient,
    booking_id: int,
    now: datetime,
    rules: ReturnRules,
    notifier: Notifier | None = None,
) -> Outcome:
    """The renter finished the return checklist and said the item is locked."""
    booking = await locked_booking(conn, booking_id)
    if not await note_checklist_done(conn, booking, now):
        return Outcome()
    outcome = Outcome(
        audits=[Audit("system", "booking.return_checklist", f"booking:{booking.reference}")]
    )
    return outcome + await _confirm_return(conn, booking, now, rules, notifier)


async def note_home(
    conn: BaseDBAsyncClient,
    asset_id: int,
    at: datetime,
    now: datetime,
    rules: ReturnRules,
    notifier: Notifier | None = None,
    *,
    left_at: datetime | None = None,
) -> Outcome:
    """GPS saw the item enter its home geofence at ``at``, having left it at ``left_at`` (None
    when its leaving was not seen): the rental it was out on (if any) has its item back."""
    found = await out_on_rental(conn, asset_id, at, left_at)
    if found is None:
        return Outcome()
    booking = await locked_booking(conn, found.id)
    if not await note_back_home(conn, booking, at):
        return Outcome()
    outcome = Outcome(audits=[Audit("gps", "booking.back_home", f"booking:{booking.reference}")])
    return outcome + await _confirm_return(conn, booking, now, rules, notifier)


async def confirm_by_staff(
    conn: BaseDBAsyncClient,
    booking_id: int,
    now: datetime,
    rules: ReturnRules,
    notifier: Notifier | None = None,
) -> Outcome:
    """An operator saw the item back (a tracker that died, a renter who never said DONE): the
    return is confirmed now, as if its checklist were done and GPS saw it home. Nothing when it
    was confirmed already."""
    booking = await locked_booking(conn, booking_id)
    if booking.returned_at is not None:
        return Outcome()
    await note_checklist_done(conn, booking, now)
    await note_back_home(conn, booking, now)
    # Seen in its yard by a person: home, whatever its tracker last said.
    await note_home_state(conn, booking.asset_id, True, now)
    return await _confirm_return(conn, booking, now, rules, notifier, seen=True)


async def _codes_end(conn: BaseDBAsyncClient, booking: Booking, now: datetime) -> datetime:
    """When the renter's codes stop opening: now, or later where an early return keeps them
    to the end. The damage review counts from then, so the deposit is never released while
    the renter can still get in."""
    codes = await AccessCode.filter(booking_id=booking.id, state__in=LIVE_STATES).using_db(conn)
    return max([now, *(code.ends_at for code in codes)])


async def _confirm_return(
    conn: BaseDBAsyncClient,
    booking: Booking,
    now: datetime,
    rules: ReturnRules,
    notifier: Notifier | None,
    *,
    seen: bool = False,
) -> Outcome:
    """The return confirmed if both its facts hold (``seen``: a person saw the item home); when
    this confirmed it, the item's "not returned" alert is resolved unless another rental of the
    item is still out."""
    was_returned = booking.returned_at is not None
    outcome = await _confirm_if_ready(conn, booking, now, rules, notifier, seen=seen)
    if not was_returned and booking.returned_at is not None:
        asset = await Asset.filter(id=booking.asset_id).using_db(conn).get()
        await resolve_not_returned(conn, asset, booking.reference, now)
    return outcome


async def _returned_moment(
    conn: BaseDBAsyncClient, booking: Booking, asset: Asset, rules: ReturnRules, *, seen: bool
) -> datetime | None:
    """When the item was back: the checklist's moment, or for an item GPS confirms the later
    of it and its homecoming; None while GPS has not seen it home (and no person has)."""
    moment = booking.return_checklist_at
    assert moment is not None
    if not await confirms_by_gps(conn, asset, rules):
        return moment
    if not (seen or seen_home(asset)):
        return None
    if booking.returned_home_at is None:
        # Never seen leaving its yard: it is home now, as the renter says.
        await note_back_home(conn, booking, moment)
    return max(moment, booking.returned_home_at or moment)


async def _confirm_if_ready(
    conn: BaseDBAsyncClient,
    booking: Booking,
    now: datetime,
    rules: ReturnRules,
    notifier: Notifier | None,
    *,
    seen: bool = False,
) -> Outcome:
    if booking.return_checklist_at is None:
        return Outcome()
    asset = await Asset.filter(id=booking.asset_id).using_db(conn).get()
    moment = await _returned_moment(conn, booking, asset, rules, seen=seen)
    if moment is None:
        return Outcome()
    timing = timing_of(booking, asset, moment)
    fee = late_fee(booking, asset, moment)
    if not await note_returned(conn, booking, moment, timing, fee.minor):
        return Outcome()
    reference = booking.reference
    await (notifier or _default_notifier()).tell(
        conn,
        booking.renter_id,
        "handover.return_confirmed",
        now=now,
        kind="receipt",
        params={"item": asset.label, "reference": reference},
    )
    outcome = Outcome(
        timers=[
            SetTimer(
                DAMAGE_REVIEW_TIMER,
                await _codes_end(conn, booking, now) + rules.damage_review,
                damage_review_key(reference),
                {"booking": booking.id},
            )
        ],
        audits=[
            Audit(
                "system",
                "booking.returned",
                f"booking:{reference}",
                {"timing": timing, "late_fee": fee.minor, "at": moment.isoformat()},
            )
        ],
    )
    if fee.minor > 0:
        outcome.effects.append(
            Effect(LATE_FEE_EFFECT, f"late-fee:{reference}", {"booking": booking.id})
        )
    elif booking.deposit_cents <= 0:
        # Nothing left to settle: the receipt now (with a fee, after its outcome; with a
        # deposit, when its fate is known).
        outcome.effects.append(
            Effect(RECEIPT_EFFECT, f"receipt:{reference}", {"booking": booking.id})
        )
    return outcome
