"""The pickup and the return on the sandbox page's API: images posted as the page posts them,
the checklist's YES/NO offered as choices, and an early return ending the codes of an item
that says so (the demo's equipment cage C1)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from bot.app import Runtime
from storage.models import AccessCode, AccessCodeState, Booking, ConditionPhoto, Handover
from tests.conftest import FakeClock
from tests.e2e import test_sandbox_journey
from tests.e2e.test_sandbox_journey import PNG, Renter, pay, run

#: The sandbox with the demo inventory, as a fixture here.
journey = test_sandbox_journey.journey
Journey = tuple[TestClient[Any, Any], Runtime, FakeClock]


async def confirmed(client: TestClient[Any, Any], renter: Renter, code: str) -> Booking:
    await renter.say(f"BOOK {code} tomorrow 10-14")
    _holding, link = await renter.say("YES")
    await pay(client, link)
    await renter.inbox()
    await renter.say(image=PNG)
    await run(renter.runtime)
    [check] = (await (await client.get("/sandbox/api/identity")).json())["checks"]
    await client.post(f"/sandbox/api/identity/{check['id']}/decision", json={"approve": True})
    [confirmed] = await renter.inbox()
    assert "is confirmed" in confirmed
    return await Booking.get()


async def choices(client: TestClient[Any, Any], renter: Renter) -> list[list[str]]:
    listing = await client.get("/sandbox/api/messages", params={"address": renter.address})
    return [m["choices"] for m in (await listing.json())["messages"] if m["direction"] == "out"]


async def test_a_trailer_picked_up_and_returned_on_the_sandbox(journey: Journey) -> None:
    client, runtime, clock = journey
    renter = Renter(client, runtime)
    booking = await confirmed(client, renter, "T2")
    clock.current = booking.start_at - timedelta(hours=2)
    await run(runtime)
    clock.current = booking.start_at - timedelta(hours=1)
    codes = await AccessCode.filter(booking=booking).prefetch_related("lock")
    pins = {c.lock.key: runtime.journey.sealer.open(c.pin_encrypted) for c in codes}
    gate, first = await renter.inbox()
    assert f"Main gate: {pins['harbor-gate']}" in gate and pins["harbor-t2"] not in gate
    assert first == "Photo 1 of 2: please send a photo of the hitch."
    [code] = (await renter.say("CODE"))[:1]
    assert pins["harbor-t2"] not in code
    opened = await client.post(
        "/sandbox/api/keypad", json={"lock": "harbor-t2", "pin": pins["harbor-gate"]}
    )
    assert (await opened.json())["opens"] is False, "the gate code does not open the trailer"

    assert await renter.say(image=PNG) == ["Photo 2 of 2: please send a photo of the left side."]
    [question] = await renter.say(image=PNG)
    assert question.startswith("Question 1 of 2: Lights work?")
    assert (await choices(client, renter))[-1] == [["YES", "YES"], ["NO", "NO"]]
    await renter.say("YES")
    done, pin_message = await renter.say("YES")
    assert "is done" in done and f"Trailer Bay 2: {pins['harbor-t2']}" in pin_message

    clock.current = booking.end_at + timedelta(minutes=40)  # late, past the 15 minutes' grace
    await run(runtime)
    await renter.inbox()
    intro, ask = await renter.say("RETURN")
    assert "Returning Enclosed cargo trailer 5x8" in intro and "the hitch" in ask
    await renter.say(image=PNG)
    await renter.say(image=PNG)
    assert await renter.say("NO") == [
        "Thank you. Now lock Enclosed cargo trailer 5x8 and reply DONE."
    ]
    noted, confirmed_return, fee = await renter.say("DONE")
    assert noted == "Return of Enclosed cargo trailer 5x8 noted: late."
    assert "confirmed" in confirmed_return
    # 40 minutes late, past the grace: one started hour at $10, charged to the saved card.
    assert "late fee of $10.00 was charged" in fee
    await booking.refresh_from_db()
    assert booking.return_timing == "late" and booking.late_fee_cents == 1000
    assert await ConditionPhoto.filter(booking=booking).count() == 4
    returned = await Handover.get(booking=booking, kind="return")
    assert returned.answers == [False] and returned.completed_at is not None


async def test_an_early_return_of_the_cage_switches_its_codes_off(journey: Journey) -> None:
    client, runtime, clock = journey
    renter = Renter(client, runtime)
    booking = await confirmed(client, renter, "C1")
    clock.current = booking.start_at - timedelta(hours=1)
    [pin_message] = await renter.inbox()
    assert "Equipment cage: " in pin_message, "C1 asks nothing at pickup: its PIN as before"
    clock.current = booking.start_at + timedelta(hours=1)
    await run(runtime)
    await renter.inbox()
    [outside] = await renter.say("DONE")
    assert "reply RETURN first" in outside
    intro, question = await renter.say("RETURN")
    assert "Equipment cage: ladders and tools" in intro
    assert question == "Question 1 of 1: All tools back on their hooks? Reply YES or NO."
    assert await renter.say("YES") == [
        "Thank you. Now lock Equipment cage: ladders and tools and reply DONE."
    ]
    noted, confirmed_return = await renter.say("DONE")
    assert noted.splitlines() == [
        "Return of Equipment cage: ladders and tools noted: early.",
        "As you returned early, your codes are being switched off now.",
    ]
    assert "confirmed" in confirmed_return
    await run(runtime)
    codes = await AccessCode.filter(booking=booking)
    assert codes and {c.state for c in codes} == {AccessCodeState.REMOVED}
    pin = pin_message.split("Equipment cage: ")[1].split()[0]
    late = await client.post("/sandbox/api/keypad", json={"lock": "altstadt-c1", "pin": pin})
    assert (await late.json())["opens"] is False


async def test_anything_but_the_awaited_answer_is_asked_again_and_never_fails(
    journey: Journey,
) -> None:
    client, runtime, clock = journey
    renter = Renter(client, runtime)
    booking = await confirmed(client, renter, "T2")
    clock.current = booking.start_at - timedelta(hours=2)
    await run(runtime)
    clock.current = booking.start_at - timedelta(hours=1)
    _gate, first = await renter.inbox()
    [not_a_photo, asked] = await renter.say("YES")
    assert not_a_photo == "I need a photo here, sent as a picture." and asked == first
    posted = await client.post(
        "/sandbox/api/messages",
        json={"address": renter.address, "text": "", "image": "data:image/png;base64,!!"},
    )
    assert posted.status < 500
    assert (await Handover.get(booking=booking)).photos_done == 0
    await renter.inbox()
    assert await renter.say(image=PNG) == ["Photo 2 of 2: please send a photo of the left side."]
    [question] = await renter.say(image=PNG)
    assert question.startswith("Question 1 of 2")
    extra, again = await renter.say(image=PNG)
    assert extra == "Please answer YES or NO." and again == question
    assert await ConditionPhoto.filter(booking=booking).count() == 2, "a photo too many is not kept"
    for garbage in ("0", "🚚" * 400, "RETURN", "DONE", "%s{what}\x00", "NaN"):
        await renter.say(garbage)  # answered with 202 (asked again, or a person offered)
    assert await ConditionPhoto.filter(booking=booking).count() == 2
    handover = await Handover.get(booking=booking, kind="pickup")
    assert handover.answers == [] and handover.completed_at is None
