"""Builds the lock providers the settings name; the simulated lock is always there."""

from __future__ import annotations

from bot.config import Settings
from flows.clock import Clock
from locks import LockProvider
from locks.simulated import SimulatedLockProvider
from storage.sealing import Sealer


def build_lock_providers(
    settings: Settings, sealer: Sealer, clock: Clock
) -> dict[str, LockProvider]:
    providers: dict[str, LockProvider] = {"simulated": SimulatedLockProvider(sealer, clock.now)}
    return providers
