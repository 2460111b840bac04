"""A location's lead times: its codes go onto the lock, are due to be set, and its PIN reaches
the renter that long before the rental, or as the environment's defaults say where it is silent."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from flows.access import DEADLINE_TIMER, PROGRAM_TIMER
from locks.simulated import SimulatedLockProvider
from storage.models import AccessCode, Booking, BookingState, Lock, Timer, TimerState
from tests.conftest import FakeClock
from tests.e2e.sandbox_apps import ADDRESS, App, MakeApp, sandbox_apps, say

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
MINUTE = timedelta(minutes=1)


@pytest.fixture
async def make_app(database: str, tmp_path: Path) -> AsyncIterator[MakeApp]:
    async with sandbox_apps(database, tmp_path) as make:
        yield make


async def _confirmed(app: App) -> Booking:
    """Tomorrow 10:00-14:00 at Harbor Yard, booked without payment and the ID approved."""
    client, _ = app
    await say(app, "BOOK T1 tomorrow 10-14")
    await say(app, "YES")
    await say(app, image=PNG, text="")
    [check] = (await (await client.get("/sandbox/api/identity")).json())["checks"]
    await client.post(f"/sandbox/api/identity/{check['id']}/decision", json={"approve": True})
    return await Booking.get(state=BookingState.CONFIRMED)


async def _told_when_due(app: App) -> list[str]:
    """Run the timers and effects due now; everything the renter has been sent so far."""
    client, runtime = app
    for _ in range(3):
        await runtime.timers.run_due()
        await runtime.dispatcher.run_once()
    listing = await client.get("/sandbox/api/messages", params={"address": ADDRESS})
    return [m["text"] for m in (await listing.json())["messages"] if m["direction"] == "out"]


async def _codes_on_the_locks(app: App, booking: Booking) -> int:
    _, runtime = app
    provider = runtime.locks["simulated"]
    assert isinstance(provider, SimulatedLockProvider)
    count = 0
    for code in await AccessCode.filter(booking=booking):
        lock = await Lock.get(id=code.lock_id)
        count += len(await provider.list_codes(lock.device_id))
    return count


@pytest.mark.parametrize(
    ("leads", "env", "minutes"),
    [
        (
            "code_lead_minutes = 120\nconfirm_before_minutes = 30\npin_lead_minutes = 15\n",
            {},
            (120, 30, 15),
        ),
        (
            "",
            {
                "KEYTURN_CODE_LEAD_MINUTES": "600",
                "KEYTURN_CONFIRM_BEFORE_MINUTES": "45",
                "KEYTURN_PIN_LEAD_MINUTES": "20",
            },
            (600, 45, 20),
        ),
    ],
    ids=["the-locations-own", "the-environments-defaults"],
)
async def test_codes_deadline_and_pin_follow_the_locations_lead_times(
    make_app: MakeApp, leads: str, env: dict[str, str], minutes: tuple[int, int, int]
) -> None:
    code_lead, confirm_before, pin_lead = (timedelta(minutes=m) for m in minutes)
    app = await make_app(env, leads=leads, take_payments=False)
    _, runtime = app
    clock = runtime.clock
    assert isinstance(clock, FakeClock)
    booking = await _confirmed(app)
    codes = await AccessCode.filter(booking=booking)
    assert codes
    opens = codes[0].starts_at  # the rental's window, buffer included

    deadlines = await Timer.filter(kind=DEADLINE_TIMER, state=TimerState.PENDING)
    assert {timer.due_at for timer in deadlines} == {opens - confirm_before}
    assert len(deadlines) == len(codes)
    programs = await Timer.filter(kind=PROGRAM_TIMER, state=TimerState.PENDING)
    assert {timer.due_at for timer in programs} == {opens - code_lead}

    clock.current = opens - code_lead - MINUTE
    await _told_when_due(app)
    assert await _codes_on_the_locks(app, booking) == 0, "not programmed before the code lead"
    clock.current = opens - code_lead
    await _told_when_due(app)
    assert await _codes_on_the_locks(app, booking) == len(codes)

    clock.current = opens - pin_lead - MINUTE
    assert not [text for text in await _told_when_due(app) if "Main gate: " in text]
    clock.current = opens - pin_lead
    [pin_message] = [text for text in await _told_when_due(app) if "Main gate: " in text]
    assert "Trailer Bay 1: " in pin_message
