"""The Seam provider through the real ``seam`` SDK against a fake Seam API on a loopback port."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from seam.resources.access_code import AccessCode

from locks.port import (
    CapabilityMissing,
    CodeConstraints,
    CodeRequest,
    CodeStatus,
    LockCapability,
    LockDevice,
    LockNotFound,
    LockProvider,
    LockRejected,
    LockUnavailable,
    RejectionReason,
    UnlockResult,
)
from locks.seam import (
    SeamAuthError,
    SeamEvent,
    SeamLockProvider,
    SeamWebhookInvalid,
    SeamWebhookUnreadable,
    verify_seam_webhook,
)
from locks.seam.adapter import to_programmed_code
from tests.fakes.seam import API_KEY, WEBHOOK_SECRET, FakeSeam, far, load_fixture
from tests.fakes.server import running

TIMEOUT = 2.0

Spoil = Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]


@pytest.fixture
def fake() -> FakeSeam:
    return FakeSeam()


@pytest.fixture
async def base_url(fake: FakeSeam) -> AsyncIterator[str]:
    async with running(fake.app()) as url:
        yield url


@pytest.fixture
async def provider(base_url: str) -> AsyncIterator[SeamLockProvider]:
    seam = SeamLockProvider(API_KEY, base_url=base_url, timeout=TIMEOUT)
    yield seam
    await seam.aclose()


def request(
    device_id: str,
    pin: str | None = "4719",
    *,
    start: float = 2,
    end: float = 26,
    name: str = "BK-1042",
    common_key: str | None = None,
) -> CodeRequest:
    return CodeRequest(
        device_id=device_id,
        pin=pin,
        starts_at=far(start),
        ends_at=far(end),
        name=name,
        timezone="Europe/Berlin",
        common_key=common_key,
    )


# --- devices ------------------------------------------------------------------------------------


async def test_the_provider_satisfies_the_port(provider: SeamLockProvider) -> None:
    assert isinstance(provider, LockProvider)
    assert provider.name == "seam"


async def test_locks_are_listed_with_capabilities_and_constraints_across_pages(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    fake.page_size = 2
    gate = fake.add_device(
        name="Main Gate",
        supported_code_lengths=(6, 4),
        code_constraints=(
            {"constraint_type": "no_zeros"},
            {"constraint_type": "cannot_start_with_12"},
            {"constraint_type": "no_triple_consecutive_ints"},
            {"constraint_type": "at_least_three_unique_digits"},
            {"constraint_type": "cannot_contain_089"},
            {"constraint_type": "name_length", "max_length": 10},
        ),
        max_active_codes=30,
        online=False,
        battery_level=0.42,
    )
    bay = fake.add_device(
        name="Storage Bay 2",
        device_type="igloohome_lock",
        code_constraints=(),
        max_active_codes=None,
        can_program_offline_access_codes=True,
        can_remotely_unlock=False,
    )
    fake.add_device(name="Bay 3")
    thermostat = fake.add_device(name="Office Thermostat")
    fake.devices[thermostat].update(
        capabilities_supported=["thermostat"],
        can_program_online_access_codes=False,
        can_remotely_unlock=False,
    )

    devices = {d.device_id: d for d in await provider.list_devices()}

    assert len(devices) == 3
    assert thermostat not in devices
    assert fake.requests.count(("GET", "/devices/list")) == 2
    assert devices[gate] == LockDevice(
        device_id=gate,
        name="Main Gate",
        capabilities=LockCapability.TIMED_PINS
        | LockCapability.UPDATE_WINDOW
        | LockCapability.REMOTE_DELETE
        | LockCapability.REMOTE_UNLOCK
        | LockCapability.STATUS
        | LockCapability.PUSHED_EVENTS,
        constraints=CodeConstraints(
            lengths=(4, 6),
            no_zeros=True,
            cannot_start_with_12=True,
            no_triple_consecutive=True,
            min_unique_digits=3,
            missing_digits=frozenset("089"),
            max_active_codes=30,
        ),
        online=False,
        battery_level=0.42,
        model="Wi-Fi Smart Lock",
    )
    assert LockCapability.OFFLINE_CODES in devices[bay].capabilities
    assert LockCapability.REMOTE_UNLOCK not in devices[bay].capabilities
    assert devices[bay].constraints == CodeConstraints(lengths=(4, 5, 6, 7, 8))


async def test_a_device_is_read_by_id_and_an_unknown_one_is_not_found(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    device_id = fake.add_device(name="Trailer Bay 1")

    device = await provider.get_device(device_id)

    assert device.name == "Trailer Bay 1"
    assert device.online is True
    assert device.battery_level == pytest.approx(0.86)
    with pytest.raises(LockNotFound, match="device_not_found"):
        await provider.get_device("00000000-0000-0000-0000-000000000000")


# --- access codes -------------------------------------------------------------------------------


async def test_a_code_is_created_for_its_window_and_set_once_the_lock_confirms(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    device_id = fake.add_device()
    wanted = request(device_id, name="BK-1042 Jane Renter-Smith")

    code = await provider.create_code(wanted)

    assert code.status is CodeStatus.SETTING
    assert (code.pin, code.device_id) == ("4719", device_id)
    assert (code.starts_at, code.ends_at) == (wanted.starts_at, wanted.ends_at)
    stored = fake.access_codes[code.provider_ref]
    assert stored["starts_at"] == wanted.starts_at.isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
    assert stored["type"] == "time_bound"
    assert stored["name"] == "BK-1042 Jane R"  # the lock's 14-character name limit
    assert stored["common_code_key"] is None

    [event] = fake.program()

    assert event["event_type"] == "access_code.set_on_device"
    confirmed = await provider.get_code(device_id, code.provider_ref)
    assert confirmed is not None
    assert confirmed.status is CodeStatus.SET
    assert confirmed.error is None


async def test_a_common_key_gives_one_pin_on_two_locks(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    gate = fake.add_device(name="Main Gate")
    bay = fake.add_device(name="Trailer Bay 1")

    first = await provider.create_code(request(gate, pin=None, common_key="booking-1042"))
    second = await provider.create_code(request(bay, pin=None, common_key="booking-1042"))

    assert first.pin and first.pin == second.pin
    assert first.provider_ref != second.provider_ref
    assert fake.access_codes[second.provider_ref]["common_code_key"] == "booking-1042"

    chosen = await provider.create_code(request(gate, pin="5826", common_key="booking-7"))
    same = await provider.create_code(request(bay, pin="5826", common_key="booking-7"))
    assert chosen.pin == same.pin == "5826"
    with pytest.raises(LockRejected) as refused:
        await provider.create_code(
            request(bay, pin="3947", common_key="booking-7", start=30, end=40)
        )
    assert refused.value.reason is RejectionReason.INVALID_CODE


async def test_a_window_is_moved_in_place(fake: FakeSeam, provider: SeamLockProvider) -> None:
    device_id = fake.add_device()
    code = await provider.create_code(request(device_id))
    fake.program()

    moved = await provider.update_code_window(device_id, code.provider_ref, far(2), far(50))

    assert (moved.starts_at, moved.ends_at) == (far(2), far(50))
    assert moved.provider_ref == code.provider_ref
    assert moved.pin == code.pin
    assert moved.status is CodeStatus.SET
    assert fake.access_codes[code.provider_ref]["ends_at"].startswith(far(50).strftime("%Y-%m-%dT"))
    assert ("PATCH", "/access_codes/update") in fake.requests
    with pytest.raises(LockNotFound):
        await provider.update_code_window(device_id, "no-such-code", far(2), far(50))
    with pytest.raises(LockRejected) as backwards:
        await provider.update_code_window(device_id, code.provider_ref, far(50), far(2))
    assert backwards.value.reason is RejectionReason.INVALID_WINDOW


async def test_deleting_twice_is_fine_and_the_code_goes_through_removing(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    device_id = fake.add_device()
    code = await provider.create_code(request(device_id))
    fake.program()

    await provider.delete_code(device_id, code.provider_ref)
    removing = await provider.get_code(device_id, code.provider_ref)
    await provider.delete_code(device_id, code.provider_ref)
    [event] = fake.program()
    await provider.delete_code(device_id, code.provider_ref)

    assert removing is not None
    assert removing.status is CodeStatus.REMOVING
    assert event["event_type"] == "access_code.removed_from_device"
    assert await provider.get_code(device_id, code.provider_ref) is None
    assert fake.requests.count(("DELETE", "/access_codes/delete")) == 3
    with pytest.raises(LockNotFound):
        await provider.delete_code("00000000-0000-0000-0000-000000000000", code.provider_ref)


async def test_codes_are_listed_per_lock_across_pages(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    fake.page_size = 2
    gate = fake.add_device(name="Main Gate")
    bay = fake.add_device(name="Trailer Bay 1")
    made = {
        (await provider.create_code(request(gate, pin=pin))).provider_ref
        for pin in ("4719", "5826", "6937")
    }
    await provider.create_code(request(bay, pin="4719"))

    listed = await provider.list_codes(gate)

    assert {c.provider_ref for c in listed} == made
    assert {c.device_id for c in listed} == {gate}
    assert fake.requests.count(("GET", "/access_codes/list")) == 2
    assert await provider.list_codes(fake.add_device(name="Empty")) == []
    assert await provider.get_code(bay, next(iter(made))) is None  # a code of another lock


# --- refusals -----------------------------------------------------------------------------------


async def test_a_pin_another_managed_code_holds_is_refused_as_duplicate(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    device_id = fake.add_device()
    await provider.create_code(request(device_id, pin="4719", start=2, end=26))

    with pytest.raises(LockRejected) as refused:
        await provider.create_code(request(device_id, pin="4719", start=20, end=40))
    later = await provider.create_code(request(device_id, pin="4719", start=30, end=40))

    assert refused.value.reason is RejectionReason.DUPLICATE_CODE
    assert "4719" not in str(refused.value)
    assert later.status is CodeStatus.SETTING  # same PIN, windows apart: accepted


async def test_a_pin_an_unmanaged_code_holds_fails_on_the_lock(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    device_id = fake.add_device()
    fake.add_unmanaged_code(device_id, "4719")
    code = await provider.create_code(request(device_id, pin="4719"))
    fake.add_warning(code.provider_ref, "delay_in_setting_on_device")

    [event] = fake.program()
    failed = await provider.get_code(device_id, code.provider_ref)

    assert event["event_type"] == "access_code.failed_to_set_on_device"
    assert failed is not None
    assert failed.status is CodeStatus.FAILED
    assert failed.error == RejectionReason.DUPLICATE_CODE.value
    assert failed.warnings == ("delay_in_setting_on_device",)


async def test_a_full_lock_fails_the_code_and_a_quick_lock_refuses_it_at_once(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    device_id = fake.add_device(max_active_codes=1)
    await provider.create_code(request(device_id, pin="4719"))
    second = await provider.create_code(request(device_id, pin="5826"))
    fake.program()

    failed = await provider.get_code(device_id, second.provider_ref)
    fake.program_immediately = True
    with pytest.raises(LockRejected) as refused:
        await provider.create_code(request(device_id, pin="6937"))

    assert failed is not None
    assert (failed.status, failed.error) == (CodeStatus.FAILED, "no_space")
    assert refused.value.reason is RejectionReason.NO_SPACE


async def test_pins_and_windows_the_lock_cannot_hold_are_refused(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    device_id = fake.add_device(supported_code_lengths=(4, 6))

    with pytest.raises(LockRejected) as too_long:
        await provider.create_code(request(device_id, pin="47195"))
    with pytest.raises(LockRejected) as backwards:
        await provider.create_code(request(device_id, start=26, end=2))
    with pytest.raises(LockRejected) as past:
        await provider.create_code(request(device_id, start=-5, end=-1))
    zeros = await provider.create_code(request(device_id, pin="4070"))
    fake.program()
    failed = await provider.get_code(device_id, zeros.provider_ref)

    assert too_long.value.reason is RejectionReason.INVALID_CODE
    assert "47195" not in str(too_long.value)  # Seam quoted the PIN; we do not
    assert backwards.value.reason is RejectionReason.INVALID_WINDOW
    assert past.value.reason is RejectionReason.INVALID_WINDOW
    assert failed is not None
    assert (failed.status, failed.error) == (CodeStatus.FAILED, "invalid_code")
    assert len(fake.access_codes) == 1


async def test_every_documented_pin_rule_is_read_and_an_unknown_one_leaves_the_pin_to_seam(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    strict = fake.add_device(
        supported_code_lengths=(6,),
        code_constraints=(
            {"constraint_type": "unique_first_four_digits"},
            {"constraint_type": "no_ascending_or_descending_sequence"},
            {"constraint_type": "no_all_same_digits"},
            {"constraint_type": "cannot_contain_0789"},
            {"constraint_type": "start_date_in_future"},
            {"constraint_type": "name_must_be_unique"},
        ),
    )
    matches_set = fake.add_device(
        code_constraints=({"constraint_type": "pin_code_matches_existing_set"},)
    )
    unknown = fake.add_device(code_constraints=({"constraint_type": "no_leading_nine"},))

    devices = {d.device_id: d.constraints for d in await provider.list_devices()}

    assert devices[strict] == CodeConstraints(
        lengths=(6,),
        no_triple_consecutive=True,
        min_unique_digits=2,
        missing_digits=frozenset("0789"),
        max_active_codes=devices[strict].max_active_codes,
        unique_first_four_digits=True,
    )
    assert devices[strict].keyturn_may_choose
    assert devices[matches_set].lock_chooses_pin
    assert not devices[matches_set].keyturn_may_choose
    assert devices[unknown].unknown_rules == ("no_leading_nine",)
    chosen = await provider.create_code(request(unknown, pin=None))
    assert chosen.pin.isdigit()


async def test_seam_refuses_a_pin_with_three_same_digits_or_another_codes_first_four(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    lock = fake.add_device(
        supported_code_lengths=(6,),
        code_constraints=(
            {"constraint_type": "no_triple_consecutive_ints"},
            {"constraint_type": "unique_first_four_digits"},
        ),
    )
    await provider.create_code(request(lock, pin="473958"))
    fake.program()
    triple = await provider.create_code(request(lock, pin="815553"))
    same_start = await provider.create_code(request(lock, pin="473916"))
    fake.program()

    assert (await provider.get_code(lock, triple.provider_ref)).status is CodeStatus.FAILED  # type: ignore[union-attr]
    assert (await provider.get_code(lock, same_start.provider_ref)).status is CodeStatus.FAILED  # type: ignore[union-attr]


async def test_a_lock_without_codes_or_with_its_own_pins_is_refused_before_calling_seam(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    no_keypad = fake.add_device(can_program_online_access_codes=False)
    own_pins = fake.add_device(code_constraints=({"constraint_type": "cannot_specify_pin_code"},))

    with pytest.raises(CapabilityMissing, match="timed pins"):
        await provider.create_code(request(no_keypad))
    with pytest.raises(LockRejected) as refused:
        await provider.create_code(request(own_pins, pin="4719"))
    chosen = await provider.create_code(request(own_pins, pin=None))

    assert refused.value.reason is RejectionReason.INVALID_CODE
    assert chosen.pin.isdigit()
    assert fake.requests.count(("POST", "/access_codes/create")) == 1


def test_a_recorded_failed_code_maps_to_failed_with_its_reason_and_warnings() -> None:
    code = AccessCode.from_dict(load_fixture("access_code.duplicate_on_device.json"))

    mapped = to_programmed_code(code)

    assert mapped.status is CodeStatus.FAILED
    assert mapped.error == "duplicate_code"
    assert mapped.warnings == ("delay_in_setting_on_device",)
    assert mapped.starts_at == datetime(2026, 6, 12, 8, 0, tzinfo=UTC)


# --- remote unlock ------------------------------------------------------------------------------


async def test_unlock_waits_for_the_action_attempt(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    device_id = fake.add_device()

    await provider.unlock(device_id)

    assert ("POST", "/locks/unlock_door") in fake.requests
    assert ("GET", "/action_attempts/get") in fake.requests
    assert fake.events[-1]["event_type"] == "lock.unlocked"


async def test_a_failed_unlock_is_refused_or_unavailable(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    device_id = fake.add_device()
    offline = fake.add_device(online=False)
    fake.unlock_outcome = "lock_jammed"

    with pytest.raises(LockRejected, match="lock_jammed"):
        await provider.unlock(device_id)
    with pytest.raises(LockUnavailable, match="device_offline"):
        await provider.unlock(offline)


async def test_an_unlock_that_never_resolves_gives_up_within_the_timeout(
    fake: FakeSeam, base_url: str
) -> None:
    device_id = fake.add_device()
    fake.unlock_outcome = "pending"
    seam = SeamLockProvider(API_KEY, base_url=base_url, timeout=1.0)

    started = time.monotonic()
    result = await seam.unlock(device_id)
    elapsed = time.monotonic() - started

    # Not confirmed, and not an error to retry: the attempt may still open the door, so its id
    # comes back to be polled, and polling it never sends a second unlock.
    [attempt] = fake.action_attempts
    assert result == UnlockResult(confirmed=False, action_id=attempt)
    assert elapsed < 1.0 * 2 + 0.5  # the device read and the unlock each within 1 s
    assert fake.requests.count(("GET", "/action_attempts/get")) >= 2
    assert await seam.confirm_unlock(device_id, attempt, wait=0.2) == result
    fake.unlock_outcome = "success"
    assert (await seam.confirm_unlock(device_id, attempt)).confirmed
    await seam.aclose()
    assert fake.requests.count(("POST", "/locks/unlock_door")) == 1
    assert [e["event_type"] for e in fake.events].count("lock.unlocked") == 1


async def test_an_unlock_pending_for_some_polls_is_confirmed_by_its_own_attempt(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    device_id = fake.add_device()
    fake.unlock_pending_polls = 3

    result = await provider.unlock(device_id)

    assert result.confirmed
    assert fake.requests.count(("GET", "/action_attempts/get")) == 4
    assert fake.requests.count(("POST", "/locks/unlock_door")) == 1


async def test_a_pending_unlock_that_ends_in_error_is_refused_when_polled(
    fake: FakeSeam, base_url: str
) -> None:
    device_id = fake.add_device()
    fake.unlock_outcome = "pending"
    seam = SeamLockProvider(API_KEY, base_url=base_url, timeout=1.0, unlock_wait=0.1)
    result = await seam.unlock(device_id)
    assert not result.confirmed and result.action_id is not None

    fake.unlock_outcome = "device_offline"  # ended in error after all: the door stayed shut
    with pytest.raises(LockRejected, match="device_offline"):
        await seam.confirm_unlock(device_id, result.action_id)
    await seam.aclose()
    assert fake.requests.count(("POST", "/locks/unlock_door")) == 1


async def test_a_lock_without_remote_unlock_is_refused_before_calling_seam(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    device_id = fake.add_device(can_remotely_unlock=False)

    with pytest.raises(CapabilityMissing, match="remote unlock"):
        await provider.unlock(device_id)

    assert ("POST", "/locks/unlock_door") not in fake.requests


# --- outages and credentials --------------------------------------------------------------------


async def test_server_errors_are_unavailable_after_the_sdk_retries_reads(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    device_id = fake.add_device()
    fake.fail_next(1)
    assert (await provider.get_device(device_id)).device_id == device_id  # retried once

    fake.fail_next(3)
    with pytest.raises(LockUnavailable, match="500"):
        await provider.list_devices()
    fake.fail_next(3, status=502, json_body=False)
    with pytest.raises(LockUnavailable, match="502"):
        await provider.list_codes(device_id)


async def test_a_create_that_hits_a_server_error_is_not_retried_blindly(
    fake: FakeSeam, provider: SeamLockProvider
) -> None:
    device_id = fake.add_device()
    fake.fail_next(1, path="/access_codes/create")

    with pytest.raises(LockUnavailable):
        await provider.create_code(request(device_id))

    assert fake.requests.count(("POST", "/access_codes/create")) == 1
    assert fake.access_codes == {}


async def test_a_slow_seam_is_unavailable_within_the_timeout(fake: FakeSeam, base_url: str) -> None:
    device_id = fake.add_device()
    fake.hang_next(1, seconds=10)
    seam = SeamLockProvider(API_KEY, base_url=base_url, timeout=0.5)

    started = time.monotonic()
    with pytest.raises(LockUnavailable, match=r"within 0\.5s"):
        await seam.get_device(device_id)
    elapsed = time.monotonic() - started
    recovered = await seam.get_device(device_id)
    await seam.aclose()

    assert elapsed < 1.5
    assert recovered.device_id == device_id


async def test_an_unreachable_seam_is_unavailable() -> None:
    seam = SeamLockProvider(API_KEY, base_url="http://127.0.0.1:9", timeout=TIMEOUT)
    with pytest.raises(LockUnavailable, match="unreachable"):
        await seam.list_devices()
    await seam.aclose()


async def test_a_wrong_api_key_is_a_clear_error_that_does_not_repeat_the_key(
    fake: FakeSeam, base_url: str
) -> None:
    device_id = fake.add_device()
    wrong_key = "seam_wrong2bMS_94SrGUXuNR2JmJkjtvBQD"
    seam = SeamLockProvider(wrong_key, base_url=base_url, timeout=TIMEOUT)

    with pytest.raises(SeamAuthError, match="SEAM_API_KEY") as refused:
        await seam.get_device(device_id)
    await seam.aclose()

    assert isinstance(refused.value, LockRejected)
    assert wrong_key not in str(refused.value)
    with pytest.raises(SeamAuthError, match="seam_") as malformed:
        SeamLockProvider("sk_live_not_a_seam_key", base_url=base_url)
    assert "sk_live" not in str(malformed.value)
    with pytest.raises(SeamAuthError):
        SeamLockProvider("", base_url=base_url)


# --- webhooks -----------------------------------------------------------------------------------


def test_a_signed_event_is_verified_and_normalized_without_its_pin(fake: FakeSeam) -> None:
    payload = load_fixture("event.access_code.set_on_device.json")
    body, headers = fake.sign_webhook(payload)

    event = verify_seam_webhook(WEBHOOK_SECRET, body, headers)

    assert isinstance(event, SeamEvent)
    assert (event.event_id, event.event_type) == (
        "8b1c52a4-1f6e-4f4c-9b7e-6d3f2a1b0c9d",
        "access_code.set_on_device",
    )
    assert event.device_id == "a83690b2-2b70-409a-9a94-426699b84c97"
    assert event.access_code_id == "e7ad5ac2-7d03-4d8c-a3b8-42f8a1c7e4d2"
    assert event.occurred_at == datetime(2026, 6, 11, 8, 0, 12, 118000, tzinfo=UTC)
    assert "code" not in event.raw
    assert event.raw["workspace_id"] == payload["workspace_id"]
    assert "4719" not in repr(event)


def test_events_the_fake_emits_verify_with_upper_case_headers(fake: FakeSeam) -> None:
    device_id = fake.add_device()
    low = fake.set_battery(device_id, 0.12)
    assert low is not None
    body, headers = fake.sign_webhook(low)

    event = verify_seam_webhook(WEBHOOK_SECRET, body, {k.title(): v for k, v in headers.items()})

    assert (event.event_type, event.device_id, event.access_code_id) == (
        "device.low_battery",
        device_id,
        None,
    )
    recorded = load_fixture("event.device.low_battery.json")
    assert verify_seam_webhook(WEBHOOK_SECRET, *fake.sign_webhook(recorded)).raw[
        "battery_level"
    ] == pytest.approx(0.12)


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda body, headers: (body, {}), id="no-headers"),
        pytest.param(
            lambda body, headers: (
                body,
                {k: v for k, v in headers.items() if k != "svix-signature"},
            ),
            id="no-signature",
        ),
        pytest.param(
            lambda body, headers: (body.replace(b"set_on_device", b"removed_from_device"), headers),
            id="tampered-body",
        ),
        pytest.param(
            lambda body, headers: (body, {**headers, "svix-id": "msg_other"}), id="other-id"
        ),
        pytest.param(
            lambda body, headers: (body, {**headers, "svix-signature": "v1"}), id="malformed"
        ),
        pytest.param(
            lambda body, headers: (body, {**headers, "svix-timestamp": "yesterday"}),
            id="bad-timestamp",
        ),
    ],
)
def test_a_missing_or_wrong_signature_is_refused(fake: FakeSeam, spoil: Spoil) -> None:
    body, headers = fake.sign_webhook(load_fixture("event.access_code.set_on_device.json"))
    bad_body, bad_headers = spoil(body, headers)

    with pytest.raises(SeamWebhookInvalid):
        verify_seam_webhook(WEBHOOK_SECRET, bad_body, bad_headers)


def test_an_old_or_future_timestamp_or_another_secret_is_refused(fake: FakeSeam) -> None:
    payload = load_fixture("event.access_code.set_on_device.json")
    old = fake.sign_webhook(payload, timestamp=datetime.now(UTC) - timedelta(minutes=10))
    future = fake.sign_webhook(payload, timestamp=datetime.now(UTC) + timedelta(minutes=10))
    other = fake.sign_webhook(payload, secret="whsec_" + "QUJDREVGR0hJSktMTU5PUA==")

    for body, headers in (old, future, other):
        with pytest.raises(SeamWebhookInvalid):
            verify_seam_webhook(WEBHOOK_SECRET, body, headers)
    with pytest.raises(SeamWebhookInvalid, match="SEAM_WEBHOOK_SECRET"):
        verify_seam_webhook("", *fake.sign_webhook(payload))


def test_a_signed_body_that_is_not_an_event_is_unreadable(fake: FakeSeam) -> None:
    body, headers = fake.sign_webhook({"hello": "world"})

    with pytest.raises(SeamWebhookUnreadable):
        verify_seam_webhook(WEBHOOK_SECRET, body, headers)
    assert json.loads(body) == {"hello": "world"}
