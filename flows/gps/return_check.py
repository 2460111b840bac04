"""The "not returned" check of every rental, GPS or not: at the booked end plus the item's
grace (``late_grace_minutes``), a booking whose return is not confirmed raises a "not returned"
alert, one per item however many of its rentals are late, and its renter is asked to return it
(for an item with GPS that is away from home, told that its tracker does not show it back).

The timer is set when a booking is confirmed, moved with an extension and cancelled with the
booking (``flows.booking.lifecycle``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.clock import Clock
from flows.effects import Alert, Audit, CancelTimer, Outcome, SetTimer
from flows.handoff import OPS_LANGUAGE
from flows.i18n import local_time
from flows.notify import Notifier
from flows.return_alerts import not_returned_key
from flows.returns import ReturnRules, confirms_by_gps
from flows.timers import TimerFired, TimerHandler
from storage.kinds import AlertKind, TimerKind
from storage.models import Asset, Booking, BookingState

RETURN_CHECK_TIMER = TimerKind.BOOKING_RETURN_CHECK
#: Bookings whose item should be back by the check: those that ran (or were to run).
CHECKED_STATES = (BookingState.CONFIRMED, BookingState.ACTIVE, BookingState.COMPLETED)


def return_check_key(reference: str) -> str:
    return f"return-check:{reference}"


def set_return_check(booking: Booking, asset: Asset) -> SetTimer:
    """The check at the booking's end plus the item's grace (set again when the end moves)."""
    return SetTimer(
        RETURN_CHECK_TIMER,
        booking.end_at + timedelta(minutes=asset.late_grace_minutes),
        return_check_key(booking.reference),
        {"booking": booking.id},
    )


def cancel_return_check(reference: str) -> CancelTimer:
    return CancelTimer(return_check_key(reference))


class ReturnCheck:
    def __init__(self, notifier: Notifier, clock: Clock, rules: ReturnRules) -> None:
        self.notifier = notifier
        self.clock = clock
        self.rules = rules

    def timer_handlers(self) -> Mapping[str, TimerHandler]:
        return {RETURN_CHECK_TIMER: self.on_due}

    async def on_due(self, event: TimerFired) -> Outcome:
        now = self.clock.now()
        booking_id = int(str(event.payload["booking"]))

        async def check(conn: BaseDBAsyncClient) -> Outcome:
            booking = await Booking.filter(id=booking_id).using_db(conn).first()
            if booking is None or booking.returned_at is not None:
                return Outcome()
            if booking.state not in CHECKED_STATES:
                return Outcome()  # cancelled or never confirmed: nothing went out
            asset = (
                await Asset.filter(id=booking.asset_id)
                .using_db(conn)
                .select_related("location")
                .get()
            )
            if booking.end_at + timedelta(minutes=asset.late_grace_minutes) > now:
                return Outcome()  # extended since: the moved timer checks later
            return await self._not_returned(conn, booking, asset, now)

        return Outcome(writes=[check])

    async def _not_returned(
        self, conn: BaseDBAsyncClient, booking: Booking, asset: Asset, now: datetime
    ) -> Outcome:
        tz = asset.location.timezone
        away = await confirms_by_gps(conn, asset, self.rules) and asset.gps_home is False
        await self.notifier.tell(
            conn,
            booking.renter_id,
            "journey.not_returned_gps" if away else "journey.not_returned",
            now=now,
            kind="reminder",
            params=lambda language: {
                "code": asset.code,
                "end": local_time(booking.end_at, tz, language),
                "location": asset.location.name,
            },
        )
        return Outcome(
            alerts=[
                Alert(
                    AlertKind.NOT_RETURNED,
                    not_returned_key(asset.code),
                    "ops.not_returned_gps" if away else "ops.not_returned",
                    {
                        "asset": f"{asset.code} {asset.label}",
                        "booking": booking.reference,
                        "end": local_time(booking.end_at, tz, OPS_LANGUAGE),
                    },
                )
            ],
            audits=[
                Audit(
                    "system",
                    "booking.not_returned",
                    f"booking:{booking.reference}",
                    {"gps_away": away},
                )
            ],
        )
