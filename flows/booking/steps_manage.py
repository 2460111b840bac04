"""Dialog steps on a booking the renter has: EXTEND, OPEN, CODE, CANCEL, AGENT, the answers to
their questions, the ID photo, STOP and START."""

from __future__ import annotations

import logging
from datetime import timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access import locks_for_booking
from flows.booking.common import (
    CHECKOUT_EFFECT,
    COLLECT_ID_EFFECT,
    EXTENDABLE,
    EXTENSION_CHECKOUT_ROOM,
    MIN_EXTENSION,
    at,
    duration_text,
    iso,
    opens_since,
    stay,
)
from flows.booking.steps_quote import QuoteSteps
from flows.bookings import extended_range, extension_price, stored_range
from flows.dialog import DialogState
from flows.effects import Alert, Audit, Effect, Outcome, Reply
from flows.engine import ReadChanged, StepResult, Turn
from flows.i18n import local_time
from flows.remote_open import open_effect
from flows.when import WhenNotUnderstood, parse_duration
from locks import LockCapability
from locks.port import capabilities_from_json
from storage.identity import IdentityStatus
from storage.kinds import AlertKind
from storage.models import Booking, BookingState, Conversation, Extension, IdentityCheck, Renter
from storage.money import Money

log = logging.getLogger(__name__)


class ManageSteps(QuoteSteps):
    """Keywords and answers about the renter's booking."""

    async def command(self, turn: Turn, command: str, args: list[str]) -> StepResult:
        """EXTEND, OPEN, CODE, CANCEL and AGENT act on the renter's current booking."""
        booking = await self._current_booking(turn.renter_id)
        if command == "agent":
            return await self._agent(turn, booking)
        if booking is None:
            return stay(turn, turn.t("journey.no_booking"))
        if command == "extend":
            return await self.extend_quote(turn, booking, " ".join(args))
        if command == "open":
            return await self._open(turn, booking)
        if command == "code":
            return await self.resend_code(turn, booking)
        if command == "cancel":
            return await self.cancel_quote(turn, booking)
        return stay(turn, turn.t("dialog.not_understood"), understood=False)

    async def answer(self, turn: Turn, yes: bool) -> StepResult:
        """YES or NO to the question the conversation is waiting on."""
        if turn.state == DialogState.QUOTE:
            if yes:
                return await self.accept_quote(turn)
            return StepResult(
                DialogState.START, {}, Outcome([Reply(turn.t("journey.quote_declined"))])
            )
        if turn.state == DialogState.EXTEND_QUOTE:
            if yes:
                return await self._extend_accept(turn)
            return StepResult(
                DialogState.BOOKED, {}, Outcome([Reply(turn.t("journey.kept_as_is"))])
            )
        if turn.state == DialogState.CANCEL_QUOTE:
            if yes:
                return await self._cancel_accept(turn)
            return StepResult(
                DialogState.BOOKED, {}, Outcome([Reply(turn.t("journey.kept_as_is"))])
            )
        return stay(turn, turn.t("journey.nothing_to_answer"), understood=False)

    async def id_photo(self, turn: Turn) -> StepResult:
        booking = await self._current_booking(turn.renter_id)
        if booking is None or booking.state != BookingState.AWAITING_ID:
            return stay(turn, turn.t("dialog.media_not_needed"))
        media = turn.message.media[0]
        effect = Effect(
            COLLECT_ID_EFFECT,
            f"identity:{turn.message.channel}:{turn.message.provider_id}",
            {
                "booking": booking.id,
                "channel": turn.message.channel,
                "message": turn.message.provider_id,
                "url": media.url,
                "content_type": media.content_type,
            },
        )
        return StepResult(
            turn.state, dict(turn.data), Outcome([Reply(turn.t("journey.id_received"))], [effect])
        )

    def opt_out(self, turn: Turn, stop: bool) -> StepResult:
        renter_id = turn.renter_id
        now = turn.now

        async def apply(conn: BaseDBAsyncClient) -> Outcome:
            await (
                Renter.filter(id=renter_id)
                .using_db(conn)
                .update(opted_out=stop, opted_out_at=now if stop else None)
            )
            action = "renter.opted_out" if stop else "renter.opted_in"
            return Outcome(audits=[Audit(f"renter:{renter_id}", action)])

        key = "journey.stopped" if stop else "journey.started"
        return StepResult(turn.state, dict(turn.data), Outcome([Reply(turn.t(key))]), apply=apply)

    async def upload_link_again(self, turn: Turn) -> StepResult | None:
        """A renter who is to send the ID by link writes instead: a fresh link, since the one
        sent may have expired. None where the chat carries the photo or none is awaited."""
        if not self._photo_needs_link(turn.message.channel, turn.message.address):
            return None
        booking = await self._current_booking(turn.renter_id)
        if (
            booking is None
            or booking.state != BookingState.AWAITING_ID
            or self.settings.identity_method != "manual"
            or await IdentityCheck.exists(booking_id=booking.id, status=IdentityStatus.PENDING)
        ):
            return None
        link = self._link_for(
            turn.message.channel, turn.message.address, turn.renter_id, booking.id
        )
        if link is None:
            return None
        text = turn.t("journey.id_link_again", reference=booking.reference, link=link)
        return stay(turn, text)

    async def _agent(self, turn: Turn, booking: Booking | None) -> StepResult:
        conversation = await Conversation.get(
            channel=turn.message.channel, address=turn.message.address
        )
        outcome = Outcome(
            [Reply(turn.t("journey.agent_requested"))],
            alerts=[
                Alert(
                    AlertKind.AGENT_REQUESTED,
                    f"agent:{conversation.id}",
                    "ops.agent_requested",
                    {
                        "channel": turn.message.channel,
                        "booking": booking.reference if booking else "-",
                    },
                )
            ],
            audits=[Audit(f"renter:{turn.renter_id}", "conversation.agent_requested")],
        )
        data = {**turn.data, "handoff": "requested"}
        return StepResult(turn.state, data, outcome)

    async def _open(self, turn: Turn, booking: Booking) -> StepResult:
        window = stored_range(booking)
        if not window.contains(turn.now) or booking.state not in (
            BookingState.CONFIRMED,
            BookingState.ACTIVE,
        ):
            return stay(turn, turn.t("journey.open_outside_window"))
        hour_ago = turn.now - timedelta(hours=1)
        recent = await opens_since(None, booking, hour_ago)
        if recent >= self.settings.opens_per_hour:
            return stay(turn, turn.t("journey.open_too_often"))

        async def counted_again(conn: BaseDBAsyncClient) -> Outcome:
            # Counted again in the turn's transaction, holding the booking's row (PostgreSQL;
            # SQLite runs one transaction at a time): an OPEN on another channel that committed
            # meanwhile is seen, and this turn is recomputed with it instead of opening too.
            await Booking.filter(id=booking.id).using_db(conn).select_for_update(no_key=True).get()
            if await opens_since(conn, booking, hour_ago) != recent:
                raise ReadChanged(f"booking {booking.reference} was opened meanwhile")
            return Outcome()

        locks = [
            lock
            for lock in await locks_for_booking(booking)
            if LockCapability.REMOTE_UNLOCK
            in capabilities_from_json(lock.capabilities, lock.provider)
        ]
        if not locks:
            return stay(turn, turn.t("journey.open_not_possible"))
        stamp = turn.message.provider_id
        outcome = Outcome(
            [Reply(turn.t("journey.open_asked", locks=", ".join(lk.label for lk in locks)))],
            effects=[
                open_effect(
                    lock,
                    f"open:{lock.id}:{stamp}",
                    now=turn.now,
                    lifetime=self.settings.open_lifetime,
                    renter_id=turn.renter_id,
                    booking=booking.reference,
                )
                for lock in locks
            ],
            audits=[
                Audit(
                    f"renter:{turn.renter_id}", "lock.remote_open", f"booking:{booking.reference}"
                )
            ],
        )
        return StepResult(turn.state, dict(turn.data), outcome, apply=counted_again)

    async def resend_code(self, turn: Turn, booking: Booking) -> StepResult:
        ready = await self.set_codes(booking, turn.now)
        if ready is None:
            return stay(turn, turn.t("journey.code_not_ready"))
        result = stay(turn, await self.pin_text(booking, ready.codes, turn.language), kind="pin")
        result.outcome.writes += ready.writes
        return result

    async def extend_quote(self, turn: Turn, booking: Booking, text: str) -> StepResult:
        if booking.state not in EXTENDABLE:  # no codes before the booking is confirmed
            return stay(turn, turn.t("journey.extend_not_yet", reference=booking.reference))
        if booking.return_checklist_at is not None:  # brought back: its codes end as booked
            return stay(turn, turn.t("journey.extend_after_return", reference=booking.reference))
        try:
            extra = parse_duration(text)
        except WhenNotUnderstood:
            return stay(turn, turn.t("journey.extend_usage"), understood=False)
        if extra < MIN_EXTENSION:
            minutes = int(MIN_EXTENSION.total_seconds() // 60)
            return stay(turn, turn.t("journey.extend_too_short", minutes=minutes))
        asset = await self.inventory.asset_by_id(booking.asset_id)
        new_end = booking.end_at + extra
        if (new_end - booking.start_at).total_seconds() / 60 > asset.max_duration_minutes:
            return stay(
                turn,
                turn.t(
                    "journey.too_long",
                    duration=duration_text(asset.max_duration_minutes, turn.language),
                ),
            )
        if not await self.reads.is_free(
            asset.id, extended_range(booking, new_end), ignore=booking.id
        ):
            outcome = Outcome(
                [Reply(turn.t("journey.extend_conflict"))],
                alerts=[
                    Alert(
                        AlertKind.EXTENSION_CONFLICT,
                        f"extension-conflict:{booking.reference}",
                        "ops.extension_conflict",
                        {"booking": booking.reference},
                    )
                ],
            )
            return StepResult(turn.state, dict(turn.data), outcome)
        price = extension_price(asset, extra)
        tz = asset.location.timezone
        text_out = turn.t(
            "journey.extend_quote",
            end=local_time(new_end, tz, turn.language),
            price=Money(price, booking.currency).format(turn.language),
        )
        data = {
            "booking": booking.reference,
            "old_end": iso(booking.end_at),
            "new_end": iso(new_end),
            "price": price,
        }
        return StepResult(
            DialogState.EXTEND_QUOTE, data, Outcome([Reply(text_out, self._yes_no(turn))])
        )

    async def _extend_accept(self, turn: Turn) -> StepResult:
        booking = await Booking.get(reference=str(turn.data["booking"])).select_related("asset")
        new_end = at(turn.data["new_end"])
        price = int(str(turn.data["price"]))
        quoted_end = at(turn.data["old_end"]) if "old_end" in turn.data else booking.end_at
        if booking.state not in EXTENDABLE or booking.end_at != quoted_end:
            # Cancelled, ended or extended since the quote: it no longer says what YES buys.
            return StepResult(
                DialogState.BOOKED, {}, Outcome([Reply(turn.t("journey.extend_stale"))])
            )
        if not await self.reads.is_free(
            booking.asset_id, extended_range(booking, new_end), ignore=booking.id
        ):
            return StepResult(
                DialogState.BOOKED, {}, Outcome([Reply(turn.t("journey.extend_conflict"))])
            )
        take_payments = self.settings.take_payments

        async def record(conn: BaseDBAsyncClient) -> Outcome:
            locked = Booking.filter(id=booking.id).using_db(conn).select_for_update()
            now_booked = await locked.get()
            if now_booked.state not in EXTENDABLE or now_booked.end_at != booking.end_at:
                raise ReadChanged(f"booking {booking.reference} changed since the quote")
            extension = await Extension.create(
                booking=booking,
                old_end_at=booking.end_at,
                new_end_at=new_end,
                price_cents=price,
                using_db=conn,
            )
            if price == 0 or not take_payments:
                return await self.apply_extension(conn, extension)
            return Outcome(
                effects=[
                    Effect(
                        CHECKOUT_EFFECT,
                        f"checkout:{booking.reference}:extension:{extension.id}",
                        {
                            **self._checkout_payload(
                                booking,
                                booking.asset,
                                "extension",
                                price,
                                turn.now + EXTENSION_CHECKOUT_ROOM,
                            ),
                            "extension": extension.id,
                        },
                    )
                ]
            )

        # Only a price staged as a checkout has a payment link to announce; a free extension is
        # applied in this turn and its receipt follows.
        key = "journey.extend_paying" if price > 0 else "journey.extend_free"
        if price > 0 and not take_payments:
            key = "journey.extend_no_payment"
        return StepResult(DialogState.BOOKED, {}, Outcome([Reply(turn.t(key))]), apply=record)

    async def cancel_quote(self, turn: Turn, booking: Booking) -> StepResult:
        refund = self._refund_for(booking, turn.now)
        if booking.state == BookingState.AWAITING_PAYMENT:
            refund = 0
        text = turn.t(
            "journey.cancel_quote",
            reference=booking.reference,
            refund=Money(refund, booking.currency).format(turn.language),
        )
        data = {"booking": booking.reference}
        return StepResult(
            DialogState.CANCEL_QUOTE, data, Outcome([Reply(text, self._yes_no(turn))])
        )

    async def _cancel_accept(self, turn: Turn) -> StepResult:
        booking = await Booking.get(reference=str(turn.data["booking"]))
        now = turn.now
        actor = f"renter:{turn.renter_id}"

        async def cancel(conn: BaseDBAsyncClient) -> Outcome:
            return await self.cancel_booking(conn, booking, actor=actor, now=now, refund=None)

        refund = (
            self._refund_for(booking, now) if booking.state != BookingState.AWAITING_PAYMENT else 0
        )
        text = turn.t(
            "journey.cancelled",
            reference=booking.reference,
            refund=Money(refund, booking.currency).format(turn.language),
        )
        return StepResult(DialogState.START, {}, Outcome([Reply(text)]), apply=cancel)
