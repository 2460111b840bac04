"""Builds the lock providers the settings name; the simulated lock is always there."""

from __future__ import annotations

import contextlib

from bot.config import Settings
from flows.clock import Clock
from locks import LockProvider
from locks.simulated import SimulatedLockProvider
from storage.sealing import Sealer


def build_lock_providers(
    settings: Settings, sealer: Sealer, clock: Clock
) -> dict[str, LockProvider]:
    providers: dict[str, LockProvider] = {"simulated": SimulatedLockProvider(sealer, clock.now)}
    if settings.seam is not None:
        from locks.seam import SeamLockProvider

        providers["seam"] = SeamLockProvider(settings.seam.api_key, base_url=settings.seam.api_base)
    if settings.igloohome is not None:
        from locks.igloohome import IgloohomeLockProvider

        providers["igloohome"] = IgloohomeLockProvider(
            settings.igloohome.client_id,
            settings.igloohome.client_secret,
            base_url=settings.igloohome.api_base,
        )
    if settings.nuki is not None:
        from locks.nuki import NukiLockProvider

        providers["nuki"] = NukiLockProvider(
            settings.nuki.api_token, base_url=settings.nuki.api_base
        )
    return providers


async def close_lock_providers(providers: dict[str, LockProvider]) -> None:
    for provider in providers.values():
        closing = getattr(provider, "aclose", None) or getattr(provider, "close", None)
        if closing is not None:
            with contextlib.suppress(Exception):
                await closing()
