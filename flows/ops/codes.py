"""Reaching the locks: /open and /staffcode."""

from __future__ import annotations

from datetime import timedelta

from flows.effects import Audit, Outcome
from flows.handoff import OPS_LANGUAGE
from flows.i18n import local_time
from flows.ops.answers import MAX_STAFF_CODE_HOURS, TYPED_AMOUNT, BadArguments, Context, OpsAnswer
from flows.ops.base import DeskBase, actor_of
from flows.remote_open import open_effect
from locks import LockCapability
from locks.port import capabilities_from_json
from locks.windows import AccessWindow
from storage.models import AccessCode, StaffMember
from storage.uow import UnitOfWork


class CodeCommands(DeskBase):
    async def _open(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        lock = await self._lock_in_scope(staff, args[0])
        if LockCapability.REMOTE_UNLOCK not in capabilities_from_json(
            lock.capabilities, lock.provider
        ):
            return OpsAnswer([self.t("ops.cannot_open", lock=lock.label)])
        now = self.clock.now()
        stamp = f"{staff.telegram_user_id}:{now.timestamp()}"
        outcome = Outcome(
            effects=[
                open_effect(
                    lock,
                    f"open:{lock.id}:staff:{stamp}",
                    now=now,
                    lifetime=self.journey.settings.open_lifetime,
                    staff=staff.name,
                )
            ],
            audits=[Audit(actor_of(staff), "lock.remote_open", f"lock:{lock.key}")],
        )
        # "Opened" (or that it could not be) comes as its own message once the lock answers.
        return OpsAnswer([self.t("ops.open_asked", lock=lock.label)], outcome=outcome)

    async def _staffcode(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        lock = await self._lock_in_scope(staff, args[0])
        words = args[1].split(maxsplit=1)
        if not TYPED_AMOUNT.fullmatch(words[0]):
            raise BadArguments()
        hours = float(words[0].replace(",", "."))
        if not 0 < hours <= MAX_STAFF_CODE_HOURS:
            raise BadArguments()
        label = words[1] if len(words) > 1 else staff.name
        now = self.clock.now()
        window = AccessWindow(now, now + timedelta(hours=hours))
        outcome = await self.access.plan_staff_code(conn, staff, lock, window, label[:100])
        code = (
            await AccessCode.filter(staff_id=staff.id, lock_id=lock.id)
            .using_db(conn)
            .order_by("-id")
            .first()
        )
        if code is None:  # the lock takes no codes: plan_staff_code raised an alert instead
            return OpsAnswer([self.t("ops.cannot_set_code", lock=lock.label)], outcome=outcome)
        until = local_time(window.ends_at, lock.timezone, OPS_LANGUAGE)
        answer = OpsAnswer(
            [self.t("ops.staffcode", code=code.id, lock=lock.label, end=until)],
            outcome=outcome,
        )
        if code.pin_encrypted:
            pin = self.access.sealer.open(code.pin_encrypted)
            answer.private.append(self.t("ops.staffcode_pin", lock=lock.label, pin=pin, end=until))
        return answer
