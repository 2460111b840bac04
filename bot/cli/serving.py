"""``keyturn serve`` and ``keyturn demo``: the service on the configured providers, or the
embedded demo (SQLite under var/, the demo inventory, the sandbox page, a clock of its own), each
run until a signal stops it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import sys
from datetime import datetime
from pathlib import Path

from aiohttp import web
from cryptography.fernet import Fernet

from bot.app import StartupError, build_runtime, create_app
from bot.channels import ChannelError
from bot.cli.context import command_settings
from bot.cli.database import apply_inventory_file
from bot.config import Settings, SettingsError
from flows.clock import Clock, DemoClock, SystemClock
from flows.gps import Gps
from storage import db
from storage.journal import latest_recorded_at

log = logging.getLogger("keyturn")

DEMO_DIR = Path("var")
DEMO_INVENTORY = Path(__file__).resolve().parents[1] / "demo" / "inventory.toml"


def serve(args: argparse.Namespace) -> int:
    if args.speed is not None:
        print(
            "keyturn: the fast clock (--speed) is for the demo only, where everything is"
            " simulated: run `keyturn demo --speed N`",
            file=sys.stderr,
        )
        return 2
    settings = command_settings(receiving=True)
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


def demo(args: argparse.Namespace) -> int:
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
    settings = command_settings(env)  # demo ignores real provider credentials on purpose
    applied = asyncio.run(db.migrate(settings.database_url))
    for name in applied:
        print(f"applied migration {name}")
    # The demo's own clock, even at speed 1: the page and /sandbox/api/clock pause it and move
    # it to the next event. Every timed part of the demo reads it (see bot/runtime.py).
    now = SystemClock().now()
    stopped_at = asyncio.run(_demo_stopped_at(settings))
    start = max(now, stopped_at or now)
    changes = asyncio.run(apply_inventory_file(settings, DEMO_INVENTORY, now=start))
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
