"""The renter journey after an item is chosen: when, quote, hold, pay, ID, PIN, and the rental.

Dialog steps here only read and return what they want done; writes that must land with the
turn (holding a slot) go through ``StepResult.apply`` so the database can refuse them. Payment
events, identity decisions and timers change bookings in one transaction with their effects.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from flows.access import (
    CODE_NOT_MOVED_TIMER,
    CODE_SET_TIMER,
    LIVE_STATES,
    UPDATE_EFFECT,
    AccessCodes,
    locks_for_booking,
)
from flows.bookings import (
    IllegalTransition,
    QuoteRefused,
    UnpaidLimitReached,
    alternatives,
    blocked_range,
    extended_range,
    hold_booking,
    is_free,
    move,
    new_reference,
    quote,
    stored_range,
    unpaid_bookings,
)
from flows.clock import Clock
from flows.digits import typed_int
from flows.effects import Alert, Audit, CancelTimer, Effect, Outcome, Reply, SetTimer
from flows.engine import ReadChanged, StepResult, Turn
from flows.i18n import Translator, local_time
from flows.inventory_cache import InventoryCache
from flows.messages import Choice
from flows.notify import Notifier
from flows.payment_match import OWNED_KINDS, disagreement, own_payment
from flows.payments import (
    CheckoutRequest,
    IdentityProvider,
    PaymentEvent,
    PaymentEventKind,
    PaymentProvider,
    PaymentRefused,
)
from flows.remote_open import OPEN_EFFECT, OPEN_LIFETIME, RemoteOpens, open_effect
from flows.staging import stage_outcome
from flows.timers import TimerFired
from flows.upload_links import UploadGrant, UploadLinks, mms_reaches_us
from flows.when import (
    DayTooFarAhead,
    WhenNotUnderstood,
    parse_duration,
    parse_local_range,
    resolve_range,
)
from locks import LockCapability
from locks.port import capabilities_from_json
from locks.windows import AccessWindow, LocalTimeProblem
from storage.journal import resolve_alert
from storage.models import (
    AccessCode,
    AccessCodeState,
    Asset,
    AuditEvent,
    Booking,
    BookingState,
    Conversation,
    EffectState,
    Extension,
    IdentityCheck,
    Message,
    OutboxEffect,
    Payment,
    ProcessedWebhook,
    Renter,
    Timer,
    TimerState,
)
from storage.money import Money
from storage.retention import forget_media
from storage.sealing import Sealer

log = logging.getLogger(__name__)

CHECKOUT_EFFECT = "payment.checkout"
REFUND_EFFECT = "payment.refund"
HOLD_EFFECT = "payment.hold_deposit"
RELEASE_EFFECT = "payment.release_deposit"
COLLECT_ID_EFFECT = "identity.collect"
DELETE_ID_MEDIA_EFFECT = "identity.delete_media"
IDENTITY_START_EFFECT = "identity.start_verification"
HOLD_EXPIRY_TIMER = "booking.hold_expiry"
DELIVER_PIN_TIMER = "booking.deliver_pin"
#: Pending while an extension waits for the lock to take the new window; fires if it does not.
EXTENSION_ON_LOCK_TIMER = "booking.extension_on_lock"
START_TIMER = "booking.start"
ENDING_TIMER = "booking.ending_soon"
END_TIMER = "booking.end"
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


#: Bookings an EXTEND applies to: confirmed ones, before or during the rental.
EXTENDABLE = (BookingState.CONFIRMED, BookingState.ACTIVE)

#: How soon a PIN that fell due before its codes were set is looked at again: a renter booking at
#: the last minute gets it within this long of the lock confirming the code.
PIN_RECHECK = timedelta(seconds=30)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _at(value: object) -> datetime:
    return datetime.fromisoformat(str(value))


class Journey:
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
    ) -> None:
        self.translator = translator
        self.inventory = inventory or InventoryCache()
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

    # == dialog steps =========================================================================

    async def when(self, turn: Turn, asset_code: str, text: str) -> StepResult:
        """The renter said when: read it in the location's time zone and quote."""
        asset = await self.inventory.asset(asset_code)
        if asset is None:
            return _stay(turn, turn.t("journey.unknown_asset", code=asset_code))
        tz = asset.location.timezone
        try:
            now_local = turn.now.astimezone(_zone(tz))
            local = parse_local_range(text, language=turn.language, now_local=now_local)
            if self._beyond_horizon(asset, local.day, now_local.date()):
                return _stay(turn, self._horizon_text(turn, asset))
            start, end = resolve_range(local, tz)
        except DayTooFarAhead:
            return _stay(turn, self._horizon_text(turn, asset))
        except WhenNotUnderstood:
            return _stay(turn, turn.t("journey.when_not_understood", code=asset.code))
        except LocalTimeProblem as problem:
            key = (
                "journey.time_does_not_exist"
                if problem.kind == "nonexistent"
                else "journey.time_is_ambiguous"
            )
            return _stay(turn, turn.t(key, time=problem.naive.strftime("%H:%M")))
        return await self._quote(turn, asset, start, end)

    async def _quote(self, turn: Turn, asset: Asset, start: datetime, end: datetime) -> StepResult:
        tz = asset.location.timezone
        if self._starts_beyond_horizon(asset, start, turn.now):
            return _stay(turn, self._horizon_text(turn, asset))
        try:
            priced = quote(asset, start, end, turn.now)
        except QuoteRefused as refused:
            return _stay(turn, self._refusal(turn, refused))
        if not await is_free(asset.id, blocked_range(asset, start, end)):
            return await self._offer_alternatives(turn, asset, start, end)
        text = turn.t(
            "journey.quote",
            code=asset.code,
            label=asset.label,
            location=asset.location.name,
            start=local_time(start, tz, turn.language),
            end=local_time(end, tz, turn.language),
            price=priced.price.format(turn.language),
            deposit=priced.deposit.format(turn.language),
        )
        data = {
            "asset": asset.code,
            "start": _iso(start),
            "end": _iso(end),
            "price": priced.price.minor,
            "deposit": priced.deposit.minor,
        }
        return StepResult("quote", data, Outcome([Reply(text, self._yes_no(turn))]))

    def _horizon(self, asset: Asset) -> int:
        days = asset.location.booking_horizon_days
        return self.settings.booking_horizon_days if days is None else days

    def _beyond_horizon(self, asset: Asset, day: date, today: date) -> bool:
        """Whether a rental starting on local ``day`` is further ahead than its location books."""
        return (day - today).days > self._horizon(asset)

    def _starts_beyond_horizon(self, asset: Asset, start: datetime, now: datetime) -> bool:
        zone = _zone(asset.location.timezone)
        return self._beyond_horizon(
            asset, start.astimezone(zone).date(), now.astimezone(zone).date()
        )

    def _horizon_text(self, turn: Turn, asset: Asset) -> str:
        return turn.t("journey.beyond_horizon", code=asset.code, days=self._horizon(asset))

    async def _offer_alternatives(
        self, turn: Turn, asset: Asset, start: datetime, end: datetime
    ) -> StepResult:
        tz = asset.location.timezone
        slots = await alternatives(asset, start, end, now=turn.now)
        choices = tuple(
            Choice(
                str(i),
                f"{local_time(a, tz, turn.language)} – {local_time(b, tz, turn.language)}",
            )
            for i, (a, b) in enumerate(slots, start=1)
        )
        data = {"asset": asset.code, "slots": [[_iso(a), _iso(b)] for a, b in slots]}
        key = "journey.taken_alternatives" if slots else "journey.taken_no_alternatives"
        return StepResult("alternatives", data, Outcome([Reply(turn.t(key), choices)]))

    async def pick_alternative(self, turn: Turn) -> StepResult:
        slots = list(turn.data.get("slots", []))
        picked = typed_int(turn.text, at_most=len(slots))
        if picked:
            asset = await self.inventory.asset(str(turn.data["asset"]))
            if asset is None:
                return _stay(turn, turn.t("journey.unknown_asset", code=turn.data["asset"]))
            start, end = slots[picked - 1]
            return await self._quote(turn, asset, _at(start), _at(end))
        return await self.when(turn, str(turn.data.get("asset", "")), turn.text)

    def _refusal(self, turn: Turn, refused: QuoteRefused) -> str:
        params = dict(refused.params)
        if "minutes" in params:
            params["duration"] = _duration(int(str(params.pop("minutes"))), turn.language)
        return turn.t(refused.key, **params)

    async def accept_quote(self, turn: Turn) -> StepResult:
        """YES: hold the slot and send the payment link."""
        asset = await self.inventory.asset(str(turn.data["asset"]))
        # Taken out of service since the quote (read from the database: the inventory in
        # memory may be a few seconds old).
        if asset is None or not await Asset.filter(id=asset.id, active=True).exists():
            return _stay(turn, turn.t("journey.unknown_asset", code=turn.data["asset"]))
        start, end = _at(turn.data["start"]), _at(turn.data["end"])
        if self._starts_beyond_horizon(asset, start, turn.now):
            return StepResult("start", {}, Outcome([Reply(self._horizon_text(turn, asset))]))
        try:  # the quote's rules again: YES may come long after it (its start now past)
            quote(asset, start, end, turn.now)
        except QuoteRefused as refused:  # asked when again, for the same item
            reply = Reply(self._refusal(turn, refused))
            return StepResult("asset", {"asset": asset.code}, Outcome([reply]))
        limit = self.settings.max_unpaid
        renter_id = turn.renter_id
        if await unpaid_bookings(renter_id) >= limit:
            text = turn.t("journey.too_many_unpaid", count=limit)
            return StepResult("start", {}, Outcome([Reply(text)]))
        blocked = blocked_range(asset, start, end)
        if not await is_free(asset.id, blocked):
            return await self._offer_alternatives(turn, asset, start, end)
        reference = new_reference()
        expires = turn.now + self.settings.hold
        price, deposit = int(str(turn.data["price"])), int(str(turn.data["deposit"]))

        async def hold(conn: BaseDBAsyncClient) -> Outcome:
            # Counted again under the renter's row lock: a turn of theirs on another channel
            # or worker may have held a slot meanwhile; if so the turn is recomputed.
            if await unpaid_bookings(renter_id, conn=conn, lock=True) >= limit:
                raise UnpaidLimitReached(renter_id)
            booking = await hold_booking(
                conn,
                reference=reference,
                renter_id=renter_id,
                asset=asset,
                start=start,
                end=end,
                blocked=blocked,
                price=price,
                deposit=deposit,
                hold_expires_at=expires,
            )
            return Outcome(
                effects=[
                    Effect(
                        CHECKOUT_EFFECT,
                        f"checkout:{reference}",
                        self._checkout_payload(booking, asset.label, "rental", price, expires),
                    )
                ],
                timers=[
                    SetTimer(
                        HOLD_EXPIRY_TIMER, expires, f"hold:{reference}", {"booking": booking.id}
                    )
                ],
                audits=[Audit(f"renter:{renter_id}", "booking.held", f"booking:{reference}")],
            )

        if not self.settings.take_payments:
            return self._book_without_payment(turn, asset, start, end, blocked, reference)
        minutes = int(self.settings.hold.total_seconds() // 60)
        text = turn.t("journey.holding", reference=reference, code=asset.code, minutes=minutes)
        return StepResult("paying", {"booking": reference}, Outcome([Reply(text)]), apply=hold)

    def _book_without_payment(
        self,
        turn: Turn,
        asset: Asset,
        start: datetime,
        end: datetime,
        blocked: AccessWindow,
        reference: str,
    ) -> StepResult:
        """Payments are off: the booking takes no money (so it records no price or deposit,
        and a cancellation refunds nothing) and goes on to the ID check at once."""
        renter_id, now = turn.renter_id, turn.now

        async def book(conn: BaseDBAsyncClient) -> Outcome:
            booking = await hold_booking(
                conn,
                reference=reference,
                renter_id=renter_id,
                asset=asset,
                start=start,
                end=end,
                blocked=blocked,
                price=0,
                deposit=0,
                hold_expires_at=None,
            )
            outcome = Outcome(
                audits=[
                    Audit(f"renter:{renter_id}", "booking.held", f"booking:{reference}"),
                    Audit("system", "booking.no_payment", f"booking:{reference}"),
                ]
            )
            return outcome + (await self._checks_before_rental(conn, booking, now, paid=False))

        # The answer is what comes next (the ID request, or the confirmation), sent by ``book``.
        return StepResult("booked", {"booking": reference}, Outcome(), apply=book)

    async def command(self, turn: Turn, command: str, args: list[str]) -> StepResult:
        """EXTEND, OPEN, CODE, CANCEL and AGENT act on the renter's current booking."""
        booking = await self._current_booking(turn.renter_id)
        if command == "agent":
            return await self._agent(turn, booking)
        if booking is None:
            return _stay(turn, turn.t("journey.no_booking"))
        if command == "extend":
            return await self._extend_quote(turn, booking, " ".join(args))
        if command == "open":
            return await self._open(turn, booking)
        if command == "code":
            return await self._resend_code(turn, booking)
        if command == "cancel":
            return await self._cancel_quote(turn, booking)
        return _stay(turn, turn.t("dialog.not_understood"))

    async def answer(self, turn: Turn, yes: bool) -> StepResult:
        """YES or NO to the question the conversation is waiting on."""
        if turn.state == "quote":
            if yes:
                return await self.accept_quote(turn)
            return StepResult("start", {}, Outcome([Reply(turn.t("journey.quote_declined"))]))
        if turn.state == "extend_quote":
            if yes:
                return await self._extend_accept(turn)
            return StepResult("booked", {}, Outcome([Reply(turn.t("journey.kept_as_is"))]))
        if turn.state == "cancel_quote":
            if yes:
                return await self._cancel_accept(turn)
            return StepResult("booked", {}, Outcome([Reply(turn.t("journey.kept_as_is"))]))
        return _stay(turn, turn.t("journey.nothing_to_answer"))

    async def id_photo(self, turn: Turn) -> StepResult:
        booking = await self._current_booking(turn.renter_id)
        if booking is None or booking.state != BookingState.AWAITING_ID:
            return _stay(turn, turn.t("dialog.media_not_needed"))
        media = turn.message.media[0]
        effect = Effect(
            COLLECT_ID_EFFECT,
            f"identity:{turn.message.channel}:{turn.message.provider_id}",
            {
                "booking": booking.id,
                "channel": turn.message.channel,
                "message": turn.message.provider_id,
                "url": media.url,
                "content_type": media.content_type,
            },
        )
        return StepResult(
            turn.state, dict(turn.data), Outcome([Reply(turn.t("journey.id_received"))], [effect])
        )

    def opt_out(self, turn: Turn, stop: bool) -> StepResult:
        renter_id = turn.renter_id
        now = turn.now

        async def apply(conn: BaseDBAsyncClient) -> Outcome:
            await (
                Renter.filter(id=renter_id)
                .using_db(conn)
                .update(opted_out=stop, opted_out_at=now if stop else None)
            )
            action = "renter.opted_out" if stop else "renter.opted_in"
            return Outcome(audits=[Audit(f"renter:{renter_id}", action)])

        key = "journey.stopped" if stop else "journey.started"
        return StepResult(turn.state, dict(turn.data), Outcome([Reply(turn.t(key))]), apply=apply)

    # -- commands ---------------------------------------------------------------------------

    async def _current_booking(self, renter_id: int) -> Booking | None:
        return (
            await Booking.filter(renter_id=renter_id, state__in=LIVE_BOOKING)
            .order_by("start_at")
            .first()
        )

    async def _agent(self, turn: Turn, booking: Booking | None) -> StepResult:
        conversation = await Conversation.get(
            channel=turn.message.channel, address=turn.message.address
        )
        outcome = Outcome(
            [Reply(turn.t("journey.agent_requested"))],
            alerts=[
                Alert(
                    "agent_requested",
                    f"agent:{conversation.id}",
                    "ops.agent_requested",
                    {
                        "channel": turn.message.channel,
                        "booking": booking.reference if booking else "-",
                    },
                )
            ],
            audits=[Audit(f"renter:{turn.renter_id}", "conversation.agent_requested")],
        )
        data = {**turn.data, "handoff": "requested"}
        return StepResult(turn.state, data, outcome)

    async def _open(self, turn: Turn, booking: Booking) -> StepResult:
        window = stored_range(booking)
        if not window.contains(turn.now) or booking.state not in (
            BookingState.CONFIRMED,
            BookingState.ACTIVE,
        ):
            return _stay(turn, turn.t("journey.open_outside_window"))
        hour_ago = turn.now - timedelta(hours=1)
        recent = await _opens_since(None, booking, hour_ago)
        if recent >= self.settings.opens_per_hour:
            return _stay(turn, turn.t("journey.open_too_often"))

        async def counted_again(conn: BaseDBAsyncClient) -> Outcome:
            # Counted again in the turn's transaction, holding the booking's row (PostgreSQL;
            # SQLite runs one transaction at a time): an OPEN on another channel that committed
            # meanwhile is seen, and this turn is recomputed with it instead of opening too.
            await Booking.filter(id=booking.id).using_db(conn).select_for_update(no_key=True).get()
            if await _opens_since(conn, booking, hour_ago) != recent:
                raise ReadChanged(f"booking {booking.reference} was opened meanwhile")
            return Outcome()

        locks = [
            lock
            for lock in await locks_for_booking(booking)
            if LockCapability.REMOTE_UNLOCK
            in capabilities_from_json(lock.capabilities, lock.provider)
        ]
        if not locks:
            return _stay(turn, turn.t("journey.open_not_possible"))
        stamp = turn.message.provider_id
        outcome = Outcome(
            [Reply(turn.t("journey.open_asked", locks=", ".join(lk.label for lk in locks)))],
            effects=[
                open_effect(
                    lock,
                    f"open:{lock.id}:{stamp}",
                    now=turn.now,
                    lifetime=self.settings.open_lifetime,
                    renter_id=turn.renter_id,
                    booking=booking.reference,
                )
                for lock in locks
            ],
            audits=[
                Audit(
                    f"renter:{turn.renter_id}", "lock.remote_open", f"booking:{booking.reference}"
                )
            ],
        )
        return StepResult(turn.state, dict(turn.data), outcome, apply=counted_again)

    async def _resend_code(self, turn: Turn, booking: Booking) -> StepResult:
        codes = await self._set_codes(booking)
        if codes is None:
            return _stay(turn, turn.t("journey.code_not_ready"))
        return _stay(turn, await self._pin_text(booking, codes, turn.language), kind="pin")

    async def _extend_quote(self, turn: Turn, booking: Booking, text: str) -> StepResult:
        if booking.state not in EXTENDABLE:  # no codes before the booking is confirmed
            return _stay(turn, turn.t("journey.extend_not_yet", reference=booking.reference))
        try:
            extra = parse_duration(text)
        except WhenNotUnderstood:
            return _stay(turn, turn.t("journey.extend_usage"))
        if extra < MIN_EXTENSION:
            minutes = int(MIN_EXTENSION.total_seconds() // 60)
            return _stay(turn, turn.t("journey.extend_too_short", minutes=minutes))
        asset = await self.inventory.asset_by_id(booking.asset_id)
        new_end = booking.end_at + extra
        if (new_end - booking.start_at).total_seconds() / 60 > asset.max_duration_minutes:
            return _stay(
                turn,
                turn.t(
                    "journey.too_long",
                    duration=_duration(asset.max_duration_minutes, turn.language),
                ),
            )
        if not await is_free(asset.id, extended_range(booking, new_end), ignore=booking.id):
            outcome = Outcome(
                [Reply(turn.t("journey.extend_conflict"))],
                alerts=[
                    Alert(
                        "extension_conflict",
                        f"extension-conflict:{booking.reference}",
                        "ops.extension_conflict",
                        {"booking": booking.reference},
                    )
                ],
            )
            return StepResult(turn.state, dict(turn.data), outcome)
        hours = -(-int(extra.total_seconds()) // 3600)
        price = hours * asset.price_per_hour_cents
        if asset.price_per_day_cents:
            price = min(price, -(-hours // 24) * asset.price_per_day_cents)
        tz = asset.location.timezone
        text_out = turn.t(
            "journey.extend_quote",
            end=local_time(new_end, tz, turn.language),
            price=Money(price, booking.currency).format(turn.language),
        )
        data = {
            "booking": booking.reference,
            "old_end": _iso(booking.end_at),
            "new_end": _iso(new_end),
            "price": price,
        }
        return StepResult("extend_quote", data, Outcome([Reply(text_out, self._yes_no(turn))]))

    async def _extend_accept(self, turn: Turn) -> StepResult:
        booking = await Booking.get(reference=str(turn.data["booking"])).select_related("asset")
        new_end = _at(turn.data["new_end"])
        price = int(str(turn.data["price"]))
        quoted_end = _at(turn.data["old_end"]) if "old_end" in turn.data else booking.end_at
        if booking.state not in EXTENDABLE or booking.end_at != quoted_end:
            # Cancelled, ended or extended since the quote: it no longer says what YES buys.
            return StepResult("booked", {}, Outcome([Reply(turn.t("journey.extend_stale"))]))
        if not await is_free(booking.asset_id, extended_range(booking, new_end), ignore=booking.id):
            return StepResult("booked", {}, Outcome([Reply(turn.t("journey.extend_conflict"))]))
        take_payments = self.settings.take_payments

        async def record(conn: BaseDBAsyncClient) -> Outcome:
            locked = Booking.filter(id=booking.id).using_db(conn).select_for_update()
            now_booked = await locked.get()
            if now_booked.state not in EXTENDABLE or now_booked.end_at != booking.end_at:
                raise ReadChanged(f"booking {booking.reference} changed since the quote")
            extension = await Extension.create(
                booking=booking,
                old_end_at=booking.end_at,
                new_end_at=new_end,
                price_cents=price,
                using_db=conn,
            )
            if price == 0 or not take_payments:
                return await self._apply_extension(conn, extension)
            return Outcome(
                effects=[
                    Effect(
                        CHECKOUT_EFFECT,
                        f"checkout:{booking.reference}:extension:{extension.id}",
                        {
                            **self._checkout_payload(
                                booking,
                                booking.asset.label,
                                "extension",
                                price,
                                turn.now + EXTENSION_CHECKOUT_ROOM,
                            ),
                            "extension": extension.id,
                        },
                    )
                ]
            )

        # Only a price staged as a checkout has a payment link to announce; a free extension is
        # applied in this turn and its receipt follows.
        key = "journey.extend_paying" if price > 0 else "journey.extend_free"
        if price > 0 and not take_payments:
            key = "journey.extend_no_payment"
        return StepResult("booked", {}, Outcome([Reply(turn.t(key))]), apply=record)

    def _refund_for(self, booking: Booking, now: datetime) -> int:
        if now <= booking.start_at - self.settings.free_cancellation:
            return booking.price_cents
        if now < booking.start_at:
            return Money(booking.price_cents, booking.currency).part(1, 2).minor
        return 0

    async def _cancel_quote(self, turn: Turn, booking: Booking) -> StepResult:
        refund = self._refund_for(booking, turn.now)
        if booking.state == BookingState.AWAITING_PAYMENT:
            refund = 0
        text = turn.t(
            "journey.cancel_quote",
            reference=booking.reference,
            refund=Money(refund, booking.currency).format(turn.language),
        )
        data = {"booking": booking.reference}
        return StepResult("cancel_quote", data, Outcome([Reply(text, self._yes_no(turn))]))

    async def _cancel_accept(self, turn: Turn) -> StepResult:
        booking = await Booking.get(reference=str(turn.data["booking"]))
        now = turn.now
        actor = f"renter:{turn.renter_id}"

        async def cancel(conn: BaseDBAsyncClient) -> Outcome:
            return await self.cancel_booking(conn, booking, actor=actor, now=now, refund=None)

        refund = (
            self._refund_for(booking, now) if booking.state != BookingState.AWAITING_PAYMENT else 0
        )
        text = turn.t(
            "journey.cancelled",
            reference=booking.reference,
            refund=Money(refund, booking.currency).format(turn.language),
        )
        return StepResult("start", {}, Outcome([Reply(text)]), apply=cancel)

    # == booking changes (inside a transaction) ==============================================

    async def cancel_booking(
        self,
        conn: BaseDBAsyncClient,
        booking: Booking,
        *,
        actor: str,
        now: datetime,
        refund: int | None,
    ) -> Outcome:
        """Cancel with the refund policy (or ``refund`` as given), revoke codes at once."""
        was = booking.state
        await move(conn, booking, BookingState.CANCELLED)
        await Booking.filter(id=booking.id).using_db(conn).update(cancelled_at=now)
        codes = await AccessCode.filter(booking_id=booking.id, state__in=LIVE_STATES).using_db(conn)
        outcome = await self.access.revoke(conn, codes, actor=actor, reason="booking cancelled")
        outcome = outcome + (await self._withdraw_identity(conn, booking, actor=actor, now=now))
        outcome.timers += [
            CancelTimer(f"{kind}:{booking.reference}")
            for kind in ("hold", "pin", "start", "ending", "end")
        ]
        amount = 0 if was == BookingState.AWAITING_PAYMENT else self._refund_for(booking, now)
        if refund is not None:
            amount = refund
        if was == BookingState.AWAITING_PAYMENT:
            outcome.effects.append(
                Effect(
                    "payment.expire_checkout",
                    f"expire:{booking.reference}",
                    {"booking": booking.id},
                )
            )
        if amount > 0:
            outcome.effects.append(
                Effect(
                    REFUND_EFFECT,
                    f"refund:{booking.reference}",
                    {"booking": booking.id, "amount": amount},
                )
            )
        outcome.effects.append(
            Effect(RELEASE_EFFECT, f"release:{booking.reference}", {"booking": booking.id})
        )
        outcome.alerts.append(
            Alert(
                "booking_cancelled",
                f"cancelled:{booking.reference}",
                "ops.booking_cancelled",
                {"booking": booking.reference, "by": actor},
            )
        )
        outcome.audits.append(
            Audit(actor, "booking.cancelled", f"booking:{booking.reference}", {"refund": amount})
        )
        return outcome

    async def confirm(self, conn: BaseDBAsyncClient, booking: Booking, now: datetime) -> Outcome:
        """Payment and identity are done: plan the codes and the rental's timers."""
        await move(conn, booking, BookingState.CONFIRMED)
        outcome = await self.access.plan_booking_codes(conn, booking)
        asset = (
            await Asset.filter(id=booking.asset_id).using_db(conn).get().select_related("location")
        )
        window = stored_range(booking)
        ref = booking.reference
        pin_at = max(now, window.starts_at - self.access.lead_times_at(asset.location).pin_lead)
        outcome.timers += [
            SetTimer(DELIVER_PIN_TIMER, pin_at, f"pin:{ref}", {"booking": booking.id}),
            SetTimer(START_TIMER, booking.start_at, f"start:{ref}", {"booking": booking.id}),
            SetTimer(
                ENDING_TIMER,
                max(now, booking.end_at - self.settings.ending_reminder),
                f"ending:{ref}",
                {"booking": booking.id},
            ),
            SetTimer(END_TIMER, booking.end_at, f"end:{ref}", {"booking": booking.id}),
        ]
        outcome.audits.append(Audit("system", "booking.confirmed", f"booking:{ref}"))
        tz = asset.location.timezone
        await self.notifier.tell(
            conn,
            booking.renter_id,
            "journey.confirmed",
            now=now,
            kind="receipt",
            params=lambda language: {
                "reference": ref,
                "code": asset.code,
                "start": local_time(booking.start_at, tz, language),
                "end": local_time(booking.end_at, tz, language),
                "pin_at": local_time(pin_at, tz, language),
            },
        )
        return outcome

    async def _apply_extension(self, conn: BaseDBAsyncClient, extension: Extension) -> Outcome:
        booking = await Booking.filter(id=extension.booking_id).using_db(conn).get()
        asset = (
            await Asset.filter(id=booking.asset_id).using_db(conn).get().select_related("location")
        )
        now = self.clock.now()
        window = extended_range(booking, extension.new_end_at)
        await (
            Booking.filter(id=booking.id)
            .using_db(conn)
            .update(end_at=extension.new_end_at, blocked_until=window.ends_at)
        )
        await Extension.filter(id=extension.id).using_db(conn).update(state="applied")
        booking.end_at, booking.blocked_until = extension.new_end_at, window.ends_at
        outcome, replaced = await self.access.move_window(conn, booking, window)
        ref = booking.reference
        outcome.timers += [
            SetTimer(END_TIMER, booking.end_at, f"end:{ref}", {"booking": booking.id}),
            SetTimer(
                ENDING_TIMER,
                max(now, booking.end_at - self.settings.ending_reminder),
                f"ending:{ref}",
                {"booking": booking.id},
            ),
        ]
        if replaced:
            outcome.timers.append(
                SetTimer(DELIVER_PIN_TIMER, now, f"pin:{ref}", {"booking": booking.id})
            )
        outcome.audits.append(
            Audit("system", "booking.extended", f"booking:{ref}", {"until": _iso(booking.end_at)})
        )
        if not replaced and any(e.kind == UPDATE_EFFECT for e in outcome.effects):
            # "Your code works until then" waits for the lock to hold the new window.
            outcome.timers.append(
                SetTimer(
                    EXTENSION_ON_LOCK_TIMER,
                    now + self.settings.extension_on_lock_within,
                    f"extended:{ref}",
                    {"booking": booking.id},
                )
            )
            return outcome
        await self.notifier.tell(
            conn,
            booking.renter_id,
            "journey.extended_new_code" if replaced else "journey.extended",
            now=now,
            kind="receipt",
            params=lambda language: {
                "end": local_time(booking.end_at, asset.location.timezone, language)
            },
        )
        return outcome

    async def _extension_waiting(self, conn: BaseDBAsyncClient, booking: Booking) -> bool:
        return (
            await Timer.filter(key=f"extended:{booking.reference}", state=TimerState.PENDING)
            .using_db(conn)
            .exists()
        )

    async def _tell_extension(
        self, booking: Booking, key: str, now: datetime, *, marker_fired: bool = False
    ) -> Outcome:
        """Tell the renter how their extension stands on the lock, once (while its marker timer
        is pending, or as it fires); ops hear of one the lock did not take."""
        asset = await Asset.get(id=booking.asset_id).select_related("location")
        marker = f"extended:{booking.reference}"

        async def tell(conn: BaseDBAsyncClient) -> Outcome:
            waiting = (
                await Timer.filter(key=marker, state=TimerState.PENDING).using_db(conn).exists()
            )
            if not waiting and not marker_fired:
                return Outcome()  # told already
            await self.notifier.tell(
                conn,
                booking.renter_id,
                key,
                now=now,
                kind="receipt",
                params=lambda language: {
                    "end": local_time(booking.end_at, asset.location.timezone, language)
                },
            )
            outcome = Outcome(timers=[CancelTimer(marker)])
            if key != "journey.extended":
                outcome.alerts.append(
                    Alert(
                        "extension_not_on_lock",
                        f"extension-lock:{booking.reference}",
                        "ops.extension_not_on_lock",
                        {"booking": booking.reference},
                    )
                )
            return outcome

        return Outcome(writes=[tell])

    async def on_code_not_moved(self, event: TimerFired) -> Outcome:
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        return await self._tell_extension(
            booking, "journey.extended_code_unchanged", self.clock.now()
        )

    async def on_extension_on_lock_due(self, event: TimerFired) -> Outcome:
        """The lock has not confirmed the extended window in time: the renter hears the truth."""
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        return await self._tell_extension(
            booking, "journey.extended_code_unchanged", self.clock.now(), marker_fired=True
        )

    # == payment events =====================================================================

    async def on_payment_event(self, provider: str, event: PaymentEvent) -> bool:
        """Apply a payment provider's event once; events may come in any order."""
        now = self.clock.now()
        try:
            async with in_transaction() as conn:
                await ProcessedWebhook.create(
                    provider=provider, event_id=event.event_id, received_at=now, using_db=conn
                )
                outcome = await self._payment_event(conn, provider, event, now)
                await stage_outcome(conn, outcome, now)
        except IntegrityError:
            return False
        return True

    async def _payment_event(
        self, conn: BaseDBAsyncClient, provider: str, event: PaymentEvent, now: datetime
    ) -> Outcome:
        if event.kind in (
            PaymentEventKind.IDENTITY_VERIFIED,
            PaymentEventKind.IDENTITY_NEEDS_INPUT,
        ):
            return await self._identity_event(conn, event, now)
        if event.kind not in OWNED_KINDS:
            return Outcome()
        matched = await own_payment(conn, provider, event)
        if matched is None:
            return await self._not_ours(conn, event)
        why = disagreement(event, matched)
        if why is not None:
            return _payment_mismatch(event, matched.booking.reference, why)
        payment, booking = matched.payment, matched.booking
        if event.kind == PaymentEventKind.CHECKOUT_PAID:
            return await self._paid(conn, booking, payment, event, now)
        if event.kind == PaymentEventKind.CHECKOUT_EXPIRED:
            if payment.purpose == "extension":
                return Outcome()
            return await self._expire(conn, booking, now)
        if event.kind == PaymentEventKind.REFUNDED:
            await Payment.create(
                booking=booking,
                provider=provider,
                purpose="refund",
                amount_cents=event.amount or 0,
                currency=booking.currency,
                status="refunded",
                idempotency_key=f"refund-event:{event.event_id}",
                using_db=conn,
            )
            return Outcome(
                audits=[Audit("payments", "payment.refunded", f"booking:{booking.reference}")]
            )
        if event.kind == PaymentEventKind.HOLD_PLACED:
            # Only a deposit still waiting for its authorisation: this event may arrive late,
            # after the hold was released or captured, and must not bring it back.
            await (
                Payment.filter(id=payment.id, purpose="deposit", status__in=("created", "open"))
                .using_db(conn)
                .update(status="held")
            )
            return Outcome()
        return Outcome(
            alerts=[
                Alert(
                    "payment_failed",
                    f"payment-failed:{booking.reference}",
                    "ops.payment_failed",
                    {"booking": booking.reference},
                )
            ]
        )

    async def _not_ours(self, conn: BaseDBAsyncClient, event: PaymentEvent) -> Outcome:
        """An event about a session or intent Keyturn did not create changes nothing. Ops hear
        of it when it names one of Keyturn's bookings: someone paid (or refunded) elsewhere on
        the account in a booking's name. Other sales on the same account are none of ours; so
        are intents whose record is still being written (a deposit hold's, a failed card's)."""
        reference = event.booking_reference
        known = (
            reference is not None
            and await Booking.filter(reference=reference).using_db(conn).exists()
        )
        quiet = event.kind in (PaymentEventKind.HOLD_PLACED, PaymentEventKind.PAYMENT_FAILED)
        if not known or quiet or reference is None:
            log.info("payment event %s is about no payment Keyturn made", event.kind)
            return Outcome()
        return _payment_mismatch(event, reference, "Keyturn did not create this payment")

    async def _paid(
        self,
        conn: BaseDBAsyncClient,
        booking: Booking,
        payment: Payment,
        event: PaymentEvent,
        now: datetime,
    ) -> Outcome:
        details = {
            "payment_intent": event.payment_intent,
            "customer": event.customer,
            "payment_method": event.payment_method,
        }
        if payment.status == "paid":
            return Outcome()
        await (
            Payment.filter(id=payment.id)
            .using_db(conn)
            .update(status="paid", details={**payment.details, **details})
        )
        if payment.purpose == "extension":
            extension = (
                await Extension.filter(id=int(str(payment.details.get("extension"))))
                .using_db(conn)
                .get()
            )
            still_free = await is_free(
                booking.asset_id,
                extended_range(booking, extension.new_end_at),
                ignore=booking.id,
                conn=conn,
            )
            if not still_free or booking.state not in (
                BookingState.CONFIRMED,
                BookingState.ACTIVE,
            ):
                return self._refund_late(booking, payment, "extension_taken")
            if booking.end_at != extension.old_end_at:
                # Quoted from an end the booking no longer has (another extension was paid
                # first): applied now it would move the end back, so it is given back.
                return self._refund_late(booking, payment, "extension_superseded")
            return await self._apply_extension(conn, extension)
        if booking.state != BookingState.AWAITING_PAYMENT:
            # Paid after the hold expired or was cancelled: give the money back.
            return self._refund_late(booking, payment, "paid_after_expiry")
        await Booking.filter(id=booking.id).using_db(conn).update(hold_expires_at=None)
        outcome = Outcome(
            timers=[CancelTimer(f"hold:{booking.reference}")],
            audits=[Audit("payments", "booking.paid", f"booking:{booking.reference}")],
        )
        if booking.deposit_cents:
            outcome.effects.append(
                Effect(HOLD_EFFECT, f"deposit:{booking.reference}", {"booking": booking.id})
            )
        return outcome + (await self._checks_before_rental(conn, booking, now))

    async def _checks_before_rental(
        self, conn: BaseDBAsyncClient, booking: Booking, now: datetime, *, paid: bool = True
    ) -> Outcome:
        """Paid (or nothing to pay): now the checks before the rental (identity, the deposit
        hold) are awaited, and the booking is confirmed as soon as they are done."""
        outcome = Outcome()
        renter = await Renter.filter(id=booking.renter_id).using_db(conn).get()
        await move(conn, booking, BookingState.AWAITING_ID)
        if self._verified(renter, now):
            return outcome + (await self._maybe_confirm(conn, booking, now))
        if self.settings.identity_method == "stripe":
            outcome.effects.append(
                Effect(
                    IDENTITY_START_EFFECT,
                    f"identity-start:{booking.reference}",
                    {"booking": booking.id},
                )
            )
            return outcome
        key = "journey.send_id" if paid else "journey.send_id_unpaid"
        params = {"reference": booking.reference}
        link = await self._upload_link(conn, renter, booking)
        if link is not None:
            key, params = f"{key}_link", {**params, "link": link}
        await self.notifier.tell(conn, renter.id, key, now=now, kind="receipt", params=params)
        return outcome

    async def _upload_link(
        self, conn: BaseDBAsyncClient, renter: Renter, booking: Booking
    ) -> str | None:
        """An upload link for a renter who writes by SMS on a route MMS does not reach us on;
        None where the channel carries the photo itself (WhatsApp, Telegram, MMS, sandbox)."""
        conversation = (
            await Conversation.filter(renter_id=renter.id)
            .using_db(conn)
            .order_by("-last_inbound_at", "-id")
            .first()
        )
        if conversation is None:
            return None
        return self._link_for(conversation.channel, conversation.address, renter.id, booking.id)

    def _link_for(self, channel: str, address: str, renter_id: int, booking_id: int) -> str | None:
        if self.upload_links is None or not self._photo_needs_link(channel, address):
            return None
        return self.upload_links.url_for(renter_id, booking_id)

    def _photo_needs_link(self, channel: str, address: str) -> bool:
        return (
            self.upload_links is not None
            and channel == "sms"
            and not mms_reaches_us(self.settings.sms_from, address, self.settings.mms_countries)
        )

    async def upload_link_again(self, turn: Turn) -> StepResult | None:
        """A renter who is to send the ID by link writes instead: a fresh link, since the one
        sent may have expired. None where the chat carries the photo or none is awaited."""
        if not self._photo_needs_link(turn.message.channel, turn.message.address):
            return None
        booking = await self._current_booking(turn.renter_id)
        if (
            booking is None
            or booking.state != BookingState.AWAITING_ID
            or self.settings.identity_method != "manual"
            or await IdentityCheck.exists(booking_id=booking.id, status="pending")
        ):
            return None
        link = self._link_for(
            turn.message.channel, turn.message.address, turn.renter_id, booking.id
        )
        if link is None:
            return None
        text = turn.t("journey.id_link_again", reference=booking.reference, link=link)
        return _stay(turn, text)

    async def receive_uploaded_id(
        self,
        conn: BaseDBAsyncClient,
        grant: UploadGrant,
        content: bytes,
        content_type: str,
        now: datetime,
    ) -> bool:
        """An ID photo sent through an upload link: stored sealed and put up for review like an
        MMS photo, and the renter told it arrived. False when the booking no longer awaits an ID."""
        booking = await Booking.filter(id=grant.booking_id).using_db(conn).first()
        if (
            booking is None
            or booking.renter_id != grant.renter_id
            or booking.state != BookingState.AWAITING_ID
        ):
            return False
        check = await IdentityCheck.create(
            renter_id=booking.renter_id,
            booking=booking,
            method="manual",
            provider_ref=f"upload:{grant.digest}",
            document_encrypted=self.sealer.seal_bytes(content),
            document_content_type=content_type,
            using_db=conn,
        )
        outcome = Outcome(
            alerts=[
                Alert(
                    "id_review",
                    f"id-review:{check.id}",
                    "ops.id_review",
                    {"booking": booking.reference, "check": check.id},
                )
            ],
            audits=[Audit("system", "identity.submitted", f"identity:{check.id}")],
        )
        await stage_outcome(conn, outcome, now)
        await self.notifier.tell(conn, booking.renter_id, "journey.id_received", now=now)
        return True

    def _verified(self, renter: Renter, now: datetime) -> bool:
        verified_at = renter.verified_at
        return verified_at is not None and verified_at > now - self.settings.id_valid_for

    async def _maybe_confirm(
        self, conn: BaseDBAsyncClient, booking: Booking, now: datetime
    ) -> Outcome:
        """Confirm once payment, identity and (where the item has one) the deposit are done."""
        booking = await Booking.filter(id=booking.id).using_db(conn).get()
        if booking.state != BookingState.AWAITING_ID:
            return Outcome()
        renter = await Renter.filter(id=booking.renter_id).using_db(conn).get()
        if not self._verified(renter, now):
            return Outcome()
        if booking.deposit_cents > 0:
            held = await (
                Payment.filter(
                    booking_id=booking.id, purpose="deposit", status__in=("held", "card_on_file")
                )
                .using_db(conn)
                .exists()
            )
            if not held:
                return Outcome()
        return await self.confirm(conn, booking, now)

    def _refund_late(self, booking: Booking, payment: Payment, why: str) -> Outcome:
        return Outcome(
            effects=[
                Effect(
                    REFUND_EFFECT,
                    f"refund:{booking.reference}:{payment.id}",
                    {"booking": booking.id, "payment": payment.id, "amount": payment.amount_cents},
                )
            ],
            alerts=[
                Alert(
                    "late_payment_refunded",
                    f"late-payment:{booking.reference}",
                    "ops.late_payment_refunded",
                    {"booking": booking.reference, "why": why},
                )
            ],
        )

    async def _expire(self, conn: BaseDBAsyncClient, booking: Booking, now: datetime) -> Outcome:
        if booking.state != BookingState.AWAITING_PAYMENT:
            return Outcome()
        await move(conn, booking, BookingState.EXPIRED)
        await self.notifier.tell(
            conn,
            booking.renter_id,
            "journey.hold_expired",
            now=now,
            params={"reference": booking.reference},
        )
        return Outcome(
            timers=[CancelTimer(f"hold:{booking.reference}")],
            effects=[
                Effect(
                    "payment.expire_checkout",
                    f"expire:{booking.reference}",
                    {"booking": booking.id},
                )
            ],
            alerts=[
                Alert(
                    "hold_expired",
                    f"hold-expired:{booking.reference}",
                    "ops.hold_expired",
                    {"booking": booking.reference},
                )
            ],
            audits=[Audit("system", "booking.expired", f"booking:{booking.reference}")],
        )

    # == identity ===========================================================================

    async def decide_identity(
        self, check_id: int, *, approved: bool, reviewer: str, reason: str = ""
    ) -> bool:
        """An operator's decision; the document image is deleted in the same transaction."""
        now = self.clock.now()
        async with in_transaction() as conn:
            check = await IdentityCheck.filter(id=check_id, status="pending").using_db(conn).first()
            if check is None:
                return False
            outcome = await self._decide(conn, check, approved, reviewer, reason, now)
            await stage_outcome(conn, outcome, now)
        await resolve_alert(None, group_key=f"id-review:{check_id}", now=now, by=reviewer)
        return True

    async def _decide(
        self,
        conn: BaseDBAsyncClient,
        check: IdentityCheck,
        approved: bool,
        reviewer: str,
        reason: str,
        now: datetime,
    ) -> Outcome:
        await (
            IdentityCheck.filter(id=check.id)
            .using_db(conn)
            .update(
                status="approved" if approved else "rejected",
                document_encrypted=None,
                reviewer_id=None,
                reason=reason[:500],
                decided_at=now,
            )
        )
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
        outcome.effects += _photo_deletion(check)
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

    async def execute_identity_start(self, effect: OutboxEffect) -> None:
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
        async with in_transaction() as conn:
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

    async def _identity_event(
        self, conn: BaseDBAsyncClient, event: PaymentEvent, now: datetime
    ) -> Outcome:
        check = await IdentityCheck.filter(provider_ref=event.object_id).using_db(conn).first()
        if check is None or check.status != "pending" or check.booking_id is None:
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
                    "identity_needs_input",
                    f"identity-input:{booking.reference}",
                    "ops.identity_needs_input",
                    {"booking": booking.reference},
                )
            ]
        )

    # == effects ============================================================================

    def _checkout_payload(
        self, booking: Booking, label: str, purpose: str, amount: int, room_until: datetime
    ) -> dict[str, object]:
        """Everything the Checkout Session is created with, fixed when its effect is staged.

        Stripe replays a retry under the same Idempotency-Key only when its parameters are the
        first request's, so no attempt may recompute any of them. The session lives 30 minutes
        past ``room_until`` (Stripe's minimum from creation, with the hold's length to spare);
        Keyturn expires it itself when the renter's hold ends."""
        return {
            "booking": booking.id,
            "purpose": purpose,
            "amount": amount,
            "currency": booking.currency,
            "description": f"{label} ({booking.reference})",
            "expires_at": _iso(room_until + CHECKOUT_ROOM),
            "save_card": booking.deposit_cents > 0 and purpose == "rental",
        }

    async def execute_checkout(self, effect: OutboxEffect) -> None:
        booking = await Booking.get(id=int(str(effect.payload["booking"]))).select_related("asset")
        extension_id = effect.payload.get("extension")
        now = self.clock.now()
        payload = effect.payload
        if "expires_at" not in payload:  # staged before its parameters were fixed at staging
            purpose = "rental" if extension_id is None else "extension"
            amount = booking.price_cents
            if extension_id is not None:
                amount = (await Extension.get(id=int(str(extension_id)))).price_cents
            room = booking.hold_expires_at if extension_id is None else None
            payload = {
                **self._checkout_payload(
                    booking, booking.asset.label, purpose, amount, room or effect.created_at
                ),
                **payload,
            }
        purpose, amount = str(payload["purpose"]), int(str(payload["amount"]))
        if purpose == "rental" and booking.state != BookingState.AWAITING_PAYMENT:
            return
        expires = _at(payload["expires_at"])
        if expires - now < CHECKOUT_ROOM + CHECKOUT_LATE and effect.attempts > 1:
            # Too late to be the same request if the first never reached Stripe: a fresh key
            # with fresh parameters, never a changed body under the old one.
            await self._checkout_again(effect, booking, now)
            return
        checkout = await self.payments.create_checkout(
            CheckoutRequest(
                booking_reference=booking.reference,
                amount=Money(amount, str(payload["currency"])),
                description=str(payload["description"]),
                expires_at=expires,
                success_url=f"{self.settings.public_url}/paid/{booking.reference}",
                cancel_url=f"{self.settings.public_url}/paid/{booking.reference}?cancelled=1",
                idempotency_key=effect.idempotency_key,
                save_card=bool(payload["save_card"]),
                metadata={"purpose": purpose},
            )
        )
        async with in_transaction() as conn:
            recorded = Payment.filter(idempotency_key=effect.idempotency_key).using_db(conn)
            if await recorded.exists():
                return  # an earlier attempt recorded it and sent the link, and then stopped
            await Payment.create(
                idempotency_key=effect.idempotency_key,
                booking=booking,
                provider=self.payments.name,
                purpose=purpose,
                amount_cents=amount,
                currency=booking.currency,
                status="open",
                provider_ref=checkout.session_id,
                details={"url": checkout.url, "extension": extension_id},
                using_db=conn,
            )
            await self.notifier.tell(
                conn,
                booking.renter_id,
                "journey.pay_link",
                now=now,
                kind="payment_link",
                params=lambda language: {
                    "url": checkout.url,
                    "amount": Money(amount, booking.currency).format(language),
                },
                template_variables={"1": booking.reference, "2": checkout.url},
            )

    async def _checkout_again(self, effect: OutboxEffect, booking: Booking, now: datetime) -> None:
        """Stage the payment link again under a new key, its parameters fixed from now."""
        payload = dict(effect.payload)
        if payload.get("extension") is None:
            room_until = max(now + CHECKOUT_LATE, booking.hold_expires_at or now)
        else:
            room_until = now + EXTENSION_CHECKOUT_ROOM
        payload["expires_at"] = _iso(room_until + CHECKOUT_ROOM)
        again = Effect(
            CHECKOUT_EFFECT, f"{effect.idempotency_key}:again:{effect.attempts}", payload
        )
        log.info("checkout for %s staged again under a new key", booking.reference)
        async with in_transaction() as conn:
            await stage_outcome(conn, Outcome(effects=[again]), now)

    async def execute_refund(self, effect: OutboxEffect) -> None:
        booking = await Booking.get(id=int(str(effect.payload["booking"])))
        paid = await Payment.filter(
            booking_id=booking.id, status="paid", purpose__in=("rental", "extension")
        ).order_by("id")
        remaining = int(str(effect.payload.get("amount", 0)))
        for payment in paid:
            intent = str(payment.details.get("payment_intent") or "")
            if remaining <= 0 or not intent:
                continue
            part = min(remaining, payment.amount_cents)
            await self.payments.refund(
                intent, Money(part, payment.currency), f"{effect.idempotency_key}:{payment.id}"
            )
            remaining -= part

    async def execute_expire_checkout(self, effect: OutboxEffect) -> None:
        booking_id = int(str(effect.payload["booking"]))
        for payment in await Payment.filter(booking_id=booking_id, status="open"):
            if payment.provider_ref and not await self.payments.expire_checkout(
                payment.provider_ref
            ):
                # Completed at the last moment: its paid event refunds it (the hold is gone).
                continue
            # Only while still open: a paid event handled meanwhile keeps its "paid".
            await Payment.filter(id=payment.id, status="open").update(status="expired")

    async def execute_hold_deposit(self, effect: OutboxEffect) -> None:
        booking = await Booking.get(id=int(str(effect.payload["booking"])))
        rental = await Payment.filter(
            booking_id=booking.id, purpose="rental", status="paid"
        ).first()
        if rental is None or booking.deposit_cents <= 0:
            return
        customer = str(rental.details.get("customer") or "")
        method = str(rental.details.get("payment_method") or "")
        intent_paid = str(rental.details.get("payment_intent") or "")
        if not (customer and method) and intent_paid:
            saved = await self.payments.saved_card(intent_paid)
            if saved is None:
                await self._deposit_not_held(booking, "no card was saved at checkout")
                return
            customer, method = saved
        # A card authorisation lives about seven days; longer rentals keep the saved card and
        # charge it off-session only if an operator claims the deposit.
        if booking.end_at - self.clock.now() > timedelta(days=6):
            status, intent = "card_on_file", None
        else:
            try:
                intent = await self.payments.place_hold(
                    customer,
                    method,
                    Money(booking.deposit_cents, booking.currency),
                    effect.idempotency_key,
                )
            except PaymentRefused:
                await self._deposit_not_held(booking, "the card refused the hold")
                return
            status = "held"
        await Payment.get_or_create(
            idempotency_key=effect.idempotency_key,
            defaults={
                "booking": booking,
                "provider": self.payments.name,
                "purpose": "deposit",
                "amount_cents": booking.deposit_cents,
                "currency": booking.currency,
                "status": status,
                "provider_ref": intent,
                "details": {"customer": customer, "payment_method": method},
            },
        )
        now = self.clock.now()
        async with in_transaction() as conn:
            await stage_outcome(conn, await self._maybe_confirm(conn, booking, now), now)

    async def claim_deposit(self, reference: str, amount: Money | None, *, actor: str) -> Money:
        """An operator keeps (part of) a deposit: capture the hold, or charge the saved card for
        a rental too long for a hold. Returns the amount claimed."""
        booking = await Booking.get(reference=reference)
        deposit = await Payment.filter(
            booking_id=booking.id, purpose="deposit", status__in=("held", "card_on_file")
        ).first()
        if deposit is None:
            raise LookupError(f"booking {reference} has no deposit to claim")
        held = Money(deposit.amount_cents, deposit.currency)
        claimed = held if amount is None else amount
        if claimed.currency != held.currency or not 0 < claimed.minor <= held.minor:
            raise ValueError(
                f"a claim is more than nothing and at most the deposit, {held.format('en')}"
            )
        key = f"claim:{reference}:{claimed.minor}"
        if deposit.status == "held" and deposit.provider_ref:
            await self.payments.capture_hold(deposit.provider_ref, claimed, key)
            charge = deposit.provider_ref
        else:
            charge = await self.payments.charge_saved_card(
                str(deposit.details.get("customer") or ""),
                str(deposit.details.get("payment_method") or ""),
                claimed,
                key,
            )
        now = self.clock.now()
        async with in_transaction() as conn:
            await Payment.filter(id=deposit.id).using_db(conn).update(status="claimed")
            await Payment.get_or_create(
                idempotency_key=key,
                defaults={
                    "booking": booking,
                    "provider": self.payments.name,
                    "purpose": "claim",
                    "amount_cents": claimed.minor,
                    "currency": booking.currency,
                    "status": "paid",
                    "details": {"charge": charge},
                },
                using_db=conn,
            )
            await stage_outcome(
                conn,
                Outcome(
                    audits=[
                        Audit(
                            actor,
                            "deposit.claimed",
                            f"booking:{reference}",
                            {"amount": claimed.minor},
                        )
                    ]
                ),
                now,
            )
        return claimed

    async def _deposit_not_held(self, booking: Booking, why: str) -> None:
        """Ops decide what happens to a booking whose deposit could not be held; the renter
        hears that their booking stands and that a person will be in touch."""
        now = self.clock.now()
        async with in_transaction() as conn:
            await self.notifier.tell(
                conn,
                booking.renter_id,
                "journey.deposit_not_held",
                now=now,
                kind="receipt",
                params=lambda language: {
                    "reference": booking.reference,
                    "deposit": Money(booking.deposit_cents, booking.currency).format(language),
                },
            )
            await stage_outcome(
                conn,
                Outcome(
                    alerts=[
                        Alert(
                            "deposit_not_held",
                            f"deposit:{booking.reference}",
                            "ops.deposit_not_held",
                            {"booking": booking.reference, "why": why},
                        )
                    ]
                ),
                now,
            )

    async def execute_release_deposit(self, effect: OutboxEffect) -> None:
        booking_id = int(str(effect.payload["booking"]))
        for deposit in await Payment.filter(
            booking_id=booking_id, purpose="deposit", status="held"
        ):
            if deposit.provider_ref:
                await self.payments.release_hold(deposit.provider_ref, effect.idempotency_key)
            await Payment.filter(id=deposit.id).update(status="released")

    async def execute_collect_id(self, effect: OutboxEffect) -> None:
        payload = effect.payload
        if await IdentityCheck.exists(provider_ref=effect.idempotency_key):
            # A retry after the check was stored: the photo may be decided and deleted by now,
            # and must not be fetched again (nor the renter told it is unreadable).
            return
        booking = await Booking.get(id=int(str(payload["booking"])))
        now = self.clock.now()
        try:
            content, content_type = await self.fetch_media(
                str(payload["channel"]), str(payload["url"])
            )
        except ValueError:
            async with in_transaction() as conn:
                await self.notifier.tell(
                    conn,
                    booking.renter_id,
                    "journey.id_unreadable",
                    now=now,
                    kind="receipt",
                )
            return
        async with in_transaction() as conn:
            check, created = await IdentityCheck.get_or_create(
                provider_ref=effect.idempotency_key,
                defaults={
                    "renter_id": booking.renter_id,
                    "booking": booking,
                    "method": "manual",
                    "document_encrypted": self.sealer.seal_bytes(content),
                    "document_content_type": content_type,
                },
                using_db=conn,
            )
            if created:
                await stage_outcome(
                    conn,
                    Outcome(
                        alerts=[
                            Alert(
                                "id_review",
                                f"id-review:{check.id}",
                                "ops.id_review",
                                {"booking": booking.reference, "check": check.id},
                            )
                        ],
                        audits=[Audit("system", "identity.submitted", f"identity:{check.id}")],
                    ),
                    now,
                )

    async def _withdraw_identity(
        self, conn: BaseDBAsyncClient, booking: Booking, *, actor: str, now: datetime
    ) -> Outcome:
        """A booking cancelled while its ID waits for review: the ID has no purpose left, so
        it is withdrawn and its image deleted, here and where the channel keeps it, as a
        decision would; the review leaves the ops group."""
        checks = await IdentityCheck.filter(booking_id=booking.id, status="pending").using_db(conn)
        outcome = Outcome()
        for check in checks:
            await (
                IdentityCheck.filter(id=check.id, status="pending")
                .using_db(conn)
                .update(
                    status="withdrawn",
                    document_encrypted=None,
                    reviewer_id=None,
                    reason="booking cancelled",
                    decided_at=now,
                )
            )
            await resolve_alert(conn, group_key=f"id-review:{check.id}", now=now, by=actor)
            outcome.audits.append(
                Audit(actor, "identity.withdrawn", f"identity:{check.id}", {"why": "cancelled"})
            )
            outcome.effects += _photo_deletion(check)
        return outcome

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
            str(item.get("url", "")) for row in messages for item in _media_items(row.media)
        }
        for url in sorted(urls - {""}):
            await self.delete_media(channel, url)
        await forget_media(collect.id, [row.id for row in messages])

    # == timers =============================================================================

    async def on_hold_expiry(self, event: TimerFired) -> Outcome:
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        now = self.clock.now()
        async with in_transaction() as conn:
            outcome = await self._expire(conn, booking, now)
            await stage_outcome(conn, outcome, now)
        return Outcome()

    async def on_deliver_pin(self, event: TimerFired) -> Outcome:
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        if booking.state not in (BookingState.CONFIRMED, BookingState.ACTIVE):
            return Outcome()
        now = self.clock.now()
        codes = await self._set_codes(booking)
        if codes is None:
            if now < booking.end_at:  # not set yet: look again shortly (ops is alerted by then)
                return Outcome(
                    timers=[
                        SetTimer(
                            DELIVER_PIN_TIMER,
                            now + PIN_RECHECK,
                            f"pin:{booking.reference}",
                            {"booking": booking.id},
                        )
                    ]
                )
            return Outcome()
        async with in_transaction() as conn:
            language = await self._language(conn, booking)
            text_params = {"body": await self._pin_text(booking, codes, language)}
            await self.notifier.tell(
                conn,
                booking.renter_id,
                "journey.pin_message",
                now=now,
                kind="pin",
                params=text_params,
                template_variables=await self._pin_variables(booking, codes, language),
            )
            await stage_outcome(
                conn,
                Outcome(
                    audits=[Audit("system", "booking.pin_sent", f"booking:{booking.reference}")]
                ),
                now,
            )
        return Outcome()

    async def on_code_set(self, event: TimerFired) -> Outcome:
        """A booking's code became set: a PIN already due and waiting for its codes goes out
        now rather than at its next look (one not yet due keeps its time)."""
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        now = self.clock.now()
        outcome = Outcome()
        if await self._extension_on_lock(booking, int(str(event.payload["code"]))):
            outcome = await self._tell_extension(booking, "journey.extended", now)
        key = f"pin:{booking.reference}"
        waiting = await Timer.filter(
            key=key, state=TimerState.PENDING, due_at__lte=now + PIN_RECHECK
        ).exists()
        if waiting:
            outcome.timers.append(SetTimer(DELIVER_PIN_TIMER, now, key, {"booking": booking.id}))
        return outcome

    async def _extension_on_lock(self, booking: Booking, just_set: int) -> bool:
        """Every code of the booking is set with its current window, no move still on its way
        (``just_set``'s own move is the one that has just been answered, its row not yet done)."""
        codes = await AccessCode.filter(booking_id=booking.id, state__in=LIVE_STATES)
        if not codes or any(c.state != AccessCodeState.SET for c in codes):
            return False
        for code in codes:
            if code.id == just_set:
                continue
            moving = await OutboxEffect.filter(
                idempotency_key__startswith=f"access:update:{code.id}:",
                state=EffectState.PENDING,
            ).exists()
            if moving:
                return False
        return True

    async def on_start(self, event: TimerFired) -> Outcome:
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        if booking.state == BookingState.CONFIRMED:
            async with in_transaction() as conn:
                await move(conn, booking, BookingState.ACTIVE)
        return Outcome(audits=[Audit("system", "booking.started", f"booking:{booking.reference}")])

    async def on_ending_soon(self, event: TimerFired) -> Outcome:
        booking = await Booking.get(id=int(str(event.payload["booking"]))).prefetch_related(
            "asset__location"
        )
        if booking.state not in (BookingState.CONFIRMED, BookingState.ACTIVE):
            return Outcome()
        now = self.clock.now()
        async with in_transaction() as conn:
            await self.notifier.tell(
                conn,
                booking.renter_id,
                "journey.ending_soon",
                now=now,
                kind="reminder",
                params=lambda language: {
                    "end": local_time(booking.end_at, booking.asset.location.timezone, language)
                },
            )
        return Outcome()

    async def on_end(self, event: TimerFired) -> Outcome:
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        if booking.state not in (BookingState.CONFIRMED, BookingState.ACTIVE):
            return Outcome()
        now = self.clock.now()
        async with in_transaction() as conn:
            if booking.state == BookingState.CONFIRMED:
                await move(conn, booking, BookingState.ACTIVE)
            await move(conn, booking, BookingState.COMPLETED)
            await self.notifier.tell(
                conn,
                booking.renter_id,
                "journey.thank_you",
                now=now,
                kind="notice",
                params={"reference": booking.reference},
            )
            await stage_outcome(
                conn,
                Outcome(
                    effects=[
                        Effect(
                            RELEASE_EFFECT, f"release:{booking.reference}", {"booking": booking.id}
                        )
                    ],
                    audits=[Audit("system", "booking.completed", f"booking:{booking.reference}")],
                ),
                now,
            )
        return Outcome()

    # == helpers ============================================================================

    async def _set_codes(self, booking: Booking) -> list[AccessCode] | None:
        codes = await AccessCode.filter(
            booking_id=booking.id, state__in=LIVE_STATES
        ).prefetch_related("lock")
        waiting = [c for c in codes if c.offline and c.state == AccessCodeState.PROGRAMMING]
        if waiting:  # offline codes whose PIN the vendor had not computed when they were made
            if not all([await self.access.confirm(code) for code in waiting]):
                return None
            codes = await AccessCode.filter(
                booking_id=booking.id, state__in=LIVE_STATES
            ).prefetch_related("lock")
        if not codes or any(code.state != AccessCodeState.SET for code in codes):
            return None
        return codes

    async def _pin_text(self, booking: Booking, codes: list[AccessCode], language: str) -> str:
        asset = await Asset.get(id=booking.asset_id).select_related("location")
        tz = asset.location.timezone
        t = self.translator
        # Codes share one window, unless one is an offline code in whole hours: then each line
        # says its own, and the heading spans them all.
        windows = {(code.starts_at, code.ends_at) for code in codes}
        lines = []
        for code in sorted(codes, key=lambda c: (not c.lock.shared, c.lock.label)):
            line = t.text(
                language,
                "journey.pin_line",
                lock=code.lock.label,
                pin=self.sealer.open(code.pin_encrypted),
            )
            if len(windows) > 1:
                start = local_time(code.starts_at, tz, language)
                line += f" ({start} – {local_time(code.ends_at, tz, language)})"
            lines.append(line)
        text = t.text(
            language,
            "journey.pin",
            reference=booking.reference,
            codes="\n".join(lines),
            start=local_time(min(start for start, _ in windows), tz, language),
            end=local_time(max(end for _, end in windows), tz, language),
        )
        if any(code.offline for code in codes):
            text += "\n" + t.text(language, "journey.pin_offline_warning")
        return text

    async def _pin_variables(
        self, booking: Booking, codes: list[AccessCode], language: str
    ) -> dict[str, str]:
        """The PIN template's variables: ``1`` the booking reference, ``2`` the PIN (each lock's,
        in the order of ``3``, when they differ), ``3`` the locks, ``4`` the window in local time.
        WhatsApp takes parameters of one line only, so each is flattened to one."""
        asset = await Asset.get(id=booking.asset_id).select_related("location")
        tz = asset.location.timezone
        ordered = sorted(codes, key=lambda c: (not c.lock.shared, c.lock.label))
        pins = [self.sealer.open(code.pin_encrypted) for code in ordered]
        start = local_time(min(code.starts_at for code in codes), tz, language)
        end = local_time(max(code.ends_at for code in codes), tz, language)
        values = {
            "1": booking.reference,
            "2": pins[0] if len(set(pins)) == 1 else ", ".join(pins),
            "3": ", ".join(code.lock.label for code in ordered),
            "4": f"{start} – {end}",
        }
        return {name: one_line(value) for name, value in values.items()}

    async def _language(self, conn: BaseDBAsyncClient, booking: Booking) -> str:
        renter = await Renter.filter(id=booking.renter_id).using_db(conn).get()
        conversation = (
            await Conversation.filter(renter_id=renter.id)
            .using_db(conn)
            .order_by("-last_inbound_at")
            .first()
        )
        return await self.notifier.language(renter, conversation)

    def _yes_no(self, turn: Turn) -> tuple[Choice, ...]:
        yes = turn.t("keyword.yes").split("|")[0]
        no = turn.t("keyword.no").split("|")[0]
        return (Choice(yes, yes), Choice(no, no))


def one_line(value: str) -> str:
    """``value`` as a WhatsApp template parameter: no newlines or tabs, no runs of spaces."""
    return re.sub(r" {2,}", " ", re.sub(r"[\r\n\t]+", " ", value)).strip()


def _payment_mismatch(event: PaymentEvent, reference: str, why: str) -> Outcome:
    """A payment event that moves nothing, for ops to look at."""
    return Outcome(
        alerts=[
            Alert(
                "payment_mismatch",
                f"payment-mismatch:{event.object_id or event.event_id}",
                "ops.payment_mismatch",
                {
                    "booking": reference,
                    "event": event.kind.value,
                    "object": event.object_id,
                    "why": why,
                },
            )
        ],
        audits=[
            Audit(
                "payments",
                "payment.event_refused",
                f"booking:{reference}",
                {"event": event.event_id, "kind": event.kind.value, "why": why},
            )
        ],
    )


async def _opens_since(conn: BaseDBAsyncClient | None, booking: Booking, since: datetime) -> int:
    """Remote opens of ``booking`` from ``since`` on, as the audit trail records them."""
    return (
        await AuditEvent.filter(
            action="lock.remote_open", subject=f"booking:{booking.reference}", at__gte=since
        )
        .using_db(conn)
        .count()
    )


def _photo_deletion(check: IdentityCheck) -> list[Effect]:
    """A manual check's photo stays downloadable where the channel keeps it until deleted there;
    the effect does so and then forgets every reference to it. Stripe Identity keeps none here."""
    if check.method != "manual":
        return []
    key = f"identity-media:{check.id}"
    return [Effect(DELETE_ID_MEDIA_EFFECT, key, {"check": check.id}, critical=True)]


def _stay(turn: Turn, text: str, *, kind: str = "reply") -> StepResult:
    return StepResult(turn.state, dict(turn.data), Outcome([Reply(text, kind=kind)]))


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def _media_items(media: object) -> list[dict[str, object]]:
    return [item for item in media if isinstance(item, dict)] if isinstance(media, list) else []


def _duration(minutes: int, language: str) -> str:
    from babel.dates import format_timedelta

    return str(format_timedelta(timedelta(minutes=minutes), threshold=1.1, locale=language))


EffectHandler = Callable[[OutboxEffect], Awaitable[None]]


def journey_executors(journey: Journey) -> Mapping[str, EffectHandler]:
    return {
        CHECKOUT_EFFECT: journey.execute_checkout,
        REFUND_EFFECT: journey.execute_refund,
        HOLD_EFFECT: journey.execute_hold_deposit,
        RELEASE_EFFECT: journey.execute_release_deposit,
        COLLECT_ID_EFFECT: journey.execute_collect_id,
        DELETE_ID_MEDIA_EFFECT: journey.execute_delete_id_media,
        IDENTITY_START_EFFECT: journey.execute_identity_start,
        OPEN_EFFECT: journey.remote_opens.execute,
        "payment.expire_checkout": journey.execute_expire_checkout,
    }


def journey_timers(journey: Journey) -> Mapping[str, Callable[[TimerFired], Awaitable[Outcome]]]:
    return {
        HOLD_EXPIRY_TIMER: journey.on_hold_expiry,
        DELIVER_PIN_TIMER: journey.on_deliver_pin,
        CODE_SET_TIMER: journey.on_code_set,
        CODE_NOT_MOVED_TIMER: journey.on_code_not_moved,
        EXTENSION_ON_LOCK_TIMER: journey.on_extension_on_lock_due,
        START_TIMER: journey.on_start,
        ENDING_TIMER: journey.on_ending_soon,
        END_TIMER: journey.on_end,
    }


__all__ = ["IllegalTransition", "Journey", "JourneySettings", "MediaEraser", "MediaFetcher"]
