"""A remote OPEN during a Seam outage: tried for its lifetime (60 s), never after it.

The renter writes OPEN by signed Twilio webhook; the Trailer Bay 1 lock is a device on the fake
Seam API (reached through the real SDK), the Main gate a simulated lock that opens at once.
The renter hears that a door is open only once Seam's action attempt reports ``success``, and
past the lifetime that it could not be opened and how to reach a person; ops is alerted then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from locks.port import capabilities_to_json
from locks.seam import SeamLockProvider
from storage.models import Lock, OpsAlert, SimulatedUnlock
from tests.e2e.test_channel_journeys import START, TwilioRenter, World, world
from tests.e2e.test_faults import confirmed_booking
from tests.fakes.seam import API_KEY as SEAM_API_KEY
from tests.fakes.seam import FakeSeam
from tests.fakes.server import running

__all__ = ["world"]  # the fixture, imported for these tests

ASKED = "Asking Main gate, Trailer Bay 1 to open"
GATE_OPEN = "Main gate is open now."
BAY_OPEN = "Trailer Bay 1 is open now."
BAY_FAILED = "Trailer Bay 1 could not be opened remotely"
UNLOCK = ("POST", "/locks/unlock_door")


@pytest.fixture
async def seam(world: World) -> AsyncIterator[tuple[FakeSeam, str]]:
    """The Trailer Bay 1 lock moved to a Seam device on the fake Seam API."""
    fake = FakeSeam(now=world.clock.now)
    fake.program_immediately = True
    device = fake.add_device(name="Trailer Bay 1", code_constraints=())
    async with running(fake.app()) as base:
        provider = SeamLockProvider(SEAM_API_KEY, base_url=base, timeout=5)
        world.runtime.locks["seam"] = provider
        await Lock.filter(key="harbor-t1").update(
            provider="seam",
            device_id=device,
            capabilities=capabilities_to_json((await provider.get_device(device)).capabilities),
        )
        try:
            yield fake, device
        finally:
            await provider.aclose()


async def renting(world: World, renter: TwilioRenter) -> None:
    """A booking in its window, its PIN received."""
    await confirmed_booking(world, renter)
    await world.at(START + timedelta(minutes=5))
    await renter.inbox()


def unlocked(fake: FakeSeam, device: str) -> int:
    return len([e for e in fake.events if e["event_type"] == "lock.unlocked"])


async def failed_open_alerts() -> list[OpsAlert]:
    return await OpsAlert.filter(kind="remote_open_failed", resolved_at__isnull=True)


async def pass_time(world: World, seconds: int, step: int = 5) -> None:
    for _ in range(seconds // step):
        world.clock.advance(timedelta(seconds=step))
        await world.run()


@pytest.mark.parametrize("outage", ["5xx", "offline"])
async def test_an_outage_longer_than_the_lifetime_never_opens_the_door_afterwards(
    world: World, seam: tuple[FakeSeam, str], outage: str
) -> None:
    fake, device = seam
    renter = TwilioRenter(world)
    await renting(world, renter)
    if outage == "5xx":
        fake.fail_next(1000, status=503)
    else:  # Seam takes the unlock; its action attempt ends in error: the lock is offline
        fake.set_online(device, False)

    asking = await renter.say("OPEN")
    assert asking[0].startswith(ASKED) and GATE_OPEN in asking, asking
    assert BAY_OPEN not in asking and not any(BAY_FAILED in text for text in asking)
    await pass_time(world, 55)
    assert not any(BAY_FAILED in text for text in await renter.inbox()), "still within it"
    assert await failed_open_alerts() == []
    tries = fake.requests.count(UNLOCK) if outage == "offline" else len(fake.requests)
    assert tries >= 3, "tried again within the lifetime"

    await pass_time(world, 5)  # the lifetime is over
    [could_not] = await renter.inbox()
    assert could_not.startswith(BAY_FAILED) and "AGENT" in could_not, could_not
    [alert] = await failed_open_alerts()
    assert alert.params["lock"] == "Trailer Bay 1" and "booking" in alert.params["who"]

    # Seam comes back: the door stays shut, and nobody is told anything more.
    fake._failures.clear()
    fake.set_online(device, True)
    unlocks_asked = fake.requests.count(UNLOCK)
    await pass_time(world, 3600, step=300)
    assert fake.requests.count(UNLOCK) == unlocks_asked, "never attempted past the deadline"
    assert unlocked(fake, device) == 0
    assert await renter.inbox() == []
    opened_alerts = await OpsAlert.filter(kind="remote_open")
    assert not any("Trailer" in str(a.params) for a in opened_alerts), "ops told only the gate"


async def test_an_outage_within_the_lifetime_opens_and_the_renter_is_told_once_confirmed(
    world: World, seam: tuple[FakeSeam, str]
) -> None:
    fake, device = seam
    renter = TwilioRenter(world)
    await renting(world, renter)
    fake.fail_next(2, status=503, path="/locks/unlock_door")  # the SDK never retries it

    asking = await renter.say("OPEN")
    assert asking[0].startswith(ASKED) and GATE_OPEN in asking, asking
    assert BAY_OPEN not in asking, "not yet confirmed by the lock"
    assert unlocked(fake, device) == 0
    await pass_time(world, 30)
    assert unlocked(fake, device) == 1
    [opened] = await renter.inbox()
    assert opened == BAY_OPEN
    assert await failed_open_alerts() == []
    await pass_time(world, 600, step=60)
    assert await renter.inbox() == [], "told once"
    assert unlocked(fake, device) == 1
    assert await SimulatedUnlock.filter(source="remote", accepted=True).count() == 1
