"""What an operator does with the live runtime: check locks and reconcile their codes, give
staff a time-limited code or take one off, claim a renter's deposit, check GPS trackers."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta

from bot.app import Runtime
from bot.cli.context import with_runtime
from bot.config import SettingsError
from flows.i18n import local_time
from flows.lock_check import check_lock, unmapped_devices
from flows.staging import run_unit
from locks import LockError
from locks.windows import AccessWindow
from storage.models import AccessCode, AccessCodeState, Booking, Lock, StaffMember
from storage.money import Money, MoneyError
from storage.outbox import pending_count


def gps_check(args: argparse.Namespace) -> int:
    """Each tracker and home geofence of the inventory checked with Traccar; 1 on a problem."""
    from bot.gps.check import warn_about_trackers

    async def work(runtime: Runtime) -> int:
        if runtime.gps is None:
            print("GPS is off: set TRACCAR_API_BASE, TRACCAR_API_TOKEN and TRACCAR_WEBHOOK_SECRET")
            return 1
        try:
            problems = await warn_about_trackers(runtime.gps.source)
        finally:
            closing = getattr(runtime.gps.source, "close", None)
            if closing is not None:
                await closing()
        for line in problems:
            print(line)
        if not problems:
            print("every traccar_device_id and home_geofence_id is known to Traccar")
        return 1 if problems else 0

    return asyncio.run(with_runtime(work))


async def _chosen_locks(key: str | None) -> list[Lock]:
    query = Lock.filter(retired_at__isnull=True).order_by("key")
    locks = await (query.filter(key=key) if key else query)
    if key and not locks:
        raise SettingsError(f"no lock {key!r} in the inventory (see: keyturn inventory show)")
    return locks


def locks_check(args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        failed = 0
        for lock in await _chosen_locks(args.lock):
            provider = runtime.locks.get(lock.provider)
            if provider is None:
                print(f"{lock.key} ({lock.label}): the {lock.provider} provider is not configured")
                failed += 1
                continue
            result = await check_lock(lock, provider, runtime.clock, open_door=args.open)
            await run_unit(result.record, runtime.clock.now())
            print(f"{lock.key} ({lock.label}): {'OK' if result.ok else 'FAILED'}")
            for line in result.lines:
                print(f"  {line}")
            failed += not result.ok
        for provider_name, device in await unmapped_devices(runtime.locks):
            print(
                f"not in the inventory: {provider_name} device {device.device_id} ({device.name})"
            )
        return 1 if failed else 0

    return asyncio.run(with_runtime(work))


def locks_reconcile(args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        failed = 0
        for lock in await _chosen_locks(args.lock):
            try:
                reconciliation = await runtime.access.reconcile(lock)
            except LockError as err:
                print(f"{lock.key}: cannot reconcile: {err}")
                failed += 1
                continue
            await run_unit(reconciliation.record, runtime.clock.now())
            if reconciliation.unreachable is not None:
                print(f"{lock.key}: cannot reconcile: {reconciliation.unreachable}")
                failed += 1
                continue
            report = reconciliation.report
            if report.clean:
                print(f"{lock.key}: matches")
            else:
                print(
                    f"{lock.key}: removing {len(report.strays_removed)} unknown codes, "
                    f"{len(report.strays_stuck)} unknown codes still held after their deletion, "
                    f"reprogramming {len(report.reprogrammed)}, correcting {len(report.drift)}, "
                    f"removing again {len(report.removals_requeued)} revoked codes"
                )
        await runtime.dispatcher.run_once()
        waiting = await pending_count()
        if waiting:
            print(
                f"{waiting} effects wait in the outbox (codes go out at each lock's pace, "
                "at most what its provider takes a minute): `keyturn serve` sends them"
            )
        return 1 if failed else 0

    return asyncio.run(with_runtime(work))


def codes_staff(args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        [lock] = await _chosen_locks(args.lock)
        member = await StaffMember.get_or_none(telegram_user_id=args.staff, active=True)
        if member is None:
            raise SettingsError(f"no active staff member with Telegram id {args.staff}")
        if not 0 < args.hours <= 24 * 14:
            raise SettingsError("--hours must be more than 0 and at most two weeks")
        now = runtime.clock.now()
        window = AccessWindow(now, now + timedelta(hours=args.hours))
        label = args.label or member.name
        await run_unit(
            lambda conn: runtime.access.plan_staff_code(conn, member, lock, window, label), now
        )
        await runtime.timers.run_due()
        await runtime.dispatcher.run_once()
        code = await AccessCode.filter(staff=member, lock=lock).order_by("-id").first()
        assert code is not None
        if code.state != AccessCodeState.SET:
            print(f"code {code.id} on {lock.label} is {code.state}: {code.last_error}")
            return 1
        until = local_time(code.ends_at, lock.timezone, "en")
        pin = runtime.access.sealer.open(code.pin_encrypted)
        print(f"code {code.id} for {member.name} on {lock.label}: {pin} (works until {until})")
        return 0

    return asyncio.run(with_runtime(work))


def codes_revoke(args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        code = await AccessCode.get_or_none(id=args.code)
        if code is None:
            raise SettingsError(f"no access code {args.code}")
        now = runtime.clock.now()
        await run_unit(
            lambda conn: runtime.access.revoke(conn, [code], actor="operator", reason="revoked"),
            now,
        )
        await runtime.dispatcher.run_once()
        await code.refresh_from_db()
        print(f"code {code.id} is {code.state}")
        return 0 if code.state == AccessCodeState.REMOVED else 1

    return asyncio.run(with_runtime(work))


def deposits_claim(args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        booking = await Booking.get_or_none(reference=args.booking)
        if booking is None:
            print(f"keyturn: no booking {args.booking}", file=sys.stderr)
            return 2
        amount = None
        if args.amount is not None:
            try:
                amount = Money.parse(args.amount, booking.currency)
            except MoneyError as err:
                raise SettingsError(f"--amount {err}") from None
        try:
            # The claim flow /claim in the ops group takes: its record tells the renter.
            taken, record = await runtime.journey.claim_deposit(
                args.booking, amount, actor="operator"
            )
            await run_unit(record, runtime.clock.now())
        except (LookupError, ValueError) as err:
            print(f"keyturn: {err}", file=sys.stderr)
            return 2
        shown = taken.amount.format("en")
        if not taken.paid:
            print(
                f"claim of {shown} of the deposit for {args.booking} is processing at the"
                " card's bank: the renter is told once it went through"
            )
            return 0
        print(f"claimed {shown} of the deposit for {args.booking}; the renter is told")
        return 0

    return asyncio.run(with_runtime(work))
