"""A pickup's or return's condition report as operators read it: the item, the booking, the
checklist's questions with the renter's answers, a return's timing and late fee, and the photos
with the prompt each answers. The ops bot posts it in the renter's forum topic
(``bot.ops.condition_report``); the sandbox's ops pane shows the same report.

A return's report carries the "Damage?" button while its deposit can still be claimed; the
button (and ``/claim``) is for owners and managers only (``Permission.DEPOSITS``). Once the
deposit is claimed or released the posted report is edited to say so, without the button; a
press on a copy that still has it is answered with what became of the deposit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flows.handoff import OPS_LANGUAGE
from flows.i18n import Translator, local_time
from flows.ops.base import contact_of
from flows.returns import EARLY, LATE, ON_TIME
from storage.kinds import EffectKind
from storage.models import Asset, Booking, Location, Payment, Renter
from storage.money import Money
from storage.payments import CLAIMABLE, PaymentPurpose, PaymentStatus
from storage.rental_models import ConditionPhoto, Handover, HandoverKind

REPORT_EFFECT = EffectKind.OPS_CONDITION_REPORT
#: A return's deposit was claimed or released: its report is edited to say so, without button.
REPORT_SETTLED_EFFECT = EffectKind.OPS_CONDITION_REPORT_SETTLED
#: The button's callback action; its argument is the booking's id.
DAMAGE_ACTION = "damage"
_Texts = Callable[..., str]
TIMING_KEYS = {
    ON_TIME: "ops.report_timing_on_time",
    EARLY: "ops.report_timing_early",
    LATE: "ops.report_timing_late",
}
DEPOSIT_KEYS: dict[str, str] = {
    PaymentStatus.CLAIMED: "ops.report_deposit_claimed",
    PaymentStatus.RELEASED: "ops.report_deposit_released",
}


@dataclass(frozen=True)
class ReportPhoto:
    id: int
    position: int
    prompt: str
    #: The photo's caption in the ops group: the kind, the booking and the prompt it answers.
    caption: str
    #: The image as stored, sealed; None once retention deleted it.
    sealed: str | None
    content_type: str


@dataclass(frozen=True)
class ConditionReport:
    booking_id: int
    reference: str
    kind: HandoverKind
    #: The report as one message, in the ops group's language.
    text: str
    #: (question, answer) per checklist question; None: not answered.
    answers: tuple[tuple[str, bool | None], ...]
    photos: tuple[ReportPhoto, ...]
    #: A return whose deposit can still be claimed: the "Damage?" button's label.
    damage_button: str | None

    @property
    def damage_data(self) -> str:
        """The button's callback data (``ops:damage:<booking id>``)."""
        return f"ops:{DAMAGE_ACTION}:{self.booking_id}"


def report_kind(value: object) -> HandoverKind:
    """The payload's kind; anything unknown reads as a pickup's."""
    return HandoverKind.RETURN if value == HandoverKind.RETURN.value else HandoverKind.PICKUP


async def condition_report(
    translator: Translator, booking_id: int, kind: HandoverKind
) -> ConditionReport | None:
    """The booking's report for ``kind``; None when the booking is gone."""
    booking = await Booking.get_or_none(id=booking_id)
    if booking is None:
        return None
    asset = await Asset.get(id=booking.asset_id)
    location = await Location.get(id=asset.location_id)
    renter = await Renter.get(id=booking.renter_id)
    handover = await Handover.get_or_none(booking_id=booking.id, kind=kind)
    rows = await ConditionPhoto.filter(booking_id=booking.id, kind=kind).order_by("position", "id")

    def t(key: str, **params: object) -> str:
        return translator.text(OPS_LANGUAGE, key, **params)

    returning = kind == HandoverKind.RETURN
    questions = list(asset.return_checklist if returning else asset.pickup_checklist)
    given = list(handover.answers) if handover is not None else []
    answers = tuple(
        (question, given[n] if n < len(given) else None) for n, question in enumerate(questions)
    )
    title = "ops.report_title_return" if returning else "ops.report_title_pickup"
    lines = [
        t(title, item=f"{asset.code} {asset.label}", booking=booking.reference),
        t("ops.report_renter", name=renter.name or "-", contact=contact_of(renter)),
    ]
    if handover is not None and handover.completed_at is not None:
        at = local_time(handover.completed_at, location.timezone, OPS_LANGUAGE)
        lines.append(t("ops.report_completed", at=at))
    if not answers:
        lines.append(t("ops.report_no_checklist"))
    for question, answer in answers:
        word = {True: "ops.report_yes", False: "ops.report_no", None: "ops.report_unanswered"}
        lines.append(t("ops.report_answer", question=question, answer=t(word[answer])))
    if returning:
        lines += _timing(t, booking, location)
    lines.append(t("ops.report_photos", count=len(rows)) if rows else t("ops.report_no_photos"))
    button = None
    if returning:
        deposit_lines, claimable = await _deposit(t, booking)
        lines += deposit_lines
        button = t("ops.button_damage") if claimable else None
    return ConditionReport(
        booking.id,
        booking.reference,
        kind,
        "\n".join(lines),
        answers,
        _photos(t, booking, kind, rows),
        button,
    )


def _photos(
    t: _Texts, booking: Booking, kind: HandoverKind, rows: list[ConditionPhoto]
) -> tuple[ReportPhoto, ...]:
    kind_word = t(
        "ops.report_kind_return" if kind == HandoverKind.RETURN else "ops.report_kind_pickup"
    )
    return tuple(
        ReportPhoto(
            row.id,
            row.position,
            row.prompt,
            t(
                "ops.report_photo_caption",
                kind=kind_word,
                booking=booking.reference,
                prompt=row.prompt,
                number=number,
                total=len(rows),
            ),
            row.image_encrypted,
            row.content_type,
        )
        for number, row in enumerate(rows, start=1)
    )


async def _deposit(t: _Texts, booking: Booking) -> tuple[list[str], bool]:
    """What became of a return's deposit, and whether it can still be claimed."""
    deposit = (
        await Payment.filter(booking_id=booking.id, purpose=PaymentPurpose.DEPOSIT)
        .order_by("-id")
        .first()
    )
    if deposit is None:
        return [], False
    held = Money(deposit.amount_cents, deposit.currency).format(OPS_LANGUAGE)
    if deposit.status in CLAIMABLE:
        return [t("ops.report_deposit_claimable", deposit=held)], True
    state = DEPOSIT_KEYS.get(deposit.status)
    return ([t(state, deposit=held)] if state is not None else []), False


def _timing(t: _Texts, booking: Booking, location: Location) -> list[str]:
    if booking.returned_at is None or not booking.return_timing:
        return [t("ops.report_not_confirmed")]
    at = local_time(booking.returned_at, location.timezone, OPS_LANGUAGE)
    key = TIMING_KEYS.get(booking.return_timing, "ops.report_timing_on_time")
    lines = [t(key, at=at)]
    if booking.late_fee_cents > 0:
        fee = Money(booking.late_fee_cents, booking.currency).format(OPS_LANGUAGE)
        lines.append(t("ops.report_late_fee", fee=fee))
    return lines
