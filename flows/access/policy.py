"""How the access-code lifecycle is tuned, and what reconciling a lock reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from flows.lead_times import LeadTimes

#: Offline codes bound by the hour last at most this long (igloohome's algoPINs, through Seam).
OFFLINE_HOURLY_MAX = timedelta(hours=672)


@dataclass(frozen=True)
class AccessPolicy:
    #: When codes are programmed and must be set, where a lock's location does not say.
    lead_times: LeadTimes = field(default_factory=LeadTimes)
    #: ...but a code is never overdue sooner than this after its first programming attempt.
    not_set_after: timedelta = timedelta(minutes=10)
    #: Every lock's codes are compared with Keyturn's this often.
    reconcile_every: timedelta = timedelta(hours=6)
    #: A deletion the provider accepted is looked up this long after, then twice as long
    #: after each look that finds it still on its way, up to ``removal_check_max``.
    removal_check_every: timedelta = timedelta(minutes=5)
    removal_check_max: timedelta = timedelta(hours=1)
    #: A code the lock has not confirmed is looked up again after this long, by how far the
    #: moment it is needed is: (further than, wait). Webhooks only make it sooner.
    confirm_polls: tuple[tuple[timedelta, timedelta], ...] = (
        (timedelta(hours=6), timedelta(minutes=15)),
        (timedelta(hours=2), timedelta(minutes=5)),
        (timedelta(minutes=30), timedelta(minutes=1)),
    )
    confirm_poll_close: timedelta = timedelta(seconds=20)

    def confirm_poll_after(self, starts_in: timedelta) -> timedelta:
        """How long until a code still ``setting`` on the lock is looked up again."""
        for further_than, wait in self.confirm_polls:
            if starts_in > further_than:
                return wait
        return self.confirm_poll_close


class AccessPlanError(Exception):
    """A code cannot be planned (no lock to program, no PIN the locks accept)."""


@dataclass
class ReconcileReport:
    lock_key: str
    strays_removed: list[str] = field(default_factory=list)
    reprogrammed: list[int] = field(default_factory=list)
    drift: list[int] = field(default_factory=list)
    #: Codes marked removing whose removal was lost: queued again.
    removals_requeued: list[int] = field(default_factory=list)
    #: Codes no booking holds that the lock kept after their deletion.
    strays_stuck: list[str] = field(default_factory=list)
    #: Codes marked removing that the lock's list no longer shows: removed.
    removals_confirmed: list[int] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.strays_removed
            or self.reprogrammed
            or self.drift
            or self.removals_requeued
            or self.strays_stuck
            or self.removals_confirmed
        )
