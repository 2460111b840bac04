"""Reconciling a lock: compare what it holds with what Keyturn expects, and put it right.

The lock is listed (and codes nobody holds are deleted from it) outside any transaction; what
follows for Keyturn's own codes is the ``record`` handler, which the runner (the CLI, the
reconcile timer) commits. The report is complete once it has run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access.context import AccessContext
from flows.access.kinds import LIVE_STATES, SET_EFFECT, UPDATE_EFFECT, remove_again
from flows.access.policy import ReconcileReport
from flows.access.removal import removal_confirmed
from flows.code_presence import left_on_lock
from flows.effects import Alert, Audit, Effect, Handler, Outcome
from locks import CodeStatus, LockError, LockProvider, LockRateLimited, ProgrammedCode
from storage.codes import move_code
from storage.kinds import AlertKind
from storage.models import AccessCode, AccessCodeState, Lock
from storage.removals import stranded_removals


@dataclass
class Reconciliation:
    report: ReconcileReport
    #: Puts Keyturn's codes right by what the lock listed (and queues again removals that
    #: were lost, whether or not the lock answered); fills in the report as it runs.
    record: Handler
    #: Why the lock could not be listed, when it could not: only lost removals are queued.
    unreachable: LockError | None = None


async def reconcile(ctx: AccessContext, lock: Lock) -> Reconciliation:
    report = ReconcileReport(lock.key)
    provider = ctx.provider(lock)
    now = ctx.clock.now()
    try:
        listed = await provider.list_codes(lock.device_id)
    except LockError as err:

        async def requeue_only(conn: BaseDBAsyncClient) -> Outcome:
            return await _requeue_lost_removals(conn, lock, report, now)

        return Reconciliation(report, requeue_only, err)
    on_lock = {code.provider_ref: code for code in listed}
    expected = await AccessCode.filter(lock_id=lock.id, state__in=LIVE_STATES)
    known: set[str | None] = {code.provider_ref for code in expected if code.provider_ref}
    known |= {
        code.provider_ref
        for code in await AccessCode.filter(lock_id=lock.id, state=AccessCodeState.REMOVING)
    }
    await _remove_strays(provider, lock, on_lock, known, report)

    async def record(conn: BaseDBAsyncClient) -> Outcome:
        outcome = await _requeue_lost_removals(conn, lock, report, now)
        outcome.effects += await _put_back(conn, expected, on_lock, report, now)
        removing = AccessCode.filter(lock_id=lock.id, state=AccessCodeState.REMOVING)
        for code in await removing.using_db(conn):
            listed_code = on_lock.get(code.provider_ref or "")
            if not code.provider_ref or (
                listed_code is not None and listed_code.status != CodeStatus.REMOVED
            ):
                continue
            # Absent from the lock's own list: the removal is proved, webhook or not.
            if await move_code(
                conn, code.id, to=AccessCodeState.REMOVED, expect=code.state, last_error=""
            ):
                outcome = outcome + removal_confirmed(code, lock, now)
                report.removals_confirmed.append(code.id)
        return outcome + _told(lock, report)

    return Reconciliation(report, record)


async def _requeue_lost_removals(
    conn: BaseDBAsyncClient, lock: Lock, report: ReconcileReport, now: datetime
) -> Outcome:
    """A code marked removing whose removal was lost gets it queued again, whether or not
    the lock answers now: removals are retried until the lock takes them."""
    outcome = Outcome()
    for stranded in await stranded_removals(conn, lock.id):
        outcome.effects.append(remove_again(stranded.id, "reconcile", now))
        report.removals_requeued.append(stranded.id)
    return outcome


async def _remove_strays(
    provider: LockProvider,
    lock: Lock,
    on_lock: dict[str, ProgrammedCode],
    known: set[str | None],
    report: ReconcileReport,
) -> None:
    """Codes on the lock that no booking or staff member holds are deleted from it; once the
    provider refuses for its rate limit, the rest wait for the next pass (reported stuck)."""
    limited = False
    for ref, held in on_lock.items():
        leaving = held.status in (CodeStatus.REMOVING, CodeStatus.REMOVED)
        # Offline codes cannot be removed; they lapse at their own end.
        if ref not in known and not leaving and not held.offline:
            if limited:
                report.strays_stuck.append(ref)
                continue
            try:
                await provider.delete_code(lock.device_id, ref)
            except LockRateLimited:
                limited = True  # the device's deletions for now (Seam: 20 a minute)
                report.strays_stuck.append(ref)
                continue
            if await left_on_lock(provider, lock.device_id, ref) in (None, CodeStatus.REMOVING):
                report.strays_removed.append(ref)  # gone, or on its way off the lock
            else:
                report.strays_stuck.append(ref)  # the lock kept it: tried again next time


async def _put_back(
    conn: BaseDBAsyncClient,
    expected: list[AccessCode],
    on_lock: dict[str, ProgrammedCode],
    report: ReconcileReport,
    now: datetime,
) -> list[Effect]:
    """Codes the lock lost are programmed afresh; codes whose window drifted are corrected."""
    effects = []
    for code in expected:
        if code.ends_at <= now or code.offline or not code.provider_ref:
            continue  # over, lapsing by itself, or not on the lock yet (pending, creating)
        found = on_lock.get(code.provider_ref)
        if found is None:
            # Set or being set, yet not on the lock: it is programmed afresh.
            reset = await move_code(
                conn,
                code.id,
                to=AccessCodeState.PENDING,
                expect=code.state,
                where={"provider_ref": code.provider_ref},
                provider_ref=None,
            )
            if not reset:
                continue  # moved on meanwhile (confirmed, revoked): its own path has it
            key = f"access:set:{code.id}:reconcile:{now.isoformat()}"
            effects.append(Effect(SET_EFFECT, key, {"code": code.id}))
            report.reprogrammed.append(code.id)
        elif abs(found.ends_at - code.ends_at) > timedelta(minutes=1) or abs(
            found.starts_at - code.starts_at
        ) > timedelta(minutes=1):
            report.drift.append(code.id)
            key = f"access:update:{code.id}:reconcile:{now.isoformat()}"
            effects.append(Effect(UPDATE_EFFECT, key, {"code": code.id}))
    return effects


def _told(lock: Lock, report: ReconcileReport) -> Outcome:
    """Ops hear of drift; every pass that changed something is audited."""
    outcome = Outcome()
    if report.strays_removed or report.strays_stuck or report.reprogrammed or report.drift:
        outcome.alerts.append(
            Alert(
                AlertKind.LOCK_DRIFT,
                f"lock-drift:{lock.key}",
                "ops.lock_drift",
                {
                    "lock": lock.label,
                    "strays": len(report.strays_removed) + len(report.strays_stuck),
                    "missing": len(report.reprogrammed),
                    "drift": len(report.drift),
                },
            )
        )
    if not report.clean:
        outcome.audits.append(
            Audit(
                "system",
                "access.reconciled",
                f"lock:{lock.key}",
                {
                    "strays_removed": len(report.strays_removed),
                    "strays_stuck": len(report.strays_stuck),
                    "reprogrammed": report.reprogrammed,
                    "drift": report.drift,
                    "removals_requeued": report.removals_requeued,
                    "removals_confirmed": report.removals_confirmed,
                },
            )
        )
    return outcome
