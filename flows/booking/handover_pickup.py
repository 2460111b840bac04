"""The pickup: where an item's PIN waits for its pickup checklist (``pin_after_checklist``),
the PIN timer sends only the location's shared gate codes and asks for the pickup's photos and
checklist, and CODE shows only those codes until they are done; the item's own PIN goes out
through the PIN timer's path once they are. Without it, the PIN comes as before and the pickup
is asked for when the rental starts."""

from __future__ import annotations

from flows.booking.common import DELIVER_PIN_TIMER, PIN_RECHECK, stay
from flows.booking.handover_asks import asks_anything, pin_waits_for_pickup
from flows.booking.handover_photos import HandoverPhotos
from flows.booking.rental_timers import still_under_way
from flows.effects import Audit, Outcome, SetTimer, Write
from flows.engine import StepResult, Turn
from flows.timers import TimerFired
from storage.handovers import begin_handover
from storage.models import AccessCode, Asset, Booking, BookingState, Handover, HandoverKind
from storage.uow import UnitOfWork

UNDER_WAY = (BookingState.CONFIRMED, BookingState.ACTIVE)


class PickupSteps(HandoverPhotos):
    """The PIN's delivery and CODE, held back by a pickup checklist; the pickup asked for."""

    async def gate_text(
        self, booking: Booking, asset: Asset, gates: list[AccessCode], language: str
    ) -> str:
        """The shared gates' codes (if the location has any) and why the item's own comes later."""
        t = self.translator
        later = t.text(language, "handover.item_code_after_pickup", item=asset.label)
        if not gates:
            return t.text(language, "handover.no_gate_code", reference=booking.reference) + (
                "\n" + later
            )
        return await self.pin_text(booking, gates, language) + "\n" + later

    def shares_gate_pin(self, codes: list[AccessCode]) -> bool:
        """Whether the item's own PIN is a gate's too (the booking was planned before the
        item's PIN waited for its pickup check): the gate codes would open the item."""
        gates = {self.sealer.open(c.pin_encrypted) for c in codes if c.lock.shared}
        return any(
            self.sealer.open(c.pin_encrypted) in gates
            for c in codes
            if not c.lock.shared and c.pin_encrypted
        )

    def part_pins(self, booking: Booking) -> Write:
        """The write that gives the item codes of their own; the gates wait for them."""

        async def part(conn: UnitOfWork) -> Outcome:
            return await self.access.part_item_pins(conn, booking)

        return part

    async def on_deliver_pin(self, event: TimerFired) -> Outcome:
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        asset = await Asset.get(id=booking.asset_id)
        if booking.state not in UNDER_WAY or not pin_waits_for_pickup(asset, booking):
            return await super().on_deliver_pin(event)
        now = self.clock.now()
        ready = await self.set_codes(booking, now, settled=True)
        if ready is None or self.shares_gate_pin(ready.codes):
            if now >= booking.end_at:
                return Outcome()
            key = f"pin:{booking.reference}"
            recheck = SetTimer(DELIVER_PIN_TIMER, now + PIN_RECHECK, key, {"booking": booking.id})
            return Outcome(
                writes=[] if ready is None else [self.part_pins(booking)], timers=[recheck]
            )
        gates = [code for code in ready.codes if code.lock.shared]
        language = await self._language(None, booking)
        body = await self.gate_text(booking, asset, gates, language)
        variables = await self.pin_variables(booking, gates, language) if gates else None

        async def tell(conn: UnitOfWork) -> Outcome:
            current = await still_under_way(conn, booking.id)
            if current is None or current.pickup_done_at is not None:
                return Outcome()  # cancelled, ended, or picked up meanwhile (its PIN is due)
            await self.notifier.tell(
                conn,
                booking.renter_id,
                "journey.pin_message",
                now=now,
                kind="pin" if gates else "notice",
                params={"body": body},
                template_variables=variables,
            )
            handover = await begin_handover(conn, booking.id, HandoverKind.PICKUP, now)
            voice = await self.notifier_voice(conn, current, now)
            outcome = Outcome()
            if not await self.waits_its_turn(conn, handover, current, asset, voice):
                outcome = await self.advance(conn, current, asset, handover, now, voice)
            subject = f"booking:{booking.reference}"
            return outcome + Outcome(audits=[Audit("system", "booking.gate_codes_sent", subject)])

        return Outcome(writes=[*ready.writes, tell])

    async def on_start(self, event: TimerFired) -> Outcome:
        outcome = await super().on_start(event)
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        asset = await Asset.get(id=booking.asset_id)
        if (
            booking.state not in UNDER_WAY
            or booking.pickup_done_at is not None
            or asset.pin_after_checklist  # asked with the gate codes instead
            or not asks_anything(asset, HandoverKind.PICKUP)
        ):
            return outcome
        now = self.clock.now()

        async def ask(conn: UnitOfWork) -> Outcome:
            current = await still_under_way(conn, booking.id)
            if current is None or current.pickup_done_at is not None:
                return Outcome()
            if (
                await Handover.filter(booking_id=booking.id, kind=HandoverKind.PICKUP)
                .using_db(conn)
                .exists()
            ):
                return Outcome()  # asked already
            handover = await begin_handover(conn, booking.id, HandoverKind.PICKUP, now)
            voice = await self.notifier_voice(conn, current, now)
            if await self.waits_its_turn(conn, handover, current, asset, voice):
                return Outcome()
            await voice.say("handover.pickup_intro", {"item": asset.label}, ())
            return await self.advance(conn, current, asset, handover, now, voice)

        outcome.writes.append(ask)
        return outcome

    async def resend_code(self, turn: Turn, booking: Booking) -> StepResult:
        """CODE: the PIN as before, unless it waits for the pickup: then only the gate codes,
        and the pickup's next question again."""
        asset = await Asset.get(id=booking.asset_id)
        if not pin_waits_for_pickup(asset, booking):
            return await super().resend_code(turn, booking)
        ready = await self.set_codes(booking, turn.now)
        if ready is None or self.shares_gate_pin(ready.codes):
            result = stay(turn, turn.t("journey.code_not_ready"))
            result.outcome.writes += [] if ready is None else [self.part_pins(booking)]
            return result
        gates = [code for code in ready.codes if code.lock.shared]
        text = await self.gate_text(booking, asset, gates, turn.language)
        result = stay(turn, text, kind="pin" if gates else "reply")
        result.outcome.writes += ready.writes
        handover = await Handover.filter(
            booking_id=booking.id, kind=HandoverKind.PICKUP, completed_at__isnull=True
        ).first()
        if handover is not None:
            await self.ask_next(
                asset, handover, self.turn_voice(turn, booking, result.outcome.replies)
            )
        return result
