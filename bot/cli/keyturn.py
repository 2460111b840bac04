"""The command line: its commands and options, and ``main``, which runs the one asked for."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bot.cli import database, operations, serving
from bot.config import Settings, SettingsError
from bot.golive import COMMANDS as GOLIVE_COMMANDS
from bot.log_redaction import redact_secrets_in_logs, settings_secrets
from flows.clock import MAX_SPEED
from flows.digits import DATABASE_ID_MAX, INT64_MAX, typed_int
from flows.inventory import InventoryError


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
    serve.set_defaults(run=serving.serve)

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
    demo.set_defaults(run=serving.demo)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(run=database.migrate)

    inventory = commands.add_parser("inventory", help="locations, items, locks and staff")
    actions = inventory.add_subparsers(title="actions", required=True, metavar="ACTION")
    apply = actions.add_parser("apply", help="make the database match an inventory TOML file")
    apply.add_argument("file", type=Path)
    apply.set_defaults(run=database.inventory_apply)
    show = actions.add_parser("show", help="print the inventory as the database holds it")
    show.set_defaults(run=database.inventory_show)

    locks = commands.add_parser("locks", help="check locks and reconcile their codes")
    lock_actions = locks.add_subparsers(title="actions", required=True, metavar="ACTION")
    check = lock_actions.add_parser(
        "check", help="prove each lock's connection live and list devices no item maps"
    )
    check.add_argument("lock", nargs="?", help="a lock key from the inventory (default: all)")
    check.add_argument(
        "--open", action="store_true", help="prove it with a remote open instead of a test code"
    )
    check.set_defaults(run=operations.locks_check)
    reconcile = lock_actions.add_parser(
        "reconcile", help="compare the codes each lock holds with Keyturn's and put them right"
    )
    reconcile.add_argument("lock", nargs="?", help="a lock key (default: all)")
    reconcile.set_defaults(run=operations.locks_reconcile)

    gps = commands.add_parser("gps", help="GPS from Traccar")
    gps_actions = gps.add_subparsers(title="actions", required=True, metavar="ACTION")
    gps_check = gps_actions.add_parser(
        "check", help="check the inventory's traccar_device_id and home_geofence_id with Traccar"
    )
    gps_check.set_defaults(run=operations.gps_check)

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
    staff.set_defaults(run=operations.codes_staff)
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
    claim.set_defaults(run=operations.deposits_claim)
    revoke = code_actions.add_parser("revoke", help="take a code off its lock now")
    revoke.add_argument(
        "code",
        type=_typed_id(DATABASE_ID_MAX),
        help="the code's number, as `codes staff` printed it",
    )
    revoke.set_defaults(run=operations.codes_revoke)
    for name, summary, run in GOLIVE_COMMANDS:
        commands.add_parser(name, help=summary).set_defaults(run=run)
    return parser


def _listen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default KEYTURN_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default KEYTURN_PORT or 8080)")
