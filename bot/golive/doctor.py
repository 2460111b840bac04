"""``keyturn doctor``: one line per check, with what to do when it fails; exit status 1 when
any fails, so it can gate a deploy. What no API can tell is printed as a reminder."""

from __future__ import annotations

import argparse
import asyncio
import os

from cryptography.fernet import Fernet

from bot.config import Settings, SettingsError
from bot.golive import locks, seam, stripe, telegram, twilio
from bot.golive.checks import Check, failed, one_line, passed, public_base
from bot.lock_providers import build_lock_providers, close_lock_providers
from flows.clock import SystemClock
from storage import db
from storage.models import AccessCode
from storage.sealing import Sealer, SealError


def run_doctor(args: argparse.Namespace) -> int:
    settings = Settings.from_env(dict(os.environ), receiving=False)
    checks = asyncio.run(diagnose(settings))
    for check in checks:
        print(check.line())
    for reminder in reminders(settings):
        print(f"note  {reminder}")
    broken = sum(not check.ok for check in checks)
    print(f"{len(checks) - broken} checks passed, {broken} failed")
    return 1 if broken else 0


async def diagnose(settings: Settings) -> list[Check]:
    try:
        public = public_base(settings)
        found = [passed("public url", public)]
    except SettingsError as err:
        public = settings.public_url.rstrip("/")
        found = [failed("public url", str(err), "set KEYTURN_PUBLIC_URL to https://…")]
    found += await _providers(settings, public)
    where = db.redacted_url(settings.database_url)
    if db.database_missing(settings.database_url):
        return [
            *found,
            failed("database", f"{where} does not exist", "run `keyturn migrate`"),
        ]
    try:
        await db.open_database(settings.database_url)
    except Exception as err:  # any driver's error: the check says it, in one line
        return [
            *found,
            failed(
                "database",
                f"{where} cannot be opened: {one_line(err)}",
                "check KEYTURN_DATABASE_URL",
            ),
        ]
    try:
        pending = await db.pending_migrations()
        found.append(_migrated(pending))
        found.append(await _encryption_key(settings, readable=not pending))
        found += await _locks(settings, readable=not pending)
    finally:
        await db.close_database()
    return found


async def _providers(settings: Settings, public: str) -> list[Check]:
    found: list[Check] = []
    if settings.telegram is None and settings.twilio is None:
        found.append(
            failed(
                "renter channel",
                "neither Telegram nor Twilio is configured: renters cannot reach Keyturn",
                "set the TELEGRAM_* or TWILIO_* settings",
            )
        )
    if settings.telegram is not None:
        found += await telegram.checks(settings.telegram, public)
    if settings.twilio is not None:
        found += await twilio.checks(settings.twilio, public)
    if settings.stripe is not None:
        found += await stripe.checks(settings.stripe, public)
    if settings.seam is not None:
        found += await seam.checks(settings.seam, public)
    return found


def _migrated(pending: list[str]) -> Check:
    if pending:
        named = ", ".join(pending) if len(pending) <= 3 else f"{pending[0]} … {pending[-1]}"
        return failed(
            "database", f"{len(pending)} migrations not applied ({named})", "run `keyturn migrate`"
        )
    return passed("database", "every migration applied")


async def _encryption_key(settings: Settings, *, readable: bool) -> Check:
    make = (
        "set KEYTURN_ENCRYPTION_KEY (python -c 'from cryptography.fernet import Fernet;"
        " print(Fernet.generate_key().decode())')"
    )
    if not settings.encryption_key:
        return failed("encryption key", "KEYTURN_ENCRYPTION_KEY is not set", make)
    code = await AccessCode.all().order_by("-id").first() if readable else None
    if code is None:
        return passed("encryption key", "set (no stored PIN to open yet)")
    try:
        Sealer(settings.encryption_key).open(code.pin_encrypted)
    except SealError:
        return failed(
            "encryption key",
            "KEYTURN_ENCRYPTION_KEY does not open the PINs stored in the database",
            "set the key the database was written with",
        )
    return passed("encryption key", "set, and opens the stored PINs")


async def _locks(settings: Settings, *, readable: bool) -> list[Check]:
    key = settings.encryption_key or Fernet.generate_key().decode()
    providers = build_lock_providers(settings, Sealer(key), SystemClock())
    try:
        if not readable:  # no lock table to read: only the credentials can be checked
            providers.pop("simulated")
        devices, found = await locks.device_lists(providers)
        if readable:
            found += await locks.inventory_locks(providers, devices)
        return found
    finally:
        await close_lock_providers(providers)


def reminders(settings: Settings) -> list[str]:
    notes = []
    if settings.twilio is not None:
        notes.append(
            "Twilio's Advanced Opt-Out keywords may answer CANCEL themselves and never pass it"
            " on: renters cancel a booking with it, so take CANCEL off the opt-out keywords"
            " (Messaging Service, Opt-Out Management) if you use them"
        )
    if settings.telegram is not None:
        notes.append(
            "Telegram never shows a webhook's secret token: `keyturn serve` sets"
            " TELEGRAM_WEBHOOK_SECRET again each time it starts"
        )
        if settings.telegram.ops_chat_id is None:
            notes.append("TELEGRAM_OPS_CHAT_ID is not set: there is no operators' group")
    return notes
