"""The simulated lock's own state: its codes and every try at its door, kept in Keyturn's database.

The simulated lock is a lock provider like any other, so it does not join a handler's
transaction: each call here commits on its own, as a vendor's cloud would (storage being the
one place a transaction is opened).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from storage.models import Lock, SimulatedCode, SimulatedUnlock


async def find_lock(provider: str, device_id: str) -> Lock | None:
    return await Lock.get_or_none(provider=provider, device_id=device_id)


async def live_locks(provider: str) -> list[Lock]:
    return await Lock.filter(provider=provider, retired_at__isnull=True).order_by("key")


async def active_codes(
    device_id: str, conn: BaseDBAsyncClient | None = None
) -> list[SimulatedCode]:
    return (
        await SimulatedCode.filter(device_id=device_id, removed_at__isnull=True)
        .using_db(conn)
        .order_by("id")
    )


async def add_code(
    lock: Lock,
    *,
    check: Callable[[list[SimulatedCode], list[datetime]], None],
    name: str,
    pin_sealed: str,
    starts_at: datetime,
    ends_at: datetime,
    created_at: datetime,
) -> SimulatedCode:
    """Add a code once ``check`` has accepted it against the lock's active codes and the
    creations of the minute before ``created_at``. The check and the insert run under the lock
    row's row lock, so two workers cannot both add one PIN, nor both take the minute's last
    creation."""
    async with in_transaction() as conn:
        await Lock.filter(id=lock.id).using_db(conn).select_for_update().get()
        recent = (
            await SimulatedCode.filter(
                device_id=lock.device_id, created_at__gt=created_at - timedelta(minutes=1)
            )
            .using_db(conn)
            .order_by("created_at")
        )
        check(await active_codes(lock.device_id, conn), [row.created_at for row in recent])
        return await SimulatedCode.create(
            device_id=lock.device_id,
            name=name,
            pin_encrypted=pin_sealed,
            starts_at=starts_at,
            ends_at=ends_at,
            created_at=created_at,
            using_db=conn,
        )


async def find_code(device_id: str, code_id: int) -> SimulatedCode | None:
    return await SimulatedCode.get_or_none(device_id=device_id, id=code_id, removed_at__isnull=True)


async def move_code(row: SimulatedCode, starts_at: datetime, ends_at: datetime) -> None:
    row.starts_at, row.ends_at = starts_at, ends_at
    await row.save(update_fields=["starts_at", "ends_at"])


async def remove_code(device_id: str, code_id: int, at: datetime) -> None:
    await SimulatedCode.filter(device_id=device_id, id=code_id, removed_at__isnull=True).update(
        removed_at=at
    )


async def record_try(device_id: str, *, source: str, accepted: bool, at: datetime) -> None:
    """Log one try at the door: a remote open or a PIN typed on the keypad."""
    await SimulatedUnlock.create(device_id=device_id, source=source, accepted=accepted, at=at)
