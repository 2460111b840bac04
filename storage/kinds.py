"""The names of persisted kinds: of operator alerts, outbox effects and timers.

Each is stored as its string in a row (``ops_alerts.kind``, ``outbox_effects.kind``,
``timers.kind``), so a member's value is the string the row holds and never changes: a member and
its literal compare equal, and rows written before these enums existed keep working.
"""

from __future__ import annotations

from enum import StrEnum


class AlertKind(StrEnum):
    """What an operator alert is about (``OpsAlert.kind``)."""

    AGENT_REQUESTED = "agent_requested"
    ASSET_WITHOUT_LOCK = "asset_without_lock"
    BOOKING_CANCELLED = "booking_cancelled"
    CODE_CANNOT_BE_REVOKED = "code_cannot_be_revoked"
    CODE_NOT_SET = "code_not_set"
    CODE_REJECTED = "code_rejected"
    DEPOSIT_NOT_HELD = "deposit_not_held"
    EFFECT_FAILING = "effect_failing"
    EXTENSION_CONFLICT = "extension_conflict"
    EXTENSION_NOT_ON_LOCK = "extension_not_on_lock"
    HOLD_EXPIRED = "hold_expired"
    ID_REVIEW = "id_review"
    IDENTITY_NEEDS_INPUT = "identity_needs_input"
    LATE_PAYMENT_REFUNDED = "late_payment_refunded"
    LOCK_BATTERY = "lock_battery"
    LOCK_DRIFT = "lock_drift"
    LOCK_OFFLINE = "lock_offline"
    LOCK_UNMAPPED = "lock_unmapped"
    LOCK_UNREACHABLE = "lock_unreachable"
    #: GPS saw an item leave its home while no rental of it was running.
    UNKNOWN_PICKUP = "unknown_pickup"
    #: A rental ended and its item is not back (GPS away, or no return reported).
    NOT_RETURNED = "not_returned"
    LATE_FEE_FAILED = "late_fee_failed"
    #: A late fee charged off-session is still processing at the provider days later.
    LATE_FEE_PROCESSING = "late_fee_processing"
    MESSAGE_NOT_DELIVERED = "message_not_delivered"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_MISMATCH = "payment_mismatch"
    PIN_RULES_UNKNOWN = "pin_rules_unknown"
    REMOTE_OPEN = "remote_open"
    REMOTE_OPEN_FAILED = "remote_open_failed"
    REMOTE_OPEN_UNCONFIRMED = "remote_open_unconfirmed"
    TURNS_FAILING = "turns_failing"


class EffectKind(StrEnum):
    """Work for the outbox dispatcher (``OutboxEffect.kind``); each has an executor."""

    SEND_MESSAGE = "send_message"
    ALERT_SHOW = "alert.show"
    HANDOFF_TO_STAFF = "handoff.to_staff"
    ACCESS_SET = "access.set"
    ACCESS_UPDATE = "access.update"
    ACCESS_REMOVE = "access.remove"
    PAYMENT_CHECKOUT = "payment.checkout"
    PAYMENT_EXPIRE_CHECKOUT = "payment.expire_checkout"
    PAYMENT_REFUND = "payment.refund"
    PAYMENT_HOLD_DEPOSIT = "payment.hold_deposit"
    PAYMENT_RELEASE_DEPOSIT = "payment.release_deposit"
    IDENTITY_COLLECT = "identity.collect"
    IDENTITY_DELETE_MEDIA = "identity.delete_media"
    IDENTITY_START_VERIFICATION = "identity.start_verification"
    LOCK_OPEN = "lock.open"
    #: A pickup or return's photos and answers shown in the ops group, with a damage button.
    OPS_CONDITION_REPORT = "ops.condition_report"
    #: A return's deposit was claimed or released: its report shows that, without the button.
    OPS_CONDITION_REPORT_SETTLED = "ops.condition_report_settled"
    #: Store a condition photo the renter sent (sealed), and delete it where the channel keeps it.
    HANDOVER_COLLECT_PHOTO = "handover.collect_photo"
    #: Charge a late return's fee off-session on the card saved at checkout.
    PAYMENT_LATE_FEE = "payment.late_fee"
    #: The renter's receipt at the end of a rental (times, price, extensions, late fee, deposit).
    BOOKING_RECEIPT = "booking.receipt"


class TimerKind(StrEnum):
    """What a due timer runs (``Timer.kind``); each has a handler."""

    ACCESS_PROGRAM = "access.program"
    ACCESS_DEADLINE = "access.deadline"
    ACCESS_CONFIRM = "access.confirm"
    ACCESS_CODE_SET = "access.code_set"
    ACCESS_CODE_NOT_MOVED = "access.code_not_moved"
    ACCESS_REVOKE = "access.revoke"
    ACCESS_RECONCILE = "access.reconcile"
    ACCESS_REMOVAL_CHECK = "access.removal_check"
    ACCESS_CODE_REMOVED = "access.code_removed"
    BOOKING_HOLD_EXPIRY = "booking.hold_expiry"
    BOOKING_DELIVER_PIN = "booking.deliver_pin"
    BOOKING_EXTENSION_ON_LOCK = "booking.extension_on_lock"
    BOOKING_START = "booking.start"
    BOOKING_ENDING_SOON = "booking.ending_soon"
    BOOKING_END = "booking.end"
    #: The damage review after a confirmed return is over: the deposit is released unless
    #: damage was claimed.
    BOOKING_DAMAGE_REVIEW = "booking.damage_review"
    #: A deposit hold nears the end of its authorisation's life (about 7 days): unless it is
    #: released before, it is cancelled and the card kept on file.
    BOOKING_DEPOSIT_HOLD_LAPSE = "booking.deposit_hold_lapse"
    #: The booked end plus the item's grace: a rental whose return is not confirmed by then is
    #: "not returned" (ops alerted, the renter asked).
    BOOKING_RETURN_CHECK = "booking.return_check"
    #: A late fee whose off-session charge was still processing is read back from the
    #: provider: settled as its event would, if the event came first, late or never.
    BOOKING_LATE_FEE_CHECK = "booking.late_fee_check"
    HANDOFF_IDLE = "handoff.idle"
    RETENTION_PURGE = "retention.purge"
