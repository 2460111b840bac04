"""Dialog steps from an item to a held booking: when, the quote, alternatives, YES."""

from __future__ import annotations

from datetime import date, datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.booking.common import (
    CHECKOUT_EFFECT,
    HOLD_EXPIRY_TIMER,
    at,
    duration_text,
    iso,
    stay,
    zone,
)
from flows.booking.settlement import Settlement
from flows.bookings import (
    QuoteRefused,
    UnpaidLimitReached,
    blocked_range,
    hold_booking,
    new_reference,
    quote,
    unpaid_bookings,
)
from flows.dialog import DialogState
from flows.digits import typed_int
from flows.effects import Audit, Effect, Outcome, Reply, SetTimer, Write
from flows.engine import StepResult, Turn
from flows.i18n import local_time
from flows.messages import Choice
from flows.when import DayTooFarAhead, WhenNotUnderstood, parse_local_range, resolve_range
from locks.windows import AccessWindow, LocalTimeProblem
from storage.models import Asset
from storage.uow import UnitOfWork


class QuoteSteps(Settlement):
    """From an item to a held booking; the hold is the turn's ``apply``."""

    async def when(self, turn: Turn, asset_code: str, text: str) -> StepResult:
        """The renter said when: read it in the location's time zone and quote."""
        asset = await self.inventory.asset(asset_code)
        if asset is None:
            return stay(turn, turn.t("journey.unknown_asset", code=asset_code))
        tz = asset.location.timezone
        try:
            now_local = turn.now.astimezone(zone(tz))
            local = parse_local_range(text, language=turn.language, now_local=now_local)
            if self._beyond_horizon(asset, local.day, now_local.date()):
                return stay(turn, self._horizon_text(turn, asset))
            start, end = resolve_range(local, tz)
        except DayTooFarAhead:
            return stay(turn, self._horizon_text(turn, asset))
        except WhenNotUnderstood:
            return stay(
                turn, turn.t("journey.when_not_understood", code=asset.code), understood=False
            )
        except LocalTimeProblem as problem:
            key = (
                "journey.time_does_not_exist"
                if problem.kind == "nonexistent"
                else "journey.time_is_ambiguous"
            )
            return stay(turn, turn.t(key, time=problem.naive.strftime("%H:%M")))
        return await self._quote(turn, asset, start, end)

    async def _quote(self, turn: Turn, asset: Asset, start: datetime, end: datetime) -> StepResult:
        tz = asset.location.timezone
        if self._starts_beyond_horizon(asset, start, turn.now):
            return stay(turn, self._horizon_text(turn, asset))
        try:
            priced = quote(asset, start, end, turn.now)
        except QuoteRefused as refused:
            return stay(turn, self._refusal(turn, refused))
        if not await self.reads.is_free(asset.id, blocked_range(asset, start, end)):
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
            "start": iso(start),
            "end": iso(end),
            "price": priced.price.minor,
            "deposit": priced.deposit.minor,
        }
        return StepResult(DialogState.QUOTE, data, Outcome([Reply(text, self._yes_no(turn))]))

    def _horizon(self, asset: Asset) -> int:
        days = asset.location.booking_horizon_days
        return self.settings.booking_horizon_days if days is None else days

    def _beyond_horizon(self, asset: Asset, day: date, today: date) -> bool:
        """Whether a rental starting on local ``day`` is further ahead than its location books."""
        return (day - today).days > self._horizon(asset)

    def _starts_beyond_horizon(self, asset: Asset, start: datetime, now: datetime) -> bool:
        local = zone(asset.location.timezone)
        return self._beyond_horizon(
            asset, start.astimezone(local).date(), now.astimezone(local).date()
        )

    def _horizon_text(self, turn: Turn, asset: Asset) -> str:
        return turn.t("journey.beyond_horizon", code=asset.code, days=self._horizon(asset))

    async def _offer_alternatives(
        self, turn: Turn, asset: Asset, start: datetime, end: datetime
    ) -> StepResult:
        tz = asset.location.timezone
        slots = await self.reads.alternatives(asset, start, end, now=turn.now)
        choices = tuple(
            Choice(
                str(i),
                f"{local_time(a, tz, turn.language)} – {local_time(b, tz, turn.language)}",
            )
            for i, (a, b) in enumerate(slots, start=1)
        )
        data = {"asset": asset.code, "slots": [[iso(a), iso(b)] for a, b in slots]}
        key = "journey.taken_alternatives" if slots else "journey.taken_no_alternatives"
        return StepResult(DialogState.ALTERNATIVES, data, Outcome([Reply(turn.t(key), choices)]))

    async def pick_alternative(self, turn: Turn) -> StepResult:
        slots = list(turn.data.get("slots", []))
        picked = typed_int(turn.text, at_most=len(slots))
        if picked:
            asset = await self.inventory.asset(str(turn.data["asset"]))
            if asset is None:
                return stay(turn, turn.t("journey.unknown_asset", code=turn.data["asset"]))
            start, end = slots[picked - 1]
            return await self._quote(turn, asset, at(start), at(end))
        return await self.when(turn, str(turn.data.get("asset", "")), turn.text)

    def _refusal(self, turn: Turn, refused: QuoteRefused) -> str:
        params = dict(refused.params)
        if "minutes" in params:
            params["duration"] = duration_text(int(str(params.pop("minutes"))), turn.language)
        return turn.t(refused.key, **params)

    async def accept_quote(self, turn: Turn) -> StepResult:
        """YES: hold the slot and send the payment link."""
        asset = await self.inventory.asset(str(turn.data["asset"]))
        # Taken out of service since the quote (read from the database: the inventory in
        # memory may be a few seconds old).
        if asset is None or not await self.reads.asset_active(asset.id):
            return stay(turn, turn.t("journey.unknown_asset", code=turn.data["asset"]))
        start, end = at(turn.data["start"]), at(turn.data["end"])
        if self._starts_beyond_horizon(asset, start, turn.now):
            return StepResult(
                DialogState.START, {}, Outcome([Reply(self._horizon_text(turn, asset))])
            )
        try:  # the quote's rules again: YES may come long after it (its start now past)
            quote(asset, start, end, turn.now)
        except QuoteRefused as refused:  # asked when again, for the same item
            reply = Reply(self._refusal(turn, refused))
            return StepResult(DialogState.ASSET, {"asset": asset.code}, Outcome([reply]))
        limit = self.settings.max_unpaid
        renter_id = turn.renter_id
        if await self.reads.unpaid_count(renter_id) >= limit:
            text = turn.t("journey.too_many_unpaid", count=limit)
            return StepResult(DialogState.START, {}, Outcome([Reply(text)]))
        blocked = blocked_range(asset, start, end)
        if not await self.reads.is_free(asset.id, blocked):
            return await self._offer_alternatives(turn, asset, start, end)
        reference = new_reference()
        if not self.settings.take_payments:
            return self._book_without_payment(turn, asset, start, end, blocked, reference)
        minutes = int(self.settings.hold.total_seconds() // 60)
        text = turn.t("journey.holding", reference=reference, code=asset.code, minutes=minutes)
        hold = self._hold(turn, asset, start, end, blocked, reference)
        return StepResult(
            DialogState.PAYING, {"booking": reference}, Outcome([Reply(text)]), apply=hold
        )

    def _hold(
        self,
        turn: Turn,
        asset: Asset,
        start: datetime,
        end: datetime,
        blocked: AccessWindow,
        reference: str,
    ) -> Write:
        """The hold YES asks for, made in the turn's unit of work with its payment link."""
        limit, renter_id = self.settings.max_unpaid, turn.renter_id
        expires = turn.now + self.settings.hold
        price, deposit = int(str(turn.data["price"])), int(str(turn.data["deposit"]))

        async def hold(conn: UnitOfWork) -> Outcome:
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
            payload = self._checkout_payload(booking, asset, "rental", price, expires)
            return Outcome(
                effects=[Effect(CHECKOUT_EFFECT, f"checkout:{reference}", payload)],
                timers=[
                    SetTimer(
                        HOLD_EXPIRY_TIMER, expires, f"hold:{reference}", {"booking": booking.id}
                    )
                ],
                audits=[Audit(f"renter:{renter_id}", "booking.held", f"booking:{reference}")],
            )

        return hold

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
        return StepResult(DialogState.BOOKED, {"booking": reference}, Outcome(), apply=book)
