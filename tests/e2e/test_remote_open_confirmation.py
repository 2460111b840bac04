"""A remote OPEN is "open" only once the lock confirms it, on every vendor, and an unlock the
lock took is never sent a second time.

The renter writes OPEN by signed Twilio webhook; the Trailer Bay 1 lock is moved to a device on
the fake Seam, Nuki or igloohome cloud (reached through the real adapters), the Main gate stays a
simulated lock that opens at once. Seam's action attempt, Nuki's smartlock log entry and
igloohome's bridge job can confirm late, never, or report a failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from locks.igloohome import IgloohomeLockProvider
from locks.nuki import NukiLockProvider
from locks.port import LockProvider, capabilities_to_json
from storage.models import Lock, OpsAlert
from tests.e2e.test_channel_journeys import TwilioRenter, World, world
from tests.e2e.test_remote_open_outage import (
    ASKED,
    BAY_FAILED,
    BAY_OPEN,
    GATE_OPEN,
    UNLOCK,
    pass_time,
    renting,
    seam,
    unlocked,
)
from tests.fakes.igloohome import FakeIgloohome
from tests.fakes.nuki import FakeNuki
from tests.fakes.seam import FakeSeam
from tests.fakes.server import running

__all__ = ["seam", "world"]  # the fixtures, imported for these tests

BAY_UNCONFIRMED = "Trailer Bay 1 took the request but has not confirmed it opened"
NUKI_LOCK = 17432109  # the fake's online Smart Lock 3.0
IGLOO_LOCK = "OE1X4e5f6a7b"  # the fake's lock linked to a bridge
POLL = ("GET", "/action_attempts/get")


async def move_bay_to(world: World, name: str, provider: LockProvider, device: str) -> None:
    world.runtime.locks[name] = provider
    await Lock.filter(key="harbor-t1").update(
        provider=name,
        device_id=device,
        capabilities=capabilities_to_json((await provider.get_device(device)).capabilities),
    )


@pytest.fixture
async def nuki(world: World) -> AsyncIterator[FakeNuki]:
    fake = FakeNuki()
    async with running(fake.app()) as base:
        # One read of the log per attempt: what the lock does later is seen by later attempts.
        provider = NukiLockProvider(fake.api_token, base_url=base, timeout=5, unlock_wait=0)
        await move_bay_to(world, "nuki", provider, str(NUKI_LOCK))
        try:
            yield fake
        finally:
            fake.release()
            await provider.close()


@pytest.fixture
async def igloohome(world: World) -> AsyncIterator[FakeIgloohome]:
    fake = FakeIgloohome()
    async with running(fake.app()) as base:
        provider = IgloohomeLockProvider(
            fake.client_id,
            fake.client_secret,
            base_url=f"{base}/igloohome",
            timeout=5,
            unlock_wait=0,
        )
        await move_bay_to(world, "igloohome", provider, IGLOO_LOCK)
        try:
            yield fake
        finally:
            fake.release()
            await provider.close()


async def asking_to_open(world: World) -> TwilioRenter:
    renter = TwilioRenter(world)
    await renting(world, renter)
    asking = await renter.say("OPEN")
    assert asking[0].startswith(ASKED) and GATE_OPEN in asking, asking
    assert BAY_OPEN not in asking, "not yet confirmed by the lock"
    return renter


async def open_alerts(kind: str) -> list[OpsAlert]:
    return await OpsAlert.filter(kind=kind, resolved_at__isnull=True)


async def test_a_seam_unlock_that_stays_pending_is_polled_never_sent_again(
    world: World, seam: tuple[FakeSeam, str]
) -> None:
    fake, _ = seam
    world.runtime.locks["seam"].unlock_wait = 0.1  # type: ignore[attr-defined]
    fake.unlock_outcome = "pending"  # Seam took it; the lock never says it is done
    renter = await asking_to_open(world)

    await pass_time(world, 55)
    assert not any("Trailer Bay 1" in text for text in await renter.inbox()), "still within it"
    assert fake.requests.count(UNLOCK) == 1
    assert fake.requests.count(POLL) >= 3, "the same attempt asked again within the lifetime"

    await pass_time(world, 5)  # the lifetime is over, the attempt still pending
    [unconfirmed] = await renter.inbox()
    assert unconfirmed.startswith(BAY_UNCONFIRMED) and "AGENT" in unconfirmed, unconfirmed
    [alert] = await open_alerts("remote_open_unconfirmed")
    assert alert.message_key == "ops.open_unconfirmed"
    assert alert.params["lock"] == "Trailer Bay 1" and "booking" in alert.params["who"]
    assert await open_alerts("remote_open_failed") == []

    polls = fake.requests.count(POLL)
    await pass_time(world, 3600, step=300)
    assert fake.requests.count(UNLOCK) == 1, "never sent again"
    assert fake.requests.count(POLL) == polls, "nor polled past the lifetime"
    assert await renter.inbox() == []


async def test_a_seam_unlock_confirmed_after_some_polls_is_told_once(
    world: World, seam: tuple[FakeSeam, str]
) -> None:
    fake, device = seam
    world.runtime.locks["seam"].unlock_wait = 0.1  # type: ignore[attr-defined]
    fake.unlock_pending_polls = 4
    renter = await asking_to_open(world)

    await pass_time(world, 30)
    assert await renter.inbox() == [BAY_OPEN]
    assert fake.requests.count(UNLOCK) == 1
    assert unlocked(fake, device) == 1
    await pass_time(world, 600, step=60)
    assert await renter.inbox() == [], "told once"
    assert fake.requests.count(UNLOCK) == 1


async def test_a_seam_unlock_that_ends_in_error_after_pending_could_not_open(
    world: World, seam: tuple[FakeSeam, str]
) -> None:
    fake, device = seam
    world.runtime.locks["seam"].unlock_wait = 0.1  # type: ignore[attr-defined]
    fake.unlock_pending_polls = 8  # beyond what the first attempts wait for
    fake.unlock_outcome = "lock_jammed"
    renter = await asking_to_open(world)

    await pass_time(world, 30)
    [could_not] = await renter.inbox()
    assert could_not.startswith(BAY_FAILED), could_not
    assert fake.requests.count(UNLOCK) == 1
    assert unlocked(fake, device) == 0
    [alert] = await open_alerts("remote_open_failed")
    assert alert.params["lock"] == "Trailer Bay 1"


@pytest.mark.parametrize(
    ("outcome", "told", "alert"),
    [
        ("late", BAY_OPEN, None),
        ("never", BAY_UNCONFIRMED, "remote_open_unconfirmed"),
        ("failed", BAY_FAILED, "remote_open_failed"),
    ],
)
async def test_a_nuki_open_follows_the_smartlock_log(
    world: World, nuki: FakeNuki, outcome: str, told: str, alert: str | None
) -> None:
    nuki.action_log_after = 3
    nuki.action_outcome = {"late": "success"}.get(outcome, outcome)
    renter = await asking_to_open(world)

    await pass_time(world, 60)
    [answer] = await renter.inbox()
    assert answer.startswith(told), answer
    assert nuki.actions == [(NUKI_LOCK, 1)], "one unlock, never sent again"
    assert [a.kind for a in await OpsAlert.filter(kind__startswith="remote_open_")] == (
        [alert] if alert else []
    )
    await pass_time(world, 600, step=60)
    assert await renter.inbox() == []
    assert nuki.actions == [(NUKI_LOCK, 1)]


@pytest.mark.parametrize(
    ("outcome", "told", "alert"),
    [
        ("late", BAY_OPEN, None),
        ("never", BAY_UNCONFIRMED, "remote_open_unconfirmed"),
        ("failed", BAY_FAILED, "remote_open_failed"),
    ],
)
async def test_an_igloohome_open_follows_its_bridge_job(
    world: World, igloohome: FakeIgloohome, outcome: str, told: str, alert: str | None
) -> None:
    igloohome.job_pending_reads = 3
    igloohome.job_outcome = {"late": "completed"}.get(outcome, outcome)
    renter = await asking_to_open(world)

    await pass_time(world, 60)
    [answer] = await renter.inbox()
    assert answer.startswith(told), answer
    assert [(j["deviceId"], j["jobType"]) for j in igloohome.jobs] == [(IGLOO_LOCK, 2)]
    assert [a.kind for a in await OpsAlert.filter(kind__startswith="remote_open_")] == (
        [alert] if alert else []
    )
    await pass_time(world, 600, step=60)
    assert await renter.inbox() == []
    assert len(igloohome.jobs) == 1
