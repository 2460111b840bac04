"""``keyturn connect``: register Keyturn's webhooks with every provider that has credentials,
for ``KEYTURN_PUBLIC_URL``. Run twice, the second run changes nothing and says so."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable

from bot.config import Settings
from bot.golive import seam, stripe, telegram, twilio
from bot.golive.checks import ProviderFailed, public_base

Registration = Callable[[], Awaitable[list[str]]]


def run_connect(args: argparse.Namespace) -> int:
    settings = Settings.from_env(dict(os.environ), receiving=False)
    public = public_base(settings)
    return asyncio.run(connect_all(settings, public))


def registrations(settings: Settings, public: str) -> list[tuple[str, str, Registration | None]]:
    """(provider, the setting that enables it, its registration or None when not configured)."""
    t, w, s, m = settings.telegram, settings.twilio, settings.stripe, settings.seam
    return [
        ("telegram", "TELEGRAM_BOT_TOKEN", (lambda: telegram.connect(t, public)) if t else None),
        ("twilio", "TWILIO_ACCOUNT_SID", (lambda: twilio.connect(w, public)) if w else None),
        ("stripe", "STRIPE_API_KEY", (lambda: stripe.connect(s, public)) if s else None),
        ("seam", "SEAM_API_KEY", (lambda: seam.connect(m, public)) if m else None),
    ]


async def connect_all(settings: Settings, public: str) -> int:
    print(f"registering webhooks for {public}")
    refused = 0
    for name, setting, register in registrations(settings, public):
        if register is None:
            print(f"{name}: skipped: {setting} is not set")
            continue
        try:
            lines = await register()
        except ProviderFailed as err:
            print(f"{name}: not registered: {err}")
            refused += 1
            continue
        for line in lines:
            print(line)
    return 1 if refused else 0
