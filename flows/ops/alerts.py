"""Alert buttons: Resolve and Retry."""

from __future__ import annotations

from flows.access import SET_EFFECT
from flows.digits import INT64_MAX, typed_int
from flows.effects import Audit, Effect, Outcome
from flows.ops.answers import OpsAnswer
from flows.ops.base import DeskBase, actor_of
from storage.journal import resolve_alert
from storage.models import (
    AccessCode,
    AccessCodeState,
    EffectState,
    OpsAlert,
    OutboxEffect,
    StaffMember,
)
from storage.uow import UnitOfWork


class AlertButtons(DeskBase):
    async def _resolve(self, conn: UnitOfWork, staff: StaffMember, alert: OpsAlert) -> OpsAnswer:
        if alert.open_key is None:
            return OpsAnswer([self.t("ops.resolved_already")])
        now = self.clock.now()
        await resolve_alert(conn, group_key=alert.open_key, now=now, by=staff.name)
        audit = Audit(actor_of(staff), "alert.resolved", f"alert:{alert.id}")
        return OpsAnswer([self.t("ops.resolved_ok")], outcome=Outcome(audits=[audit]))

    async def _retry(self, conn: UnitOfWork, staff: StaffMember, alert: OpsAlert) -> OpsAnswer:
        now = self.clock.now()
        kind, _, ident = alert.group_key.partition(":")
        outcome = Outcome(
            audits=[Audit(actor_of(staff), "alert.retried", f"alert:{alert.id}")],
        )
        effect_id = typed_int(ident, at_most=INT64_MAX)
        if kind == "effect" and effect_id is not None:
            await (
                OutboxEffect.filter(id=effect_id, state__in=(EffectState.PENDING, EffectState.DEAD))
                .using_db(conn)
                .update(state=EffectState.PENDING, next_attempt_at=now)
            )
        elif kind in ("code-not-set", "code-rejected"):
            codes = await AccessCode.filter(
                lock__key=ident,
                state__in=(
                    AccessCodeState.PENDING,
                    AccessCodeState.PROGRAMMING,
                    AccessCodeState.FAILED,
                ),
                ends_at__gt=now,
            )
            outcome.effects += [
                Effect(
                    SET_EFFECT,
                    f"access:set:{code.id}:retry:{now.timestamp()}",
                    {"code": code.id, "fresh": code.state == AccessCodeState.FAILED},
                )
                for code in codes
            ]
        else:
            return OpsAnswer([self.t("ops.cannot_retry")])
        return OpsAnswer([self.t("ops.retrying")], outcome=outcome)
