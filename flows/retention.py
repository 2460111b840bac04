"""The daily retention pass, run by a durable timer that sets its own next run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.clock import Clock
from flows.effects import Audit, Outcome, SetTimer
from flows.timers import TimerFired, TimerHandler
from storage.kinds import TimerKind
from storage.retention import purge

RETENTION_TIMER = TimerKind.RETENTION_PURGE
RETENTION_KEY = "retention:purge"


@dataclass(frozen=True)
class RetentionPolicy:
    audit_days: int = 90
    message_days: int = 90
    every: timedelta = timedelta(days=1)


class Retention:
    def __init__(self, clock: Clock, policy: RetentionPolicy | None = None) -> None:
        self.clock = clock
        self.policy = policy or RetentionPolicy()

    def timer_handlers(self) -> Mapping[str, TimerHandler]:
        """Retention's timer and what handles it."""
        return {RETENTION_TIMER: self.on_due}

    async def on_due(self, event: TimerFired) -> Outcome:
        """The purge runs as a write in the timer runner's transaction: what is purged, the
        audit of it and the next run commit with the timer's completion, or none of it does."""
        now = self.clock.now()

        async def purge_old(conn: BaseDBAsyncClient) -> Outcome:
            # ``purge`` takes no connection: its statements run on the transaction open here.
            purged = await purge(
                now, audit_days=self.policy.audit_days, message_days=self.policy.message_days
            )
            return Outcome(
                timers=[SetTimer(RETENTION_TIMER, now + self.policy.every, RETENTION_KEY)],
                audits=[
                    Audit(
                        "system",
                        "retention.purged",
                        details={
                            "audit_events": purged.audit_events,
                            "message_bodies": purged.message_bodies,
                            "message_media": purged.message_media,
                            "access_records": purged.access_records,
                            "webhook_ids": purged.webhook_ids,
                            "finished_work": purged.finished_work,
                        },
                    )
                ],
            )

        return Outcome(writes=[purge_old])
