"""The ``keyturn`` command: serve, demo, migrate, inventory, locks, staff codes, deposits, and
``connect`` / ``doctor`` for going live (``bot.golive``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from aiohttp import web
from cryptography.fernet import Fernet

from bot.app import Runtime, StartupError, build_runtime, create_app
from bot.channels import ChannelError
from bot.config import Settings, SettingsError
from bot.golive import COMMANDS as GOLIVE_COMMANDS
from bot.log_redaction import redact_secrets_in_logs, settings_secrets
from flows.clock import MAX_SPEED, Clock, DemoClock, SystemClock
from flows.digits import DATABASE_ID_MAX, INT64_MAX, typed_int
from flows.gps import Gps
from flows.i18n import local_time
from flows.inventory import InventoryError, apply_inventory, describe_inventory, load_inventory
from flows.lock_check import check_lock, unmapped_devices
from flows.staging import run_unit
from locks import LockError
from locks.windows import AccessWindow
from storage import db
from storage.journal import latest_recorded_at
from storage.models import AccessCode, AccessCodeState, Booking, Lock, StaffMember
from storage.money import Money, MoneyError
from storage.outbox import pending_count
from storage.uow import unit_of_work

log = logging.getLogger("keyturn")

DEMO_DIR = Path("var")
DEMO_INVENTORY = Path(__file__).resolve().parent / "demo" / "inventory.toml"


def _typed_id(at_most: int) -> Callable[[str], int]:
    """An argument that is an id: ASCII digits no larger than its column holds (argparse
    answers anything else with the usage and exit status 2, before the database is opened)."""

    def parse(text: str) -> int:
        number = typed_int(text, at_most=at_most)
        if number is None:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an id (digits 0-9, at most {at_most})"
            )
        return number

    return parse


def _speed(text: str) -> int:
    """``--speed``: how many times faster than real time the demo's clock runs."""
    speed = typed_int(text, at_most=MAX_SPEED)
    if speed is None or speed < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a speed (a whole number from 1 to {MAX_SPEED})"
        )
    return speed


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("KEYTURN_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run is noise
    _redact_configured_secrets()
    # The Twilio SDK logs eleven INFO lines per request (URL with the account SID, every
    # header, the status): noise that cost a tenth of a worker's CPU under load.
    for sdk_log in ("twilio.http_client", "twilio.async_http_client"):
        logging.getLogger(sdk_log).setLevel(logging.WARNING)
    command: Callable[[argparse.Namespace], int] = args.run
    try:
        return command(args)
    except SettingsError as err:
        print(f"keyturn: {err}", file=sys.stderr)
        return 2
    except InventoryError as err:
        print(f"keyturn: inventory refused:\n{err}", file=sys.stderr)
        return 2


def _redact_configured_secrets() -> None:
    """Every command logs without the secrets in the environment (a malformed one is reported
    by the command itself)."""
    try:
        secrets = settings_secrets(Settings.from_env(dict(os.environ), receiving=False))
    except SettingsError:
        secrets = []
    redact_secrets_in_logs(secrets)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keyturn", description="Run a self-service rental business over chat."
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the service on the channels, payments and locks set in the environment"
    )
    _listen_options(serve)
    serve.add_argument(
        "--sandbox",
        action="store_true",
        help="also serve the sandbox page (never on a public address)",
    )
    serve.add_argument(
        "--no-payments",
        action="store_true",
        help="take no payment or deposit: bookings are confirmed without paying (no Stripe needed)",
    )
    # Parsed so that it is refused with a reason rather than as an unknown argument.
    serve.add_argument("--speed", help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo", help="run the embedded default: SQLite under var/, demo inventory, sandbox page"
    )
    _listen_options(demo)
    demo.add_argument("--reset", action="store_true", help="start again from an empty demo")
    demo.add_argument(
        "--speed",
        type=_speed,
        default=1,
        help=f"run the demo's clock this many times faster than real time (1 to {MAX_SPEED};"
        " default 1); pause it or jump to the next event on the sandbox page",
    )
    demo.set_defaults(run=_demo)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(run=_migrate)

    inventory = commands.add_parser("inventory", help="locations, items, locks and staff")
    actions = inventory.add_subparsers(title="actions", required=True, metavar="ACTION")
    apply = actions.add_parser("apply", help="make the database match an inventory TOML file")
    apply.add_argument("file", type=Path)
    apply.set_defaults(run=_inventory_apply)
    show = actions.add_parser("show", help="print the inventory as the database holds it")
    show.set_defaults(run=_inventory_show)

    locks = commands.add_parser("locks", help="check locks and reconcile their codes")
    lock_actions = locks.add_subparsers(title="actions", required=True, metavar="ACTION")
    check = lock_actions.add_parser(
        "check", help="prove each lock's connection live and list devices no item maps"
    )
    check.add_argument("lock", nargs="?", help="a lock key from the inventory (default: all)")
    check.add_argument(
        "--open", action="store_true", help="prove it with a remote open instead of a test code"
    )
    check.set_defaults(run=_locks_check)
    reconcile = lock_actions.add_parser(
        "reconcile", help="compare the codes each lock holds with Keyturn's and put them right"
    )
    reconcile.add_argument("lock", nargs="?", help="a lock key (default: all)")
    reconcile.set_defaults(run=_locks_reconcile)

    gps = commands.add_parser("gps", help="GPS from Traccar")
    gps_actions = gps.add_subparsers(title="actions", required=True, metavar="ACTION")
    gps_check = gps_actions.add_parser(
        "check", help="check the inventory's traccar_device_id and home_geofence_id with Traccar"
    )
    gps_check.set_defaults(run=_gps_check)

    codes = commands.add_parser("codes", help="staff access codes")
    code_actions = codes.add_subparsers(title="actions", required=True, metavar="ACTION")
    staff = code_actions.add_parser(
        "staff", help="a time-limited code for cleaning or maintenance; prints the PIN once"
    )
    staff.add_argument("lock", help="a lock key from the inventory")
    staff.add_argument("--hours", type=float, default=4.0, help="how long it works (default 4)")
    staff.add_argument(
        "--staff", type=_typed_id(INT64_MAX), required=True, help="the staff member's Telegram id"
    )
    staff.add_argument("--label", default="", help="shown in the lock's app (e.g. Cleaning)")
    staff.set_defaults(run=_codes_staff)
    deposits = commands.add_parser("deposits", help="renters' deposits")
    deposit_actions = deposits.add_subparsers(title="actions", required=True, metavar="ACTION")
    claim = deposit_actions.add_parser(
        "claim", help="keep a deposit (or part of it) for damage or a late return"
    )
    claim.add_argument("booking", help="the booking reference, e.g. KQG7KA9")
    claim.add_argument(
        "--amount",
        help="in the booking's currency, e.g. 25.00 or 1500 yen (default: all of it)",
    )
    claim.set_defaults(run=_deposits_claim)
    revoke = code_actions.add_parser("revoke", help="take a code off its lock now")
    revoke.add_argument(
        "code",
        type=_typed_id(DATABASE_ID_MAX),
        help="the code's number, as `codes staff` printed it",
    )
    revoke.set_defaults(run=_codes_revoke)
    for name, summary, run in GOLIVE_COMMANDS:
        commands.add_parser(name, help=summary).set_defaults(run=run)
    return parser


def _listen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default KEYTURN_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default KEYTURN_PORT or 8080)")


def _settings(env: dict[str, str] | None = None, *, receiving: bool = False) -> Settings:
    """The settings a command needs: only ``serve`` receives webhooks, so only it needs the
    secrets they are verified with."""
    return Settings.from_env(env if env is not None else dict(os.environ), receiving=receiving)


def _serve(args: argparse.Namespace) -> int:
    if args.speed is not None:
        print(
            "keyturn: the fast clock (--speed) is for the demo only, where everything is"
            " simulated: run `keyturn demo --speed N`",
            file=sys.stderr,
        )
        return 2
    settings = _settings(receiving=True)
    settings.require_encryption_key()
    if args.sandbox:
        _refuse_public_sandbox(args.host or settings.host)
    if settings.stripe is None and not (args.sandbox or args.no_payments):
        raise SettingsError(
            "STRIPE_API_KEY: missing, so renters could not pay (set the STRIPE_* settings, "
            "or start with --no-payments to confirm bookings without payment)"
        )
    started = settings.started_providers()
    log.info("providers configured: %s", ", ".join(started) or "none")
    if settings.twilio is None and settings.telegram is None and not args.sandbox:
        log.warning(
            "no renter channel is configured: set the TWILIO_* or TELEGRAM_* settings "
            "(or use `keyturn demo` to try Keyturn without accounts)"
        )
    if args.no_payments:
        log.warning("--no-payments: bookings are confirmed without payment or deposit")
    elif settings.stripe is None:
        log.warning("STRIPE_API_KEY is not set: renters pay on the sandbox checkout page")
    return _run(settings, args, sandbox=args.sandbox, take_payments=not args.no_payments)


def _demo(args: argparse.Namespace) -> int:
    _refuse_public_sandbox(args.host or os.environ.get("KEYTURN_HOST", "").strip() or "127.0.0.1")
    DEMO_DIR.mkdir(exist_ok=True)
    database = DEMO_DIR / "demo.sqlite3"
    if args.reset:
        for path in DEMO_DIR.glob("demo.sqlite3*"):
            path.unlink()
    key_file = DEMO_DIR / "demo.key"
    if not key_file.exists():
        key_file.write_bytes(Fernet.generate_key())
        key_file.chmod(0o600)
    env = {
        name: value
        for name, value in os.environ.items()
        if name.startswith("KEYTURN_") and name not in ("KEYTURN_DATABASE_URL",)
    }
    env["KEYTURN_DATABASE_URL"] = f"sqlite://{database}"
    # Links the demo sends (the sandbox checkout) point at where it actually listens.
    if args.host:
        env["KEYTURN_HOST"] = args.host
    if args.port:
        env["KEYTURN_PORT"] = str(args.port)
    env["KEYTURN_ENCRYPTION_KEY"] = key_file.read_text().strip()
    settings = _settings(env)  # demo ignores real provider credentials on purpose
    applied = asyncio.run(db.migrate(settings.database_url))
    for name in applied:
        print(f"applied migration {name}")
    # The demo's own clock, even at speed 1: the page and /sandbox/api/clock pause it and move
    # it to the next event. Every timed part of the demo reads it (see bot/runtime.py).
    now = SystemClock().now()
    stopped_at = asyncio.run(_demo_stopped_at(settings))
    start = max(now, stopped_at or now)
    changes = asyncio.run(_apply(settings, DEMO_INVENTORY, now=start))
    for line in changes:
        print(line)
    host = args.host or settings.host
    port = args.port or settings.port
    print(f"Keyturn demo: open http://{host}:{port}/sandbox to chat as a renter and watch ops.")
    if start > now:
        print(f"The demo's clock goes on from {start:%Y-%m-%d %H:%M} UTC, where it stopped.")
    if args.speed > 1:
        print(f"The demo's clock runs {args.speed} times faster than real time.")
    from bot.gps.simulated import simulated_gps

    # GPS is simulated: the sandbox page moves the items with trackers out of and into their
    # yards, through the same path as Traccar's forwarded events.
    return _run(
        settings,
        args,
        sandbox=True,
        clock=DemoClock(start, speed=args.speed),
        gps=simulated_gps(),
    )


async def _demo_stopped_at(settings: Settings) -> datetime | None:
    """The latest time the demo recorded: a clock moved ahead in an earlier run goes on from
    there rather than running behind its own bookings and timers."""
    await db.open_database(settings.database_url)
    try:
        return await latest_recorded_at()
    finally:
        await db.close_database()


def _run(
    settings: Settings,
    args: argparse.Namespace,
    *,
    sandbox: bool,
    take_payments: bool = True,
    clock: Clock | None = None,
    gps: Gps | None = None,
) -> int:
    runtime = build_runtime(
        settings,
        clock=clock or SystemClock(),
        sandbox=sandbox,
        take_payments=take_payments,
        gps=gps,
    )
    app = create_app(runtime, sandbox=sandbox)
    # What start-up loaded (modules, catalogs, the SDKs) lives as long as the process: frozen,
    # the collector stops walking it on every full collection, which showed as latency spikes.
    gc.freeze()
    loop = _event_loop()
    asyncio.set_event_loop(loop)
    serving = loop.create_task(
        _serve_until_stopped(app, args.host or settings.host, args.port or settings.port)
    )
    try:
        loop.run_until_complete(serving)
    except (web.GracefulExit, KeyboardInterrupt):
        serving.cancel()  # SIGTERM or SIGINT: stop listening, finish requests, clean up
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(serving)
    except _StartFailed as err:
        print(f"keyturn: cannot start: {err}", file=sys.stderr)
        return 1
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return 0


class _StartFailed(Exception):
    """Start-up stopped; the message says what failed, in one line."""


async def _serve_until_stopped(app: web.Application, host: str, port: int) -> None:
    """Start the app (database, providers, workers), listen, and run until a signal stops it.

    ``web.run_app`` leaves what had started running when a later start-up step fails (the
    database's worker thread kept the process from ever exiting); here whatever started is
    stopped again and the failure is one line."""
    runner = web.AppRunner(app, handle_signals=True, access_log=None)
    try:
        try:
            await runner.setup()
        except Exception as err:
            raise _StartFailed(_one_line(err)) from err
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as err:
            raise _StartFailed(f"cannot listen on {host}:{port}: {err.strerror}") from err
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def _one_line(err: BaseException) -> str:
    said = isinstance(err, StartupError | ChannelError)  # their messages say what failed
    text = str(err) if said else f"{type(err).__name__}: {err}"
    return " ".join(text.split())


def _refuse_public_sandbox(host: str) -> None:
    """The sandbox acts as any renter and any operator: only this machine may reach it."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SettingsError(
            f"the sandbox is served only on a loopback address (127.0.0.1, ::1 or localhost),"
            f" not {host}"
        )


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (every platform but Windows): the worker spends a quarter
    of its time in the event loop itself, which uvloop runs in C."""
    try:
        import uvloop  # optional: not built for Windows
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    applied = asyncio.run(db.migrate(settings.database_url))
    for name in applied:
        print(f"applied {name}")
    if not applied:
        print("database is up to date")
    return 0


async def _apply(settings: Settings, path: Path, *, now: datetime | None = None) -> list[str]:
    inventory = load_inventory(path, settings.lead_times)
    await db.open_database(settings.database_url)
    try:
        async with unit_of_work() as conn:  # the file applies whole or not at all
            changes = await apply_inventory(conn, inventory, now=now or SystemClock().now())
    finally:
        await db.close_database()
    return changes.lines or ["inventory unchanged"]


def _inventory_apply(args: argparse.Namespace) -> int:
    settings = _settings()
    for line in asyncio.run(_apply(settings, args.file)):
        print(line)
    return 0


def _inventory_show(args: argparse.Namespace) -> int:
    settings = _settings()

    async def show() -> list[str]:
        await db.open_database(settings.database_url)
        try:
            return await describe_inventory(settings.lead_times)
        finally:
            await db.close_database()

    for line in asyncio.run(show()):
        print(line)
    return 0


async def _with_locks(
    work: Callable[[Runtime], Awaitable[int]],
) -> int:
    settings = _settings()
    runtime = build_runtime(settings, clock=SystemClock())
    await db.open_database(settings.database_url)
    try:
        return await work(runtime)
    finally:
        await db.close_database()


def _gps_check(args: argparse.Namespace) -> int:
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

    return asyncio.run(_with_locks(work))


async def _chosen_locks(key: str | None) -> list[Lock]:
    query = Lock.filter(retired_at__isnull=True).order_by("key")
    locks = await (query.filter(key=key) if key else query)
    if key and not locks:
        raise SettingsError(f"no lock {key!r} in the inventory (see: keyturn inventory show)")
    return locks


def _locks_check(args: argparse.Namespace) -> int:
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

    return asyncio.run(_with_locks(work))


def _locks_reconcile(args: argparse.Namespace) -> int:
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

    return asyncio.run(_with_locks(work))


def _codes_staff(args: argparse.Namespace) -> int:
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

    return asyncio.run(_with_locks(work))


def _codes_revoke(args: argparse.Namespace) -> int:
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

    return asyncio.run(_with_locks(work))


def _deposits_claim(args: argparse.Namespace) -> int:
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

    return asyncio.run(_with_locks(work))


if __name__ == "__main__":
    raise SystemExit(main())
