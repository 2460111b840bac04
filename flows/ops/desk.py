"""The operators' commands and alert buttons: who may do what, and doing it through the flows.

Each command checks the staff member's role and location scope, then changes state through the
same flows the renter side uses (cancel, revoke, extend, open, staff codes, identity decisions,
hand-off), so nothing bypasses the outbox, the audit or the lock lifecycle. Answers are a few
lines of text from the catalogs, in the ops group's language. A refused attempt is audited; a bad
argument answers with the command's usage before anything is changed.
"""

from __future__ import annotations

from flows.access import AccessCodes
from flows.booking import Journey
from flows.digits import DATABASE_ID_MAX, typed_int
from flows.gps import GpsSource
from flows.handoff import Handoff, HandoffRefused
from flows.i18n import Translator
from flows.ops.alerts import AlertButtons
from flows.ops.answers import (
    BUTTON_PERMISSIONS,
    COMMANDS,
    BadArguments,
    Context,
    Handler,
    OpsAnswer,
    Refused,
)
from flows.ops.bookings import BookingCommands
from flows.ops.claims import WHOLE, ClaimCommands
from flows.ops.codes import CodeCommands
from flows.ops.identity import IdentityCommands
from flows.ops.reading import ReadingCommands
from flows.ops.returns import ReturnCommands
from flows.ops.scope import alert_locations
from flows.ops.talk import TalkCommands
from flows.ops.where import WhereCommands
from storage.kinds import AlertKind
from storage.models import OpsAlert
from storage.uow import UnitOfWork


class OpsDesk(
    ReadingCommands,
    ReturnCommands,
    BookingCommands,
    CodeCommands,
    IdentityCommands,
    TalkCommands,
    AlertButtons,
    ClaimCommands,
    WhereCommands,
):
    """Runs operators' commands and alert buttons for a Telegram user id, in the unit of work its
    runner (the ops bot) hands it; what the answer's ``outcome`` asks for commits with it."""

    def __init__(
        self,
        translator: Translator,
        journey: Journey,
        access: AccessCodes,
        handoff: Handoff,
        *,
        gps: GpsSource | None = None,
    ) -> None:
        super().__init__(translator, journey, access, handoff)
        self.gps = gps
        self._handlers: dict[str, Handler] = {
            "today": self._today,
            "booking": self._booking,
            "find": self._find,
            "cancel": self._cancel,
            "revoke": self._revoke,
            "extend": self._extend,
            "open": self._open,
            "staffcode": self._staffcode,
            "locks": self._locks,
            "audit": self._audit,
            "takeover": self._takeover,
            "release": self._release,
            "reply": self._reply,
            "approve": self._approve,
            "reject": self._reject,
            "claim": self._claim,
            "returned": self._returned,
            "where": self._where,
            "help": self._help,
        }
        self._claim_prompt = self.claim_prompt()

    async def run(
        self,
        conn: UnitOfWork,
        user_id: int,
        command: str,
        args: list[str],
        context: Context | None = None,
    ) -> OpsAnswer:
        context = context or Context()
        spec = COMMANDS.get(command)
        staff = await self.staff(user_id)
        if staff is None:
            await self._refused(conn, user_id, command, "not staff")
            return OpsAnswer([self.t("ops.not_staff")])
        if spec is None:
            return OpsAnswer([self.t("ops.unknown_command", command=f"/{command}")])
        if spec.permission is not None and not self.may(staff, spec.permission):
            await self._refused(conn, user_id, command, f"role {staff.role}")
            return OpsAnswer([self.t("ops.refused", command=f"/{command}")])
        if len(args) < spec.least or (spec.most is not None and len(args) > spec.most):
            return self._usage(spec)
        if spec.most is None and len(args) > spec.least:
            args = [*args[: spec.least - 1], " ".join(args[spec.least - 1 :])]
        try:
            return await self._handlers[command](conn, staff, args, context)
        except BadArguments:
            return self._usage(spec)
        except Refused as refused:
            await self._refused(conn, user_id, command, refused.key)
            return OpsAnswer([self.t(refused.key, **refused.params)])
        except HandoffRefused as refused:
            return OpsAnswer([self.t(refused.key, **refused.params)])

    async def press(self, conn: UnitOfWork, user_id: int, action: str, ident: str) -> OpsAnswer:
        """An alert's button: ``action`` on the check, conversation or alert ``ident``. Each
        checks the member's role, then their location scope against what it acts on."""
        staff = await self.staff(user_id)
        permission = BUTTON_PERMISSIONS.get(action)
        number = typed_int(ident, at_most=DATABASE_ID_MAX)
        if staff is None or permission is None:
            await self._refused(conn, user_id, f"button:{action[:20]}", "not staff")
            return OpsAnswer([self.t("ops.not_staff")])
        if not self.may(staff, permission):
            await self._refused(conn, user_id, f"button:{action}", f"role {staff.role}")
            return OpsAnswer([self.t("ops.refused", command=action)])
        if number is None:
            return OpsAnswer([self.t("ops.not_found", what=ident[:20])])
        if action == "approve":
            return await self.run(conn, user_id, "approve", [ident])
        if action == "reject":
            return await self._ask_rejection(conn, staff, ident)
        if action == "take":
            return await self.run(conn, user_id, "takeover", [ident])
        if action == "damage":
            return await self._ask_claim(conn, staff, ident)
        alert = await OpsAlert.get_or_none(id=number)
        if alert is None:
            return OpsAnswer([self.t("ops.not_found", what=ident)])
        slugs = await alert_locations(alert)
        if slugs and not any(self._in_scope(staff, slug) for slug in slugs):
            await self._refused(conn, user_id, f"button:{action}", "out of scope")
            return OpsAnswer([self.t("ops.alert_out_of_scope", alert=alert.id)])
        if action == "resolve" and alert.kind == AlertKind.ID_REVIEW:
            # Resolving would drop the photo from the group and leave the check pending.
            await self._refused(
                conn, user_id, "button:resolve", "an ID review is decided, not resolved"
            )
            check = alert.params.get("check", "-")
            return OpsAnswer([self.t("ops.id_review_not_resolved", check=check)])
        if action == "resolve":
            return await self._resolve(conn, staff, alert)
        return await self._retry(conn, staff, alert)

    async def answer_prompt(
        self, conn: UnitOfWork, user_id: int, prompt: str, text: str
    ) -> OpsAnswer | None:
        """A member replied ``text`` to one of Keyturn's messages, ``prompt``: the reason for a
        rejection, or the amount of a deposit claim, it asked for. None when ``prompt`` asked
        for nothing."""
        claim = self._claim_prompt.match(prompt)
        if claim is not None:
            amount = text.strip()
            if not amount or amount.startswith("/"):
                return OpsAnswer([self.t("ops.claim_amount_needed")])
            args = [claim["booking"]]
            if amount.lower() not in WHOLE:
                args.append(amount)
            return await self.run(conn, user_id, "claim", args)
        asked = self._reject_prompt.match(prompt)
        if asked is None:
            return None
        reason = text.strip()
        if not reason or reason.startswith("/"):
            return OpsAnswer([self.t("ops.reason_needed")])
        return await self.run(conn, user_id, "reject", [asked["check"], reason])
