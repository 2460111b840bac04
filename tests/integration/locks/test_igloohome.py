"""The igloohome provider against the fake igloohome cloud: algoPINs, their windows and limits."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from locks.igloohome import IgloohomeLockProvider
from locks.igloohome.client import AlgoPinKind, IgloohomeClient, IgloohomeHttpError
from locks.port import (
    CapabilityMissing,
    CodeRequest,
    CodeStatus,
    LockCapability,
    LockError,
    LockNotFound,
    LockRejected,
    LockUnavailable,
    RejectionReason,
)
from tests.fakes.igloohome import FIXTURES, FakeIgloohome
from tests.fakes.server import running

LOCK = "EB1X0a1b2c3d"  # no bridge
GATE = "OE1X4e5f6a7b"  # linked to bridge BR1X8c9d0e1f
BRIDGE = "BR1X8c9d0e1f"
BERLIN = "Europe/Berlin"


class Ticks:
    """A monotonic clock the test moves by hand, for token expiry."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Cloud:
    fake: FakeIgloohome
    url: str
    ticks: Ticks
    provider: IgloohomeLockProvider

    def provider_with(
        self, *, client_secret: str | None = None, timeout: float = 2.0
    ) -> IgloohomeLockProvider:
        return IgloohomeLockProvider(
            self.fake.client_id,
            client_secret or self.fake.client_secret,
            base_url=f"{self.url}/igloohome",
            timeout=timeout,
        )

    def provider_with_unlock_wait(self, unlock_wait: float) -> IgloohomeLockProvider:
        return IgloohomeLockProvider(
            self.fake.client_id,
            self.fake.client_secret,
            base_url=f"{self.url}/igloohome",
            timeout=2.0,
            unlock_wait=unlock_wait,
        )


@pytest.fixture
async def cloud() -> AsyncIterator[Cloud]:
    fake = FakeIgloohome()
    ticks = Ticks()
    async with running(fake.app()) as url:
        provider = IgloohomeLockProvider(
            fake.client_id,
            fake.client_secret,
            base_url=f"{url}/igloohome",
            timeout=2.0,
            clock=ticks,
        )
        try:
            yield Cloud(fake, url, ticks, provider)
        finally:
            fake.release()
            await provider.close()


def request(
    starts_at: datetime,
    ends_at: datetime,
    *,
    device_id: str = LOCK,
    pin: str | None = None,
    timezone: str = BERLIN,
) -> CodeRequest:
    return CodeRequest(
        device_id=device_id,
        pin=pin,
        starts_at=starts_at,
        ends_at=ends_at,
        name="Booking K7Q2",
        timezone=timezone,
    )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# -- devices -------------------------------------------------------------------------------


async def test_lists_locks_with_offline_codes_and_no_remote_revocation(cloud: Cloud) -> None:
    devices = {d.device_id: d for d in await cloud.provider.list_devices()}

    assert set(devices) == {LOCK, GATE}  # the bridge is not a lock
    for device in devices.values():
        assert LockCapability.OFFLINE_CODES in device.capabilities
        assert LockCapability.TIMED_PINS in device.capabilities
        assert LockCapability.REMOTE_DELETE not in device.capabilities
        assert LockCapability.UPDATE_WINDOW not in device.capabilities
    assert LockCapability.REMOTE_UNLOCK in devices[GATE].capabilities
    assert LockCapability.REMOTE_UNLOCK not in devices[LOCK].capabilities
    assert devices[LOCK].name == "Trailer Bay 1"
    assert devices[LOCK].battery_level == pytest.approx(0.87)
    assert devices[LOCK].online is None


async def test_get_device_and_unknown_device(cloud: Cloud) -> None:
    gate = await cloud.provider.get_device(GATE)
    assert gate.name == "Storage Gate"
    assert LockCapability.REMOTE_UNLOCK in gate.capabilities

    with pytest.raises(LockNotFound):
        await cloud.provider.get_device("NOPE0000")
    with pytest.raises(LockNotFound):
        await cloud.provider.get_device(BRIDGE)


# -- algoPIN windows -----------------------------------------------------------------------


async def test_short_window_is_an_hourly_algopin_rounded_outwards_in_lock_time(
    cloud: Cloud,
) -> None:
    code = await cloud.provider.create_code(
        request(utc(2026, 6, 1, 9, 20), utc(2026, 6, 1, 11, 40))
    )

    issued = cloud.fake.algopins[-1]
    assert issued.kind == "hourly"
    assert issued.device_id == LOCK
    assert issued.body == {
        "variance": 1,
        "startDate": "2026-06-01T11:00:00+02:00",
        "endDate": "2026-06-01T14:00:00+02:00",
        "accessName": "Booking K7Q2",
    }
    assert code.pin == issued.pin
    assert code.provider_ref == issued.pin_id
    assert code.offline is True
    assert code.status is CodeStatus.SET
    assert (code.starts_at, code.ends_at) == (utc(2026, 6, 1, 9), utc(2026, 6, 1, 12))
    assert "first_use_within_24h" not in code.warnings
    assert "window_widened" in code.warnings


async def test_window_already_on_the_hour_is_kept(cloud: Cloud) -> None:
    code = await cloud.provider.create_code(
        request(utc(2026, 6, 1, 8), utc(2026, 6, 1, 10), timezone="America/New_York")
    )
    assert cloud.fake.algopins[-1].body["startDate"] == "2026-06-01T04:00:00-04:00"
    assert cloud.fake.algopins[-1].body["endDate"] == "2026-06-01T06:00:00-04:00"
    assert (code.starts_at, code.ends_at) == (utc(2026, 6, 1, 8), utc(2026, 6, 1, 10))
    assert code.warnings == ()


async def test_rounding_on_the_night_clocks_go_back_in_berlin(cloud: Cloud) -> None:
    # 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:xx happens twice.
    # 23:20Z is 01:20 CEST; 01:40Z is 02:40 CET (the second 02:40).
    code = await cloud.provider.create_code(
        request(utc(2026, 10, 24, 23, 20), utc(2026, 10, 25, 1, 40))
    )
    body = cloud.fake.algopins[-1].body
    assert body["startDate"] == "2026-10-25T01:00:00+02:00"
    assert body["endDate"] == "2026-10-25T03:00:00+01:00"
    assert body == json.loads((FIXTURES / "algopin_hourly.json").read_text())["request"]
    assert (code.starts_at, code.ends_at) == (utc(2026, 10, 24, 23), utc(2026, 10, 25, 2))

    # 00:40Z is the FIRST 02:40 (CEST): rounding up gives the first 03:00 CEST, which the clock
    # shows as 02:00 CET, one hour later.
    code = await cloud.provider.create_code(
        request(utc(2026, 10, 24, 23, 20), utc(2026, 10, 25, 0, 40))
    )
    assert cloud.fake.algopins[-1].body["endDate"] == "2026-10-25T02:00:00+01:00"
    assert code.ends_at == utc(2026, 10, 25, 1)


async def test_rounding_on_the_night_clocks_go_forward_in_new_york(cloud: Cloud) -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT. 06:30Z is 01:30 EST; 07:10Z is 03:10 EDT.
    code = await cloud.provider.create_code(
        request(utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 10), timezone="America/New_York")
    )
    body = cloud.fake.algopins[-1].body
    assert body["startDate"] == "2026-03-08T01:00:00-05:00"
    assert body["endDate"] == "2026-03-08T04:00:00-04:00"
    assert (code.starts_at, code.ends_at) == (utc(2026, 3, 8, 6), utc(2026, 3, 8, 8))


async def test_codes_of_a_day_or_more_carry_the_first_use_warning(cloud: Cloud) -> None:
    code = await cloud.provider.create_code(request(utc(2026, 6, 1, 8), utc(2026, 6, 6, 8)))
    assert cloud.fake.algopins[-1].kind == "hourly"
    assert code.warnings == ("first_use_within_24h",)


async def test_28_days_is_still_hourly(cloud: Cloud) -> None:
    await cloud.provider.create_code(request(utc(2026, 6, 1, 8), utc(2026, 6, 29, 8)))
    assert cloud.fake.algopins[-1].kind == "hourly"


async def test_longer_windows_become_daily_ending_at_the_start_time_of_day(cloud: Cloud) -> None:
    # 40 days across the spring change: 10:30 CET to 08:15 CEST.
    code = await cloud.provider.create_code(
        request(utc(2026, 3, 1, 9, 30), utc(2026, 4, 10, 6, 15))
    )

    issued = cloud.fake.algopins[-1]
    assert issued.kind == "daily"
    assert issued.body["startDate"] == "2026-03-01T10:00:00+01:00"
    assert issued.body["endDate"] == "2026-04-10T10:00:00+02:00"
    assert code.starts_at == utc(2026, 3, 1, 9)
    assert code.ends_at == utc(2026, 4, 10, 8)  # never shorter than asked
    assert code.ends_at >= utc(2026, 4, 10, 6, 15)
    assert code.warnings == ("first_use_within_24h", "window_widened")


async def test_a_window_just_over_28_days_gets_the_29_day_minimum(cloud: Cloud) -> None:
    await cloud.provider.create_code(request(utc(2026, 6, 1, 8), utc(2026, 6, 29, 11)))
    issued = cloud.fake.algopins[-1]
    assert issued.kind == "daily"
    assert issued.body["startDate"] == "2026-06-01T10:00:00+02:00"
    assert issued.body["endDate"] == "2026-06-30T10:00:00+02:00"


async def test_a_window_over_367_days_is_refused_before_asking(cloud: Cloud) -> None:
    with pytest.raises(LockRejected) as refused:
        await cloud.provider.create_code(request(utc(2026, 6, 1, 8), utc(2027, 6, 10, 8)))
    assert refused.value.reason is RejectionReason.INVALID_WINDOW
    assert cloud.fake.algopins == []


async def test_the_same_window_gives_the_same_offline_pin(cloud: Cloud) -> None:
    first = await cloud.provider.create_code(request(utc(2026, 6, 1, 9), utc(2026, 6, 1, 12)))
    again = await cloud.provider.create_code(request(utc(2026, 6, 1, 9), utc(2026, 6, 1, 12)))
    other = await cloud.provider.create_code(request(utc(2026, 6, 1, 9), utc(2026, 6, 1, 13)))
    assert first.pin == again.pin
    assert first.pin != other.pin


# -- what algoPINs cannot do ---------------------------------------------------------------


async def test_a_chosen_pin_is_refused(cloud: Cloud) -> None:
    with pytest.raises(LockRejected) as refused:
        await cloud.provider.create_code(
            request(utc(2026, 6, 1, 9), utc(2026, 6, 1, 12), pin="4839271")
        )
    assert refused.value.reason is RejectionReason.INVALID_CODE
    assert "4839271" not in str(refused.value)
    assert cloud.fake.algopins == []


async def test_algopins_cannot_be_revoked_or_moved(cloud: Cloud) -> None:
    code = await cloud.provider.create_code(request(utc(2026, 6, 1, 9), utc(2026, 6, 1, 12)))

    with pytest.raises(CapabilityMissing, match="cannot be revoked"):
        await cloud.provider.delete_code(LOCK, code.provider_ref)
    with pytest.raises(CapabilityMissing, match="cannot be revoked"):
        await cloud.provider.update_code_window(
            LOCK, code.provider_ref, utc(2026, 6, 1, 9), utc(2026, 6, 1, 14)
        )
    assert await cloud.provider.list_codes(LOCK) == []
    assert await cloud.provider.get_code(LOCK, code.provider_ref) is None


async def test_unknown_device_is_not_found(cloud: Cloud) -> None:
    with pytest.raises(LockNotFound):
        await cloud.provider.create_code(
            request(utc(2026, 6, 1, 9), utc(2026, 6, 1, 12), device_id="NOPE0000")
        )


# -- remote unlock -------------------------------------------------------------------------


async def test_unlock_goes_through_the_linked_bridge(cloud: Cloud) -> None:
    await cloud.provider.unlock(GATE)
    assert cloud.fake.jobs[-1]["deviceId"] == GATE
    assert cloud.fake.jobs[-1]["bridgeId"] == BRIDGE
    assert cloud.fake.jobs[-1]["jobType"] == 2


async def test_unlock_is_confirmed_by_its_bridge_job(cloud: Cloud) -> None:
    cloud.fake.job_pending_reads = 2
    provider = cloud.provider_with_unlock_wait(0)
    try:
        pending = await provider.unlock(GATE)
        [job] = cloud.fake.jobs
        assert pending.action_id == job["jobId"] and not pending.confirmed
        assert not (await provider.confirm_unlock(GATE, job["jobId"])).confirmed
        assert (await provider.confirm_unlock(GATE, job["jobId"])).confirmed
    finally:
        await provider.close()
    assert len(cloud.fake.jobs) == 1, "polled, never queued again"


async def test_an_unlock_job_that_failed_is_refused(cloud: Cloud) -> None:
    cloud.fake.job_outcome = "failed"
    with pytest.raises(LockRejected, match="unlock job failed"):
        await cloud.provider.unlock(GATE)


async def test_unlock_without_a_bridge_is_refused(cloud: Cloud) -> None:
    with pytest.raises(CapabilityMissing, match="bridge"):
        await cloud.provider.unlock(LOCK)
    assert cloud.fake.jobs == []


# -- token ---------------------------------------------------------------------------------


async def test_token_is_reused_until_it_expires(cloud: Cloud) -> None:
    await cloud.provider.list_devices()
    await cloud.provider.create_code(request(utc(2026, 6, 1, 9), utc(2026, 6, 1, 12)))
    await cloud.provider.get_device(GATE)
    assert cloud.fake.token_requests == 1

    cloud.ticks.now += cloud.fake.expires_in - 30  # inside the renewal margin
    await cloud.provider.list_devices()
    assert cloud.fake.token_requests == 2

    await cloud.provider.list_devices()
    assert cloud.fake.token_requests == 2


async def test_a_token_revoked_early_is_renewed_once(cloud: Cloud) -> None:
    await cloud.provider.list_devices()
    cloud.fake.revoke_tokens()
    devices = await cloud.provider.list_devices()
    assert len(devices) == 2
    assert cloud.fake.token_requests == 2


async def test_bad_credentials_give_a_clear_error(cloud: Cloud) -> None:
    provider = cloud.provider_with(client_secret="wrong-secret-value")
    try:
        with pytest.raises(LockError, match="refused the credentials") as refused:
            await provider.list_devices()
    finally:
        await provider.close()
    assert not isinstance(refused.value, LockUnavailable | LockNotFound | LockRejected)
    assert "wrong-secret-value" not in str(refused.value)
    assert cloud.fake.api_calls == []


# -- failures ------------------------------------------------------------------------------


async def test_server_errors_are_unavailable_and_pass(cloud: Cloud) -> None:
    await cloud.provider.list_devices()
    cloud.fake.faults.fail_next(1, status=500)
    with pytest.raises(LockUnavailable):
        await cloud.provider.create_code(request(utc(2026, 6, 1, 9), utc(2026, 6, 1, 12)))
    assert cloud.fake.algopins == []
    code = await cloud.provider.create_code(request(utc(2026, 6, 1, 9), utc(2026, 6, 1, 12)))
    assert code.pin


async def test_a_hanging_call_is_unavailable_within_the_timeout(cloud: Cloud) -> None:
    provider = cloud.provider_with(timeout=0.3)
    try:
        await provider.list_devices()
        cloud.fake.faults.hang_next(1)
        started = time.monotonic()
        with pytest.raises(LockUnavailable):
            await provider.list_devices()
        assert time.monotonic() - started < 2.0
    finally:
        await provider.close()


async def test_unreachable_cloud_is_unavailable() -> None:
    provider = IgloohomeLockProvider(
        "id", "secret", base_url="http://127.0.0.1:9/igloohome", timeout=1.0
    )
    try:
        with pytest.raises(LockUnavailable):
            await provider.list_devices()
    finally:
        await provider.close()


# -- the fake refuses what igloohome refuses -----------------------------------------------


@pytest.mark.parametrize(
    ("kind", "start", "end", "problem"),
    [
        (AlgoPinKind.HOURLY, "2026-06-01T10:30:00+02:00", "2026-06-01T12:00:00+02:00", "format"),
        (AlgoPinKind.HOURLY, "2026-06-01T10:00:00Z", "2026-06-01T12:00:00+02:00", "format"),
        (AlgoPinKind.HOURLY, "2026-06-01T10:00:00+02:00", "2026-06-30T11:00:00+02:00", "672"),
        (AlgoPinKind.HOURLY, "2026-06-01T10:00:00+02:00", "2026-06-01T10:00:00+02:00", "672"),
        (AlgoPinKind.DAILY, "2026-06-01T10:00:00+02:00", "2026-06-21T10:00:00+02:00", "29"),
        (AlgoPinKind.DAILY, "2026-06-01T10:00:00+02:00", "2026-07-15T11:00:00+02:00", "time"),
    ],
)
async def test_fake_refuses_windows_igloohome_refuses(
    cloud: Cloud, kind: AlgoPinKind, start: str, end: str, problem: str
) -> None:
    client = IgloohomeClient(
        cloud.fake.client_id, cloud.fake.client_secret, base_url=f"{cloud.url}/igloohome"
    )
    try:
        with pytest.raises(IgloohomeHttpError) as refused:
            await client.create_algopin(LOCK, kind, start=start, end=end, access_name="x")
    finally:
        await client.close()
    assert refused.value.status == 400
    assert problem in refused.value.message
    assert cloud.fake.algopins == []


async def test_fake_refuses_a_call_without_a_token(cloud: Cloud) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{cloud.url}/igloohome/devices") as response,
    ):
        assert response.status == 401


def test_plan_rejects_unknown_time_zones() -> None:
    from locks.igloohome import plan_algopin_window

    with pytest.raises(LockRejected):
        plan_algopin_window(utc(2026, 6, 1, 9), utc(2026, 6, 1, 10), "Mars/Olympus")
    window = plan_algopin_window(
        utc(2026, 6, 1, 9) - timedelta(minutes=1), utc(2026, 6, 1, 10), "UTC"
    )
    assert window.start_date == "2026-06-01T08:00:00+00:00"
