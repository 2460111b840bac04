"""A booking's pickup and return as the renter goes through them: the Handover row's progress
(photos sent, answers given) and the booking's pickup fact, each set by a guarded update in
the caller's unit of work, the row locked so two workers see each other's step."""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.models import Booking, ConditionPhoto, Handover, HandoverKind, Message
from storage.returns import RETURNABLE_STATES


async def open_handover_of(
    renter_id: int, conn: BaseDBAsyncClient | None = None
) -> Handover | None:
    """The pickup or return the renter's photos and answers go to, of those under way (begun,
    not completed) on bookings still theirs to pick up or return: a return first (the renter
    asked for it), else the one begun first. The others wait their turn."""
    found = (
        await Handover.filter(
            booking__renter_id=renter_id,
            booking__state__in=RETURNABLE_STATES,
            booking__returned_at__isnull=True,
            completed_at__isnull=True,
        )
        .using_db(conn)
        .order_by("started_at", "id")
    )
    returns = [handover for handover in found if handover.kind == HandoverKind.RETURN]
    first = returns or found
    return first[0] if first else None


async def close_pickup(conn: BaseDBAsyncClient, booking_id: int, at: datetime) -> None:
    """The booking's pickup left unfinished is closed as its return begins: the renter's
    photos and answers go to the return from now on."""
    await (
        Handover.filter(booking_id=booking_id, kind=HandoverKind.PICKUP, completed_at__isnull=True)
        .using_db(conn)
        .update(completed_at=at)
    )


async def begin_handover(
    conn: BaseDBAsyncClient, booking_id: int, kind: HandoverKind, at: datetime
) -> Handover:
    """The booking's handover of ``kind``: the one begun already, else a new one."""
    found = await Handover.filter(booking_id=booking_id, kind=kind).using_db(conn).first()
    if found is not None:
        return found
    handover, _ = await Handover.get_or_create(
        booking_id=booking_id, kind=kind, defaults={"started_at": at}, using_db=conn
    )
    return handover


async def locked_handover(conn: BaseDBAsyncClient, handover_id: int) -> Handover | None:
    return await Handover.filter(id=handover_id).using_db(conn).select_for_update().first()


async def add_photo(
    conn: BaseDBAsyncClient,
    handover: Handover,
    prompt: str,
    sealed: str,
    content_type: str,
    at: datetime,
) -> ConditionPhoto:
    """Store the photo answering the handover's next prompt and count it."""
    photo = await ConditionPhoto.create(
        booking_id=handover.booking_id,
        kind=handover.kind,
        position=handover.photos_done,
        prompt=prompt[:200],
        image_encrypted=sealed,
        content_type=content_type[:64],
        created_at=at,
        using_db=conn,
    )
    handover.photos_done += 1
    await Handover.filter(id=handover.id).using_db(conn).update(photos_done=handover.photos_done)
    return photo


async def add_answer(conn: BaseDBAsyncClient, handover: Handover, yes: bool) -> None:
    handover.answers = [*handover.answers, yes]
    await Handover.filter(id=handover.id).using_db(conn).update(answers=handover.answers)


async def complete_handover(conn: BaseDBAsyncClient, handover: Handover, at: datetime) -> bool:
    """Mark the handover completed; False when it was already (nothing changed)."""
    changed = await (
        Handover.filter(id=handover.id, completed_at__isnull=True)
        .using_db(conn)
        .update(completed_at=at)
    )
    if changed:
        handover.completed_at = at
    return bool(changed)


async def note_pickup_done(conn: BaseDBAsyncClient, booking: Booking, at: datetime) -> bool:
    """Record that the pickup checklist and photos are done; False when they were already."""
    changed = await (
        Booking.filter(id=booking.id, pickup_done_at__isnull=True)
        .using_db(conn)
        .update(pickup_done_at=at)
    )
    if changed:
        booking.pickup_done_at = at
    return bool(changed)


async def forget_inbound_media(
    conn: BaseDBAsyncClient, conversation_id: int, provider_id: str
) -> None:
    """Blank the media references of the inbound message whose photo was stored sealed and
    deleted where the channel kept it."""
    await (
        Message.filter(conversation_id=conversation_id, direction="in", provider_id=provider_id)
        .using_db(conn)
        .update(media=[])
    )
