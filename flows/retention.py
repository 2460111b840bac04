"""The daily retention pass, run by a durable timer that sets its own next run.

A pass is a run of batches: each firing purges at most ``RetentionPolicy.batch`` rows of each
kind in the timer runner's transaction, and while anything expired is left it sets the timer
again ``pause`` later, so renters' turns have the database between two batches. What the pass
purged so far travels in the timer's payload; the pass is audited once, when it is over, with
its totals: an operator reading /audit sees one "retention.purged" a day, not hundreds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.clock import Clock
from flows.effects import Audit, Outcome, SetTimer
from flows.timers import TimerFired, TimerHandler
from storage.kinds import TimerKind
from storage.retention import Purged, purge

RETENTION_TIMER = TimerKind.RETENTION_PURGE
RETENTION_KEY = "retention:purge"


@dataclass(frozen=True)
class RetentionPolicy:
    audit_days: int = 90
    message_days: int = 90
    #: Condition photos' images are deleted this long after their rental's end.
    photo_days: int = 30
    every: timedelta = timedelta(days=1)
    #: Rows of each kind one firing purges: a few thousand index-chosen rows take tens of
    #: milliseconds, short enough that no renter's turn waits on it for long.
    batch: int = 2000
    #: The wait before the next batch while expired rows are left.
    pause: timedelta = timedelta(seconds=1)
    #: Items' GPS positions are kept this many days (``KEYTURN_GPS_RETENTION_DAYS``).
    gps_days: int = 30


@dataclass(frozen=True)
class PassSoFar:
    """A pass under way, as its timer's payload carries it from one batch to the next."""

    started_at: datetime
    batches: int = 0
    purged: Purged = field(default_factory=Purged)

    @classmethod
    def of(cls, payload: Mapping[str, Any], now: datetime) -> PassSoFar:
        """The pass the payload carries on, or a new one starting ``now``."""
        started = payload.get("started_at")
        batches = payload.get("batches")
        if not isinstance(started, str) or not isinstance(batches, int):
            return cls(now)
        try:
            started_at = datetime.fromisoformat(started)
        except ValueError:
            return cls(now)
        return cls(started_at, batches, Purged.from_counts(payload.get("purged")))

    def next_pass(self, now: datetime, every: timedelta) -> datetime:
        """When the next pass starts: at this one's hour, however long this one took (a pass
        that ran past the next one's hour leaves that hour out)."""
        return self.started_at + every * ((now - self.started_at) // every + 1)

    def payload(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "batches": self.batches,
            "purged": self.purged.counts(),
        }


class Retention:
    def __init__(self, clock: Clock, policy: RetentionPolicy | None = None) -> None:
        self.clock = clock
        self.policy = policy or RetentionPolicy()

    def timer_handlers(self) -> Mapping[str, TimerHandler]:
        """Retention's timer and what handles it."""
        return {RETENTION_TIMER: self.on_due}

    async def on_due(self, event: TimerFired) -> Outcome:
        """One batch runs as a write in the timer runner's transaction: what it purges, the
        pass's totals and the next firing commit with the timer's completion, or none of it
        does (and the timer, still due, fires again)."""
        now = self.clock.now()
        so_far = PassSoFar.of(event.payload, now)
        policy = self.policy

        async def purge_batch(conn: BaseDBAsyncClient) -> Outcome:
            batch = await purge(
                conn,
                now,
                audit_days=policy.audit_days,
                message_days=policy.message_days,
                batch=policy.batch,
                photo_days=policy.photo_days,
                gps_days=policy.gps_days,
            )
            done = PassSoFar(so_far.started_at, so_far.batches + 1, so_far.purged + batch.purged)
            if batch.more_left:
                again = SetTimer(RETENTION_TIMER, now + policy.pause, RETENTION_KEY, done.payload())
                return Outcome(timers=[again])
            next_run = done.next_pass(now, policy.every)
            details = {
                **done.purged.counts(),
                "batches": done.batches,
                "started_at": done.started_at.isoformat(),
            }
            return Outcome(
                timers=[SetTimer(RETENTION_TIMER, next_run, RETENTION_KEY)],
                audits=[Audit("system", "retention.purged", details=details)],
            )

        return Outcome(writes=[purge_batch])
