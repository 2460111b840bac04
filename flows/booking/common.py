"""What every part of the booking journey shares: effect and timer names, settings, the
journey's collaborators (``JourneyBase``) and small helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access import AccessCodes
from flows.booking.pin_message import ReadyCodes, pin_text, pin_variables, set_codes
from flows.booking.reads import BookingReads, DatabaseBookingReads
from flows.clock import Clock
from flows.effects import Outcome, Reply, SetTimer
from flows.engine import StepResult, Turn
from flows.i18n import Translator
from flows.inventory_cache import InventoryCache
from flows.messages import Choice
from flows.notify import Notifier, language_of
from flows.payments import IdentityProvider, PaymentProvider
from flows.remote_open import OPEN_LIFETIME, RemoteOpens
from flows.returns import ReturnRules
from flows.upload_links import ID_PHOTO, UploadLinks, mms_reaches_us
from storage.conversations import read_renter_and_latest_conversation
from storage.kinds import EffectKind, TimerKind
from storage.models import AccessCode, Asset, AuditEvent, Booking, BookingState, Renter
from storage.money import Money
from storage.sealing import Sealer

CHECKOUT_EFFECT = EffectKind.PAYMENT_CHECKOUT
REFUND_EFFECT = EffectKind.PAYMENT_REFUND
HOLD_EFFECT = EffectKind.PAYMENT_HOLD_DEPOSIT
RELEASE_EFFECT = EffectKind.PAYMENT_RELEASE_DEPOSIT
COLLECT_ID_EFFECT = EffectKind.IDENTITY_COLLECT
DELETE_ID_MEDIA_EFFECT = EffectKind.IDENTITY_DELETE_MEDIA
IDENTITY_START_EFFECT = EffectKind.IDENTITY_START_VERIFICATION
HOLD_EXPIRY_TIMER = TimerKind.BOOKING_HOLD_EXPIRY
DELIVER_PIN_TIMER = TimerKind.BOOKING_DELIVER_PIN
#: Pending while an extension waits for the lock to take the new window; fires if it does not.
EXTENSION_ON_LOCK_TIMER = TimerKind.BOOKING_EXTENSION_ON_LOCK
START_TIMER = TimerKind.BOOKING_START
ENDING_TIMER = TimerKind.BOOKING_ENDING_SOON
END_TIMER = TimerKind.BOOKING_END
#: A shorter extension is refused: it would be priced as a started hour, or (rounded to
#: nothing) moved the end for free.
MIN_EXTENSION = timedelta(minutes=15)
#: Stripe wants a Checkout Session's ``expires_at`` at least 30 minutes after its creation.
CHECKOUT_ROOM = timedelta(minutes=30)
#: A retry that leaves less than Stripe's 30 minutes and this could be refused as a new
#: request (if the first never reached Stripe): it goes again under a new key instead.
CHECKOUT_LATE = timedelta(minutes=2)
#: An extension's payment link is held open this long before Stripe's 30 minutes are added.
EXTENSION_CHECKOUT_ROOM = timedelta(minutes=30)
LIVE_BOOKING = (
    BookingState.AWAITING_PAYMENT,
    BookingState.AWAITING_ID,
    BookingState.CONFIRMED,
    BookingState.ACTIVE,
)

EXPIRE_CHECKOUT_EFFECT = EffectKind.PAYMENT_EXPIRE_CHECKOUT
LATE_FEE_EFFECT = EffectKind.PAYMENT_LATE_FEE
RECEIPT_EFFECT = EffectKind.BOOKING_RECEIPT
DAMAGE_REVIEW_TIMER = TimerKind.BOOKING_DAMAGE_REVIEW
HOLD_LAPSE_TIMER = TimerKind.BOOKING_DEPOSIT_HOLD_LAPSE
#: A card authorisation (a deposit hold) lives about seven days from when it was placed; a
#: day before, a hold still needed is cancelled and the card kept on file instead.
HOLD_LIFETIME = timedelta(days=7)
HOLD_LAPSE_CHECK = timedelta(days=6)
#: A late fee's payment link (when the card needs the renter) stays open this long, plus
#: Stripe's 30 minutes: under Stripe's 24-hour maximum.
LATE_FEE_LINK_ROOM = timedelta(hours=23)
#: A late fee still processing is read back from the provider after each of these in turn
#: (the last one over and over): soon at first, when it is most likely a race with its event,
#: then less often, as a bank debit takes days.
LATE_FEE_CHECK_TIMER = TimerKind.BOOKING_LATE_FEE_CHECK
LATE_FEE_CHECKS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=12),
)
#: Ops hear of a late fee still processing this long after it was charged (Stripe stops
#: retrying an undelivered event after three days); its checks go on.
LATE_FEE_PROCESSING_ALERT = timedelta(days=3)

#: Bookings an EXTEND applies to: confirmed ones, before or during the rental.
EXTENDABLE = (BookingState.CONFIRMED, BookingState.ACTIVE)

#: How soon a PIN that fell due before its codes were set is looked at again: a renter booking at
#: the last minute gets it within this long of the lock confirming the code.
PIN_RECHECK = timedelta(seconds=30)


class MediaFetcher(Protocol):
    async def __call__(self, channel: str, url: str) -> tuple[bytes, str]:
        """The media's bytes and content type; raises ValueError when it is refused."""
        ...


class MediaEraser(Protocol):
    async def __call__(self, channel: str, url: str) -> None:
        """Delete the media where the channel keeps it (a no-op where it cannot)."""
        ...


async def _keep_media(channel: str, url: str) -> None:
    """Without an eraser the media stays where the channel keeps it; references still go."""


@dataclass(frozen=True)
class JourneySettings:
    public_url: str = "http://127.0.0.1:8080"
    hold: timedelta = timedelta(minutes=30)
    #: A renter verified within this long is not asked for an ID again.
    id_valid_for: timedelta = timedelta(days=365)
    ending_reminder: timedelta = timedelta(minutes=30)
    #: An extension's new window not confirmed by the lock this long after is told as such.
    extension_on_lock_within: timedelta = timedelta(minutes=10)
    opens_per_hour: int = 3
    #: A remote open not confirmed within this long is given up, and the renter told.
    open_lifetime: timedelta = OPEN_LIFETIME
    #: Full refund when cancelled this long before the start; half until the start; none after.
    free_cancellation: timedelta = timedelta(hours=24)
    #: "manual": a photo reviewed by an operator; "stripe": Stripe Identity's hosted check.
    identity_method: str = "manual"
    #: Bookings one renter may have waiting for payment at once.
    max_unpaid: int = 2
    #: How many days ahead a booking may start, where its location does not say.
    booking_horizon_days: int = 90
    #: False (``serve --no-payments``): no payment or deposit is taken; a booking held with
    #: YES goes straight on to the ID check and confirmation, and records no price.
    take_payments: bool = True
    #: Keyturn's SMS number and the countries where an ID photo is asked for by MMS; an SMS
    #: renter elsewhere is sent an upload link (see ``flows.upload_links``).
    sms_from: str | None = None
    mms_countries: frozenset[str] = frozenset({"US", "CA"})
    #: How a return is confirmed (GPS or not) and how long damage may be claimed after it.
    returns: ReturnRules = field(default_factory=ReturnRules)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def at(value: object) -> datetime:
    return datetime.fromisoformat(str(value))


def hold_lapse_key(reference: str) -> str:
    return f"hold-lapse:{reference}"


def hold_lapse_timer(booking: Booking, held_at: datetime) -> SetTimer:
    """The look, a day before a hold placed at ``held_at`` lapses, at whether it is still
    needed (see ``Settlement.on_deposit_hold_lapse``)."""
    return SetTimer(
        HOLD_LAPSE_TIMER,
        held_at + HOLD_LAPSE_CHECK,
        hold_lapse_key(booking.reference),
        {"booking": booking.id},
    )


def stay(turn: Turn, text: str, *, kind: str = "reply", understood: bool = True) -> StepResult:
    """Answer and stay in the same state (``understood=False``: the answer asks again)."""
    outcome = Outcome([Reply(text, kind=kind)])
    return StepResult(turn.state, dict(turn.data), outcome, understood=understood)


def zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def media_items(media: object) -> list[dict[str, object]]:
    return [item for item in media if isinstance(item, dict)] if isinstance(media, list) else []


def duration_text(minutes: int, language: str) -> str:
    from babel.dates import format_timedelta

    return str(format_timedelta(timedelta(minutes=minutes), threshold=1.1, locale=language))


async def opens_since(conn: BaseDBAsyncClient | None, booking: Booking, since: datetime) -> int:
    """Remote opens of ``booking`` from ``since`` on, as the audit trail records them."""
    return (
        await AuditEvent.filter(
            action="lock.remote_open", subject=f"booking:{booking.reference}", at__gte=since
        )
        .using_db(conn)
        .count()
    )


def refund_for(
    price: Money, start_at: datetime, now: datetime, free_cancellation: timedelta
) -> Money:
    """What a cancellation at ``now`` gives back of ``price``: all of it up to
    ``free_cancellation`` before the start (that instant included), half (rounded down to what
    can be charged) until the start, nothing from the start on."""
    if now <= start_at - free_cancellation:
        return price
    if now < start_at:
        return price.part(1, 2)
    return Money.zero(price.currency)


class JourneyBase:
    """The journey's collaborators and the reads every part shares. The parts are layered on
    it, each module one layer (lifecycle, identity review, payment events, executors, timers,
    quote steps, booking steps), so a part calls only the parts beneath it."""

    def __init__(
        self,
        translator: Translator,
        clock: Clock,
        access: AccessCodes,
        payments: PaymentProvider,
        sealer: Sealer,
        fetch_media: MediaFetcher,
        settings: JourneySettings | None = None,
        identity: IdentityProvider | None = None,
        inventory: InventoryCache | None = None,
        *,
        delete_media: MediaEraser = _keep_media,
        upload_links: UploadLinks | None = None,
        reads: BookingReads | None = None,
    ) -> None:
        self.translator = translator
        self.inventory = inventory or InventoryCache()
        #: What the quote, YES and extension steps read of bookings (the database by default).
        self.reads: BookingReads = reads or DatabaseBookingReads()
        self.clock = clock
        self.access = access
        self.payments = payments
        self.sealer = sealer
        self.fetch_media = fetch_media
        self.delete_media = delete_media
        self.settings = settings or JourneySettings()
        self.identity = identity
        self.notifier = Notifier(translator, sealer)
        self.upload_links = upload_links
        self.remote_opens = RemoteOpens(access, self.notifier, clock)

    async def _current_booking(self, renter_id: int) -> Booking | None:
        return (
            await Booking.filter(renter_id=renter_id, state__in=LIVE_BOOKING)
            .order_by("start_at")
            .first()
        )

    def _yes_no(self, turn: Turn) -> tuple[Choice, ...]:
        yes = turn.t("keyword.yes").split("|")[0]
        no = turn.t("keyword.no").split("|")[0]
        return (Choice(yes, yes), Choice(no, no))

    def _refund_for(self, booking: Booking, now: datetime) -> int:
        price = Money(booking.price_cents, booking.currency)
        return refund_for(price, booking.start_at, now, self.settings.free_cancellation).minor

    def _checkout_payload(
        self, booking: Booking, asset: Asset, purpose: str, amount: int, room_until: datetime
    ) -> dict[str, object]:
        """Everything the Checkout Session is created with, fixed when its effect is staged.

        Stripe replays a retry under the same Idempotency-Key only when its parameters are the
        first request's, so no attempt may recompute any of them. The session lives 30 minutes
        past ``room_until`` (Stripe's minimum from creation, with the hold's length to spare);
        Keyturn expires it itself when the renter's hold ends.

        The rental's checkout saves the card whenever something may be charged on it later:
        a deposit (held, or kept on file) or a late fee."""
        return {
            "booking": booking.id,
            "purpose": purpose,
            "amount": amount,
            "currency": booking.currency,
            "description": f"{asset.label} ({booking.reference})",
            "expires_at": iso(room_until + CHECKOUT_ROOM),
            "save_card": purpose == "rental"
            and (booking.deposit_cents > 0 or asset.late_fee_per_hour_cents > 0),
        }

    def _verified(self, renter: Renter, now: datetime) -> bool:
        verified_at = renter.verified_at
        return verified_at is not None and verified_at > now - self.settings.id_valid_for

    async def _upload_link(
        self, conn: BaseDBAsyncClient, renter: Renter, booking: Booking, purpose: str = ID_PHOTO
    ) -> str | None:
        """An upload link for a renter who writes by SMS on a route MMS does not reach us on;
        None where the channel carries the photo itself (WhatsApp, Telegram, MMS, sandbox)."""
        if self.upload_links is None:
            return None  # no link to give, whichever channel the renter writes on
        found = await read_renter_and_latest_conversation(renter.id, conn)
        conversation = found[1] if found is not None else None
        if conversation is None:
            return None
        return self._link_for(
            conversation.channel, conversation.address, renter.id, booking.id, purpose
        )

    def _link_for(
        self, channel: str, address: str, renter_id: int, booking_id: int, purpose: str = ID_PHOTO
    ) -> str | None:
        if self.upload_links is None or not self._photo_needs_link(channel, address):
            return None
        return self.upload_links.url_for(renter_id, booking_id, purpose)

    def _photo_needs_link(self, channel: str, address: str) -> bool:
        return (
            self.upload_links is not None
            and channel == "sms"
            and not mms_reaches_us(self.settings.sms_from, address, self.settings.mms_countries)
        )

    async def set_codes(
        self, booking: Booking, now: datetime, *, settled: bool = False
    ) -> ReadyCodes | None:
        return await set_codes(self.access, booking, now, settled=settled)

    async def pin_text(self, booking: Booking, codes: list[AccessCode], language: str) -> str:
        return await pin_text(self.translator, self.sealer, booking, codes, language)

    async def pin_variables(
        self, booking: Booking, codes: list[AccessCode], language: str
    ) -> dict[str, str]:
        return await pin_variables(self.sealer, booking, codes, language)

    async def _language(self, conn: BaseDBAsyncClient | None, booking: Booking) -> str:
        return await language_of(booking.renter_id, conn)
