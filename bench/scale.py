"""Keyturn at years of data: the same measures on an empty and on a seeded database.

    .venv/bin/python -m bench.scale [--db sqlite|postgres|both] [--scale 0.01] [--bookings N] ...

Run by hand, never by the test suite (see bench/README.md). For each database it makes two
databases through Keyturn's own migrations and ``keyturn inventory apply`` (1,000 items in 20
locations, each item with its simulated lock, a shared gate per location, two staff members):
one left almost empty, one seeded in bulk with years of bookings, renters, messages, audit
events, access codes and finished work (``bench/seed.py``). On each it times availability, the
ops desk's reading commands, the timer and outbox claims (in this process), renter turns through
a ``keyturn serve`` worker, retention's purge while renters chat, and ``keyturn locks reconcile``
(``bench/measures.py``), and prints p50/p99 with the ratio seeded/empty, plus the plans of the
statements that read a large table from end to end (``bench/plans.py``).
Everything it starts it stops, and it removes the databases it made unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from cryptography.fernet import Fernet

from bench import measures, seed
from bench.load import REQUEST_TIMEOUT, run_step
from bench.measures import Sample
from bench.plans import ScanWatch
from bench.run import (
    Processes,
    base_env,
    free_port,
    keyturn_command,
    keyturn_env,
    machine_speed,
    prepare,
    recreate_postgres,
    remove_sqlite,
    wait_healthy,
)
from bot.config import Settings
from bot.runtime import Runtime, build_runtime
from flows.access import RECONCILE_KEY, RECONCILE_TIMER
from flows.retention import RETENTION_KEY, RETENTION_TIMER
from storage import db
from storage.models import Asset, Lock
from storage.sealing import Sealer
from tests.fakes.twilio import FakeTwilio

DATABASES = ("sqlite", "postgres")
POSTGRES = "postgres://postgres@127.0.0.1:5432/"
PG_NAMES = {"empty": "keyturn_scale_empty", "seeded": "keyturn_scale"}
#: SQLite is seeded at a tenth of PostgreSQL's volumes unless told otherwise.
SQLITE_SHARE = 0.1
#: The almost empty database: the same inventory, a booking per item, a handful of the rest.
EMPTY = dataclasses.replace(
    seed.FULL,
    bookings=seed.FULL.items,
    renters=200,
    messages=2000,
    audit_events=200,
    access_codes=200,
    timers=20,
    outbox=20,
    expired=20,
)
RECONCILE_TIMEOUT = 1800.0
#: Share of the locks (the first gates and every tenth bay) whose codes are lost before the run,
#: so reconcile has codes to put back.
WIPED_EVERY = 10


@dataclass
class Outcome:
    """One database state's results."""

    state: str
    volumes: seed.Volumes
    seconds_seeding: float = 0.0
    samples: dict[str, Sample] = field(default_factory=dict)
    reconcile: str = ""
    #: Rows written, table by table ("booking 1,000,000").
    written: Sequence[str] = ()


# -- databases --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_database(kind: str, state: str, workdir: Path, keep: bool) -> AsyncIterator[str]:
    if kind == "sqlite":
        path = workdir / f"scale-{state}.sqlite3"
        try:
            yield f"sqlite://{path}"
        finally:
            if not keep:
                remove_sqlite(path)
        return
    name = PG_NAMES[state]
    await recreate_postgres(name, drop_only=False)
    try:
        yield POSTGRES + name
    finally:
        if not keep:
            await recreate_postgres(name, drop_only=True)


async def read_inventory() -> seed.Inventory:
    assets = {a.code: a.id for a in await Asset.all()}
    locks = {lock.key: lock for lock in await Lock.all()}
    items = len(assets)
    gates = sorted(key for key in locks if key.endswith("-gate"))
    return seed.Inventory(
        asset_ids=[assets[seed.asset_code(i)] for i in range(items)],
        lock_ids=[locks[seed.lock_key(i)].id for i in range(items)],
        gate_ids=[locks[key].id for key in gates],
        lock_devices={lock.id: lock.device_id for lock in locks.values()},
    )


def wiped_locks(inventory: seed.Inventory) -> frozenset[int]:
    gates = inventory.gate_ids[: max(1, len(inventory.gate_ids) // WIPED_EVERY)]
    return frozenset([*gates, *inventory.lock_ids[WIPED_EVERY // 2 :: WIPED_EVERY]])


async def fill(url: str, volumes: seed.Volumes, settings: Settings, log: Path) -> Sequence[str]:
    """Seed ``url`` (migrated, inventory applied); returns what was written, table by table."""
    await db.open_database(url)
    try:
        inventory = await read_inventory()
    finally:
        await db.close_database()
    rows = seed.Rows(
        volumes,
        inventory,
        seed_sealer(settings),
        datetime.now(UTC),
        audit_days=settings.audit_retention_days,
        message_days=settings.message_retention_days,
        wiped=wiped_locks(inventory),
    )
    written: list[str] = []

    def report(line: str) -> None:
        written.append(line)
        with log.open("a") as out:
            out.write(line + "\n")

    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite://"))
        await asyncio.to_thread(seed.write_sqlite, path, rows.tables(), report)
    else:
        await seed.write_postgres(url, rows.tables(), report)
    return written


def seed_sealer(settings: Settings) -> Sealer:
    return Sealer(settings.require_encryption_key())


# -- one database state -----------------------------------------------------------------------


async def run_state(
    kind: str,
    state: str,
    volumes: seed.Volumes,
    args: argparse.Namespace,
    processes: Processes,
    session: aiohttp.ClientSession,
    twilio_api: str,
    workdir: Path,
) -> Outcome:
    outcome = Outcome(state, volumes)
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    async with fresh_database(kind, state, workdir, args.keep) as url:
        env = keyturn_env(url, public_url, twilio_api, args.log_level)
        env["KEYTURN_ENCRYPTION_KEY"] = args.key
        settings = Settings.from_env(env)
        inventory = workdir / "inventory.toml"
        inventory.write_text(seed.inventory_toml(volumes))
        began = time.perf_counter()
        await prepare(processes, env, inventory)
        print(f"  {state}: migrated and inventory applied", flush=True)
        log = processes.logs / f"seed-{kind}-{state}.log"
        outcome.written = await fill(url, volumes, settings, log)
        outcome.seconds_seeding = time.perf_counter() - began
        print(f"  {state}: seeded in {outcome.seconds_seeding:.0f} s: {', '.join(outcome.written)}")
        seeded = picks(volumes, settings.audit_retention_days)
        await db.open_database(url)
        try:
            watch = ScanWatch(url)
            await watch.sizes_now()
            runtime = build_runtime(settings, take_payments=False)
            inproc = measures.Measures(runtime, seeded, volumes, watch)
            outcome.samples.update(await inproc.all(args.samples, args.ops_samples))
            print(f"  {state}: in-process measures done", flush=True)
            await measures.park_recurring_timers(
                (RECONCILE_TIMER, RECONCILE_KEY), (RETENTION_TIMER, RETENTION_KEY)
            )
            await webhook_measures(
                outcome, env, args, processes, session, public_url, port, watch, runtime
            )
            outcome.reconcile = await reconcile(env, processes, len(await Lock.all()))
            print(f"  {state}: {outcome.reconcile}", flush=True)
        finally:
            await db.close_database()
        if args.keep:
            print(f"  kept {url}")
    return outcome


def picks(volumes: seed.Volumes, audit_days: int) -> seed.Seeded:
    references, phones, parts = seed.seeded_picks(volumes, audit_days)
    return seed.Seeded(
        now=datetime.now(UTC),
        asset_codes=[seed.asset_code(i) for i in range(volumes.items)],
        references=references,
        phones=phones,
        name_parts=parts,
        owner_telegram_id=seed.OWNER_TELEGRAM_ID,
    )


async def webhook_measures(
    outcome: Outcome,
    env: dict[str, str],
    args: argparse.Namespace,
    processes: Processes,
    session: aiohttp.ClientSession,
    public_url: str,
    port: int,
    watch: ScanWatch,
    runtime: Runtime,
) -> None:
    argv = [*keyturn_command(), "serve", "--no-payments", "--port", str(port)]
    settings = Settings.from_env(env)
    seeded = picks(outcome.volumes, settings.audit_retention_days)
    worker = await processes.start(f"worker-{outcome.state}", argv, env)
    try:
        await wait_healthy(session, public_url, worker)
        crowd = measures.SeededCrowd(
            FakeTwilio(public_url=public_url),
            measures.journeys(seeded, outcome.volumes, seed=15),
        )
        # Lazy imports and caches (dateparser's language data) load on the first messages.
        await run_step(session, crowd, [public_url], rate=args.turn_rate, duration=2.0)
        outcome.samples["renter turn (webhook)"] = await measures.turns(
            session, crowd, public_url, rate=args.turn_rate, seconds=args.turn_seconds, watch=watch
        )
        outcome.samples["renter turn (engine)"] = await measures.engine_turns(
            runtime, seeded, outcome.volumes, watch, args.engine_journeys
        )
        outcome.samples["turn during retention"] = await measures.retention_while_chatting(
            session,
            crowd,
            public_url,
            rate=args.turn_rate,
            watch=watch,
            audit_days=settings.audit_retention_days,
            message_days=settings.message_retention_days,
        )
        print(f"  {outcome.state}: webhook measures done", flush=True)
    finally:
        await processes.stop(worker)


async def reconcile(env: dict[str, str], processes: Processes, locks: int) -> str:
    """``keyturn locks reconcile`` over every lock: its time, and the pace of code creations."""
    since = datetime.now(UTC)
    began = time.perf_counter()
    process = await processes.start("reconcile", [*keyturn_command(), "locks", "reconcile"], env)
    code = await measures.wait_process(process, RECONCILE_TIMEOUT)
    processes.running.remove(process)
    took = time.perf_counter() - began
    created, worst, device = await measures.code_creations(since)
    failed = "" if code == 0 else f" (exit {code}; see {processes.logs}/reconcile.log)"
    return (
        f"reconcile of {locks:,} locks took {took:.1f} s{failed}; {created:,} codes created, "
        f"at most {worst} within a minute on one device ({device}; Seam allows 10)"
    )


# -- reporting --------------------------------------------------------------------------------


def report(kind: str, empty: Outcome, seeded: Outcome) -> str:
    name = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[kind]
    v = seeded.volumes
    lines = [
        "",
        f"{name}: {v.items:,} items in {v.locations} locations ({v.items + v.locations:,} locks); "
        f"seeded with {', '.join(seeded.written)}; {v.expired:,} rows past retention wanted; "
        f"migrating and seeding took {seeded.seconds_seeding:.0f} s",
        f"  {'measure':<26} {'empty p50':>10} {'p99':>9} {'seeded p50':>11} {'p99':>9} "
        f"{'p99 ratio':>10}  n",
    ]
    for label, after in seeded.samples.items():
        before = empty.samples.get(label, Sample())
        ratio = after.ms(99) / before.ms(99) if before.latencies and before.ms(99) else float("nan")
        lines.append(
            f"  {label:<26} {before.ms(50):8.2f} ms {before.ms(99):6.2f} ms "
            f"{after.ms(50):8.2f} ms {after.ms(99):6.2f} ms {ratio:9.2f}x  {len(after.latencies)}"
        )
    for outcome in (empty, seeded):
        for label, sample in outcome.samples.items():
            if sample.note:
                lines.append(f"  {outcome.state}, {label}: {sample.note}")
        lines.append(f"  {outcome.state}: {outcome.reconcile}")
    lines.append("  Sequential scans of large tables (seeded database):")
    for label, sample in seeded.samples.items():
        if sample.scans is None or not (sample.scans.tables or sample.scans.plans):
            continue
        lines.append(f"  - {label}: {sample.scans.summary()}")
        lines += sample.scans.plans or [
            "    (no statement of this process plans one: a worker's statements, or a late"
            " statistics report of the measure before)"
        ]
    if not any(s.scans and (s.scans.tables or s.scans.plans) for s in seeded.samples.values()):
        lines.append("    none")
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------


def volumes_for(kind: str, args: argparse.Namespace) -> seed.Volumes:
    share = args.scale * (SQLITE_SHARE if kind == "sqlite" else 1.0)
    chosen = {}
    for name in (f.name for f in dataclasses.fields(seed.Volumes)):
        given = getattr(args, name)
        if given is not None:
            chosen[name] = given
        elif name in ("items", "locations"):
            chosen[name] = getattr(seed.FULL, name)
        else:
            chosen[name] = max(1, round(getattr(seed.FULL, name) * share))
    return seed.Volumes(**chosen)


async def bench(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="keyturn-scale-"))
    logs = workdir / "logs"
    logs.mkdir()
    processes = Processes(logs)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    reports: list[str] = []
    failed = False
    try:
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
        ) as session:
            twilio_api, _ = await processes.helper("twilio", base_env())
            print(f"machine: {os.cpu_count()} cores; logs under {logs}")
            print(
                f"machine speed: 10 million additions in a Python loop take "
                f"{machine_speed():.2f} s (compare with the runs in bench/README.md)",
                flush=True,
            )
            kinds = DATABASES if args.db == "both" else (args.db,)
            for kind in kinds:
                volumes = volumes_for(kind, args)
                empty_volumes = dataclasses.replace(
                    EMPTY,
                    items=volumes.items,
                    locations=volumes.locations,
                    bookings=volumes.items,
                )
                print(f"\n{kind}", flush=True)
                empty = await run_state(
                    kind, "empty", empty_volumes, args, processes, session, twilio_api, workdir
                )
                seeded = await run_state(
                    kind, "seeded", volumes, args, processes, session, twilio_api, workdir
                )
                reports.append(report(kind, empty, seeded))
                print(reports[-1], flush=True)
    except Exception as err:
        failed = True
        print(f"bench.scale: {type(err).__name__}: {err}", file=sys.stderr)
        raise
    finally:
        await processes.stop_all()
        if args.keep or failed:
            print(f"kept {workdir} (logs)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies every volume (PostgreSQL: 1,000,000 bookings at 1; SQLite a tenth)",
    )
    for name in (f.name for f in dataclasses.fields(seed.Volumes)):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, dest=name, help=f"{name} to seed"
        )
    parser.add_argument("--samples", type=int, default=200, help="calls per in-process measure")
    parser.add_argument("--ops-samples", type=int, default=30, help="calls per ops command")
    parser.add_argument("--turn-rate", type=float, default=20.0, help="renter messages/s")
    parser.add_argument("--turn-seconds", type=float, default=15.0)
    parser.add_argument(
        "--engine-journeys",
        type=int,
        default=30,
        help="journeys also run through this process's engine, to explain their statements",
    )
    parser.add_argument("--log-level", default="WARNING", help="the worker's KEYTURN_LOG_LEVEL")
    parser.add_argument("--keep", action="store_true", help="keep the databases and logs")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 10:
        parser.error("--scale is more than 0 and at most 10")
    args.key = Fernet.generate_key().decode()
    try:
        return asyncio.run(bench(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
