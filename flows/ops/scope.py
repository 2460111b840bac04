"""Which locations an operator alert is about, so that a member's location scope holds for an
alert's buttons (Resolve, Retry) as it does for the commands.

An alert names its subject in its group key (``lock-offline:<lock key>``,
``payment-failed:<booking reference>``, ``effect:<outbox id>``, ...); the subject leads to a
lock, a booking or a renter, and so to locations. An alert that leads to none (a renter new to
every location, a problem of the whole business) binds no scope, as a renter without bookings
binds none for the commands.
"""

from __future__ import annotations

from tortoise.queryset import QuerySet

from flows.digits import DATABASE_ID_MAX, INT64_MAX, typed_int
from storage.columns import fits_column
from storage.models import (
    Asset,
    Booking,
    Conversation,
    IdentityCheck,
    Lock,
    Message,
    OpsAlert,
    OutboxEffect,
)

#: Group-key kinds whose subject is a lock's key.
_LOCK_KEYED = frozenset(
    {
        "code-rejected",
        "code-not-set",
        "lock-offline",
        "lock-battery",
        "lock-unmapped",
        "lock-drift",
        "lock-unreachable",
    }
)
#: Group-key kinds whose subject is a booking's reference.
_BOOKING_KEYED = frozenset(
    {
        "remote-open",
        "extension-conflict",
        "extension-lock",
        "cancelled",
        "payment-failed",
        "late-payment",
        "hold-expired",
        "identity-input",
        "deposit",
    }
)


async def alert_locations(alert: OpsAlert) -> frozenset[str]:
    """The slugs of the locations ``alert`` is about; empty when it is about none."""
    kind, _, subject = alert.group_key.partition(":")
    if kind in _LOCK_KEYED:
        if not fits_column(Lock, "key", subject):
            return frozenset()
        return await _lock_location(Lock.filter(key=subject))
    if kind in _BOOKING_KEYED:
        if not fits_column(Booking, "reference", subject):
            return frozenset()
        return await _booking_locations(Booking.filter(reference=subject))
    if kind == "effect":  # outbox ids are 64-bit
        effect_id = typed_int(subject, at_most=INT64_MAX)
        return frozenset() if effect_id is None else await _effect_locations(effect_id)
    number = typed_int(subject, at_most=DATABASE_ID_MAX)
    if number is None:
        return frozenset()
    if kind == "asset-without-lock":
        asset = await Asset.get_or_none(id=number).prefetch_related("location")
        return frozenset({asset.location.slug}) if asset is not None else frozenset()
    if kind == "code-cannot-be-revoked":
        return await _lock_location(Lock.filter(access_codes__id=number))
    if kind == "agent":
        return await _conversation_locations(number)
    if kind == "id-review":
        check = await IdentityCheck.get_or_none(id=number)
        if check is None:
            return frozenset()
        if check.booking_id is not None:
            return await _booking_locations(Booking.filter(id=check.booking_id))
        return await _booking_locations(Booking.filter(renter_id=check.renter_id))
    return frozenset()


async def _effect_locations(effect_id: int) -> frozenset[str]:
    """An outbox effect's locations, through the booking, code, lock or conversation it is for."""
    effect = await OutboxEffect.get_or_none(id=effect_id)
    if effect is None:
        return frozenset()
    ids = {
        name: typed_int(str(effect.payload.get(name, "")), at_most=DATABASE_ID_MAX)
        for name in ("booking", "code", "lock", "conversation")
    }
    message_id = typed_int(str(effect.payload.get("message", "")), at_most=INT64_MAX)
    if ids["booking"] is not None:
        return await _booking_locations(Booking.filter(id=ids["booking"]))
    if ids["code"] is not None:
        return await _lock_location(Lock.filter(access_codes__id=ids["code"]))
    if ids["lock"] is not None:
        return await _lock_location(Lock.filter(id=ids["lock"]))
    if ids["conversation"] is not None:
        return await _conversation_locations(ids["conversation"])
    if message_id is not None:
        message = await Message.get_or_none(id=message_id)
        if message is not None:
            return await _conversation_locations(message.conversation_id)
    return frozenset()


async def _lock_location(locks: QuerySet[Lock]) -> frozenset[str]:
    slugs = await locks.values_list("location__slug", flat=True)
    return frozenset(str(slug) for slug in slugs)


async def _booking_locations(bookings: QuerySet[Booking]) -> frozenset[str]:
    slugs = await bookings.values_list("asset__location__slug", flat=True)
    return frozenset(str(slug) for slug in slugs)


async def _conversation_locations(conversation_id: int) -> frozenset[str]:
    """Where the renter of the conversation has bookings (none: a renter new to everyone)."""
    conversation = await Conversation.get_or_none(id=conversation_id)
    if conversation is None or conversation.renter_id is None:
        return frozenset()
    return await _booking_locations(Booking.filter(renter_id=conversation.renter_id))
