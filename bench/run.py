"""Keyturn's load benchmark: run by hand, never by the test suite (see bench/README.md).

    .venv/bin/python -m bench.run [--rates 50,100,200,400] [--duration 10] [--configs ...]

It starts everything on 127.0.0.1 in processes of its own: a fake Twilio REST API (so replies are
really sent), a bare aiohttp baseline, and ``keyturn serve`` workers on SQLite and on PostgreSQL
(a database ``keyturn_bench`` it creates and drops). Simulated renters post signed SMS webhooks
at rising rates; it prints messages/s handled, p50/p99 webhook latency, how fast the outbox sent
the replies, the workers' CPU time per message, p99 lateness of 10,000 timers due in the same
minute, and each worker's peak memory.
Everything it starts it stops, and it removes what it created, also when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
from cryptography.fernet import Fernet

from bench.load import (
    REQUEST_TIMEOUT,
    RenterCrowd,
    StepResult,
    percentile,
    run_saturated,
    run_step,
)
from bench.servers import READY_PREFIX, STATS_PATH
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SMS_NUMBER, FakeTwilio

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = ROOT / "bot" / "demo" / "inventory.toml"
POSTGRES_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
POSTGRES_DATABASE = "keyturn_bench"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
DRAIN_TIMEOUT = 60.0
#: Timers are due this long after they are written, spread over ``--timer-window`` seconds.
TIMER_LEAD = 15.0
TIMER_GRACE = 120.0
TIMER_BATCH = 1000
WARMUP_RATE = 20.0
P99_TARGET_MS = 100


@dataclass(frozen=True)
class Config:
    name: str
    database: str  # "sqlite" or "postgres"
    workers: int


CONFIGS = {
    "sqlite-1": Config("SQLite, 1 worker", "sqlite", 1),
    "pg-1": Config("PostgreSQL, 1 worker", "postgres", 1),
    "pg-2": Config("PostgreSQL, 2 workers", "postgres", 2),
}


@dataclass
class OutboxResult:
    replies: int = 0
    replies_per_second: float = 0.0
    drained_after: float | None = None
    #: The workers' CPU time (user and system) over the step and its drain, per message handled.
    cpu_ms_per_message: float = float("nan")


@dataclass
class TimerResult:
    count: int = 0
    fired: int = 0
    p50: float = float("nan")
    p99: float = float("nan")
    worst: float = float("nan")


@dataclass
class Run:
    name: str
    steps: list[tuple[StepResult, OutboxResult | None]] = field(default_factory=list)
    timers: TimerResult | None = None
    memory_mb: list[float] = field(default_factory=list)


# -- processes --------------------------------------------------------------------------------


class Processes:
    """Every process the benchmark started, stopped (by pid) when it ends."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[asyncio.subprocess.Process] = []

    async def start(
        self, name: str, argv: Sequence[str], env: dict[str, str], *, pipe: bool = False
    ) -> asyncio.subprocess.Process:
        log = (self.logs / f"{name}.log").open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if pipe else log,
                stderr=log,
            )
        finally:
            log.close()
        self.running.append(process)
        return process

    async def helper(self, which: str, env: dict[str, str]) -> tuple[str, int]:
        """Start a ``bench.servers`` helper; returns its base URL and pid."""
        argv = [sys.executable, "-m", "bench.servers", which]
        process = await self.start(which, argv, env, pipe=True)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        text = line.decode().strip()
        if not text.startswith(READY_PREFIX):
            raise RuntimeError(f"{which} helper did not start; see {self.logs}/{which}.log")
        return text.removeprefix(READY_PREFIX), process.pid

    async def stop(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process in self.running:
            self.running.remove(process)

    async def stop_all(self) -> None:
        for process in list(reversed(self.running)):
            await self.stop(process)


def base_env() -> dict[str, str]:
    """A clean environment: none of the caller's Keyturn or provider settings leak in."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PYTHONPATH"] = str(ROOT)
    return env


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU time used so far by these processes (``/proc/<pid>/stat``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def machine_speed() -> float:
    """Seconds this machine takes for ten million additions in a plain Python loop (best of 3).

    Machines of the same kind differ by up to 3x; this figure lets runs on two of them be compared.
    """
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        total = 0
        for number in range(10_000_000):
            total += number
        best = min(best, time.perf_counter() - began)
    return best


def peak_memory_mb(pid: int) -> float:
    """VmHWM, the resident set's high-water mark, of a process still running."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def wait_healthy(session: aiohttp.ClientSession, url: str, process: object) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if getattr(process, "returncode", None) is not None:
            raise RuntimeError(f"{url} exited while starting")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(url + "/healthz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer /healthz within {START_TIMEOUT:.0f} s")


# -- databases --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(config: Config, workdir: Path, pool: int | None) -> AsyncIterator[str]:
    """A fresh database for one configuration; removed afterwards."""
    if config.database == "sqlite":
        path = workdir / f"{config.workers}w.sqlite3"
        try:
            yield f"sqlite://{path}"
        finally:
            remove_sqlite(path)
        return
    await _recreate_postgres(drop_only=False)
    query = f"?maxsize={pool}" if pool else ""
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{POSTGRES_DATABASE}{query}"
    finally:
        await _recreate_postgres(drop_only=True)


def remove_sqlite(path: Path) -> None:
    for leftover in path.parent.glob(f"{path.name}*"):
        leftover.unlink()


async def _recreate_postgres(*, drop_only: bool) -> None:
    await recreate_postgres(POSTGRES_DATABASE, drop_only=drop_only)


async def recreate_postgres(name: str, *, drop_only: bool) -> None:
    """Drop the database ``name`` (as the ``postgres`` user) and, unless ``drop_only``, create
    it afresh."""
    conn = await asyncpg.connect(POSTGRES_ADMIN, timeout=10)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if not drop_only:
            await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()


def keyturn_env(
    database_url: str, public_url: str, twilio_api: str, log_level: str
) -> dict[str, str]:
    env = base_env()
    env.update(
        {
            "KEYTURN_DATABASE_URL": database_url,
            "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "KEYTURN_PUBLIC_URL": public_url,
            "KEYTURN_LOG_LEVEL": log_level,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_SMS_FROM": SMS_NUMBER,
            "TWILIO_API_BASE": twilio_api,
            # Renters book up to ~300 days ahead (bench/load.py), as before there was a limit.
            "KEYTURN_BOOKING_HORIZON_DAYS": "365",
        }
    )
    return env


def keyturn_command() -> list[str]:
    script = Path(sys.executable).parent / "keyturn"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


async def prepare(processes: Processes, env: dict[str, str], inventory: Path = INVENTORY) -> None:
    """``keyturn migrate`` and ``keyturn inventory apply`` an inventory (the demo's)."""
    for name, args in (("migrate", ["migrate"]), ("inventory", ["inventory", "apply"])):
        argv = [*keyturn_command(), *args] + ([str(inventory)] if name == "inventory" else [])
        process = await processes.start(name, argv, env)
        code = await asyncio.wait_for(process.wait(), 120)
        processes.running.remove(process)
        if code != 0:
            raise RuntimeError(f"keyturn {' '.join(args)} failed; see {processes.logs}/{name}.log")


# -- measuring --------------------------------------------------------------------------------


async def replies_sent(session: aiohttp.ClientSession, twilio_api: str) -> int:
    async with session.get(twilio_api + STATS_PATH) as response:
        stats = await response.json()
    return int(stats["sent"])


async def outbox_depth(session: aiohttp.ClientSession, worker: str) -> float:
    async with session.get(worker + "/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("keyturn_outbox_depth "):
            return float(line.split()[1])
    return float("nan")


async def drain(session: aiohttp.ClientSession, worker: str) -> float | None:
    """Seconds until the outbox is empty (None when it is not within DRAIN_TIMEOUT)."""
    began = time.perf_counter()
    while time.perf_counter() - began < DRAIN_TIMEOUT:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            if await outbox_depth(session, worker) == 0:
                return time.perf_counter() - began
        await asyncio.sleep(0.5)
    return None


async def load_steps(
    session: aiohttp.ClientSession,
    targets: Sequence[str],
    twilio: FakeTwilio,
    *,
    rates: Sequence[float],
    duration: float,
    saturate: int,
    warmup: float,
    phone_prefix: str,
    twilio_api: str | None,
    pids: Sequence[int] = (),
) -> list[tuple[StepResult, OutboxResult | None]]:
    crowd = RenterCrowd(twilio, phone_prefix=phone_prefix)
    if warmup:
        # Lazy imports and caches (dateparser's language data) load on the first messages.
        await run_step(session, crowd, targets, rate=WARMUP_RATE, duration=warmup)
        if twilio_api:
            await drain(session, targets[0])
    results: list[tuple[StepResult, OutboxResult | None]] = []
    for rate in [*rates, 0.0] if saturate else rates:
        before = await replies_sent(session, twilio_api) if twilio_api else 0
        cpu_before = cpu_seconds(pids)
        if rate:
            step = await run_step(session, crowd, targets, rate=rate, duration=duration)
        else:
            step = await run_saturated(
                session, crowd, targets, concurrency=saturate, duration=duration
            )
        outbox = None
        if twilio_api:
            during = await replies_sent(session, twilio_api) - before
            drained = await drain(session, targets[0])
            total = await replies_sent(session, twilio_api) - before
            outbox = OutboxResult(total, during / step.elapsed if step.elapsed else 0.0, drained)
            if step.ok:
                outbox.cpu_ms_per_message = (cpu_seconds(pids) - cpu_before) / step.ok * 1000
        results.append((step, outbox))
        print("  " + step_line(step, outbox), flush=True)
    return results


async def timer_lateness(database_url: str, count: int, window: float) -> TimerResult:
    """Write ``count`` timers due within ``window`` seconds; the workers fire them."""
    from flows.booking import DELIVER_PIN_TIMER  # a real handler: reads the booking, no-op
    from storage import db
    from storage.models import Booking, Timer

    await db.open_database(database_url)
    try:
        booking = await Booking.all().order_by("id").first()
        if booking is None:
            print("  timers: no booking to point them at; skipped")
            return TimerResult()
        rng = random.Random(10_000)  # noqa: S311 (spread only)
        marker = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3650)
        base = datetime.now(UTC) + timedelta(seconds=TIMER_LEAD)
        dues = sorted(base + timedelta(seconds=rng.uniform(0, window)) for _ in range(count))
        rows = [
            Timer(
                kind=DELIVER_PIN_TIMER,
                payload={"booking": booking.id},
                due_at=due,
                created_at=marker,
            )
            for due in dues
        ]
        written = time.perf_counter()
        await Timer.bulk_create(rows, batch_size=TIMER_BATCH)
        print(f"  timers: wrote {count} in {time.perf_counter() - written:.1f} s", flush=True)
        mine = Timer.filter(kind=DELIVER_PIN_TIMER, created_at=marker)
        deadline = time.monotonic() + TIMER_LEAD + window + TIMER_GRACE
        fired = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(2.0)
            fired = await mine.filter(fired_at__isnull=False).count()
            if fired >= count:
                break
        late = [
            (fired_at - due_at).total_seconds()
            for fired_at, due_at in await mine.filter(fired_at__isnull=False).values_list(
                "fired_at", "due_at"
            )
        ]
        # A timer that never fired is as late as the wait was long.
        late += [TIMER_LEAD + window + TIMER_GRACE] * (count - len(late))
        return TimerResult(
            count, fired, percentile(late, 50), percentile(late, 99), max(late, default=0.0)
        )
    finally:
        await db.close_database()


# -- one configuration ------------------------------------------------------------------------


async def run_config(
    key: str,
    config: Config,
    args: argparse.Namespace,
    processes: Processes,
    session: aiohttp.ClientSession,
    twilio_api: str,
    workdir: Path,
) -> Run:
    print(f"\n{config.name}", flush=True)
    run = Run(config.name)
    ports = [free_port() for _ in range(config.workers)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    public_url = urls[0]  # the address a load balancer would have; signatures are over it
    async with database(config, workdir, args.pg_pool) as url:
        env = keyturn_env(url, public_url, twilio_api, args.log_level)
        await prepare(processes, env)
        workers = []
        for index, port in enumerate(ports):
            # The bench has no Stripe: bookings are confirmed without payment.
            argv = [*keyturn_command(), "serve", "--no-payments", "--port", str(port)]
            if args.profile and index == 0:
                profile = workdir / f"{key}.prof"
                argv = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "bot.cli"]
                argv += ["serve", "--no-payments", "--port", str(port)]
            workers.append(await processes.start(f"{key}-worker{index}", argv, env))
            # One after the other: two workers starting at once race on the reconcile timer's
            # key and the loser exits (ensure_timer is check-then-insert; see README.md).
            await wait_healthy(session, urls[index], workers[-1])
        try:
            signer = FakeTwilio(public_url=public_url)
            prefix = {"sqlite-1": "+1555201", "pg-1": "+1555202", "pg-2": "+1555203"}[key]
            run.steps = await load_steps(
                session,
                urls,
                signer,
                rates=args.rates,
                duration=args.duration,
                saturate=args.saturate,
                warmup=args.warmup,
                phone_prefix=prefix,
                twilio_api=twilio_api,
                pids=[worker.pid for worker in workers],
            )
            if args.timers:
                run.timers = await timer_lateness(url, args.timers, args.timer_window)
                print("  " + timer_line(run.timers), flush=True)
            run.memory_mb = [peak_memory_mb(worker.pid) for worker in workers]
            print(f"  peak memory per worker: {memory_text(run.memory_mb)}", flush=True)
        finally:
            for worker in workers:
                await processes.stop(worker)
        if args.profile:
            print_profile(workdir / f"{key}.prof")
    return run


def print_profile(path: Path) -> None:
    if not path.exists():
        print(f"  (no profile written at {path})")
        return
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(25)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(40)
    print(out.getvalue())
    _ = cProfile  # the worker ran under ``python -m cProfile``


# -- reporting --------------------------------------------------------------------------------


def step_line(step: StepResult, outbox: OutboxResult | None) -> str:
    offered = f"offered {step.rate:5.0f}/s" if step.rate else f"flat out ({step.concurrency})"
    line = (
        f"{offered}: handled {step.throughput:6.1f} msg/s, "
        f"p50 {step.percentile(50) * 1000:7.1f} ms, p99 {step.percentile(99) * 1000:7.1f} ms, "
        f"ok {step.ok}/{step.planned}"
    )
    if step.errors or step.skipped:
        others = {k: v for k, v in step.statuses.items() if k != "200"}
        line += f", errors {step.errors} {others}, skipped {step.skipped}"
    if step.rate and step.send_span > step.planned / step.rate * 1.1:
        line += f" (client late: sends took {step.send_span:.1f} s)"
    if outbox is not None:
        drained = f"{outbox.drained_after:.1f} s" if outbox.drained_after is not None else "no"
        line += (
            f"; replies {outbox.replies_per_second:6.1f}/s during, "
            f"{outbox.replies} in all, outbox empty after {drained}; "
            f"worker CPU {outbox.cpu_ms_per_message:.2f} ms/msg"
        )
    return line


def timer_line(result: TimerResult) -> str:
    return (
        f"timers: {result.fired}/{result.count} fired; lateness p50 {result.p50:.2f} s, "
        f"p99 {result.p99:.2f} s, worst {result.worst:.2f} s"
    )


def memory_text(values: Sequence[float]) -> str:
    return ", ".join(f"{value:.0f} MB" for value in values)


def summary(baseline: Run, runs: Sequence[Run]) -> str:
    best_base = max((step.throughput for step, _ in baseline.steps), default=0.0)
    lines = [
        "",
        "Summary: best = most msg/s in any step (ratio: of the bare handler's best);",
        f"  within target = the highest offered rate answered fully with p99 < {P99_TARGET_MS} ms",
        f"  bare aiohttp handler: best {best_base:.0f} msg/s, "
        f"peak {memory_text(baseline.memory_mb)}",
    ]
    for run in runs:
        if not run.steps:
            continue
        best, _ = max(run.steps, key=lambda item: item[0].throughput)
        ratio = best.throughput / best_base if best_base else float("nan")
        good = [
            step.rate
            for step, _ in run.steps
            if step.rate and step.ok == step.planned and step.percentile(99) * 1000 < P99_TARGET_MS
        ]
        workers = max(len(run.memory_mb), 1)
        cpu = [o.cpu_ms_per_message for _, o in run.steps if o and o.cpu_ms_per_message > 0]
        lines.append(
            f"  {run.name}: best {best.throughput:.0f} msg/s "
            f"({best.throughput / workers:.0f} per worker, p99 {best.percentile(99) * 1000:.0f} ms)"
            f", ratio {ratio:.2f}; within target {max(good, default=0):.0f}/s "
            f"({max(good, default=0) / workers:.0f} per worker); "
            f"peak {memory_text(run.memory_mb)}; "
            f"worker CPU {min(cpu, default=float('nan')):.2f}–{max(cpu, default=float('nan')):.2f}"
            " ms/msg"
        )
        if run.timers is not None:
            lines.append(f"    {timer_line(run.timers)}")
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="keyturn-bench-"))
    logs = workdir / "logs"
    logs.mkdir()
    processes = Processes(logs)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=0)
    failed = False
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            twilio_api, _ = await processes.helper("twilio", base_env())
            baseline_url, baseline_pid = await processes.helper("baseline", base_env())
            print(f"machine: {os.cpu_count()} cores; logs under {logs}")
            print(
                f"machine speed: 10 million additions in a Python loop take "
                f"{machine_speed():.2f} s (compare with the runs in bench/README.md)",
                flush=True,
            )
            print("\nbare aiohttp handler (same form body, same empty TwiML)", flush=True)
            baseline = Run("bare aiohttp")
            baseline.steps = await load_steps(
                session,
                [baseline_url],
                FakeTwilio(public_url=baseline_url),
                rates=args.baseline_rates or args.rates,
                duration=args.duration,
                saturate=args.saturate,
                warmup=args.warmup,
                phone_prefix="+1555200",
                twilio_api=None,
            )
            baseline.memory_mb = [peak_memory_mb(baseline_pid)]
            runs = []
            for key in args.configs:
                runs.append(
                    await run_config(
                        key, CONFIGS[key], args, processes, session, twilio_api, workdir
                    )
                )
            print(summary(baseline, runs))
    except Exception as err:
        failed = True
        print(f"bench: {type(err).__name__}: {err}", file=sys.stderr)
        raise
    finally:
        await processes.stop_all()
        with contextlib.suppress(Exception):
            await _recreate_postgres(drop_only=True)
        if args.keep or failed:
            print(f"kept {workdir} (logs, profiles)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _rates(text: str) -> list[float]:
    rates = [float(part) for part in text.split(",") if part.strip()]
    if not rates or any(rate <= 0 or rate > 5000 for rate in rates):
        raise argparse.ArgumentTypeError("rates are positive numbers up to 5000, comma-separated")
    return rates


def _configs(text: str) -> list[str]:
    keys = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [key for key in keys if key not in CONFIGS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown configs {unknown}; known: {', '.join(CONFIGS)}")
    return keys


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=_rates, default=_rates("50,100,200,400"))
    parser.add_argument(
        "--baseline-rates", type=_rates, help="rates for the bare handler (default: --rates)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per rate step")
    parser.add_argument(
        "--saturate",
        type=int,
        default=64,
        help="renters posting back to back in a last, flat-out step (0 to skip)",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds at 20/s")
    parser.add_argument("--configs", type=_configs, default=list(CONFIGS))
    parser.add_argument("--timers", type=int, default=10_000, help="0 to skip the timer test")
    parser.add_argument("--timer-window", type=float, default=60.0)
    parser.add_argument("--pg-pool", type=int, help="PostgreSQL pool size (Tortoise default 5)")
    parser.add_argument("--log-level", default="INFO", help="the workers' KEYTURN_LOG_LEVEL")
    parser.add_argument("--profile", action="store_true", help="cProfile the first worker")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 120 or not 0 <= args.timers <= 100_000:
        parser.error("--duration is 0-120 s and --timers 0-100000")
    try:
        return asyncio.run(bench(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
