"""The rental's timers: each reads without a transaction and returns its state changes as
writes, which the timer runner commits with the timer's completion."""

from __future__ import annotations

from flows.access import LIVE_STATES
from flows.booking.common import DELIVER_PIN_TIMER, PIN_RECHECK
from flows.booking.executors import Executors
from flows.booking.pin_message import moving_on_lock
from flows.effects import Audit, Outcome, SetTimer
from flows.gps.return_check import set_return_check
from flows.i18n import local_time
from flows.timers import TimerFired
from storage.bookings import move
from storage.models import (
    AccessCode,
    AccessCodeState,
    Asset,
    Booking,
    BookingState,
    Timer,
    TimerState,
)
from storage.uow import UnitOfWork


class RentalTimers(Executors):
    """The rental's timers; their state changes are writes the timer runner commits."""

    async def on_hold_expiry(self, event: TimerFired) -> Outcome:
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        now = self.clock.now()

        async def expire(conn: UnitOfWork) -> Outcome:
            # Read again in the runner's transaction: a payment may have come in meanwhile.
            current = await Booking.filter(id=booking.id).using_db(conn).get()
            return await self._expire(conn, current, now)

        return Outcome(writes=[expire])

    async def on_deliver_pin(self, event: TimerFired) -> Outcome:
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        if booking.state not in (BookingState.CONFIRMED, BookingState.ACTIVE):
            return Outcome()
        now = self.clock.now()
        ready = await self.set_codes(booking, now, settled=True)
        if ready is None:
            if now < booking.end_at:  # not set yet: look again shortly (ops is alerted by then)
                return Outcome(
                    timers=[
                        SetTimer(
                            DELIVER_PIN_TIMER,
                            now + PIN_RECHECK,
                            f"pin:{booking.reference}",
                            {"booking": booking.id},
                        )
                    ]
                )
            return Outcome()
        language = await self._language(None, booking)
        text_params = {"body": await self.pin_text(booking, ready.codes, language)}
        variables = await self.pin_variables(booking, ready.codes, language)

        async def tell(conn: UnitOfWork) -> Outcome:
            if await still_under_way(conn, booking.id) is None:
                return Outcome()  # cancelled or ended while the codes were looked at: no PIN
            await self.notifier.tell(
                conn,
                booking.renter_id,
                "journey.pin_message",
                now=now,
                kind="pin",
                params=text_params,
                template_variables=variables,
            )
            return Outcome(
                audits=[Audit("system", "booking.pin_sent", f"booking:{booking.reference}")]
            )

        return Outcome(writes=[*ready.writes, tell])

    async def on_code_set(self, event: TimerFired) -> Outcome:
        """A booking's code became set: a PIN already due and waiting for its codes goes out
        now rather than at its next look (one not yet due keeps its time)."""
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        now = self.clock.now()
        outcome = Outcome()
        if await self._extension_on_lock(booking, int(str(event.payload["code"]))):
            outcome = await self._tell_extension(booking, "journey.extended", now)
        key = f"pin:{booking.reference}"
        waiting = await Timer.filter(
            key=key, state=TimerState.PENDING, due_at__lte=now + PIN_RECHECK
        ).exists()
        if waiting:
            outcome.timers.append(SetTimer(DELIVER_PIN_TIMER, now, key, {"booking": booking.id}))
        return outcome

    async def _extension_on_lock(self, booking: Booking, just_set: int) -> bool:
        """Every code of the booking is set with its current window, no move still on its way
        (``just_set``'s own move is the one that has just been answered, its row not yet done)."""
        codes = await AccessCode.filter(booking_id=booking.id, state__in=LIVE_STATES)
        if not codes or any(c.state != AccessCodeState.SET for c in codes):
            return False
        return not await moving_on_lock(codes, just_set)

    async def on_start(self, event: TimerFired) -> Outcome:
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        outcome = Outcome(
            audits=[Audit("system", "booking.started", f"booking:{booking.reference}")]
        )
        if booking.state == BookingState.CONFIRMED:

            async def start(conn: UnitOfWork) -> Outcome:
                await move(conn, booking, BookingState.ACTIVE)
                return Outcome()

            outcome.writes.append(start)
        return outcome

    async def on_ending_soon(self, event: TimerFired) -> Outcome:
        booking = await Booking.get(id=int(str(event.payload["booking"]))).prefetch_related(
            "asset__location"
        )
        if booking.state not in (BookingState.CONFIRMED, BookingState.ACTIVE):
            return Outcome()
        now = self.clock.now()

        async def remind(conn: UnitOfWork) -> Outcome:
            current = await still_under_way(conn, booking.id)
            if current is None or current.end_at - self.settings.ending_reminder > now:
                return Outcome()  # cancelled, ended, or extended: its reminder comes later
            tz = booking.asset.location.timezone
            await self.notifier.tell(
                conn,
                booking.renter_id,
                "journey.ending_soon",
                now=now,
                kind="reminder",
                params=lambda language: {"end": local_time(current.end_at, tz, language)},
            )
            return Outcome()

        return Outcome(writes=[remind])

    async def on_end(self, event: TimerFired) -> Outcome:
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        if booking.state not in (BookingState.CONFIRMED, BookingState.ACTIVE):
            return Outcome()
        now = self.clock.now()

        async def complete(conn: UnitOfWork) -> Outcome:
            # Read again, locked: an extension applied since the read above moved the end
            # (and this timer with it), and the rental goes on.
            current = await still_under_way(conn, booking.id)
            if current is None or current.end_at > now:
                return Outcome()
            if current.state == BookingState.CONFIRMED:
                await move(conn, current, BookingState.ACTIVE)
            await move(conn, current, BookingState.COMPLETED)
            await self.notifier.tell(
                conn,
                booking.renter_id,
                "journey.thank_you",
                now=now,
                kind="notice",
                params={"reference": booking.reference},
            )
            # The deposit stays as it is: the clock says nothing about the item. It is
            # released when the return is confirmed and its damage review ends unclaimed.
            asset = await Asset.filter(id=current.asset_id).using_db(conn).get()
            return Outcome(
                # Set at confirmation already; set here too for a booking confirmed before
                # returns were checked (the same key: one check).
                timers=[set_return_check(current, asset)],
                audits=[Audit("system", "booking.completed", f"booking:{booking.reference}")],
            )

        return Outcome(writes=[complete])


async def still_under_way(conn: UnitOfWork, booking_id: int) -> Booking | None:
    """The booking as it is in the runner's transaction (its row locked on PostgreSQL until
    the timer's outcome commits), or None when it is no longer confirmed or active. A timer
    handler reads without a transaction; its write checks again what it acts on."""
    booking = await Booking.filter(id=booking_id).using_db(conn).select_for_update().get()
    if booking.state not in (BookingState.CONFIRMED, BookingState.ACTIVE):
        return None
    return booking
