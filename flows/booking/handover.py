"""The renter's side of a pickup and a return in the chat: RETURN starts the return, each
required photo is asked for in order (a photo in the chat goes to the collect effect), then
each checklist question with YES and NO ("no" is recorded as a report, not refused), then
"lock it and reply DONE"; DONE notes the return (``flows.returns``), says whether it is on
time, early or late, and ends the codes of an early return where the item says so."""

from __future__ import annotations

from datetime import datetime

from flows.access import LIVE_STATES
from flows.booking.common import stay
from flows.booking.handover_asks import (
    COLLECT_PHOTO_EFFECT,
    PHOTO,
    QUESTION,
    condition_report,
    next_ask,
)
from flows.booking.handover_pickup import PickupSteps
from flows.dialog import YES_NO_STATES, DialogState
from flows.effects import Audit, Effect, Outcome, Reply
from flows.engine import ReadChanged, StepResult, Turn
from flows.returns import (
    EARLY,
    confirms_by_gps,
    note_return_checklist,
    seen_home,
    timing_of,
)
from storage.handovers import (
    add_answer,
    begin_handover,
    close_pickup,
    complete_handover,
    locked_handover,
    open_handover_of,
)
from storage.models import AccessCode, Asset, Booking, BookingState, Handover, HandoverKind
from storage.returns import RETURNABLE_STATES
from storage.uow import UnitOfWork


async def returnable_booking(renter_id: int, now: datetime) -> Booking | None:
    """The renter's rental that may be returned now: under way since its start, or ended and
    not yet returned; the latest started."""
    return (
        await Booking.filter(
            renter_id=renter_id,
            state__in=RETURNABLE_STATES,
            start_at__lte=now,
            return_checklist_at__isnull=True,
            returned_at__isnull=True,
        )
        .order_by("-start_at")
        .first()
    )


async def waiting_for_gps(renter_id: int) -> Booking | None:
    """The renter's rental whose return is noted (DONE) and waits for the tracker to see the
    item home."""
    return await Booking.filter(
        renter_id=renter_id,
        state__in=RETURNABLE_STATES,
        return_checklist_at__isnull=False,
        returned_at__isnull=True,
    ).first()


class HandoverSteps(PickupSteps):
    """RETURN, DONE, the photos and the checklist's answers."""

    async def command(self, turn: Turn, command: str, args: list[str]) -> StepResult:
        if command == "return":
            return await self.start_return(turn)
        if command == "done":
            return await self.done(turn)
        return await super().command(turn, command, args)

    async def answer(self, turn: Turn, yes: bool) -> StepResult:
        if turn.state not in YES_NO_STATES:
            handover = await open_handover_of(turn.renter_id)
            if handover is not None:
                return await self.handover_answer(turn, handover, yes)
        return await super().answer(turn, yes)

    async def id_photo(self, turn: Turn) -> StepResult:
        """A photo is an ID where a booking awaits one, else a handover's photo."""
        if not await Booking.exists(renter_id=turn.renter_id, state=BookingState.AWAITING_ID):
            handover = await open_handover_of(turn.renter_id)
            if handover is not None:
                return await self.handover_photo(turn, handover)
        return await super().id_photo(turn)

    async def handover_text(self, turn: Turn) -> StepResult | None:
        """Text where the handover waits for a photo or an answer: asked again. None without
        a handover under way."""
        handover = await open_handover_of(turn.renter_id)
        if handover is None:
            return None
        return await self.ask_again(turn, handover)

    async def ask_again(self, turn: Turn, handover: Handover) -> StepResult:
        booking = await Booking.get(id=handover.booking_id)
        asset = await Asset.get(id=booking.asset_id)
        replies: list[Reply] = []
        voice = self.turn_voice(turn, booking, replies)
        ask = next_ask(asset, handover)
        if ask is None:
            await voice.say("handover.lock_and_done", {"item": asset.label}, ())
        else:
            key = "handover.not_a_photo" if ask.kind == PHOTO else "handover.yes_or_no"
            await voice.say(key, {}, ())
            await self.ask_next(asset, handover, voice)
        data = {"handover": handover.id}
        return StepResult(DialogState.HANDOVER, data, Outcome(replies), understood=False)

    async def handover_photo(self, turn: Turn, handover: Handover) -> StepResult:
        booking = await Booking.get(id=handover.booking_id)
        asset = await Asset.get(id=booking.asset_id)
        ask = next_ask(asset, handover)
        if ask is None or ask.kind != PHOTO:
            return await self.ask_again(turn, handover)
        message = turn.message
        taken = message.media[: ask.count - ask.index]
        effects = [
            Effect(
                COLLECT_PHOTO_EFFECT,
                f"handover-photo:{message.channel}:{message.provider_id}:{index}",
                {
                    "handover": handover.id,
                    "booking": booking.id,
                    "channel": message.channel,
                    "conversation": turn.conversation_id,
                    "message": message.provider_id,
                    "url": media.url,
                    "content_type": media.content_type,
                    "more": index + 1 < len(taken),
                },
            )
            for index, media in enumerate(taken)
        ]
        data = {"handover": handover.id}
        return StepResult(DialogState.HANDOVER, data, Outcome(effects=effects))

    async def handover_answer(self, turn: Turn, handover: Handover, yes: bool) -> StepResult:
        booking = await Booking.get(id=handover.booking_id)
        asset = await Asset.get(id=booking.asset_id)
        ask = next_ask(asset, handover)
        if ask is None or ask.kind != QUESTION:
            return await self.ask_again(turn, handover)

        async def record(conn: UnitOfWork) -> Outcome:
            current = await locked_handover(conn, handover.id)
            if current is None or current.completed_at or len(current.answers) != ask.index:
                raise ReadChanged(f"handover {handover.id} moved on meanwhile")
            await add_answer(conn, current, yes)
            fresh = await Booking.filter(id=booking.id).using_db(conn).get()
            replies: list[Reply] = []
            voice = self.turn_voice(turn, fresh, replies)
            outcome = await self.advance(conn, fresh, asset, current, turn.now, voice)
            outcome.replies.extend(replies)
            details = {"kind": str(current.kind), "question": ask.text, "yes": yes}
            subject = f"booking:{booking.reference}"
            audit = Audit(f"renter:{turn.renter_id}", "handover.answer", subject, details)
            return outcome + Outcome(audits=[audit])

        last = ask.index + 1 == ask.count and handover.kind == HandoverKind.PICKUP
        state = DialogState.BOOKED if last else DialogState.HANDOVER
        return StepResult(state, {"handover": handover.id}, apply=record)

    async def nothing_to_finish(self, turn: Turn, key: str) -> StepResult:
        """RETURN or DONE with no return to start or finish: a noted return that waits for
        GPS says so, else ``key``."""
        waiting = await waiting_for_gps(turn.renter_id)
        if waiting is None:
            return stay(turn, turn.t(key))
        asset = await Asset.get(id=waiting.asset_id)
        return stay(turn, turn.t("handover.return_waits_for_gps", item=asset.label))

    async def start_return(self, turn: Turn) -> StepResult:
        under_way = await open_handover_of(turn.renter_id)
        if under_way is not None and under_way.kind == HandoverKind.RETURN:
            return await self.ask_again(turn, under_way)  # one return at a time
        booking = await returnable_booking(turn.renter_id, turn.now)
        if booking is None:
            return await self.nothing_to_finish(turn, "handover.nothing_to_return")
        asset = await Asset.get(id=booking.asset_id)

        async def begin(conn: UnitOfWork) -> Outcome:
            await close_pickup(conn, booking.id, turn.now)
            handover = await begin_handover(conn, booking.id, HandoverKind.RETURN, turn.now)
            replies: list[Reply] = []
            voice = self.turn_voice(turn, booking, replies)
            await voice.say(
                "handover.return_intro", {"item": asset.label, "reference": booking.reference}, ()
            )
            outcome = await self.advance(conn, booking, asset, handover, turn.now, voice)
            outcome.replies.extend(replies)
            return outcome

        return StepResult(DialogState.HANDOVER, {"booking": booking.reference}, apply=begin)

    async def done(self, turn: Turn) -> StepResult:
        handover = await open_handover_of(turn.renter_id)
        if handover is None or handover.kind != HandoverKind.RETURN:
            return await self.nothing_to_finish(turn, "handover.done_outside")
        booking = await Booking.get(id=handover.booking_id)
        asset = await Asset.get(id=booking.asset_id)
        if next_ask(asset, handover) is not None:
            return await self.ask_again(turn, handover)
        now = turn.now
        rules = self.settings.returns
        timing = timing_of(booking, asset, now)
        waits_for_gps = await confirms_by_gps(None, asset, rules)
        ends_codes = asset.early_return_ends_codes and timing == EARLY
        lines = [turn.t(f"handover.return_noted_{timing}", item=asset.label)]
        if waits_for_gps and not seen_home(asset):
            # On time or late is known only once the tracker sees it home: not said yet.
            lines = [turn.t("handover.return_noted", item=asset.label)]
            lines.append(turn.t("handover.return_waits_for_gps", item=asset.label))
        if ends_codes:
            lines.append(turn.t("handover.codes_ended"))

        async def note(conn: UnitOfWork) -> Outcome:
            current = await locked_handover(conn, handover.id)
            if current is None or not await complete_handover(conn, current, now):
                raise ReadChanged(f"return {handover.id} was finished meanwhile")
            # Told before the confirmation that may follow in the same write.
            await self.notifier.tell(
                conn,
                booking.renter_id,
                "handover.noted",
                now=now,
                params={"text": "\n".join(lines)},
            )
            outcome = Outcome()
            if ends_codes:  # first: the damage review counts from when the codes stop
                codes = await AccessCode.filter(
                    booking_id=booking.id, state__in=LIVE_STATES
                ).using_db(conn)
                outcome += await self.access.revoke(
                    conn, codes, actor=f"renter:{turn.renter_id}", reason="returned early"
                )
            outcome += await note_return_checklist(conn, booking.id, now, rules, self.notifier)
            outcome.effects.append(condition_report(booking, HandoverKind.RETURN))
            return outcome + await self.ask_following(conn, booking.renter_id, now)

        return StepResult(DialogState.BOOKED, {}, apply=note)
