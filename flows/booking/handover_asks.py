"""What a pickup or a return asks of the renter, in order: each required photo the item names,
then each question of its checklist. Where the renter is in it is the Handover row's progress,
so a restart or another worker asks the same next thing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flows.effects import Effect
from flows.i18n import Translator
from flows.messages import Choice
from storage.kinds import EffectKind
from storage.models import Asset, Booking, Handover, HandoverKind

PHOTO = "photo"
QUESTION = "question"
COLLECT_PHOTO_EFFECT = EffectKind.HANDOVER_COLLECT_PHOTO
CONDITION_REPORT_EFFECT = EffectKind.OPS_CONDITION_REPORT
REPORT_SETTLED_EFFECT = EffectKind.OPS_CONDITION_REPORT_SETTLED
#: What a condition photo may be: an image a phone takes, as MMS and chat apps carry it.
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/heic"})
MAX_PHOTO_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Ask:
    """One thing the renter is asked: a photo of ``text``, or the question ``text``."""

    kind: str
    #: 0-based within the photos or within the checklist; ``count`` of them in all.
    index: int
    count: int
    text: str


def photos_of(asset: Asset, kind: str) -> list[str]:
    prompts = asset.pickup_photos if kind == HandoverKind.PICKUP else asset.return_photos
    return [str(p) for p in prompts or []]


def checklist_of(asset: Asset, kind: str) -> list[str]:
    questions = asset.pickup_checklist if kind == HandoverKind.PICKUP else asset.return_checklist
    return [str(q) for q in questions or []]


def asks_anything(asset: Asset, kind: str) -> bool:
    return bool(photos_of(asset, kind) or checklist_of(asset, kind))


def pin_waits_for_pickup(asset: Asset, booking: Booking) -> bool:
    """The item's own PIN is held back: it is shown only after the pickup's photos and
    checklist, and they are not done yet."""
    return (
        asset.pin_after_checklist
        and asks_anything(asset, HandoverKind.PICKUP)
        and booking.pickup_done_at is None
    )


def next_ask(asset: Asset, handover: Handover) -> Ask | None:
    """The handover's next photo, else its next question; None when all are answered."""
    photos = photos_of(asset, handover.kind)
    if handover.photos_done < len(photos):
        index = handover.photos_done
        return Ask(PHOTO, index, len(photos), photos[index])
    questions = checklist_of(asset, handover.kind)
    answered = len(handover.answers or [])
    if answered < len(questions):
        return Ask(QUESTION, answered, len(questions), questions[answered])
    return None


def ask_message(ask: Ask, link: str | None) -> tuple[str, Mapping[str, object]]:
    """The message key and parameters that ask for ``ask`` (a photo by ``link`` where the
    renter's chat cannot carry one)."""
    params: dict[str, object] = {"number": ask.index + 1, "count": ask.count}
    if ask.kind == QUESTION:
        return "handover.question", {**params, "question": ask.text}
    if link is not None:
        return "handover.photo_link", {**params, "what": ask.text, "link": link}
    return "handover.photo_ask", {**params, "what": ask.text}


def yes_no_choices(translator: Translator, language: str) -> tuple[Choice, ...]:
    yes = translator.text(language, "keyword.yes").split("|")[0]
    no = translator.text(language, "keyword.no").split("|")[0]
    return (Choice(yes, yes), Choice(no, no))


def condition_report_key(reference: str, kind: str) -> str:
    """The idempotency key of a booking's pickup or return report: one report each."""
    return f"condition-report:{kind}:{reference}"


def condition_report(booking: Booking, kind: str) -> Effect:
    """The report of a completed pickup or return, for the operators."""
    return Effect(
        CONDITION_REPORT_EFFECT,
        condition_report_key(booking.reference, str(kind)),
        {"booking": booking.id, "kind": str(kind)},
    )


def report_settled(booking_id: int, reference: str) -> Effect:
    """The return's deposit was claimed or released: its report in the ops group is brought up
    to date and loses its "Damage?" button. Once per booking (the deposit's fate is final)."""
    return Effect(
        REPORT_SETTLED_EFFECT, f"condition-report-settled:{reference}", {"booking": booking_id}
    )
