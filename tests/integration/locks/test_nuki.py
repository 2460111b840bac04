"""The Nuki provider against the fake Nuki Web API: keypad codes as time-limited authorizations."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from locks.nuki import NukiLockProvider, keypad_code_problem
from locks.nuki.client import NukiClient, NukiHttpError
from locks.port import (
    CapabilityMissing,
    CodeRequest,
    CodeStatus,
    LockCapability,
    LockError,
    LockNotFound,
    LockRateLimited,
    LockRejected,
    LockUnavailable,
    RejectionReason,
)
from tests.fakes.nuki import FIXTURES, FakeNuki
from tests.fakes.server import running

CAGE = 17432109  # Smart Lock 3.0+, keypad 2 paired, online
BAY = 16001234  # Smart Lock 2.0, keypad paired, offline, battery critical
OPENER = 19005555  # Opener, no keypad
PIN = "493857"


@dataclass
class Cloud:
    fake: FakeNuki
    url: str
    provider: NukiLockProvider

    def provider_with(self, *, token: str | None = None, timeout: float = 2.0) -> NukiLockProvider:
        return NukiLockProvider(
            token or self.fake.api_token, base_url=self.url, timeout=timeout, find_interval=0.01
        )


@pytest.fixture
async def cloud() -> AsyncIterator[Cloud]:
    fake = FakeNuki()
    async with running(fake.app()) as url:
        provider = NukiLockProvider(
            fake.api_token, base_url=url, timeout=2.0, find_attempts=3, find_interval=0.01
        )
        try:
            yield Cloud(fake, url, provider)
        finally:
            fake.release()
            await provider.close()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def request(
    pin: str | None = PIN,
    *,
    device_id: str = str(CAGE),
    name: str = "Booking K7Q2",
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
) -> CodeRequest:
    return CodeRequest(
        device_id=device_id,
        pin=pin,
        starts_at=starts_at or utc(2026, 6, 1, 9),
        ends_at=ends_at or utc(2026, 6, 1, 17, 30),
        name=name,
        timezone="Europe/Berlin",
    )


# -- devices -------------------------------------------------------------------------------


async def test_lists_smartlocks_with_capabilities_constraints_and_status(cloud: Cloud) -> None:
    devices = {d.device_id: d for d in await cloud.provider.list_devices()}

    cage, bay, opener = devices[str(CAGE)], devices[str(BAY)], devices[str(OPENER)]
    for keypad_lock in (cage, bay):
        assert keypad_lock.capabilities == (
            LockCapability.TIMED_PINS
            | LockCapability.UPDATE_WINDOW
            | LockCapability.REMOTE_DELETE
            | LockCapability.REMOTE_UNLOCK
            | LockCapability.STATUS
        )
        assert keypad_lock.constraints.lengths == (6,)
        assert keypad_lock.constraints.no_zeros
        assert keypad_lock.constraints.cannot_start_with_12
    assert cage.constraints.max_active_codes == 200
    assert bay.constraints.max_active_codes == 100
    assert LockCapability.TIMED_PINS not in opener.capabilities
    assert LockCapability.REMOTE_UNLOCK in opener.capabilities

    assert cage.online is True
    assert cage.battery_level == pytest.approx(0.78)
    assert bay.online is False
    assert bay.battery_level == pytest.approx(0.1)
    assert cage.name == "Bike Cage"
    assert cage.model == "Smart Lock 3.0/4.0"


async def test_get_device_and_unknown_smartlock(cloud: Cloud) -> None:
    assert (await cloud.provider.get_device(str(CAGE))).name == "Bike Cage"
    with pytest.raises(LockNotFound):
        await cloud.provider.get_device("99999999")
    with pytest.raises(LockNotFound):
        await cloud.provider.get_device("not-a-nuki-id")


# -- keypad codes --------------------------------------------------------------------------


async def test_create_sends_a_type_13_code_and_finds_its_id(cloud: Cloud) -> None:
    code = await cloud.provider.create_code(request())

    [stored] = cloud.fake.keypad_codes(CAGE)
    assert code.provider_ref == stored["id"]
    assert code.pin == PIN
    assert code.status is CodeStatus.SET
    assert (code.starts_at, code.ends_at) == (utc(2026, 6, 1, 9), utc(2026, 6, 1, 17, 30))
    assert code.offline is False
    [(_, _, body)] = [b for b in cloud.fake.bodies if b[0] == "PUT"]
    assert body == {
        "type": 13,
        "name": "Booking K7Q2",
        "code": 493857,
        "allowedFromDate": "2026-06-01T09:00:00.000Z",
        "allowedUntilDate": "2026-06-01T17:30:00.000Z",
        "remoteAllowed": False,
    }
    assert await cloud.provider.get_code(str(CAGE), code.provider_ref) == code
    assert await cloud.provider.list_codes(str(CAGE)) == [code]


async def test_create_waits_for_the_asynchronous_listing(cloud: Cloud) -> None:
    cloud.fake.hide_new_auths_for = 2
    code = await cloud.provider.create_code(request())
    assert code.provider_ref == cloud.fake.keypad_codes(CAGE)[0]["id"]


async def test_a_code_not_listed_in_time_is_adopted_by_the_retry(cloud: Cloud) -> None:
    cloud.fake.hide_new_auths_for = 10
    with pytest.raises(LockUnavailable, match="not listed"):
        await cloud.provider.create_code(request())
    cloud.fake.hide_new_auths_for = 0
    for _ in range(10):  # Nuki catches up
        await cloud.provider.list_codes(str(CAGE))

    code = await cloud.provider.create_code(request())
    assert len(cloud.fake.keypad_codes(CAGE)) == 1
    assert code.provider_ref == cloud.fake.keypad_codes(CAGE)[0]["id"]
    assert len([b for b in cloud.fake.bodies if b[0] == "PUT"]) == 1


async def test_a_pending_operation_reads_as_setting(cloud: Cloud) -> None:
    cloud.fake.pending_operations = True
    code = await cloud.provider.create_code(request())
    assert code.status is CodeStatus.SETTING


async def test_long_names_are_cut_to_nukis_32_characters(cloud: Cloud) -> None:
    code = await cloud.provider.create_code(request(name="Booking K7Q2 – Trailer T1 – A. Renter"))
    assert cloud.fake.keypad_codes(CAGE)[0]["name"] == "Booking K7Q2 – Trailer T1 – A. R"
    assert code.provider_ref == cloud.fake.keypad_codes(CAGE)[0]["id"]


async def test_update_moves_the_window(cloud: Cloud) -> None:
    code = await cloud.provider.create_code(request())

    moved = await cloud.provider.update_code_window(
        str(CAGE), code.provider_ref, utc(2026, 6, 1, 9), utc(2026, 6, 2, 12)
    )
    stored = cloud.fake.keypad_codes(CAGE)[0]
    assert stored["allowedUntilDate"] == "2026-06-02T12:00:00.000Z"
    assert stored["name"] == "Booking K7Q2"
    assert stored["code"] == 493857
    assert moved.status is CodeStatus.SET
    assert (moved.starts_at, moved.ends_at) == (utc(2026, 6, 1, 9), utc(2026, 6, 2, 12))
    assert moved.provider_ref == code.provider_ref and moved.pin == PIN


async def test_update_of_an_unknown_code_is_not_found(cloud: Cloud) -> None:
    with pytest.raises(LockNotFound):
        await cloud.provider.update_code_window(
            str(CAGE), "665f1c2e9a7b3d0012ab34cd", utc(2026, 6, 1, 9), utc(2026, 6, 2, 12)
        )


async def test_retrying_a_create_with_a_new_window_moves_it(cloud: Cloud) -> None:
    await cloud.provider.create_code(request())
    code = await cloud.provider.create_code(request(ends_at=utc(2026, 6, 1, 20)))
    assert len(cloud.fake.keypad_codes(CAGE)) == 1
    assert cloud.fake.keypad_codes(CAGE)[0]["allowedUntilDate"] == "2026-06-01T20:00:00.000Z"
    assert code.ends_at == utc(2026, 6, 1, 20)


async def test_delete_removes_and_a_second_delete_is_quiet(cloud: Cloud) -> None:
    code = await cloud.provider.create_code(request())

    await cloud.provider.delete_code(str(CAGE), code.provider_ref)
    assert cloud.fake.keypad_codes(CAGE) == []
    await cloud.provider.delete_code(str(CAGE), code.provider_ref)
    assert await cloud.provider.get_code(str(CAGE), code.provider_ref) is None


@pytest.mark.parametrize("pin", ["493807", "124937", "49385", "4938571", "49385a", None])
async def test_invalid_codes_are_refused_without_reaching_nuki(
    cloud: Cloud, pin: str | None
) -> None:
    with pytest.raises(LockRejected) as refused:
        await cloud.provider.create_code(request(pin))
    assert refused.value.reason is RejectionReason.INVALID_CODE
    if pin:
        assert pin not in str(refused.value)
    assert not [b for b in cloud.fake.bodies if b[0] == "PUT"]


async def test_a_duplicate_code_is_refused(cloud: Cloud) -> None:
    cloud.fake.add_keypad_code(CAGE, "Cleaner", 493857)
    with pytest.raises(LockRejected) as refused:
        await cloud.provider.create_code(request())
    assert refused.value.reason is RejectionReason.DUPLICATE_CODE
    assert PIN not in str(refused.value)
    assert len(cloud.fake.keypad_codes(CAGE)) == 1


async def test_a_duplicate_nuki_knows_but_does_not_list_yet_is_refused(cloud: Cloud) -> None:
    # Another worker's code is on the lock but not in the listing yet: Nuki answers 409.
    cloud.fake.add_keypad_code(CAGE, "Other booking", 493857, hidden_for=5)
    with pytest.raises(LockRejected) as refused:
        await cloud.provider.create_code(request())
    assert refused.value.reason is RejectionReason.DUPLICATE_CODE
    assert PIN not in str(refused.value)
    assert len(cloud.fake.keypad_codes(CAGE)) == 1


async def test_a_full_lock_is_no_space(cloud: Cloud) -> None:
    for n in range(100):
        cloud.fake.add_keypad_code(BAY, f"Old {n}", 311111 + n)
    with pytest.raises(LockRejected) as refused:
        await cloud.provider.create_code(request(device_id=str(BAY)))
    assert refused.value.reason is RejectionReason.NO_SPACE


async def test_a_lock_without_keypad_cannot_take_codes(cloud: Cloud) -> None:
    with pytest.raises(CapabilityMissing, match="keypad"):
        await cloud.provider.create_code(request(device_id=str(OPENER)))


async def test_a_window_ending_before_it_starts_is_refused(cloud: Cloud) -> None:
    with pytest.raises(LockRejected) as refused:
        await cloud.provider.create_code(
            request(starts_at=utc(2026, 6, 2, 9), ends_at=utc(2026, 6, 1, 9))
        )
    assert refused.value.reason is RejectionReason.INVALID_WINDOW


async def test_create_on_an_unknown_smartlock_is_not_found(cloud: Cloud) -> None:
    with pytest.raises(LockNotFound):
        await cloud.provider.create_code(request(device_id="99999999"))


async def test_reads_a_recorded_keypad_authorization(cloud: Cloud) -> None:
    recorded = json.loads((FIXTURES / "auth_keypad_code.json").read_text())
    recorded.pop("_note")
    cloud.fake.auths[CAGE] = [recorded]

    [code] = await cloud.provider.list_codes(str(CAGE))
    assert code.provider_ref == recorded["id"]
    assert code.pin == "493857"
    assert code.status is CodeStatus.SET
    assert (code.starts_at, code.ends_at) == (utc(2026, 6, 1, 9), utc(2026, 6, 1, 17))

    # What the fake creates has the recorded shape.
    cloud.fake.auths[CAGE] = []
    await cloud.provider.create_code(request())
    assert set(recorded) <= set(cloud.fake.keypad_codes(CAGE)[0])


# -- unlock --------------------------------------------------------------------------------


async def test_unlock_a_lock_and_open_an_opener(cloud: Cloud) -> None:
    await cloud.provider.unlock(str(CAGE))
    await cloud.provider.unlock(str(OPENER))
    assert cloud.fake.actions == [(CAGE, 1), (OPENER, 3)]


async def test_an_unlock_is_confirmed_by_its_own_log_entry(cloud: Cloud) -> None:
    cloud.fake.add_log_entry(CAGE, 1)  # an earlier unlock is no confirmation of this one
    cloud.fake.action_log_after = 2
    provider = NukiLockProvider(
        cloud.fake.api_token, base_url=cloud.url, timeout=2.0, unlock_wait=0
    )
    try:
        pending = await provider.unlock(str(CAGE))
        assert not pending.confirmed and pending.action_id is not None
        assert not (await provider.confirm_unlock(str(CAGE), pending.action_id)).confirmed
        assert (await provider.confirm_unlock(str(CAGE), pending.action_id)).confirmed
    finally:
        await provider.close()
    assert cloud.fake.actions == [(CAGE, 1)], "polled, never sent again"


async def test_an_unlock_whose_earlier_entry_left_the_page_is_not_confirmed_yet(
    cloud: Cloud,
) -> None:
    """Past the page of newest entries read, Keyturn cannot tell which ones came after its
    unlock: a web unlock among them is not taken for its confirmation."""
    cloud.fake.action_outcome = "never"
    cloud.fake.add_log_entry(CAGE, 2)  # the newest entry when Keyturn unlocks
    provider = NukiLockProvider(
        cloud.fake.api_token, base_url=cloud.url, timeout=2.0, unlock_wait=0
    )
    try:
        pending = await provider.unlock(str(CAGE))
        for _ in range(60):  # the lock is busy: its log moves on by more than a page
            cloud.fake.add_log_entry(CAGE, 2)
        cloud.fake.add_log_entry(CAGE, 1)
        assert pending.action_id is not None
        assert not (await provider.confirm_unlock(str(CAGE), pending.action_id)).confirmed
    finally:
        await provider.close()


async def test_an_unlock_the_lock_failed_is_refused(cloud: Cloud) -> None:
    cloud.fake.action_outcome = "failed"  # completion state 1: motor blocked
    with pytest.raises(LockRejected, match="completion state 1"):
        await cloud.provider.unlock(str(CAGE))


async def test_an_unlock_never_logged_stays_pending(cloud: Cloud) -> None:
    cloud.fake.action_outcome = "never"
    provider = NukiLockProvider(
        cloud.fake.api_token,
        base_url=cloud.url,
        timeout=2.0,
        unlock_wait=0.05,
        poll_interval=0.01,
    )
    try:
        result = await provider.unlock(str(CAGE))
    finally:
        await provider.close()
    assert not result.confirmed and result.action_id
    assert cloud.fake.actions == [(CAGE, 1)]


async def test_unlocking_an_offline_lock_is_unavailable(cloud: Cloud) -> None:
    with pytest.raises(LockUnavailable, match="offline"):
        await cloud.provider.unlock(str(BAY))
    assert cloud.fake.actions == []


# -- failures ------------------------------------------------------------------------------


async def test_server_errors_are_unavailable_and_pass(cloud: Cloud) -> None:
    cloud.fake.faults.fail_next(1, status=503)
    with pytest.raises(LockUnavailable):
        await cloud.provider.create_code(request())
    assert cloud.fake.keypad_codes(CAGE) == []
    await cloud.provider.create_code(request())
    assert len(cloud.fake.keypad_codes(CAGE)) == 1


@pytest.mark.parametrize(
    ("header", "wait"),
    # An HTTP date decades away holds the device back a quarter of an hour at most.
    [("30", 30.0), ("Wed, 21 Oct 2099 07:28:00 GMT", 900.0), ("86400", 900.0), (None, None)],
)
async def test_a_429_is_a_rate_limit_with_the_wait_nuki_asked_for(
    cloud: Cloud, header: str | None, wait: float | None
) -> None:
    cloud.fake.faults.rate_limit_next(1, retry_after=header)
    with pytest.raises(LockRateLimited) as refused:
        await cloud.provider.create_code(request())
    assert cloud.fake.keypad_codes(CAGE) == [], "nothing was done"
    assert refused.value.retry_after == wait


async def test_a_500_on_delete_is_unavailable_so_it_is_retried(cloud: Cloud) -> None:
    code = await cloud.provider.create_code(request())
    cloud.fake.faults.fail_next(1, status=500)
    with pytest.raises(LockUnavailable):
        await cloud.provider.delete_code(str(CAGE), code.provider_ref)
    assert len(cloud.fake.keypad_codes(CAGE)) == 1


async def test_a_hanging_call_is_unavailable_within_the_timeout(cloud: Cloud) -> None:
    provider = cloud.provider_with(timeout=0.3)
    try:
        cloud.fake.faults.hang_next(1)
        started = time.monotonic()
        with pytest.raises(LockUnavailable):
            await provider.unlock(str(CAGE))
        assert time.monotonic() - started < 2.0
    finally:
        await provider.close()
    assert cloud.fake.actions == []


async def test_a_bad_token_gives_a_clear_error(cloud: Cloud) -> None:
    provider = cloud.provider_with(token="wrong-token-value")
    try:
        with pytest.raises(LockError, match="refused the credentials") as refused:
            await provider.list_devices()
    finally:
        await provider.close()
    assert not isinstance(refused.value, LockUnavailable | LockNotFound | LockRejected)
    assert "wrong-token-value" not in str(refused.value)


async def test_unreachable_api_is_unavailable() -> None:
    provider = NukiLockProvider("token", base_url="http://127.0.0.1:9", timeout=1.0)
    try:
        with pytest.raises(LockUnavailable):
            await provider.list_devices()
    finally:
        await provider.close()


# -- the fake refuses what Nuki refuses ----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [(493807, 400), (124937, 400), (49385, 400), (4938571, 400), (None, 400), (555555, 409)],
)
async def test_fake_refuses_codes_nuki_refuses(cloud: Cloud, code: int | None, status: int) -> None:
    cloud.fake.add_keypad_code(CAGE, "Existing", 555555)
    client = NukiClient(cloud.fake.api_token, base_url=cloud.url)
    body: dict[str, object] = {"type": 13, "name": "x", "remoteAllowed": False}
    if code is not None:
        body["code"] = code
    try:
        with pytest.raises(NukiHttpError) as refused:
            await client.create_auth(CAGE, body)
    finally:
        await client.close()
    assert refused.value.status == status
    assert len(cloud.fake.keypad_codes(CAGE)) == 1


async def test_fake_needs_a_name_and_an_existing_smartlock(cloud: Cloud) -> None:
    client = NukiClient(cloud.fake.api_token, base_url=cloud.url)
    try:
        with pytest.raises(NukiHttpError) as no_name:
            await client.create_auth(CAGE, {"type": 13, "code": 493857, "remoteAllowed": False})
        with pytest.raises(NukiHttpError) as no_lock:
            await client.create_auth(
                99999999, {"type": 13, "name": "x", "code": 493857, "remoteAllowed": False}
            )
    finally:
        await client.close()
    assert (no_name.value.status, no_lock.value.status) == (400, 404)


def test_keypad_code_rules() -> None:
    assert keypad_code_problem("493857") is None
    assert keypad_code_problem("493807") == "must not contain the digit 0"
    assert keypad_code_problem("129999") == "must not start with 12"
    assert keypad_code_problem("４９３８５７") == "must be 6 digits"
