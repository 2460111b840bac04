"""Locks: each lock provider's credentials (listing its devices proves them), and every lock
of the inventory known to its provider and opened by an item or shared by its location."""

from __future__ import annotations

from collections.abc import Mapping

from bot.golive.checks import Check, failed, passed
from locks import LockError, LockProvider
from storage.models import AssetLock, Lock

#: Who issued the credentials a provider's devices are listed with.
CREDENTIALS = {
    "seam": "SEAM_API_KEY",
    "igloohome": "IGLOOHOME_CLIENT_ID and IGLOOHOME_CLIENT_SECRET (igloodeveloper)",
    "nuki": "NUKI_API_TOKEN (Nuki Web, API)",
}


async def device_lists(
    providers: Mapping[str, LockProvider],
) -> tuple[dict[str, set[str]], list[Check]]:
    """The device ids each provider reports, and a credentials check per real provider."""
    devices: dict[str, set[str]] = {}
    found: list[Check] = []
    for name, provider in sorted(providers.items()):
        try:
            listed = await provider.list_devices()
        except LockError as err:
            if name in CREDENTIALS:
                found.append(failed(f"{name} credentials", str(err), f"check {CREDENTIALS[name]}"))
            continue
        devices[name] = {device.device_id for device in listed}
        if name in CREDENTIALS:
            found.append(passed(f"{name} credentials", f"{len(listed)} devices listed"))
    return devices, found


async def inventory_locks(
    providers: Mapping[str, LockProvider], devices: Mapping[str, set[str]]
) -> list[Check]:
    """One check per lock in service."""
    locks = await Lock.filter(retired_at__isnull=True).order_by("key")
    mappings = await AssetLock.filter(lock_id__in=[lock.id for lock in locks])
    opened = {mapping.lock_id for mapping in mappings}
    return [_lock(lock, providers, devices, lock.id in opened) for lock in locks]


def _lock(
    lock: Lock,
    providers: Mapping[str, LockProvider],
    devices: Mapping[str, set[str]],
    opened: bool,
) -> Check:
    name = f"lock {lock.key}"
    where = f"{lock.provider} device {lock.device_id}"
    inventory = "correct the lock in the inventory file and run `keyturn inventory apply`"
    if lock.provider == "simulated":
        return failed(name, f"{where} is simulated: it opens no door", inventory)
    if lock.provider not in providers:
        return failed(name, f"the {lock.provider} provider is not configured", inventory)
    if lock.provider not in devices:
        return failed(name, f"{lock.provider} could not list its devices", "see its credentials")
    if lock.device_id not in devices[lock.provider]:
        return failed(name, f"{lock.provider} knows no device {lock.device_id}", inventory)
    if not (opened or lock.shared):
        return failed(name, f"{where} opens no item and is not shared", inventory)
    return passed(name, f"{where} ({lock.label}), {'shared' if lock.shared else 'mapped'}")
