"""A booking's life: confirm, cancel, expire and extend, each inside its runner's unit of work."""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access import LIVE_STATES, UPDATE_EFFECT
from flows.booking.common import (
    DELIVER_PIN_TIMER,
    END_TIMER,
    ENDING_TIMER,
    EXPIRE_CHECKOUT_EFFECT,
    EXTENSION_ON_LOCK_TIMER,
    IDENTITY_START_EFFECT,
    REFUND_EFFECT,
    RELEASE_EFFECT,
    START_TIMER,
    JourneyBase,
    iso,
)
from flows.booking.handover_asks import pin_waits_for_pickup
from flows.booking.identity import withdraw_identity
from flows.bookings import IllegalTransition, extended_range, stored_range
from flows.effects import Alert, Audit, CancelTimer, Effect, Outcome, SetTimer
from flows.gps.return_check import cancel_return_check, set_return_check
from flows.i18n import local_time
from flows.returns import DAMAGE_REVIEW_TIMER, damage_review_key
from flows.timers import TimerFired
from storage.bookings import move
from storage.kinds import AlertKind
from storage.models import (
    AccessCode,
    Asset,
    Booking,
    BookingState,
    Extension,
    Payment,
    Renter,
    Timer,
    TimerState,
)
from storage.payments import CLAIMABLE, PaymentPurpose


class ExtensionSuperseded(IllegalTransition):
    """The booking no longer ends where the extension was quoted from (another extension was
    applied first), or is no longer under way: the extension is not applied, nothing changed."""


class Lifecycle(JourneyBase):
    """Confirm, cancel, expire and extend a booking, in the unit of work it is given."""

    async def cancel_booking(
        self,
        conn: BaseDBAsyncClient,
        booking: Booking,
        *,
        actor: str,
        now: datetime,
        refund: int | None,
    ) -> Outcome:
        """Cancel with the refund policy (or ``refund`` as given), revoke codes at once."""
        was = booking.state
        await move(conn, booking, BookingState.CANCELLED, cancelled_at=now)
        codes = await AccessCode.filter(booking_id=booking.id, state__in=LIVE_STATES).using_db(conn)
        outcome = await self.access.revoke(conn, codes, actor=actor, reason="booking cancelled")
        outcome = outcome + (await withdraw_identity(conn, booking, actor=actor, now=now))
        outcome.timers += [
            CancelTimer(f"{kind}:{booking.reference}")
            for kind in ("hold", "pin", "start", "ending", "end")
        ]
        outcome.timers.append(cancel_return_check(booking.reference))
        amount = 0 if was == BookingState.AWAITING_PAYMENT else self._refund_for(booking, now)
        if refund is not None:
            amount = refund
        if was == BookingState.AWAITING_PAYMENT:
            outcome.effects.append(
                Effect(
                    EXPIRE_CHECKOUT_EFFECT,
                    f"expire:{booking.reference}",
                    {"booking": booking.id},
                )
            )
        if amount > 0:
            outcome.effects.append(
                Effect(
                    REFUND_EFFECT,
                    f"refund:{booking.reference}",
                    {"booking": booking.id, "amount": amount},
                )
            )
        outcome = outcome + self._deposit_after_cancel(booking, now)
        outcome.alerts.append(
            Alert(
                AlertKind.BOOKING_CANCELLED,
                f"cancelled:{booking.reference}",
                "ops.booking_cancelled",
                {"booking": booking.reference, "by": actor},
            )
        )
        outcome.audits.append(
            Audit(actor, "booking.cancelled", f"booking:{booking.reference}", {"refund": amount})
        )
        return outcome

    def _deposit_after_cancel(self, booking: Booking, now: datetime) -> Outcome:
        """Release the deposit hold at once, or keep it through a damage review.

        Cancelled once its window was open, the renter may have had the item: the hold stays
        through the damage review (ops are alerted and may claim), then goes.
        """
        outcome = Outcome()
        if now < booking.blocked_from:
            outcome.effects.append(
                Effect(RELEASE_EFFECT, f"release:{booking.reference}", {"booking": booking.id})
            )
        else:
            outcome.timers.append(
                SetTimer(
                    DAMAGE_REVIEW_TIMER,
                    now + self.settings.returns.damage_review,
                    damage_review_key(booking.reference),
                    {"booking": booking.id},
                )
            )
        return outcome

    async def confirm(self, conn: BaseDBAsyncClient, booking: Booking, now: datetime) -> Outcome:
        """Payment and identity are done: plan the codes and the rental's timers."""
        await move(conn, booking, BookingState.CONFIRMED)
        outcome = await self.access.plan_booking_codes(conn, booking)
        asset = (
            await Asset.filter(id=booking.asset_id).using_db(conn).get().select_related("location")
        )
        window = stored_range(booking)
        ref = booking.reference
        pin_at = max(now, window.starts_at - self.access.lead_times_at(asset.location).pin_lead)
        outcome.timers += [
            SetTimer(DELIVER_PIN_TIMER, pin_at, f"pin:{ref}", {"booking": booking.id}),
            SetTimer(START_TIMER, booking.start_at, f"start:{ref}", {"booking": booking.id}),
            SetTimer(
                ENDING_TIMER,
                max(now, booking.end_at - self.settings.ending_reminder),
                f"ending:{ref}",
                {"booking": booking.id},
            ),
            SetTimer(END_TIMER, booking.end_at, f"end:{ref}", {"booking": booking.id}),
            set_return_check(booking, asset),
        ]
        outcome.audits.append(Audit("system", "booking.confirmed", f"booking:{ref}"))
        tz = asset.location.timezone
        await self.notifier.tell(
            conn,
            booking.renter_id,
            "journey.confirmed",
            now=now,
            kind="receipt",
            params=lambda language: {
                "reference": ref,
                "code": asset.code,
                "start": local_time(booking.start_at, tz, language),
                "end": local_time(booking.end_at, tz, language),
                "pin_at": local_time(pin_at, tz, language),
            },
        )
        return outcome

    async def apply_extension(self, conn: BaseDBAsyncClient, extension: Extension) -> Outcome:
        booking = await _moved_end(conn, extension)
        asset = (
            await Asset.filter(id=booking.asset_id).using_db(conn).get().select_related("location")
        )
        now = self.clock.now()
        window = extended_range(booking, booking.end_at)
        outcome, replaced = await self.access.move_window(conn, booking, window)
        ref = booking.reference
        outcome.timers += [
            SetTimer(END_TIMER, booking.end_at, f"end:{ref}", {"booking": booking.id}),
            SetTimer(
                ENDING_TIMER,
                max(now, booking.end_at - self.settings.ending_reminder),
                f"ending:{ref}",
                {"booking": booking.id},
            ),
            set_return_check(booking, asset),
        ]
        if replaced:
            outcome.timers.append(
                SetTimer(DELIVER_PIN_TIMER, now, f"pin:{ref}", {"booking": booking.id})
            )
        outcome.audits.append(
            Audit("system", "booking.extended", f"booking:{ref}", {"until": iso(booking.end_at)})
        )
        if not replaced and any(e.kind == UPDATE_EFFECT for e in outcome.effects):
            # "Your code works until then" waits for the lock to hold the new window.
            outcome.timers.append(
                SetTimer(
                    EXTENSION_ON_LOCK_TIMER,
                    now + self.settings.extension_on_lock_within,
                    f"extended:{ref}",
                    {"booking": booking.id},
                )
            )
            return outcome
        key = "journey.extended_new_code" if replaced else "journey.extended"
        if replaced and pin_waits_for_pickup(asset, booking):
            key = "handover.extended_code_after_pickup"  # its new PIN, too, after the pickup
        await self.notifier.tell(
            conn,
            booking.renter_id,
            key,
            now=now,
            kind="receipt",
            params=lambda language: {
                "end": local_time(booking.end_at, asset.location.timezone, language)
            },
        )
        return outcome

    async def _tell_extension(
        self, booking: Booking, key: str, now: datetime, *, marker_fired: bool = False
    ) -> Outcome:
        """Tell the renter how their extension stands on the lock, once (while its marker timer
        is pending, or as it fires); ops hear of one the lock did not take."""
        asset = await Asset.get(id=booking.asset_id).select_related("location")
        marker = f"extended:{booking.reference}"

        async def tell(conn: BaseDBAsyncClient) -> Outcome:
            waiting = (
                await Timer.filter(key=marker, state=TimerState.PENDING).using_db(conn).exists()
            )
            if not waiting and not marker_fired:
                return Outcome()  # told already
            await self.notifier.tell(
                conn,
                booking.renter_id,
                key,
                now=now,
                kind="receipt",
                params=lambda language: {
                    "end": local_time(booking.end_at, asset.location.timezone, language)
                },
            )
            outcome = Outcome(timers=[CancelTimer(marker)])
            if key != "journey.extended":
                outcome.alerts.append(
                    Alert(
                        AlertKind.EXTENSION_NOT_ON_LOCK,
                        f"extension-lock:{booking.reference}",
                        "ops.extension_not_on_lock",
                        {"booking": booking.reference},
                    )
                )
            return outcome

        return Outcome(writes=[tell])

    async def on_code_not_moved(self, event: TimerFired) -> Outcome:
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        return await self._tell_extension(
            booking, "journey.extended_code_unchanged", self.clock.now()
        )

    async def on_extension_on_lock_due(self, event: TimerFired) -> Outcome:
        """The lock has not confirmed the extended window in time: the renter hears the truth."""
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        return await self._tell_extension(
            booking, "journey.extended_code_unchanged", self.clock.now(), marker_fired=True
        )

    async def _checks_before_rental(
        self, conn: BaseDBAsyncClient, booking: Booking, now: datetime, *, paid: bool = True
    ) -> Outcome:
        """Paid (or nothing to pay): now the checks before the rental (identity, the deposit
        hold) are awaited, and the booking is confirmed as soon as they are done."""
        outcome = Outcome()
        renter = await Renter.filter(id=booking.renter_id).using_db(conn).get()
        await move(conn, booking, BookingState.AWAITING_ID)
        if self._verified(renter, now):
            return outcome + (await self._maybe_confirm(conn, booking, now))
        if self.settings.identity_method == "stripe":
            outcome.effects.append(
                Effect(
                    IDENTITY_START_EFFECT,
                    f"identity-start:{booking.reference}",
                    {"booking": booking.id},
                )
            )
            return outcome
        key = "journey.send_id" if paid else "journey.send_id_unpaid"
        params = {"reference": booking.reference}
        link = await self._upload_link(conn, renter, booking)
        if link is not None:
            key, params = f"{key}_link", {**params, "link": link}
        await self.notifier.tell(conn, renter.id, key, now=now, kind="receipt", params=params)
        return outcome

    async def _maybe_confirm(
        self, conn: BaseDBAsyncClient, booking: Booking, now: datetime
    ) -> Outcome:
        """Confirm once payment, identity and (where the item has one) the deposit are done."""
        booking = await Booking.filter(id=booking.id).using_db(conn).get()
        if booking.state != BookingState.AWAITING_ID:
            return Outcome()
        renter = await Renter.filter(id=booking.renter_id).using_db(conn).get()
        if not self._verified(renter, now):
            return Outcome()
        if booking.deposit_cents > 0:
            held = await (
                Payment.filter(
                    booking_id=booking.id, purpose=PaymentPurpose.DEPOSIT, status__in=CLAIMABLE
                )
                .using_db(conn)
                .exists()
            )
            if not held:
                return Outcome()
        return await self.confirm(conn, booking, now)

    def _refund_late(self, booking: Booking, payment: Payment, why: str) -> Outcome:
        return Outcome(
            effects=[
                Effect(
                    REFUND_EFFECT,
                    f"refund:{booking.reference}:{payment.id}",
                    {"booking": booking.id, "payment": payment.id, "amount": payment.amount_cents},
                )
            ],
            alerts=[
                Alert(
                    AlertKind.LATE_PAYMENT_REFUNDED,
                    f"late-payment:{booking.reference}",
                    "ops.late_payment_refunded",
                    {"booking": booking.reference, "why": why},
                )
            ],
        )

    async def _expire(self, conn: BaseDBAsyncClient, booking: Booking, now: datetime) -> Outcome:
        if booking.state != BookingState.AWAITING_PAYMENT:
            return Outcome()
        await move(conn, booking, BookingState.EXPIRED)
        await self.notifier.tell(
            conn,
            booking.renter_id,
            "journey.hold_expired",
            now=now,
            params={"reference": booking.reference},
        )
        return Outcome(
            timers=[CancelTimer(f"hold:{booking.reference}")],
            effects=[
                Effect(
                    EXPIRE_CHECKOUT_EFFECT,
                    f"expire:{booking.reference}",
                    {"booking": booking.id},
                )
            ],
            alerts=[
                Alert(
                    AlertKind.HOLD_EXPIRED,
                    f"hold-expired:{booking.reference}",
                    "ops.hold_expired",
                    {"booking": booking.reference},
                )
            ],
            audits=[Audit("system", "booking.expired", f"booking:{booking.reference}")],
        )


async def _moved_end(conn: BaseDBAsyncClient, extension: Extension) -> Booking:
    """The booking with its end moved to the extension's, as the first write. Guarded on the
    end it was quoted from: of two extensions applied at once, the second finds the end moved
    (on PostgreSQL it waits for the first's row lock, then sees its end) and is refused with
    nothing changed, never last-writer-wins."""
    booking = await Booking.filter(id=extension.booking_id).using_db(conn).get()
    window = extended_range(booking, extension.new_end_at)
    moved = await (
        Booking.filter(
            id=booking.id,
            end_at=extension.old_end_at,
            state__in=(BookingState.CONFIRMED, BookingState.ACTIVE),
        )
        .using_db(conn)
        .update(end_at=extension.new_end_at, blocked_until=window.ends_at)
    )
    if not moved:
        raise ExtensionSuperseded(
            f"booking {booking.reference} no longer ends where extension {extension.id}"
            " was quoted from"
        )
    await Extension.filter(id=extension.id).using_db(conn).update(state="applied")
    booking.end_at, booking.blocked_until = extension.new_end_at, window.ends_at
    return booking
