"""The journey as the composition root wires it: every part, its executors and timers by kind."""

from __future__ import annotations

from collections.abc import Mapping

from flows.access import CODE_NOT_MOVED_TIMER, CODE_SET_TIMER
from flows.booking.common import (
    CHECKOUT_EFFECT,
    COLLECT_ID_EFFECT,
    DAMAGE_REVIEW_TIMER,
    DELETE_ID_MEDIA_EFFECT,
    DELIVER_PIN_TIMER,
    END_TIMER,
    ENDING_TIMER,
    EXPIRE_CHECKOUT_EFFECT,
    EXTENSION_ON_LOCK_TIMER,
    HOLD_EFFECT,
    HOLD_EXPIRY_TIMER,
    HOLD_LAPSE_TIMER,
    IDENTITY_START_EFFECT,
    LATE_FEE_CHECK_TIMER,
    LATE_FEE_EFFECT,
    RECEIPT_EFFECT,
    REFUND_EFFECT,
    RELEASE_EFFECT,
    START_TIMER,
)
from flows.booking.handover import HandoverSteps
from flows.booking.handover_asks import COLLECT_PHOTO_EFFECT
from flows.effects import EffectExecutor
from flows.remote_open import OPEN_EFFECT
from flows.timers import TimerHandler


class Journey(HandoverSteps):
    """The renter journey after an item is chosen: when, quote, hold, pay, ID, PIN, rental."""


def journey_executors(journey: Journey) -> Mapping[str, EffectExecutor]:
    return {
        CHECKOUT_EFFECT: journey.execute_checkout,
        REFUND_EFFECT: journey.execute_refund,
        HOLD_EFFECT: journey.execute_hold_deposit,
        RELEASE_EFFECT: journey.execute_release_deposit,
        COLLECT_ID_EFFECT: journey.execute_collect_id,
        DELETE_ID_MEDIA_EFFECT: journey.execute_delete_id_media,
        IDENTITY_START_EFFECT: journey.execute_identity_start,
        OPEN_EFFECT: journey.remote_opens.execute,
        EXPIRE_CHECKOUT_EFFECT: journey.execute_expire_checkout,
        COLLECT_PHOTO_EFFECT: journey.execute_handover_photo,
        LATE_FEE_EFFECT: journey.execute_late_fee,
        RECEIPT_EFFECT: journey.execute_receipt,
    }


def journey_timers(journey: Journey) -> Mapping[str, TimerHandler]:
    return {
        HOLD_EXPIRY_TIMER: journey.on_hold_expiry,
        DELIVER_PIN_TIMER: journey.on_deliver_pin,
        CODE_SET_TIMER: journey.on_code_set,
        CODE_NOT_MOVED_TIMER: journey.on_code_not_moved,
        EXTENSION_ON_LOCK_TIMER: journey.on_extension_on_lock_due,
        START_TIMER: journey.on_start,
        ENDING_TIMER: journey.on_ending_soon,
        END_TIMER: journey.on_end,
        DAMAGE_REVIEW_TIMER: journey.on_damage_review,
        HOLD_LAPSE_TIMER: journey.on_deposit_hold_lapse,
        LATE_FEE_CHECK_TIMER: journey.on_late_fee_check,
    }
