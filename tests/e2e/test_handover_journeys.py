"""A rental's pickup and return in the chat, on each real channel against the fakes: T2 (the
demo's trailer inspected in the yard, ``pin_after_checklist``) gets the gate code at the lead
time, its own PIN only after the pickup photos and checklist; RETURN asks the return photos
and checklist, DONE notes the return and the renter hears it confirmed. The PIN of the trailer
never reaches the renter before its pickup checklist, by the PIN timer or by CODE."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.cli import DEMO_INVENTORY
from flows.inventory import apply_inventory, parse_inventory
from locks.port import LockCapability, capabilities_to_json
from locks.simulated.provider import CAPABILITIES
from storage.models import (
    AccessCode,
    AccessCodeState,
    Booking,
    BookingState,
    ConditionPhoto,
    Handover,
    IdentityCheck,
    Lock,
    Message,
    OutboxEffect,
    Payment,
)
from storage.uow import unit_of_work
from tests.e2e import test_channel_journeys
from tests.e2e.test_channel_journeys import (
    BERLIN_PHONE,
    CHAT_ID,
    GIF,
    JPEG,
    PDF,
    PUBLIC_URL,
    ChatRenter,
    TelegramRenter,
    TwilioRenter,
    World,
    approve,
    checkout_session,
    photo_form,
    upload_path,
)

#: The channels' world (fake Twilio, Telegram and Stripe, the demo inventory), as a fixture here.
world = test_channel_journeys.world

START_LOCAL_10 = "tomorrow 10-14"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 300


async def confirmed_t2(world: World, renter: ChatRenter) -> Booking:
    """Book T2 for tomorrow 10-14 in Harbor Yard, pay at Stripe, send the ID, approved."""
    await renter.say(f"BOOK T2 {START_LOCAL_10}")
    _holding, link = await renter.say("YES")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    [ask_id] = await renter.inbox()
    assert "ID" in ask_id
    await renter.send_id()
    check = await IdentityCheck.get()
    assert await approve(world, check.id)
    [confirmed] = await renter.inbox()
    booking = await Booking.get()
    assert booking.reference in confirmed and booking.state == BookingState.CONFIRMED
    return booking


async def pins_of(world: World, booking: Booking) -> dict[str, str]:
    codes = await AccessCode.filter(booking=booking).prefetch_related("lock")
    sealer = world.runtime.journey.sealer
    return {code.lock.key: sealer.open(code.pin_encrypted) for code in codes}


def delivered(world: World) -> str:
    """Every text that reached a renter through the fake Twilio and Telegram so far."""
    texts = [m.body or "" for m in world.twilio.sent]
    texts += [str(m.get("text", "")) for m in world.telegram.sent(CHAT_ID)]
    return "\n".join(texts)


async def at_pin_time(world: World, booking: Booking) -> None:
    await world.at(booking.start_at - timedelta(hours=2))  # the codes are on the locks by now
    await world.at(booking.start_at - timedelta(hours=1))


async def test_sms_pickup_holds_the_trailer_pin_until_photos_and_checklist(world: World) -> None:
    renter = TwilioRenter(world)
    booking = await confirmed_t2(world, renter)
    await world.at(booking.start_at - timedelta(hours=2))
    assert await renter.inbox() == []
    await world.at(booking.start_at - timedelta(hours=1))
    pins = await pins_of(world, booking)
    gate_pin, trailer_pin = pins["harbor-gate"], pins["harbor-t2"]
    assert gate_pin != trailer_pin, "the gate code must not open the trailer"
    assert {c.state for c in await AccessCode.filter(booking=booking)} == {AccessCodeState.SET}
    gate_message, first_ask = await renter.inbox()
    assert f"Main gate: {gate_pin}" in gate_message
    assert trailer_pin not in gate_message and "Trailer Bay 2" not in gate_message
    assert "comes once you have done its pickup check" in gate_message
    assert first_ask == "Photo 1 of 2: please send a photo of the hitch."

    [code_again, ask_again] = await renter.say("CODE")
    assert gate_pin in code_again and trailer_pin not in code_again
    assert ask_again == first_ask
    not_a_photo, asked = await renter.say("here you go")
    assert not_a_photo == "I need a photo here, sent as a picture." and asked == first_ask

    assert await renter.send_id(JPEG) == ["Photo 2 of 2: please send a photo of the left side."]
    [unusable] = await renter.send_id(PDF, "application/pdf")
    assert "could not use that photo" in unusable and "the left side" in unusable
    [question] = await renter.send_id(PNG, "image/png")
    assert question == "Question 1 of 2: Lights work? Reply YES or NO."
    assert [m.body for m in renter.latest] == [question]
    [question_two] = await renter.say("no")  # a report, not a refusal
    assert question_two.startswith("Question 2 of 2: Tyres look fine?")
    [not_yes_no, asked] = await renter.say("maybe")
    assert not_yes_no == "Please answer YES or NO." and asked == question_two
    assert trailer_pin not in delivered(world), "no PIN before the checklist"
    assert not await Message.filter(body__contains=trailer_pin).exists()

    done, pin_message = await renter.say("YES")
    assert "pickup check of Enclosed cargo trailer 5x8 is done" in done
    assert (
        f"Trailer Bay 2: {trailer_pin}" in pin_message and f"Main gate: {gate_pin}" in pin_message
    )
    await booking.refresh_from_db()
    assert booking.pickup_done_at == world.clock.now()
    handover = await Handover.get(booking=booking, kind="pickup")
    assert handover.photos_done == 2 and handover.answers == [False, True]
    assert handover.completed_at is not None
    photos = await ConditionPhoto.filter(booking=booking).order_by("position")
    assert [(p.position, p.prompt, p.content_type) for p in photos] == [
        (0, "the hitch", "image/jpeg"),
        (1, "the left side", "image/png"),
    ]
    sealer = world.runtime.journey.sealer
    assert [sealer.open_bytes(p.image_encrypted or "") for p in photos] == [JPEG, PNG]
    assert len(world.twilio.deleted_media) == 3, "each photo deleted at Twilio once read"
    report = await OutboxEffect.get(idempotency_key=f"condition-report:pickup:{booking.reference}")
    assert report.kind == "ops.condition_report"
    assert report.payload == {"booking": booking.id, "kind": "pickup"}
    [again] = await renter.say("CODE")
    assert trailer_pin in again, "after the pickup CODE shows the trailer's PIN"

    await return_by_mms(world, renter, booking)


async def return_by_mms(world: World, renter: TwilioRenter, booking: Booking) -> None:
    """RETURN two hours into the rental: both photos in one MMS, the checklist, DONE."""
    await world.at(booking.start_at + timedelta(hours=2))
    await renter.inbox()
    intro, ask = await renter.say("RETURN")
    assert intro == f"Returning Enclosed cargo trailer 5x8 (booking {booking.reference})."
    assert ask == "Photo 1 of 2: please send a photo of the hitch."
    [early_done, again] = await renter.say("DONE")
    assert early_done == "I need a photo here, sent as a picture." and again == ask
    urls = [world.twilio.add_media(JPEG, "image/jpeg"), world.twilio.add_media(PNG, "image/png")]
    response = await renter.post(media=[(urls[0], "image/jpeg"), (urls[1], "image/png")])
    assert response.status == 200
    assert await renter.inbox() == ["Question 1 of 1: Inside swept clean? Reply YES or NO."]
    assert await renter.say("YES") == [
        "Thank you. Now lock Enclosed cargo trailer 5x8 and reply DONE."
    ]
    noted, confirmed = await renter.say("DONE")
    assert noted == "Return of Enclosed cargo trailer 5x8 noted: early."
    assert confirmed == (
        f"Return of Enclosed cargo trailer 5x8 confirmed (booking {booking.reference}). Thank you!"
    )
    await booking.refresh_from_db()
    assert booking.returned_at == world.clock.now() and booking.return_timing == "early"
    assert booking.return_checklist_at == world.clock.now()
    returned = await ConditionPhoto.filter(booking=booking, kind="return").order_by("position")
    assert [p.prompt for p in returned] == ["the hitch", "the inside"]
    assert await OutboxEffect.exists(idempotency_key=f"condition-report:return:{booking.reference}")
    assert await renter.say("DONE") == [
        "DONE finishes a return. When you bring your rental back, reply RETURN first."
    ]
    [nothing] = await renter.say("RETURN")
    assert "no rental to return" in nothing
    codes = await AccessCode.filter(booking=booking)
    assert {c.state for c in codes} == {AccessCodeState.SET}, "T2 keeps its codes to the end"
    # The renter can still get in until then: the damage review counts from the codes' end.
    returned = world.clock.now()
    review = world.runtime.journey.settings.returns.damage_review
    await world.at(returned + review)
    assert (await Payment.get(booking=booking, purpose="deposit")).status == "held"
    await world.at(max(c.ends_at for c in codes) + review)
    assert (await Payment.get(booking=booking, purpose="deposit")).status == "released"


async def test_a_telegram_pickup_by_photos_and_buttons(world: World) -> None:
    renter = TelegramRenter(world)
    booking = await confirmed_t2(world, renter)
    await at_pin_time(world, booking)
    pins = await pins_of(world, booking)
    gate_message, first_ask = await renter.inbox()
    assert pins["harbor-gate"] in gate_message and pins["harbor-t2"] not in gate_message
    assert "the hitch" in first_ask
    [code_again, _ask] = await renter.say("CODE")
    assert pins["harbor-t2"] not in code_again
    assert await renter.send_id(JPEG) == ["Photo 2 of 2: please send a photo of the left side."]
    [question] = await renter.send_id(JPEG)
    assert question.startswith("Question 1 of 2: Lights work?")
    assert [label for label, _ in renter.buttons()] == ["YES", "NO"]
    [question_two] = await renter.press(label="YES")
    assert question_two.startswith("Question 2 of 2")
    assert pins["harbor-t2"] not in delivered(world)
    done, pin_message = await renter.press(label="NO")
    assert "is done" in done and f"Trailer Bay 2: {pins['harbor-t2']}" in pin_message
    handover = await Handover.get(booking=booking, kind="pickup")
    assert handover.answers == [True, False] and handover.photos_done == 2


async def test_a_whatsapp_item_that_asks_nothing_is_returned_with_done(world: World) -> None:
    renter = TwilioRenter(world, whatsapp=True)
    await renter.say("BOOK T1 tomorrow 10-14")
    _holding, link = await renter.say("YES")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    await renter.inbox()
    await renter.send_id()
    assert await approve(world, (await IdentityCheck.get()).id)
    await renter.inbox()
    booking = await Booking.get()
    [not_yet] = await renter.say("RETURN")
    assert "no rental to return" in not_yet, "not before the rental's start"
    await at_pin_time(world, booking)
    [pin_message] = await renter.inbox()
    assert "Trailer Bay 1: " in pin_message, "T1 asks nothing: its PIN comes as before"
    await world.at(booking.end_at + timedelta(minutes=5))
    await renter.inbox()
    await booking.refresh_from_db()
    assert booking.state == BookingState.COMPLETED and booking.returned_at is None
    assert await renter.say("RETURN") == [
        f"Returning Utility trailer 6x10 (booking {booking.reference}).",
        "Thank you. Now lock Utility trailer 6x10 and reply DONE.",
    ]
    noted, confirmed = await renter.say("DONE")
    assert noted == "Return of Utility trailer 6x10 noted: on time."
    assert "confirmed" in confirmed
    await booking.refresh_from_db()
    assert booking.return_timing == "on_time" and booking.returned_at is not None


async def test_an_sms_renter_abroad_sends_the_pickup_photos_through_links(world: World) -> None:
    renter = TwilioRenter(world, BERLIN_PHONE)
    await renter.say(f"BOOK T2 {START_LOCAL_10}")
    _holding, link = await renter.say("JA")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    [ask_id] = await renter.inbox()
    id_path = upload_path(ask_id)
    booking = await Booking.get()
    assert (await world.client.post(id_path, data=photo_form(JPEG, "image/jpeg"))).status == 200
    await renter.inbox()
    assert await approve(world, (await IdentityCheck.get()).id)
    await renter.inbox()
    await at_pin_time(world, booking)
    pins = await pins_of(world, booking)
    gate_message, first_ask = await renter.inbox()
    assert f"Main gate: {pins['harbor-gate']}" in gate_message
    assert pins["harbor-t2"] not in gate_message
    assert first_ask.startswith("Foto 1 von 2: Bitte laden Sie hier ein Foto von „the hitch“")
    photo_path = upload_path(first_ask)
    links = world.runtime.journey.upload_links
    assert links is not None
    id_link = links.url_for(booking.renter_id, booking.id).removeprefix(PUBLIC_URL)
    refused = await world.client.post(id_link, data=photo_form(JPEG, "image/jpeg"))
    assert refused.status == 410, "an ID link is no condition-photo link"
    assert await ConditionPhoto.all().count() == 0

    page = await world.client.get(photo_path)
    assert page.status == 200 and "im Chat erbetene Foto" in await page.text()
    gif = await world.client.post(photo_path, data=photo_form(GIF, "image/gif"))
    assert gif.status == 415
    sent = await world.client.post(photo_path, data=photo_form(JPEG, "image/jpeg"))
    assert sent.status == 200 and "Foto ist angekommen" in await sent.text()
    assert (await world.client.post(photo_path, data=photo_form(JPEG, "image/jpeg"))).status == 410
    [second_ask] = await renter.inbox()
    assert "Foto 2 von 2" in second_ask and "the left side" in second_ask
    second = await world.client.post(upload_path(second_ask), data=photo_form(PNG, "image/png"))
    assert second.status == 200
    [question] = await renter.inbox()
    assert question == "Frage 1 von 2: Lights work? Antworten Sie JA oder NEIN."
    [wrong_purpose] = [await world.client.get(photo_path)]
    assert wrong_purpose.status == 410
    await renter.say("JA")
    done, pin_message = await renter.say("NEIN")
    assert "Abholprüfung" in done and pins["harbor-t2"] in pin_message
    photos = await ConditionPhoto.filter(booking=booking).order_by("position")
    assert [p.content_type for p in photos] == ["image/jpeg", "image/png"]
    condition_link = links.url_for(booking.renter_id, booking.id, "condition")
    assert (await world.client.get(condition_link.removeprefix(PUBLIC_URL))).status == 410


async def test_a_whatsapp_pickup_and_return_with_media(world: World) -> None:
    renter = TwilioRenter(world, whatsapp=True)
    booking = await confirmed_t2(world, renter)
    await at_pin_time(world, booking)
    pins = await pins_of(world, booking)
    gate_message, first_ask = await renter.inbox()
    assert pins["harbor-gate"] in gate_message and pins["harbor-t2"] not in gate_message
    assert "the hitch" in first_ask
    assert all(m.to == f"whatsapp:{renter.phone}" for m in renter.latest)
    await renter.send_id(JPEG)
    [question] = await renter.send_id(JPEG)
    assert question.startswith("Question 1 of 2")
    await renter.say("sí")  # a keyword in any language answers
    done, pin_message = await renter.say("YES")
    assert "is done" in done and pins["harbor-t2"] in pin_message
    assert (await Handover.get(booking=booking, kind="pickup")).answers == [True, True]
    await world.at(booking.end_at - timedelta(minutes=10))
    await renter.inbox()
    await renter.say("devolver")
    await renter.send_id(JPEG)
    [question] = await renter.send_id(PNG, "image/png")
    assert question.startswith("Question 1 of 1: Inside swept clean?")
    await renter.say("NO")
    noted, confirmed = await renter.say("listo")
    assert noted.endswith("noted: on time.") and "confirmed" in confirmed
    await booking.refresh_from_db()
    assert booking.return_timing == "on_time"
    assert await ConditionPhoto.filter(booking=booking).count() == 4


async def apply_demo_inventory(world: World, text: str) -> None:
    """What ``keyturn inventory apply`` does with the operator's file."""
    async with unit_of_work() as conn:
        await apply_inventory(conn, parse_inventory(text), now=world.clock.now())


async def test_a_trailer_booked_before_its_pin_waited_for_pickup_gets_a_pin_of_its_own(
    world: World,
) -> None:
    demo = DEMO_INVENTORY.read_text(encoding="utf-8")
    assert "pin_after_checklist = true" in demo
    await apply_demo_inventory(world, demo.replace("pin_after_checklist = true", ""))
    renter = TwilioRenter(world)
    booking = await confirmed_t2(world, renter)
    before = await pins_of(world, booking)
    assert before["harbor-gate"] == before["harbor-t2"], "planned with one PIN for both"
    await apply_demo_inventory(world, demo)  # the operator now wants the pickup check first

    await at_pin_time(world, booking)
    await world.at(world.clock.now() + timedelta(minutes=1))  # the trailer's new code is set
    pins = await pins_of(world, booking)
    gate_pin, trailer_pin = pins["harbor-gate"], pins["harbor-t2"]
    assert gate_pin == before["harbor-gate"] and trailer_pin != gate_pin
    gate_message, first_ask = await renter.inbox()
    assert f"Main gate: {gate_pin}" in gate_message and trailer_pin not in gate_message
    assert "the hitch" in first_ask
    t2 = await Lock.get(key="harbor-t2")
    at_start = booking.start_at + timedelta(minutes=1)
    assert not await world.keypad().try_keypad(t2.device_id, gate_pin, at_start), (
        "the gate code must not open the trailer"
    )
    assert await world.keypad().try_keypad(t2.device_id, trailer_pin, at_start)
    [code_again, _ask] = await renter.say("CODE")
    assert gate_pin in code_again and trailer_pin not in code_again
    assert trailer_pin not in delivered(world)


async def test_code_before_the_pin_time_does_not_give_the_trailer_away_either(
    world: World,
) -> None:
    demo = DEMO_INVENTORY.read_text(encoding="utf-8")
    await apply_demo_inventory(world, demo.replace("pin_after_checklist = true", ""))
    renter = TwilioRenter(world)
    booking = await confirmed_t2(world, renter)
    await apply_demo_inventory(world, demo)
    await world.at(booking.start_at - timedelta(hours=2))  # codes on the locks, PIN not yet due
    shared = (await pins_of(world, booking))["harbor-gate"]
    [not_yet] = await renter.say("CODE")
    assert shared not in not_yet
    await world.at(world.clock.now() + timedelta(minutes=1))
    pins = await pins_of(world, booking)
    assert pins["harbor-t2"] != pins["harbor-gate"] == shared


async def test_an_early_return_that_ends_the_codes_starts_the_damage_review_at_once(
    world: World,
) -> None:
    demo = DEMO_INVENTORY.read_text(encoding="utf-8")
    t1 = 'code = "T1"\n'
    assert t1 in demo
    await apply_demo_inventory(world, demo.replace(t1, t1 + "early_return_ends_codes = true\n"))
    renter = TwilioRenter(world, whatsapp=True)
    await renter.say("BOOK T1 tomorrow 10-14")
    _holding, link = await renter.say("YES")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    await renter.inbox()
    await renter.send_id()
    assert await approve(world, (await IdentityCheck.get()).id)
    booking = await Booking.get()
    await at_pin_time(world, booking)
    await world.at(booking.start_at + timedelta(hours=1))
    await renter.inbox()
    await renter.say("RETURN")
    noted, confirmed = await renter.say("DONE")
    assert "noted: early." in noted and "being switched off now" in noted
    assert "confirmed" in confirmed
    returned = world.clock.now()
    await world.at(returned + timedelta(minutes=1))
    codes = await AccessCode.filter(booking=booking)
    assert {c.state for c in codes} == {AccessCodeState.REMOVED}, "its codes end at the return"
    review = world.runtime.journey.settings.returns.damage_review
    await world.at(returned + review - timedelta(minutes=1))
    assert (await Payment.get(booking=booking, purpose="deposit")).status == "held"
    await world.at(returned + review)
    assert (await Payment.get(booking=booking, purpose="deposit")).status == "released"


@pytest.mark.parametrize(
    "fixed", [("harbor-t2",), ("harbor-t2", "harbor-gate")], ids=["trailer", "trailer-and-gate"]
)
async def test_an_extension_that_replaces_the_trailer_code_keeps_its_pin_apart_and_held(
    world: World, fixed: tuple[str, ...]
) -> None:
    """T2's lock (and in the second case the gate's too) cannot move a code's window in place:
    an extension replaces its code with a new PIN, which is still no gate PIN and still comes
    only after the pickup checklist."""
    renter = TwilioRenter(world)
    booking = await confirmed_t2(world, renter)
    await Lock.filter(key__in=fixed).update(
        capabilities=capabilities_to_json(CAPABILITIES & ~LockCapability.UPDATE_WINDOW)
    )
    await world.at(booking.start_at - timedelta(hours=2))
    assert {c.state for c in await AccessCode.filter(booking=booking)} == {AccessCodeState.SET}
    before = await pins_of(world, booking)
    assert await renter.inbox() == []

    [quote] = await renter.say("EXTEND 1h")
    assert quote.startswith("Extend until Tue, Jun 2 3:00") and "Reply YES" in quote
    _paying, link = await renter.say("YES")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    extended = await renter.inbox()
    assert any("now ends Tue, Jun 2 3:00" in text for text in extended), extended
    assert any("the item's once you have done its pickup check" in text for text in extended)
    await world.run()
    await booking.refresh_from_db()
    assert booking.end_at == booking.start_at + timedelta(hours=5)

    live = await AccessCode.filter(booking=booking, state=AccessCodeState.SET).prefetch_related(
        "lock"
    )
    assert {c.lock.key for c in live} == {"harbor-gate", "harbor-t2"}
    assert all(c.ends_at == booking.end_at + timedelta(minutes=15) for c in live)
    sealer = world.runtime.journey.sealer
    after = {c.lock.key: sealer.open(c.pin_encrypted) for c in live}
    gate_pin, trailer_pin = after["harbor-gate"], after["harbor-t2"]
    assert trailer_pin != before["harbor-t2"], "the trailer's code was replaced"
    if "harbor-gate" not in fixed:
        # Only the trailer's code is planned anew: its PIN is drawn against the trailer lock's
        # codes alone, so only the odds (a 6-digit draw) keep it off the gate's here.
        assert gate_pin == before["harbor-gate"], "the gate's code moved in place"
    assert trailer_pin != gate_pin, "the gate code must not open the trailer"
    assert trailer_pin not in delivered(world)

    await world.at(booking.start_at - timedelta(hours=1))
    messages = "\n".join([*extended, *await renter.inbox()])
    assert f"Main gate: {gate_pin}" in messages and "Photo 1 of 2" in messages
    assert trailer_pin not in delivered(world), "no trailer PIN before the checklist"
    [code_again, _ask] = await renter.say("CODE")
    assert gate_pin in code_again and trailer_pin not in code_again
    await renter.send_id(JPEG)
    [question] = await renter.send_id(PNG, "image/png")
    assert question.startswith("Question 1 of 2")
    await renter.say("YES")
    assert trailer_pin not in delivered(world)
    done, pin_message = await renter.say("YES")
    assert "is done" in done and f"Trailer Bay 2: {trailer_pin}" in pin_message
    assert f"Main gate: {gate_pin}" in pin_message


T1_ASKS = 'code = "T1"\npickup_checklist = ["Hitch locked?"]\nreturn_checklist = ["Lights off?"]\n'


async def book_t1_after_t2(world: World, renter: ChatRenter) -> tuple[Booking, Booking]:
    """T2 tomorrow 10-14, then T1 (which asks one pickup and one return question) 14-18."""
    demo = DEMO_INVENTORY.read_text(encoding="utf-8")
    await apply_demo_inventory(world, demo.replace('code = "T1"\n', T1_ASKS))
    t2 = await confirmed_t2(world, renter)
    await renter.say("BOOK T1 tomorrow 14-18")
    _holding, link = await renter.say("YES")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    await renter.inbox()
    t1 = await Booking.get(asset__code="T1")
    assert t1.state == BookingState.CONFIRMED, "the renter's ID was approved for T2"
    return t2, t1


async def test_a_renter_returning_one_rental_as_the_next_begins_finishes_the_return_first(
    world: World,
) -> None:
    renter = TwilioRenter(world)
    t2, t1 = await book_t1_after_t2(world, renter)
    await at_pin_time(world, t2)
    await renter.inbox()
    await renter.send_id(JPEG)
    await renter.send_id(JPEG)
    await renter.say("YES")
    await renter.say("YES")  # T2's pickup done: its PIN
    await world.at(t2.end_at - timedelta(minutes=20))
    await renter.inbox()
    intro, ask = await renter.say("RETURN")
    assert t2.reference in intro and "the hitch" in ask
    await world.at(t1.start_at)  # T1's rental starts: its pickup check waits for the return
    waits = "\n".join(await renter.inbox())
    assert f"pickup check of Utility trailer 6x10 (booking {t1.reference}) comes" in waits
    assert "Hitch locked?" not in waits
    assert await renter.send_id(JPEG) == ["Photo 2 of 2: please send a photo of the inside."]
    [question] = await renter.send_id(PNG, "image/png")
    assert question.startswith("Question 1 of 1: Inside swept clean?")
    assert "DONE" in (await renter.say("YES"))[0]
    noted, confirmed, next_up, pickup_question = await renter.say("DONE")
    assert "noted" in noted and t2.reference in confirmed
    assert next_up == f"Next, Utility trailer 6x10 (booking {t1.reference})."
    assert pickup_question.startswith("Question 1 of 1: Hitch locked?")
    [done] = await renter.say("YES")
    assert "pickup check of Utility trailer 6x10 is done" in done
    returned = await ConditionPhoto.filter(booking=t2, kind="return").count()
    assert returned == 2 and not await ConditionPhoto.filter(booking=t1).exists()
    assert (await Handover.get(booking=t1, kind="pickup")).answers == [True]
    assert (await Handover.get(booking=t2, kind="return")).answers == [True]


async def test_a_pickup_left_unfinished_is_closed_when_its_return_begins(world: World) -> None:
    renter = TwilioRenter(world, whatsapp=True)
    demo = DEMO_INVENTORY.read_text(encoding="utf-8")
    await apply_demo_inventory(world, demo.replace('code = "T1"\n', T1_ASKS))
    await renter.say("BOOK T1 tomorrow 10-14")
    _holding, link = await renter.say("YES")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    await renter.inbox()
    await renter.send_id()
    assert await approve(world, (await IdentityCheck.get()).id)
    booking = await Booking.get()
    await at_pin_time(world, booking)
    await world.at(booking.start_at)
    asked = "\n".join(await renter.inbox())
    assert "Hitch locked?" in asked  # never answered
    await world.at(booking.start_at + timedelta(hours=3))
    _intro, question = await renter.say("RETURN")
    assert question.startswith("Question 1 of 1: Lights off?")
    assert "DONE" in (await renter.say("NO"))[0]
    noted, confirmed = await renter.say("DONE")
    assert "noted" in noted and "confirmed" in confirmed
    assert all("Hitch" not in text for text in await renter.say("YES")), "the pickup is over"
    assert (await Handover.get(booking=booking, kind="return")).answers == [False]
    pickup = await Handover.get(booking=booking, kind="pickup")
    assert pickup.answers == [] and pickup.completed_at is not None


async def test_a_new_code_after_an_extension_is_sent_once_the_gate_holds_the_new_end(
    world: World,
) -> None:
    """T1's lock cannot move a window in place, the gate's can: an extension replaces T1's
    code and moves the gate's. The PIN message says until when both work, so it waits until
    the gate, offline for a while, holds the new end too."""
    renter = TwilioRenter(world)
    await renter.say("BOOK T1 tomorrow 10-14")
    _holding, link = await renter.say("YES")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    await renter.inbox()
    await renter.send_id()
    assert await approve(world, (await IdentityCheck.get()).id)
    booking = await Booking.get()
    await Lock.filter(key="harbor-t1").update(
        capabilities=capabilities_to_json(CAPABILITIES & ~LockCapability.UPDATE_WINDOW)
    )
    await at_pin_time(world, booking)
    first_pin = "\n".join(await renter.inbox())
    assert "until Tue, Jun 2 2:15" in first_pin
    gate = await Lock.get(key="harbor-gate")
    world.keypad().offline.add(gate.device_id)

    await renter.say("EXTEND 1h")
    _paying, link = await renter.say("YES")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    await world.at(world.clock.now() + timedelta(minutes=2))
    told = "\n".join(await renter.inbox())
    assert "now ends Tue, Jun 2 3:00" in told and "needs a new code" in told
    assert "3:15" not in told, "the gate still holds the old end"
    t1_code = await AccessCode.get(booking=booking, lock__key="harbor-t1", state="set")
    new_pin = world.runtime.journey.sealer.open(t1_code.pin_encrypted)
    assert new_pin not in delivered(world)

    world.keypad().offline.discard(gate.device_id)
    await world.at(world.clock.now() + timedelta(minutes=10))
    [pin_message] = await renter.inbox()
    assert f"Trailer Bay 1: {new_pin}" in pin_message and "until Tue, Jun 2 3:15" in pin_message
    gate_pin = (await pins_of(world, booking))["harbor-gate"]
    assert await world.keypad().try_keypad(
        gate.device_id, gate_pin, booking.start_at + timedelta(hours=5, minutes=10)
    ), "the gate opens until the new end, as the renter was told"
