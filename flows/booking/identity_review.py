"""The ID check: a photo stored for review, an operator's or Stripe Identity's decision, and
the effects that collect and delete the photo."""

from __future__ import annotations

from datetime import datetime

from flows.booking.common import COLLECT_ID_EFFECT, media_items
from flows.booking.identity import id_review, photo_deletion
from flows.booking.lifecycle import Lifecycle
from flows.effects import Alert, Audit, FollowUp, Outcome
from flows.media_types import ID_DOCUMENT_TYPES, stored_type
from flows.payments import PaymentEvent, PaymentEventKind
from flows.upload_links import ID_PHOTO, UploadGrant
from storage.identity import IdentityStatus, move_identity
from storage.journal import resolve_alert
from storage.kinds import AlertKind
from storage.models import Booking, BookingState, IdentityCheck, Message, OutboxEffect, Renter
from storage.retention import forget_media
from storage.uow import UnitOfWork


class IdentityReview(Lifecycle):
    """ID photos stored for review, decisions on them, and the effects around them."""

    async def receive_uploaded_id(
        self,
        conn: UnitOfWork,
        grant: UploadGrant,
        content: bytes,
        content_type: str,
        now: datetime,
    ) -> Outcome | None:
        """An ID photo sent through an upload link (``content_type``: what its bytes show):
        stored sealed and put up for review like an MMS photo, and the renter told it arrived.
        None when the booking no longer awaits an ID (nothing is stored)."""
        booking = await Booking.filter(id=grant.booking_id).using_db(conn).first()
        if (
            grant.purpose != ID_PHOTO
            or booking is None
            or booking.renter_id != grant.renter_id
            or booking.state != BookingState.AWAITING_ID
        ):
            return None
        check = await IdentityCheck.create(
            renter_id=booking.renter_id,
            booking=booking,
            method="manual",
            provider_ref=f"upload:{grant.digest}",
            document_encrypted=self.sealer.seal_bytes(content),
            document_content_type=content_type,
            using_db=conn,
        )
        await self.notifier.tell(conn, booking.renter_id, "journey.id_received", now=now)
        return id_review(check, booking)

    async def review_identity(
        self,
        conn: UnitOfWork,
        check_id: int,
        *,
        approved: bool,
        reviewer: str,
        reason: str = "",
        now: datetime,
    ) -> Outcome | None:
        """An operator's decision on a pending check, made in its runner's unit of work with
        the document image's deletion and the review's leaving the ops group. None when the
        check was decided already."""
        check = await (
            IdentityCheck.filter(id=check_id, status=IdentityStatus.PENDING).using_db(conn).first()
        )
        if check is None:
            return None
        outcome = await self._decide(conn, check, approved, reviewer, reason, now)
        await resolve_alert(conn, group_key=f"id-review:{check_id}", now=now, by=reviewer)
        return outcome

    async def _decide(
        self,
        conn: UnitOfWork,
        check: IdentityCheck,
        approved: bool,
        reviewer: str,
        reason: str,
        now: datetime,
    ) -> Outcome:
        decided = await move_identity(
            conn,
            check.id,
            to=IdentityStatus.APPROVED if approved else IdentityStatus.REJECTED,
            document_encrypted=None,
            reviewer_id=None,
            reason=reason[:500],
            decided_at=now,
        )
        if not decided:  # decided meanwhile by someone else: theirs stands
            return Outcome()
        outcome = Outcome(
            audits=[
                Audit(
                    reviewer,
                    "identity.approved" if approved else "identity.rejected",
                    f"identity:{check.id}",
                    {"reason": reason},
                )
            ]
        )
        outcome.effects += photo_deletion(check)
        booking = (
            await Booking.filter(id=check.booking_id).using_db(conn).first()
            if check.booking_id is not None
            else None
        )
        if approved:
            await Renter.filter(id=check.renter_id).using_db(conn).update(verified_at=now)
            if booking is not None:
                outcome = outcome + (await self._maybe_confirm(conn, booking, now))
        elif booking is not None and booking.state == BookingState.AWAITING_ID:
            outcome = outcome + (
                await self.cancel_booking(
                    conn, booking, actor=reviewer, now=now, refund=booking.price_cents
                )
            )
            await self.notifier.tell(
                conn,
                booking.renter_id,
                "journey.id_rejected",
                now=now,
                kind="receipt",
                params={"reason": reason or "-"},
            )
        return outcome

    async def _identity_event(
        self, conn: UnitOfWork, event: PaymentEvent, now: datetime
    ) -> Outcome:
        check = await IdentityCheck.filter(provider_ref=event.object_id).using_db(conn).first()
        if check is None or check.status != IdentityStatus.PENDING or check.booking_id is None:
            return Outcome()
        booking = await Booking.filter(id=check.booking_id).using_db(conn).get()
        if event.kind == PaymentEventKind.IDENTITY_VERIFIED:
            return await self._decide(conn, check, True, "stripe_identity", "", now)
        await self.notifier.tell(
            conn, booking.renter_id, "journey.verify_again", now=now, kind="receipt"
        )
        return Outcome(
            alerts=[
                Alert(
                    AlertKind.IDENTITY_NEEDS_INPUT,
                    f"identity-input:{booking.reference}",
                    "ops.identity_needs_input",
                    {"booking": booking.reference},
                )
            ]
        )

    async def execute_identity_start(self, effect: OutboxEffect) -> FollowUp:
        """Stripe Identity: open a verification session and send its link to the renter."""
        if self.identity is None:
            raise LookupError("Stripe Identity is not configured")
        booking = await Booking.get(id=int(str(effect.payload["booking"])))
        session = await self.identity.start_verification(
            booking.reference,
            f"{self.settings.public_url}/paid/{booking.reference}",
            effect.idempotency_key,
        )
        now = self.clock.now()

        async def record(conn: UnitOfWork) -> Outcome:
            _, created = await IdentityCheck.get_or_create(
                provider_ref=session.session_id,
                defaults={
                    "renter_id": booking.renter_id,
                    "booking": booking,
                    "method": "stripe_identity",
                },
                using_db=conn,
            )
            if created:
                await self.notifier.tell(
                    conn,
                    booking.renter_id,
                    "journey.verify_link",
                    now=now,
                    kind="payment_link",
                    params={"url": session.url},
                    template_variables={"1": booking.reference, "2": session.url},
                )
            return Outcome()

        return record

    async def execute_collect_id(self, effect: OutboxEffect) -> FollowUp | None:
        payload = effect.payload
        if await IdentityCheck.exists(provider_ref=effect.idempotency_key):
            # A retry after the check was stored: the photo may be decided and deleted by now,
            # and must not be fetched again (nor the renter told it is unreadable).
            return None
        booking = await Booking.get(id=int(str(payload["booking"])))
        now = self.clock.now()
        try:
            content, declared = await self.fetch_media(str(payload["channel"]), str(payload["url"]))
            content_type = stored_type(content, declared, ID_DOCUMENT_TYPES)
            if content_type is None:
                raise ValueError(f"not an ID document: declared {declared}")
        except ValueError:

            async def unreadable(conn: UnitOfWork) -> Outcome:
                await self.notifier.tell(
                    conn, booking.renter_id, "journey.id_unreadable", now=now, kind="receipt"
                )
                return Outcome()

            return unreadable
        sealed = self.sealer.seal_bytes(content)

        async def store(conn: UnitOfWork) -> Outcome:
            check, created = await IdentityCheck.get_or_create(
                provider_ref=effect.idempotency_key,
                defaults={
                    "renter_id": booking.renter_id,
                    "booking": booking,
                    "method": "manual",
                    "document_encrypted": sealed,
                    "document_content_type": content_type,
                },
                using_db=conn,
            )
            return id_review(check, booking) if created else Outcome()

        return store

    async def execute_delete_id_media(self, effect: OutboxEffect) -> None:
        """Delete a decided ID's photo where the channel keeps it (Twilio's Media resource),
        then blank the references to it: the inbound message's media and the collect payload."""
        check = await IdentityCheck.get_or_none(id=int(str(effect.payload["check"])))
        if check is None or not check.provider_ref:
            return
        collect = await OutboxEffect.get_or_none(
            kind=COLLECT_ID_EFFECT, idempotency_key=check.provider_ref
        )
        if collect is None:
            return
        payload = dict(collect.payload)
        channel = str(payload.get("channel", ""))
        # The collect key is identity:<channel>:<provider message id> (older payloads lack it).
        provider_id = str(payload.get("message") or check.provider_ref.split(":", 2)[-1])
        messages = await Message.filter(
            direction="in", provider_id=provider_id, conversation__channel=channel
        )
        urls = {str(payload.get("url") or "")} | {
            str(item.get("url", "")) for row in messages for item in media_items(row.media)
        }
        for url in sorted(urls - {""}):
            await self.delete_media(channel, url)
        await forget_media(collect.id, [row.id for row in messages])
