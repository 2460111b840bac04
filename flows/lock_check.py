"""Checking locks before they take bookings: is the connection live, and what does it report?

The lock is asked outside any transaction; what it reported is the check's ``record`` handler,
which the runner (``keyturn locks check``) commits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.clock import Clock
from flows.code_presence import left_on_lock
from flows.effects import Alert, Audit, Handler, Outcome
from locks import CodeRequest, CodeStatus, LockCapability, LockDevice, LockError, LockProvider
from locks.pins import generate_pin
from locks.port import capabilities_to_json, constraints_to_json
from storage.kinds import AlertKind
from storage.models import AssetLock, Lock


async def _nothing(conn: BaseDBAsyncClient) -> Outcome:
    return Outcome()


@dataclass
class LockCheck:
    lock_key: str
    label: str
    ok: bool
    lines: list[str] = field(default_factory=list)
    #: Records what the device reported (and, for a lock that passed, the audit and whether
    #: any item opens it, which adds a line): for the runner to commit before printing.
    record: Handler = _nothing


async def check_lock(
    lock: Lock, provider: LockProvider, clock: Clock, *, open_door: bool = False
) -> LockCheck:
    """Ask the device what it is, then prove the connection with a test code (or an open)."""
    result = LockCheck(lock.key, lock.label, ok=False)
    now = clock.now()
    try:
        device = await provider.get_device(lock.device_id)
    except LockError as err:
        result.lines.append(f"cannot reach it: {err}")
        return result
    result.record = _record(lock, device, result)
    result.lines.append(_describe(device))
    try:
        if open_door and LockCapability.REMOTE_UNLOCK in device.capabilities:
            await provider.unlock(lock.device_id)
            result.lines.append("opened remotely")
        elif {LockCapability.TIMED_PINS, LockCapability.REMOTE_DELETE} <= _flags(device):
            pin = generate_pin(device.constraints)
            test = await provider.create_code(
                CodeRequest(
                    device_id=lock.device_id,
                    pin=pin,
                    starts_at=now,
                    ends_at=now + timedelta(minutes=10),
                    name="Keyturn connection check",
                    timezone=lock.timezone,
                )
            )
            await provider.delete_code(lock.device_id, test.provider_ref)
            left = await left_on_lock(provider, lock.device_id, test.provider_ref)
            if left is None:
                result.lines.append("set and removed a test code")
            elif left == CodeStatus.REMOVING:
                result.lines.append("set a test code; the lock has not yet confirmed its removal")
            else:
                result.lines.append(
                    "set a test code, but the lock still holds it after its deletion: "
                    "remove it in the vendor's app"
                )
                return result
        else:
            result.lines.append("reachable; add --open to prove it with a remote open")
    except LockError as err:
        result.lines.append(f"the test failed: {err}")
        return result
    result.ok = True
    return result


def _record(lock: Lock, device: LockDevice, result: LockCheck) -> Handler:
    async def record(conn: BaseDBAsyncClient) -> Outcome:
        await (
            Lock.filter(id=lock.id)
            .using_db(conn)
            .update(
                online=device.online,
                battery_level=device.battery_level,
                capabilities=capabilities_to_json(device.capabilities),
                code_constraints=constraints_to_json(device.constraints),
            )
        )
        if not result.ok:
            return Outcome()
        outcome = Outcome(audits=[Audit("operator", "lock.checked", f"lock:{lock.key}")])
        if not lock.shared and not await AssetLock.filter(lock_id=lock.id).using_db(conn).exists():
            outcome.alerts.append(
                Alert(
                    AlertKind.LOCK_UNMAPPED,
                    f"lock-unmapped:{lock.key}",
                    "ops.lock_unmapped",
                    {"lock": lock.label},
                )
            )
            result.lines.append("no item opens this lock: it gets no codes until one is mapped")
        return outcome

    return record


async def unmapped_devices(
    providers: Mapping[str, LockProvider],
) -> list[tuple[str, LockDevice]]:
    """Devices the providers report that no lock in the inventory names."""
    known = set(await Lock.all().values_list("provider", "device_id"))
    found: list[tuple[str, LockDevice]] = []
    for name, provider in sorted(providers.items()):
        try:
            devices = await provider.list_devices()
        except LockError:
            continue
        found += [(name, d) for d in devices if (name, d.device_id) not in known]
    return found


def _flags(device: LockDevice) -> set[LockCapability]:
    return {flag for flag in LockCapability if flag.value and flag in device.capabilities}


def _describe(device: LockDevice) -> str:
    online = {True: "online", False: "OFFLINE", None: "online state unknown"}[device.online]
    battery = (
        f"battery {round(device.battery_level * 100)}%"
        if device.battery_level is not None
        else "battery unknown"
    )
    abilities = ", ".join(
        c.lower().replace("_", " ") for c in capabilities_to_json(device.capabilities)
    )
    return f"{online}, {battery}; can: {abilities or 'nothing remotely'}"
