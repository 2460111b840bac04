"""Identity checks' pieces every part uses: the ops review of a stored ID photo, the photo's
deletion, and withdrawing a check whose booking is cancelled."""

from __future__ import annotations

from datetime import datetime

from flows.booking.common import DELETE_ID_MEDIA_EFFECT
from flows.effects import Alert, Audit, Effect, Outcome
from storage.identity import IdentityStatus, move_identity
from storage.journal import resolve_alert
from storage.kinds import AlertKind
from storage.models import Booking, IdentityCheck
from storage.uow import UnitOfWork


def id_review(check: IdentityCheck, booking: Booking) -> Outcome:
    """A stored ID photo goes up for an operator's review: one ``id_review`` alert per check,
    whichever way the photo came (MMS or chat photo, or an upload link)."""
    return Outcome(
        alerts=[
            Alert(
                AlertKind.ID_REVIEW,
                f"id-review:{check.id}",
                "ops.id_review",
                {"booking": booking.reference, "check": check.id},
            )
        ],
        audits=[Audit("system", "identity.submitted", f"identity:{check.id}")],
    )


def photo_deletion(check: IdentityCheck) -> list[Effect]:
    """A manual check's photo stays downloadable where the channel keeps it until deleted there;
    the effect does so and then forgets every reference to it. Stripe Identity keeps none here."""
    if check.method != "manual":
        return []
    key = f"identity-media:{check.id}"
    return [Effect(DELETE_ID_MEDIA_EFFECT, key, {"check": check.id}, critical=True)]


async def withdraw_identity(
    conn: UnitOfWork, booking: Booking, *, actor: str, now: datetime
) -> Outcome:
    """A booking cancelled while its ID waits for review: the ID has no purpose left, so
    it is withdrawn and its image deleted, here and where the channel keeps it, as a
    decision would; the review leaves the ops group."""
    checks = await IdentityCheck.filter(
        booking_id=booking.id, status=IdentityStatus.PENDING
    ).using_db(conn)
    outcome = Outcome()
    for check in checks:
        withdrawn = await move_identity(
            conn,
            check.id,
            to=IdentityStatus.WITHDRAWN,
            document_encrypted=None,
            reviewer_id=None,
            reason="booking cancelled",
            decided_at=now,
        )
        if not withdrawn:  # decided meanwhile: that decision stands
            continue
        await resolve_alert(conn, group_key=f"id-review:{check.id}", now=now, by=actor)
        outcome.audits.append(
            Audit(actor, "identity.withdrawn", f"identity:{check.id}", {"why": "cancelled"})
        )
        outcome.effects += photo_deletion(check)
    return outcome
