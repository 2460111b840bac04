"""Alert buttons: Resolve and Retry."""

from __future__ import annotations

from datetime import datetime

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
            # Only an effect given up on starts again: one still pending may be running right
            # now under a worker's claim, and making it due would have a second worker run it.
            revived = await (
                OutboxEffect.filter(id=effect_id, state=EffectState.DEAD)
                .using_db(conn)
                .update(state=EffectState.PENDING, next_attempt_at=now)
            )
            if (
                not revived
                and await OutboxEffect.filter(id=effect_id, state=EffectState.PENDING)
                .using_db(conn)
                .exists()
            ):
                return OpsAnswer([self.t("ops.retry_underway")], outcome=outcome)
        elif kind in ("code-not-set", "code-rejected"):
            codes = await self._codes_to_push_again(conn, ident, now)
            if codes is None:
                return OpsAnswer([self.t("ops.retry_underway")], outcome=outcome)
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

    async def _codes_to_push_again(
        self, conn: UnitOfWork, lock_key: str, now: datetime
    ) -> list[AccessCode] | None:
        """The lock's codes not yet on it whose every push has ended (done or given up): a code
        with a push still pending may be on its way to the lock right now, and a second push
        under another key would program it twice. None when every such code has one pending.
        The codes are locked, so two presses at once stage one push each at most."""
        codes = (
            await AccessCode.filter(
                lock__key=lock_key,
                state__in=(
                    AccessCodeState.PENDING,
                    AccessCodeState.PROGRAMMING,
                    AccessCodeState.FAILED,
                ),
                ends_at__gt=now,
            )
            .using_db(conn)
            .select_for_update()
        )
        if not codes:
            return []
        pushing = {
            effect.payload.get("code")
            for effect in await OutboxEffect.filter(kind=SET_EFFECT, state=EffectState.PENDING)
            .using_db(conn)
            .only("id", "payload")
        }
        idle = [code for code in codes if code.id not in pushing]
        return idle or None
