"""Tortoise models for the whole Keyturn domain.

All datetimes are stored in UTC. Enumerations are stored as short strings so that the rows stay
readable from psql and sqlite3 alike.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


class BookingState(StrEnum):
    DRAFT = "draft"
    AWAITING_PAYMENT = "awaiting_payment"
    AWAITING_ID = "awaiting_id"
    CONFIRMED = "confirmed"
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


#: States in which a booking holds its asset. The database refuses two such bookings whose
#: blocked ranges overlap.
SLOT_HOLDING_STATES: tuple[BookingState, ...] = (
    BookingState.AWAITING_PAYMENT,
    BookingState.AWAITING_ID,
    BookingState.CONFIRMED,
    BookingState.ACTIVE,
)


class AccessCodeState(StrEnum):
    PENDING = "pending"
    PROGRAMMING = "programming"
    SET = "set"
    REMOVING = "removing"
    REMOVED = "removed"
    FAILED = "failed"


class StaffRole(StrEnum):
    OWNER = "owner"
    MANAGER = "manager"
    SUPPORT = "support"
    MAINTENANCE = "maintenance"


class EffectState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


class TimerState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    CANCELLED = "cancelled"


class Location(Model):
    id = fields.IntField(primary_key=True)
    slug = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=200)
    address = fields.CharField(max_length=500, default="")
    timezone = fields.CharField(max_length=64)
    buffer_before_minutes = fields.IntField(default=15)
    buffer_after_minutes = fields.IntField(default=15)
    #: How many days ahead a booking may start here (None: KEYTURN_BOOKING_HORIZON_DAYS).
    booking_horizon_days = fields.IntField(null=True)
    #: Minutes before a booking that its codes are programmed (None: KEYTURN_CODE_LEAD_MINUTES).
    code_lead_minutes = fields.IntField(null=True)
    #: Minutes before a booking by which its codes must be set (None:
    #: KEYTURN_CONFIRM_BEFORE_MINUTES).
    confirm_before_minutes = fields.IntField(null=True)
    #: Minutes before a booking that its PIN is sent (None: KEYTURN_PIN_LEAD_MINUTES).
    pin_lead_minutes = fields.IntField(null=True)
    #: The Traccar geofence that is the location's yard, where its items live between rentals
    #: (None: its items' returns are confirmed by the return checklist alone).
    home_geofence_id = fields.BigIntField(null=True)
    opening_rules: fields.Field[dict[str, object]] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "location"


class Asset(Model):
    if TYPE_CHECKING:  # the foreign keys' id columns, which Tortoise adds
        location_id: int

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=16, unique=True)
    label = fields.CharField(max_length=200)
    location: fields.ForeignKeyRelation[Location] = fields.ForeignKeyField(
        "models.Location", related_name="assets", on_delete=fields.RESTRICT
    )
    # Every ``*_cents`` column, here and on bookings, extensions and payments, holds whole
    # minor units of the row's currency as ISO/CLDR count them (cents, yen, fils): what
    # ``storage.money.Money(amount, currency)`` means. Stripe's own units are the adapter's.
    currency = fields.CharField(max_length=3, default="USD")
    price_per_hour_cents = fields.IntField(default=0)
    price_per_day_cents = fields.IntField(default=0)
    deposit_cents = fields.IntField(default=0)
    min_duration_minutes = fields.IntField(default=60)
    max_duration_minutes = fields.IntField(default=7 * 24 * 60)
    buffer_before_minutes = fields.IntField(null=True)
    buffer_after_minutes = fields.IntField(null=True)
    #: The item's GPS tracker: Traccar's numeric device id (None: no GPS).
    traccar_device_id = fields.BigIntField(null=True)
    #: Yes/no questions asked at pickup and at return ("Lights work?"), in the file's order.
    pickup_checklist: fields.Field[list[str]] = fields.JSONField(default=list)
    return_checklist: fields.Field[list[str]] = fields.JSONField(default=list)
    #: What each required photo shows ("the hitch"), asked for one by one.
    pickup_photos: fields.Field[list[str]] = fields.JSONField(default=list)
    return_photos: fields.Field[list[str]] = fields.JSONField(default=list)
    #: The item's own PIN is sent only once the pickup checklist is done; the location's shared
    #: gates' codes come at the usual lead time.
    pin_after_checklist = fields.BooleanField(default=False)
    #: Charged per started hour of a return later than ``late_grace_minutes`` past the end.
    late_fee_per_hour_cents = fields.IntField(default=0)
    late_grace_minutes = fields.IntField(default=15)
    #: An early return ends the rental's codes at once (not at the booked end).
    early_return_ends_codes = fields.BooleanField(default=False)
    #: Whether GPS last saw the item inside its location's home geofence, and the event time of
    #: that sighting; an older event arriving late never overrides a newer one.
    gps_home = fields.BooleanField(null=True)
    gps_home_at = fields.DatetimeField(null=True)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "asset"


class Lock(Model):
    if TYPE_CHECKING:  # the foreign keys' id columns, which Tortoise adds
        location_id: int

    id = fields.IntField(primary_key=True)
    key = fields.CharField(max_length=64, unique=True)
    provider = fields.CharField(max_length=32)
    device_id = fields.CharField(max_length=200)
    label = fields.CharField(max_length=200)
    timezone = fields.CharField(max_length=64)
    location: fields.ForeignKeyRelation[Location] = fields.ForeignKeyField(
        "models.Location", related_name="locks", on_delete=fields.RESTRICT
    )
    #: A shared lock (a main gate) is opened by every booking at its location.
    shared = fields.BooleanField(default=False)
    capabilities: fields.Field[dict[str, object]] = fields.JSONField(default=dict)
    code_constraints: fields.Field[dict[str, object]] = fields.JSONField(default=dict)
    online = fields.BooleanField(null=True)
    battery_level = fields.FloatField(null=True)
    last_event_at = fields.DatetimeField(null=True)
    retired_at = fields.DatetimeField(null=True)
    #: The device's pace, shared by every worker (``storage.pacing``): per kind of call (code
    #: creations, updates) the slots taken lately and the earliest the next may be, so no more
    #: go out in a minute than its provider takes.
    code_pace: fields.Field[dict[str, object] | None] = fields.JSONField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "lock"
        unique_together = (("provider", "device_id"),)


class AssetLock(Model):
    if TYPE_CHECKING:  # the foreign keys' id columns, which Tortoise adds
        asset_id: int
        lock_id: int

    id = fields.IntField(primary_key=True)
    asset: fields.ForeignKeyRelation[Asset] = fields.ForeignKeyField(
        "models.Asset", related_name="lock_mappings", on_delete=fields.CASCADE
    )
    lock: fields.ForeignKeyRelation[Lock] = fields.ForeignKeyField(
        "models.Lock", related_name="asset_mappings", on_delete=fields.CASCADE
    )

    class Meta:
        table = "asset_lock"
        unique_together = (("asset", "lock"),)


class Renter(Model):
    id = fields.IntField(primary_key=True)
    phone = fields.CharField(max_length=20, null=True, unique=True)
    telegram_id = fields.BigIntField(null=True, unique=True)
    name = fields.CharField(max_length=200, default="")
    language = fields.CharField(max_length=8, null=True)
    opted_out = fields.BooleanField(default=False)
    opted_out_at = fields.DatetimeField(null=True)
    verified_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "renter"


class Conversation(Model):
    if TYPE_CHECKING:  # the foreign keys' id columns, which Tortoise adds
        renter_id: int | None

    id = fields.IntField(primary_key=True)
    channel = fields.CharField(max_length=16)
    address = fields.CharField(max_length=100)
    renter: fields.ForeignKeyNullableRelation[Renter] = fields.ForeignKeyField(
        "models.Renter", related_name="conversations", null=True, on_delete=fields.SET_NULL
    )
    state = fields.CharField(max_length=40, default="start")
    data: fields.Field[dict[str, object]] = fields.JSONField(default=dict)
    language = fields.CharField(max_length=8, null=True)
    #: Telegram user id of the staff member who took the conversation over (None: the bot).
    agent_id = fields.BigIntField(null=True)
    agent_since = fields.DatetimeField(null=True)
    #: The forum topic in the ops group where staff talk with this renter (None: none yet).
    agent_thread_id = fields.BigIntField(null=True)
    last_inbound_at = fields.DatetimeField(null=True)
    #: Bumped on every turn. A turn computed from an older version is recomputed, not saved.
    version = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "conversation"
        unique_together = (("channel", "address"),)


class Message(Model):
    if TYPE_CHECKING:  # the foreign keys' id columns, which Tortoise adds
        conversation_id: int

    id = fields.BigIntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="messages", on_delete=fields.CASCADE
    )
    direction = fields.CharField(max_length=3)  # "in" or "out"
    body = fields.TextField(default="")
    media: fields.Field[list[object]] = fields.JSONField(default=list)
    #: True when ``body`` is Fernet-encrypted: messages that carry a PIN are sealed at rest.
    sealed = fields.BooleanField(default=False)
    #: The numbered choices or buttons an outbound message offered, as [value, label] pairs.
    choices: fields.Field[list[object]] = fields.JSONField(default=list)
    provider_id = fields.CharField(max_length=100, null=True)
    status = fields.CharField(max_length=16, default="received")
    created_at = fields.DatetimeField()

    class Meta:
        table = "message"


class Booking(Model):
    if TYPE_CHECKING:  # the foreign keys' id columns, which Tortoise adds
        renter_id: int
        asset_id: int

    id = fields.IntField(primary_key=True)
    reference = fields.CharField(max_length=12, unique=True)
    renter: fields.ForeignKeyRelation[Renter] = fields.ForeignKeyField(
        "models.Renter", related_name="bookings", on_delete=fields.RESTRICT
    )
    asset: fields.ForeignKeyRelation[Asset] = fields.ForeignKeyField(
        "models.Asset", related_name="bookings", on_delete=fields.RESTRICT
    )
    start_at = fields.DatetimeField()
    end_at = fields.DatetimeField()
    #: The turnaround: the item is taken from ``blocked_from`` to ``blocked_until`` (the rental
    #: widened by the buffers in force when it was booked), which is also its codes' window. The
    #: database refuses two slot-holding bookings of one item whose blocked ranges overlap.
    blocked_from = fields.DatetimeField()
    blocked_until = fields.DatetimeField()
    state = fields.CharEnumField(BookingState, max_length=20, default=BookingState.DRAFT)
    currency = fields.CharField(max_length=3)
    price_cents = fields.IntField()
    deposit_cents = fields.IntField(default=0)
    hold_expires_at = fields.DatetimeField(null=True)
    cancelled_at = fields.DatetimeField(null=True)
    cancel_reason = fields.CharField(max_length=200, default="")
    #: The pickup checklist and photos done (None: not yet, or the item asks for none).
    pickup_done_at = fields.DatetimeField(null=True)
    #: The renter finished the return checklist and said the item is locked (DONE).
    return_checklist_at = fields.DatetimeField(null=True)
    #: GPS saw the item back inside its home geofence after the pickup.
    returned_home_at = fields.DatetimeField(null=True)
    #: The return confirmed: the checklist, and GPS home for an item with GPS. Its moment is the
    #: later of the two. The deposit is released only after it (``storage.returns``).
    returned_at = fields.DatetimeField(null=True)
    #: "on_time", "early" or "late" once returned.
    return_timing = fields.CharField(max_length=8, default="")
    late_fee_cents = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "booking"


class Payment(Model):
    if TYPE_CHECKING:  # the foreign keys' id columns, which Tortoise adds
        booking_id: int

    id = fields.IntField(primary_key=True)
    booking: fields.ForeignKeyRelation[Booking] = fields.ForeignKeyField(
        "models.Booking", related_name="payments", on_delete=fields.RESTRICT
    )
    provider = fields.CharField(max_length=16)
    purpose = fields.CharField(max_length=16)  # rental, deposit, extension, refund, claim
    amount_cents = fields.IntField()
    currency = fields.CharField(max_length=3)
    status = fields.CharField(max_length=24, default="created")
    provider_ref = fields.CharField(max_length=200, null=True, unique=True)
    idempotency_key = fields.CharField(max_length=120, unique=True)
    #: Provider detail needed later: the payment intent, the saved customer and card, the URL.
    details: fields.Field[dict[str, object]] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "payment"


class Extension(Model):
    if TYPE_CHECKING:  # the foreign keys' id columns, which Tortoise adds
        booking_id: int

    id = fields.IntField(primary_key=True)
    booking: fields.ForeignKeyRelation[Booking] = fields.ForeignKeyField(
        "models.Booking", related_name="extensions", on_delete=fields.CASCADE
    )
    old_end_at = fields.DatetimeField()
    new_end_at = fields.DatetimeField()
    price_cents = fields.IntField()
    state = fields.CharField(max_length=16, default="quoted")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "extension"


class StaffMember(Model):
    id = fields.IntField(primary_key=True)
    telegram_user_id = fields.BigIntField(unique=True)
    name = fields.CharField(max_length=200)
    role = fields.CharEnumField(StaffRole, max_length=16)
    #: Location slugs the member may act on. An empty list means every location.
    location_scope: fields.Field[list[str]] = fields.JSONField(default=list)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "staff_member"


class AccessCode(Model):
    if TYPE_CHECKING:  # the foreign keys' id columns, which Tortoise adds
        booking_id: int | None
        staff_id: int | None
        lock_id: int

    id = fields.IntField(primary_key=True)
    booking: fields.ForeignKeyNullableRelation[Booking] = fields.ForeignKeyField(
        "models.Booking", related_name="access_codes", null=True, on_delete=fields.RESTRICT
    )
    staff: fields.ForeignKeyNullableRelation[StaffMember] = fields.ForeignKeyField(
        "models.StaffMember", related_name="access_codes", null=True, on_delete=fields.RESTRICT
    )
    lock: fields.ForeignKeyRelation[Lock] = fields.ForeignKeyField(
        "models.Lock", related_name="access_codes", on_delete=fields.RESTRICT
    )
    label = fields.CharField(max_length=100, default="")
    #: The PIN, Fernet-encrypted. Never stored or logged in clear.
    pin_encrypted = fields.TextField()
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    state = fields.CharEnumField(AccessCodeState, max_length=16, default=AccessCodeState.PENDING)
    offline = fields.BooleanField(default=False)
    provider_ref = fields.CharField(max_length=200, null=True)
    last_error = fields.CharField(max_length=500, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "access_code"
        indexes = (Index(fields=["booking_id"]),)


class IdentityCheck(Model):
    if TYPE_CHECKING:  # the foreign keys' id columns, which Tortoise adds
        renter_id: int
        booking_id: int | None

    id = fields.IntField(primary_key=True)
    renter: fields.ForeignKeyRelation[Renter] = fields.ForeignKeyField(
        "models.Renter", related_name="identity_checks", on_delete=fields.CASCADE
    )
    booking: fields.ForeignKeyNullableRelation[Booking] = fields.ForeignKeyField(
        "models.Booking", related_name="identity_checks", null=True, on_delete=fields.SET_NULL
    )
    method = fields.CharField(max_length=16)  # manual or stripe_identity
    #: pending, approved, rejected, or withdrawn (its booking cancelled before a decision).
    status = fields.CharField(max_length=16, default="pending")
    #: The document image, Fernet-encrypted. Set to None the moment the decision is made.
    document_encrypted = fields.TextField(null=True)
    document_content_type = fields.CharField(max_length=64, default="")
    provider_ref = fields.CharField(max_length=200, null=True)
    reviewer_id = fields.BigIntField(null=True)
    reason = fields.CharField(max_length=500, default="")
    decided_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "identity_check"


class AuditEvent(Model):
    """Append-only: who did what to which thing, and when."""

    id = fields.BigIntField(primary_key=True)
    at = fields.DatetimeField()
    actor = fields.CharField(max_length=64)
    action = fields.CharField(max_length=64)
    subject = fields.CharField(max_length=64, default="")
    details: fields.Field[dict[str, object]] = fields.JSONField(default=dict)

    class Meta:
        table = "audit_event"


class OpsAlert(Model):
    """An alert for the operators. Alerts with the same group key collapse into one."""

    id = fields.IntField(primary_key=True)
    kind = fields.CharField(max_length=40)
    group_key = fields.CharField(max_length=200)
    message_key = fields.CharField(max_length=80)
    params: fields.Field[dict[str, object]] = fields.JSONField(default=dict)
    occurrences = fields.IntField(default=1)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()
    resolved_at = fields.DatetimeField(null=True)
    resolved_by = fields.CharField(max_length=64, null=True)
    #: Only one open alert per group key. Resolved ones keep theirs for the record.
    open_key = fields.CharField(max_length=200, null=True, unique=True)
    #: The message in the ops group that shows this alert, edited on changes (None: not sent).
    telegram_message_id = fields.BigIntField(null=True)

    class Meta:
        table = "ops_alert"


class OutboxEffect(Model):
    """An effect a flow step asked for, executed at least once by the dispatcher."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=40)
    payload: fields.Field[dict[str, object]] = fields.JSONField(default=dict)
    idempotency_key = fields.CharField(max_length=200, unique=True)
    state = fields.CharEnumField(EffectState, max_length=8, default=EffectState.PENDING)
    #: Critical effects (revoking a code) are never given up on. A person decides.
    critical = fields.BooleanField(default=False)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    last_error = fields.CharField(max_length=500, default="")
    alerted = fields.BooleanField(default=False)
    #: The worker that claimed it last ("host/pid"): whose lease ``next_attempt_at`` is.
    claimed_by = fields.CharField(max_length=100, default="")
    created_at = fields.DatetimeField()
    done_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_effect"
        indexes = (("state", "next_attempt_at"),)


class Timer(Model):
    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=40)
    #: A timer with a key is unique while pending: setting it again moves it.
    key = fields.CharField(max_length=200, null=True, unique=True)
    payload: fields.Field[dict[str, object]] = fields.JSONField(default=dict)
    due_at = fields.DatetimeField()
    state = fields.CharEnumField(TimerState, max_length=10, default=TimerState.PENDING)
    attempts = fields.IntField(default=0)
    #: While a worker runs the timer, other workers leave it alone until this passes.
    claimed_until = fields.DatetimeField(null=True)
    #: The worker that claimed it last ("host/pid").
    claimed_by = fields.CharField(max_length=100, default="")
    created_at = fields.DatetimeField()
    fired_at = fields.DatetimeField(null=True)

    class Meta:
        table = "timer"
        indexes = (("state", "due_at"),)


class ProcessedWebhook(Model):
    """Provider event ids already handled, so a retried delivery is recognised and dropped."""

    id = fields.BigIntField(primary_key=True)
    provider = fields.CharField(max_length=16)
    event_id = fields.CharField(max_length=200)
    received_at = fields.DatetimeField()

    class Meta:
        table = "processed_webhook"
        unique_together = (("provider", "event_id"),)


class SimulatedCode(Model):
    """A code held by a simulated lock: what its keypad would accept, and when."""

    id = fields.IntField(primary_key=True)
    device_id = fields.CharField(max_length=200, db_index=True)
    name = fields.CharField(max_length=100, default="")
    #: The PIN, Fernet-encrypted like every PIN Keyturn keeps.
    pin_encrypted = fields.TextField()
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    removed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "simulated_code"


class SimulatedUnlock(Model):
    """A remote open or keypad entry on a simulated lock, for the sandbox's keypad log."""

    id = fields.IntField(primary_key=True)
    device_id = fields.CharField(max_length=200)
    source = fields.CharField(max_length=16)  # remote or keypad
    accepted = fields.BooleanField()
    at = fields.DatetimeField()

    class Meta:
        table = "simulated_unlock"


# The rental's pickup, return and GPS rows live in their own module; they are models of this
# app all the same (Tortoise finds them here).
from storage.rental_models import (  # noqa: E402
    ConditionPhoto,
    GpsPosition,
    Handover,
    HandoverKind,
)

__all__ = [
    "SLOT_HOLDING_STATES",
    "AccessCode",
    "AccessCodeState",
    "Asset",
    "AssetLock",
    "AuditEvent",
    "Booking",
    "BookingState",
    "ConditionPhoto",
    "Conversation",
    "EffectState",
    "Extension",
    "GpsPosition",
    "Handover",
    "HandoverKind",
    "IdentityCheck",
    "Location",
    "Lock",
    "Message",
    "OpsAlert",
    "OutboxEffect",
    "Payment",
    "ProcessedWebhook",
    "Renter",
    "SimulatedCode",
    "SimulatedUnlock",
    "StaffMember",
    "StaffRole",
    "Timer",
    "TimerState",
]
