"""What a pickup or a return asks, in order, from its Handover row's progress; when an item's
PIN is held back; and how each ask is worded (catalog keys and their parameters)."""

from __future__ import annotations

from datetime import UTC, datetime

from flows.booking.handover_asks import (
    PHOTO,
    QUESTION,
    Ask,
    ask_message,
    asks_anything,
    condition_report,
    next_ask,
    pin_waits_for_pickup,
)
from flows.i18n import Translator
from storage.models import Asset, Booking, Handover, HandoverKind

NOW = datetime(2026, 6, 2, 14, 0, tzinfo=UTC)


def trailer(**fields: object) -> Asset:
    values: dict[str, object] = {
        "pickup_photos": ["the hitch", "the left side"],
        "pickup_checklist": ["Lights work?"],
        "return_photos": [],
        "return_checklist": ["Swept?"],
        "pin_after_checklist": True,
        **fields,
    }
    return Asset(code="T2", label="Trailer", **values)


def progress(kind: HandoverKind, photos: int, answers: list[bool]) -> Handover:
    return Handover(kind=kind, photos_done=photos, answers=answers, started_at=NOW)


def test_photos_first_in_order_then_the_questions_then_nothing() -> None:
    asset = trailer()
    asks = [
        next_ask(asset, progress(HandoverKind.PICKUP, 0, [])),
        next_ask(asset, progress(HandoverKind.PICKUP, 1, [])),
        next_ask(asset, progress(HandoverKind.PICKUP, 2, [])),
        next_ask(asset, progress(HandoverKind.PICKUP, 2, [False])),
    ]
    assert asks == [
        Ask(PHOTO, 0, 2, "the hitch"),
        Ask(PHOTO, 1, 2, "the left side"),
        Ask(QUESTION, 0, 1, "Lights work?"),
        None,
    ], "a NO is an answer like YES: the handover goes on"
    assert next_ask(asset, progress(HandoverKind.RETURN, 0, [])) == Ask(QUESTION, 0, 1, "Swept?")


def test_the_pin_waits_only_for_an_item_that_says_so_and_only_until_the_pickup() -> None:
    waiting = Booking(reference="KAAAA01", pickup_done_at=None)
    picked_up = Booking(reference="KAAAA02", pickup_done_at=NOW)
    assert pin_waits_for_pickup(trailer(), waiting)
    assert not pin_waits_for_pickup(trailer(), picked_up)
    assert not pin_waits_for_pickup(trailer(pin_after_checklist=False), waiting)
    nothing = trailer(pickup_photos=[], pickup_checklist=[])
    assert not asks_anything(nothing, HandoverKind.PICKUP)
    assert not pin_waits_for_pickup(nothing, waiting), "no checklist: the PIN would never come"


def test_each_ask_is_worded_from_the_catalog_in_every_language() -> None:
    translator = Translator()
    photo, question = Ask(PHOTO, 0, 2, "the hitch"), Ask(QUESTION, 1, 3, "Lights work?")
    key, params = ask_message(photo, None)
    assert translator.text("en", key, **params) == "Photo 1 of 2: please send a photo of the hitch."
    key, params = ask_message(photo, "https://k.example/upload/t")
    assert translator.text("fr", key, **params).endswith("https://k.example/upload/t")
    key, params = ask_message(question, None)
    assert translator.text("es", key, **params) == (
        "Pregunta 2 de 3: Lights work? Responda SÍ o NO."
    )
    done_words = {"en": "DONE", "de": "FERTIG", "es": "LISTO", "fr": "FINI"}
    for language, word in done_words.items():
        assert word in translator.text(language, "handover.lock_and_done", item="x")
    keywords = translator.keywords("keyword.return")
    assert {"RETURN", "DEVOLVER", "RETOUR", "RUCKGABE", "RUECKGABE"} <= set(keywords)
    assert {"DONE", "LISTO", "FINI", "FERTIG"} <= set(translator.keywords("keyword.done"))


def test_a_completed_handover_stages_its_condition_report_once_per_kind() -> None:
    booking = Booking(id=4, reference="KABCD12")
    effect = condition_report(booking, HandoverKind.RETURN)
    assert (effect.kind, effect.key) == ("ops.condition_report", "condition-report:return:KABCD12")
    assert effect.payload == {"booking": 4, "kind": "return"}
