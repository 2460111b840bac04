"""A pickup's or return's progress: a photo stored sealed (from the chat through the collect
effect, or through an upload link), an answer recorded, and what the renter is asked next —
in the turn's replies when the renter's message moved it on, through the notifier when a
follow-up did."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from flows.booking.common import DELIVER_PIN_TIMER
from flows.booking.handover_asks import (
    MAX_PHOTO_BYTES,
    PHOTO,
    PHOTO_TYPES,
    QUESTION,
    ask_message,
    condition_report,
    next_ask,
    photos_of,
    yes_no_choices,
)
from flows.booking.steps_manage import ManageSteps
from flows.dialog import YES_NO_STATES, DialogState
from flows.effects import Audit, FollowUp, Outcome, Reply, SetTimer
from flows.engine import Turn
from flows.media_types import stored_type
from flows.messages import Choice
from flows.upload_links import CONDITION_PHOTO, UploadGrant
from storage.dialog_states import move_states
from storage.handovers import (
    add_photo,
    complete_handover,
    forget_inbound_media,
    locked_handover,
    note_pickup_done,
    open_handover_of,
)
from storage.models import Asset, Booking, Handover, HandoverKind, OutboxEffect, Renter
from storage.uow import UnitOfWork

#: Says one message to the renter: its key, parameters and choices.
Say = Callable[[str, Mapping[str, object], tuple[Choice, ...]], Awaitable[None]]


@dataclass(frozen=True)
class Voice:
    """How the renter is spoken to where the handover moved on: in their language, in the
    turn's replies or through the notifier, with an upload link where their chat needs one."""

    language: str
    say: Say
    link: Callable[[], Awaitable[str | None]]


class HandoverPhotos(ManageSteps):
    """The handover's progress and the photo effects."""

    def turn_voice(self, turn: Turn, booking: Booking, replies: list[Reply]) -> Voice:
        async def say(key: str, params: Mapping[str, object], choices: tuple[Choice, ...]) -> None:
            replies.append(Reply(turn.t(key, **params), choices))

        async def link() -> str | None:
            message = turn.message
            return self._link_for(
                message.channel, message.address, turn.renter_id, booking.id, CONDITION_PHOTO
            )

        return Voice(turn.language, say, link)

    async def notifier_voice(self, conn: UnitOfWork, booking: Booking, now: datetime) -> Voice:
        """The notifier's voice. A YES/NO question it asks is the one the renter's next YES or
        NO answers: a quote or a cancel question left open in their chat lapses (their
        conversations in such a state move to the handover's, in this write)."""

        async def say(key: str, params: Mapping[str, object], choices: tuple[Choice, ...]) -> None:
            if choices:
                await move_states(
                    conn,
                    booking.renter_id,
                    from_states=YES_NO_STATES,
                    to=DialogState.HANDOVER,
                    at=now,
                )
            await self.notifier.tell(
                conn, booking.renter_id, key, now=now, params=params, choices=choices
            )

        async def link() -> str | None:
            renter = await Renter.filter(id=booking.renter_id).using_db(conn).get()
            return await self._upload_link(conn, renter, booking, CONDITION_PHOTO)

        return Voice(await self._language(conn, booking), say, link)

    async def ask_next(self, asset: Asset, handover: Handover, voice: Voice) -> bool:
        """Ask the handover's next photo or question; False when nothing is left to ask."""
        ask = next_ask(asset, handover)
        if ask is None:
            return False
        link = await voice.link() if ask.kind == PHOTO else None
        key, params = ask_message(ask, link)
        choices = yes_no_choices(self.translator, voice.language) if ask.kind == QUESTION else ()
        await voice.say(key, params, choices)
        return True

    async def advance(
        self,
        conn: UnitOfWork,
        booking: Booking,
        asset: Asset,
        handover: Handover,
        now: datetime,
        voice: Voice,
    ) -> Outcome:
        """After a photo or an answer: the next ask, or the end of the renter's part (a pickup
        is done; a return waits for the item locked and DONE)."""
        if await self.ask_next(asset, handover, voice):
            return Outcome()
        if handover.kind == HandoverKind.PICKUP:
            return await self.finish_pickup(conn, booking, asset, handover, now, voice)
        await voice.say("handover.lock_and_done", {"item": asset.label}, ())
        return Outcome()

    async def finish_pickup(
        self,
        conn: UnitOfWork,
        booking: Booking,
        asset: Asset,
        handover: Handover,
        now: datetime,
        voice: Voice,
    ) -> Outcome:
        """The pickup's photos and checklist are done: recorded, reported to the operators,
        and where the item's PIN waited for them, its delivery is due now (the PIN timer's
        path sends it, once the codes are set)."""
        if not await complete_handover(conn, handover, now):
            return Outcome()
        gated = asset.pin_after_checklist and booking.pickup_done_at is None
        await note_pickup_done(conn, booking, now)
        ref = booking.reference
        outcome = Outcome(
            effects=[condition_report(booking, HandoverKind.PICKUP)],
            audits=[Audit(f"renter:{booking.renter_id}", "booking.pickup_done", f"booking:{ref}")],
        )
        if gated:
            outcome.timers.append(
                SetTimer(DELIVER_PIN_TIMER, now, f"pin:{ref}", {"booking": booking.id})
            )
        key = "handover.pickup_done_pin" if gated else "handover.pickup_done"
        await voice.say(key, {"item": asset.label}, ())
        return outcome + await self.ask_following(conn, booking.renter_id, now, voice)

    async def ask_following(
        self, conn: UnitOfWork, renter_id: int, now: datetime, voice: Voice | None = None
    ) -> Outcome:
        """A handover done: the renter's next one that waited for it (another booking's
        pickup) is asked now, in ``voice`` where the renter's message finished it."""
        handover = await open_handover_of(renter_id, conn)
        if handover is None:
            return Outcome()
        booking = await Booking.filter(id=handover.booking_id).using_db(conn).get()
        asset = await Asset.filter(id=booking.asset_id).using_db(conn).get()
        told = await self.notifier_voice(conn, booking, now)
        if voice is not None:  # the same conversation, with this booking's upload link
            told = Voice(voice.language, voice.say, told.link)
        await told.say(
            "handover.next_up", {"item": asset.label, "reference": booking.reference}, ()
        )
        return await self.advance(conn, booking, asset, handover, now, told)

    async def waits_its_turn(
        self, conn: UnitOfWork, handover: Handover, booking: Booking, asset: Asset, voice: Voice
    ) -> bool:
        """Whether another of the renter's handovers is under way, so ``handover`` is not
        asked now (the renter hears it comes next)."""
        current = await open_handover_of(booking.renter_id, conn)
        if current is None or current.id == handover.id:
            return False
        params = {"item": asset.label, "reference": booking.reference}
        await voice.say("handover.pickup_waits", params, ())
        return True

    async def store_photo(
        self,
        conn: UnitOfWork,
        handover_id: int,
        sealed: str,
        content_type: str,
        now: datetime,
        *,
        more: bool = False,
    ) -> Outcome | None:
        """Store a photo as the answer to the handover's next photo prompt and ask what comes
        after (``more``: the same message carries the next photo, which is not asked for);
        None when no photo is awaited (the handover is done or has all its photos)."""
        handover = await locked_handover(conn, handover_id)
        if handover is None or handover.completed_at is not None:
            return None
        booking = await Booking.filter(id=handover.booking_id).using_db(conn).get()
        asset = await Asset.filter(id=booking.asset_id).using_db(conn).get()
        photos = photos_of(asset, handover.kind)
        if handover.photos_done >= len(photos):
            return None
        await add_photo(conn, handover, photos[handover.photos_done], sealed, content_type, now)
        if more and handover.photos_done < len(photos):
            return Outcome()
        voice = await self.notifier_voice(conn, booking, now)
        return await self.advance(conn, booking, asset, handover, now, voice)

    async def execute_handover_photo(self, effect: OutboxEffect) -> FollowUp | None:
        """Fetch a condition photo from the channel, check it (its type by its bytes, not the
        channel's word), seal it, delete it where the channel keeps it; the follow-up stores it
        and asks the next thing."""
        payload = effect.payload
        channel, url = str(payload["channel"]), str(payload.get("url") or "")
        handover_id = int(str(payload["handover"]))
        now = self.clock.now()
        try:
            if not url:
                raise ValueError("the photo's reference is gone")
            content, declared = await self.fetch_media(channel, url)
            content_type = stored_type(content, declared, PHOTO_TYPES)
            if content_type is None or len(content) > MAX_PHOTO_BYTES:
                raise ValueError(f"not a photo: declared {declared}, {len(content)} bytes")
        except ValueError:
            return self._photo_unreadable(handover_id, now)
        sealed = self.sealer.seal_bytes(content)
        await self.delete_media(channel, url)

        async def store(conn: UnitOfWork) -> Outcome:
            await forget_inbound_media(
                conn, int(str(payload["conversation"])), str(payload["message"])
            )
            more = bool(payload.get("more"))
            stored = await self.store_photo(conn, handover_id, sealed, content_type, now, more=more)
            return stored or Outcome()

        return store

    def _photo_unreadable(self, handover_id: int, now: datetime) -> FollowUp:
        async def tell(conn: UnitOfWork) -> Outcome:
            handover = await locked_handover(conn, handover_id)
            if handover is None or handover.completed_at is not None:
                return Outcome()
            booking = await Booking.filter(id=handover.booking_id).using_db(conn).get()
            asset = await Asset.filter(id=booking.asset_id).using_db(conn).get()
            ask = next_ask(asset, handover)
            if ask is None or ask.kind != PHOTO:
                return Outcome()
            voice = await self.notifier_voice(conn, booking, now)
            await voice.say("handover.photo_unreadable", {"what": ask.text}, ())
            return Outcome()

        return tell

    async def receive_uploaded_photo(
        self,
        conn: UnitOfWork,
        grant: UploadGrant,
        content: bytes,
        content_type: str,
        now: datetime,
    ) -> Outcome | None:
        """A condition photo sent through an upload link (``content_type``: what its bytes
        show): stored like one from the chat. None when the link is no condition-photo link or
        no photo is awaited (nothing is stored)."""
        if grant.purpose != CONDITION_PHOTO or content_type not in PHOTO_TYPES:
            return None
        handover = await (
            Handover.filter(
                booking_id=grant.booking_id,
                booking__renter_id=grant.renter_id,
                completed_at__isnull=True,
            )
            .using_db(conn)
            .order_by("-started_at")
            .first()
        )
        if handover is None:
            return None
        sealed = self.sealer.seal_bytes(content)
        return await self.store_photo(conn, handover.id, sealed, content_type, now)

    async def awaits_uploaded_photo(self, grant: UploadGrant) -> bool:
        """Whether an upload link's form is worth showing: a condition photo is awaited."""
        if grant.purpose != CONDITION_PHOTO:
            return False
        handover = await Handover.filter(
            booking_id=grant.booking_id,
            booking__renter_id=grant.renter_id,
            completed_at__isnull=True,
        ).first()
        if handover is None:
            return False
        asset = await Asset.get(bookings__id=grant.booking_id)
        ask = next_ask(asset, handover)
        return ask is not None and ask.kind == PHOTO
