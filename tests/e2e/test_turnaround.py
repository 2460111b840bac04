"""The turnaround, as renters meet it on the sandbox: an item is taken for its booking's whole
access window, buffers included, so back-to-back renters never share the item's lock; shared
gates may overlap. Harbor Yard's buffers in the demo inventory are 15 minutes each side."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from bot.app import Runtime
from bot.cli import DEMO_INVENTORY
from locks.windows import AccessWindow
from storage.models import AccessCode, Booking, BookingState, EffectState, OpsAlert, OutboxEffect
from tests.conftest import FakeClock
from tests.e2e.test_cli import keyturn
from tests.e2e.test_sandbox_journey import PNG, Renter, journey, pay, run

__all__ = ["journey"]  # the sandbox fixture, shared with the whole-rental tests

Journey = tuple[TestClient[Any, Any], Runtime, FakeClock]
#: Tuesday 2 June 2026 in New York (UTC-4): "tomorrow" from the fixture's Monday noon.
TUESDAY = datetime(2026, 6, 2, 4, 0, tzinfo=UTC)


def local(hour: float) -> datetime:
    """Tuesday at ``hour`` o'clock, New York time, in UTC."""
    return TUESDAY + timedelta(hours=hour)


async def last_choices(client: TestClient[Any, Any], address: str) -> list[str]:
    """The labels of the numbered choices the renter was offered last."""
    listing = await client.get("/sandbox/api/messages", params={"address": address})
    out = [m for m in (await listing.json())["messages"] if m["direction"] == "out"]
    return [label for _, label in out[-1]["choices"]]


async def confirmed(client: TestClient[Any, Any], renter: Renter, line: str) -> Booking:
    """``line`` said (a booking or a numbered choice), the quote accepted, paid and the ID
    approved: the renter's booking."""
    [quote] = await renter.say(line)
    assert "Reply YES" in quote, quote
    _, link = await renter.say("YES")
    await pay(client, link)
    await renter.say(image=PNG)
    [check] = (await (await client.get("/sandbox/api/identity")).json())["checks"]
    await client.post(f"/sandbox/api/identity/{check['id']}/decision", json={"approve": True})
    assert any("is confirmed" in text for text in await renter.inbox())
    booking = (
        await Booking.filter(
            renter__conversations__channel="sandbox", renter__conversations__address=renter.address
        )
        .order_by("-id")
        .first()
    )
    assert booking is not None and booking.state == BookingState.CONFIRMED
    return booking


async def window_on(booking: Booking, lock: str) -> AccessWindow:
    code = await AccessCode.get(booking=booking, lock__key=lock)
    return AccessWindow(code.starts_at, code.ends_at)


async def pin_of(renter: Renter) -> str:
    [pin_message] = [t for t in await renter.inbox() if "Trailer Bay 1: " in t]
    [pin] = set(re.findall(r": (\d{6})", pin_message))
    return pin


async def opens(client: TestClient[Any, Any], pin: str) -> bool:
    typed = await client.post("/sandbox/api/keypad", json={"lock": "harbor-t1", "pin": pin})
    result: bool = (await typed.json())["opens"]
    return result


async def test_the_next_renter_is_offered_slots_clear_of_the_turnaround_and_never_shares_the_bay(
    journey: Journey,
) -> None:
    client, runtime, clock = journey
    first = Renter(client, runtime)
    a = await confirmed(client, first, "BOOK T1 tomorrow 10-12")
    second = Renter(client, runtime, "+15550100002")
    [taken] = await second.say("BOOK T1 tomorrow 12-14")
    assert "That time is taken" in taken
    offered = await last_choices(client, second.address)
    assert offered[0].startswith("Tue, Jun 2 12:30"), offered  # 12:15 + its own 15 minutes
    assert not [slot for slot in offered if slot.startswith(("Tue, Jun 2 12:00", "Tue, Jun 2 11"))]
    b = await confirmed(client, second, "1")  # the first of them

    first_bay, second_bay = await window_on(a, "harbor-t1"), await window_on(b, "harbor-t1")
    assert first_bay == AccessWindow(local(9.75), local(12.25))
    assert second_bay == AccessWindow(local(12.25), local(14.75))
    assert not first_bay.overlaps(second_bay)

    # A shared gate admits renters of different items at once: T2 in the middle of both.
    third = Renter(client, runtime, "+15550100003")
    c = await confirmed(client, third, "BOOK T2 tomorrow 11-13")
    assert (await window_on(c, "harbor-gate")).overlaps(await window_on(a, "harbor-gate"))

    clock.advance(timedelta(hours=1))  # B's and C's codes go on the locks a day ahead
    await run(runtime)
    clock.current = local(12) + timedelta(minutes=10)  # A's buffer after: A's code only
    await run(runtime)
    pin_a, pin_b = await pin_of(first), await pin_of(second)
    assert await opens(client, pin_a) and not await opens(client, pin_b)
    clock.current = local(12) + timedelta(minutes=20)  # B's buffer before: B's code only
    await run(runtime)
    assert not await opens(client, pin_a) and await opens(client, pin_b)


async def test_an_extension_into_the_next_renters_turnaround_is_refused(journey: Journey) -> None:
    client, runtime, _ = journey
    first = Renter(client, runtime)
    a = await confirmed(client, first, "BOOK T1 tomorrow 10-12")
    second = Renter(client, runtime, "+15550100002")
    [quote] = await second.say("BOOK T1 tomorrow 13-15")
    assert "Reply YES" in quote
    await second.say("YES")  # held: B's turnaround starts at 12:45
    [conflict] = await first.say("EXTEND 1h")  # would end at 13:00, its code at 13:15
    assert "cannot be extended" in conflict
    await a.refresh_from_db()
    assert (a.end_at, a.blocked_until) == (local(12), local(12.25))
    assert await window_on(a, "harbor-t1") == AccessWindow(local(9.75), local(12.25))


async def test_an_extension_paid_after_the_next_renter_took_its_turnaround_is_refunded(
    journey: Journey,
) -> None:
    client, runtime, _ = journey
    first = Renter(client, runtime)
    a = await confirmed(client, first, "BOOK T1 tomorrow 10-12")
    [quote] = await first.say("EXTEND 1h")
    assert "Reply YES" in quote
    _, link = await first.say("YES")  # quoted and linked, not yet paid: nothing is held
    second = Renter(client, runtime, "+15550100002")
    [taken] = await second.say("BOOK T1 tomorrow 13-15")
    assert "Reply YES" in taken
    await second.say("YES")  # its turnaround starts at 12:45, before A's would end (13:15)
    await pay(client, link)
    await run(runtime)
    await a.refresh_from_db()
    assert (a.end_at, a.blocked_until) == (local(12), local(12.25))
    [refund] = await OutboxEffect.filter(kind="payment.refund")
    assert refund.state == EffectState.DONE and refund.payload["amount"] == 1250
    alert = await OpsAlert.get(kind="late_payment_refunded")
    assert alert.params["why"] == "extension_taken"


async def test_an_older_extension_paid_last_never_moves_the_end_back(journey: Journey) -> None:
    client, runtime, _ = journey
    renter = Renter(client, runtime)
    a = await confirmed(client, renter, "BOOK T1 tomorrow 10-12")
    await renter.say("EXTEND 1h")
    _, one_hour = await renter.say("YES")
    await renter.say("EXTEND 3h")
    _, three_hours = await renter.say("YES")
    await pay(client, three_hours)
    await run(runtime)
    await pay(client, one_hour)  # quoted from 12:00, which is no longer the end
    await run(runtime)
    await a.refresh_from_db()
    assert a.end_at == local(15), "the end stays where the extension paid first put it"
    [refund] = await OutboxEffect.filter(kind="payment.refund")
    assert refund.state == EffectState.DONE and refund.payload["amount"] == 1250
    alert = await OpsAlert.get(kind="late_payment_refunded")
    assert alert.params["why"] == "extension_superseded"


def harbor_buffers(tmp_path: Path, minutes: int) -> Path:
    """The demo inventory with Harbor Yard's buffers set to ``minutes``."""
    text = DEMO_INVENTORY.read_text(encoding="utf-8")
    harbor, rest = text.split('slug = "altstadt"', 1)
    harbor = re.sub(r"(buffer_(before|after)_minutes) = \d+", rf"\1 = {minutes}", harbor)
    path = tmp_path / f"inventory-{minutes}.toml"
    path.write_text(harbor + 'slug = "altstadt"' + rest, encoding="utf-8")
    return path


async def test_new_buffers_apply_to_new_bookings_only(journey: Journey, tmp_path: Path) -> None:
    client, runtime, _ = journey
    first = Renter(client, runtime)
    a = await confirmed(client, first, "BOOK T1 tomorrow 10-12")
    env = {"KEYTURN_DATABASE_URL": runtime.settings.database_url}
    second = Renter(client, runtime, "+15550100002")

    # No buffers any more: A's range stays taken, so 12:00 is not reopened.
    applied = keyturn("inventory", "apply", str(harbor_buffers(tmp_path, 0)), env=env)
    assert applied.returncode == 0, applied.stderr
    runtime.journey.inventory.forget()  # as workers do within 5 seconds
    [taken] = await second.say("BOOK T1 tomorrow 12-14")
    assert "That time is taken" in taken
    assert (await last_choices(client, second.address))[0].startswith("Tue, Jun 2 12:30")

    # An hour each side: a new booking's own turnaround must clear A's stored range.
    applied = keyturn("inventory", "apply", str(harbor_buffers(tmp_path, 60)), env=env)
    assert applied.returncode == 0, applied.stderr
    runtime.journey.inventory.forget()
    [taken] = await second.say("BOOK T1 tomorrow 12:30-14:30")
    assert "That time is taken" in taken
    assert (await last_choices(client, second.address))[0].startswith("Tue, Jun 2 1:30")

    await a.refresh_from_db()
    assert (a.blocked_from, a.blocked_until) == (local(9.75), local(12.25))
    assert await window_on(a, "harbor-t1") == AccessWindow(local(9.75), local(12.25))
    # Extended, A keeps the buffer it was booked with.
    [quote] = await first.say("EXTEND 1h")
    assert "Reply YES" in quote
    _, link = await first.say("YES")
    await pay(client, link)
    assert any("now ends" in text for text in await first.inbox())
    await a.refresh_from_db()
    assert (a.end_at, a.blocked_until) == (local(13), local(13.25))
    assert await window_on(a, "harbor-t1") == AccessWindow(local(9.75), local(13.25))
