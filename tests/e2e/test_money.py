"""Amounts in every currency, as an operator and a renter meet them: an inventory applied with
the CLI, a renter's quote and payment link, what Stripe (the fake, through the real SDK and
signed webhooks) is asked to charge, hold and refund, and deposits claimed with the CLI."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from bot.app import Runtime, build_runtime, create_app
from bot.config import Settings
from bot.payments import StripePayments
from storage import db
from storage.models import Booking, BookingState, Payment
from tests.conftest import FakeClock
from tests.fakes.server import running
from tests.fakes.stripe import API_KEY, WEBHOOK_SECRET, FakeStripe

RENTER = "+15550100001"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
INVENTORY = """\
[[locations]]
slug = "yard"
name = "Yard"
timezone = "Asia/Tokyo"

[[locks]]
key = "yard-y1"
provider = "simulated"
device_id = "sim-yard-y1"
label = "Bike box"
location = "yard"

[[assets]]
code = "Y1"
label = "Cargo bike"
location = "yard"
currency = "{currency}"
price_per_hour = "{hourly}"
price_per_day = "{daily}"
deposit = "{deposit}"
locks = ["yard-y1"]
"""


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


async def keyturn(*args: str, env: dict[str, str]) -> Ran:
    """The CLI in a process of its own, while this loop keeps serving the fake Stripe."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


@dataclass
class Shop:
    fake: FakeStripe
    runtime: Runtime
    client: TestClient[Any, Any]
    env: dict[str, str]
    clock: FakeClock

    async def say(self, text: str) -> str:
        """What the renter typed on the sandbox page, and the last reply they read there."""
        response = await self.client.post(
            "/sandbox/api/messages", json={"address": RENTER, "text": text}
        )
        assert response.status == 202, await response.text()
        await self.run()
        listing = await self.client.get("/sandbox/api/messages", params={"address": RENTER})
        replies = [m for m in (await listing.json())["messages"] if m["direction"] == "out"]
        assert replies and all(m["status"] == "sent" for m in replies)
        return str(replies[-1]["text"])

    async def run(self) -> None:
        for _ in range(3):
            await self.runtime.timers.run_due()
            await self.runtime.dispatcher.run_once()

    async def webhook(self, event_type: str) -> None:
        delivery = self.fake.delivery(event_type)
        response = await self.client.post(
            "/webhooks/stripe", data=delivery.body, headers=delivery.headers
        )
        assert response.status == 200, await response.text()
        await self.run()


@asynccontextmanager
async def shop_selling(
    tmp_path: Path,
    clock: FakeClock,
    *,
    currency: str,
    hourly: str,
    deposit: str,
    stripe: bool = True,
) -> AsyncIterator[Shop]:
    """A database set up by the operator's CLI with one item priced in ``currency``, and
    Keyturn serving it with Stripe (or, without ``stripe``, the sandbox checkout page)."""
    fake = FakeStripe(now=clock.now)
    async with running(fake.app()) as base:
        env = {
            "KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/keyturn.sqlite3",
            "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        }
        if stripe:
            env |= {
                "STRIPE_API_KEY": API_KEY,
                "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "STRIPE_API_BASE": base,
            }
        daily = str(Decimal(hourly) * 8)
        inventory = tmp_path / "inventory.toml"
        inventory.write_text(
            INVENTORY.format(currency=currency, hourly=hourly, daily=daily, deposit=deposit)
        )
        assert (await keyturn("migrate", env=env)).code == 0
        applied = await keyturn("inventory", "apply", str(inventory), env=env)
        assert applied.code == 0, applied.stderr
        await db.open_database(env["KEYTURN_DATABASE_URL"])
        payments = StripePayments(API_KEY, api_base=base, now=clock.now) if stripe else None
        runtime = build_runtime(
            Settings.from_env(env), clock=clock, sandbox=True, payments=payments
        )
        app = create_app(runtime, sandbox=True, workers=False)
        app.cleanup_ctx.clear()  # the database is opened above
        try:
            async with TestClient(TestServer(app)) as client:
                yield Shop(fake, runtime, client, env, clock)
        finally:
            if payments is not None:
                await payments.close()
            await db.close_database()


def line_item(fake: FakeStripe) -> tuple[str, str]:
    [session] = fake.session_params.values()
    price = session["line_items"][0]["price_data"]
    return price["unit_amount"], price["currency"]


@pytest.mark.parametrize(
    ("currency", "hourly", "deposit", "shown", "unit_amount", "held", "claim", "captured"),
    [
        pytest.param(
            "JPY",
            "1000",
            "3000",
            ("¥1,000", "¥3,000"),
            "1000",
            3000,
            "1500",
            1500,
            id="yen-has-no-decimals",
        ),
        pytest.param(
            "USD",
            "12.50",
            "150.00",
            ("$12.50", "$150.00"),
            "1250",
            15000,
            "25.00",
            2500,
            id="dollars-unchanged",
        ),
        pytest.param(
            "KWD",
            "5.120",
            "20.000",
            ("KWD5.120", "KWD20.000"),
            "5120",
            20000,
            "1.250",
            1250,
            id="dinar-has-three",
        ),
        pytest.param(
            "ISK",
            "1000",
            "5000",
            ("ISK1,000", "ISK5,000"),
            "100000",
            500000,
            "1500",
            150000,
            id="krona-is-two-decimal-at-stripe",
        ),
    ],
)
async def test_an_item_is_quoted_charged_held_and_claimed_in_its_currency(
    tmp_path: Path,
    clock: FakeClock,
    currency: str,
    hourly: str,
    deposit: str,
    shown: tuple[str, str],
    unit_amount: str,
    held: int,
    claim: str,
    captured: int,
) -> None:
    async with shop_selling(
        tmp_path, clock, currency=currency, hourly=hourly, deposit=deposit
    ) as shop:
        quote = await shop.say("BOOK Y1 tomorrow 10-11")
        price, deposit_shown = shown
        assert price in quote and deposit_shown in quote, quote
        link = await shop.say("YES")
        assert f"Pay {price} here" in link, link
        assert line_item(shop.fake) == (unit_amount, currency.lower())

        [session_id] = shop.fake.sessions
        paid = shop.fake.complete(session_id)
        response = await shop.client.post("/webhooks/stripe", data=paid.body, headers=paid.headers)
        assert response.status == 200
        await shop.run()
        booking = await Booking.get()
        hold = await Payment.get(booking=booking, purpose="deposit")
        intent = shop.fake.payment_intents[str(hold.provider_ref)]
        assert (intent["amount"], intent["currency"]) == (held, currency.lower())

        claimed = await keyturn(
            "deposits", "claim", booking.reference, "--amount", claim, env=shop.env
        )
        assert claimed.code == 0, claimed.stderr
        assert intent["amount_received"] == captured
        assert claimed.stdout.startswith("claimed "), claimed.stdout
        assert f"of the deposit for {booking.reference}" in claimed.stdout
        [recorded] = await Payment.filter(booking=booking, purpose="claim")
        assert (recorded.amount_cents, recorded.currency) == (
            int(Decimal(claim).scaleb(Decimal(hourly).as_tuple().exponent * -1)),
            currency,
        )


@pytest.mark.parametrize(
    ("currency", "amount", "reason"),
    [
        ("JPY", "12.5", "--amount 12.5 has decimal places, and JPY has none"),
        ("JPY", "1,500", "--amount 1,500 has decimal places, and JPY has none"),
        ("USD", "25.005", "--amount 25.005 has more than 2 decimal places for USD"),
        ("KWD", "1.005", "--amount 1.005 cannot be charged in KWD"),
        ("USD", "-5", "--amount must not be negative"),
        ("JPY", "3001", "a claim is more than nothing and at most the deposit, ¥3,000"),
        ("KWD", "0", "a claim is more than nothing and at most the deposit, KWD20.000"),
    ],
)
async def test_a_deposit_claim_is_read_in_the_bookings_currency(
    tmp_path: Path, clock: FakeClock, currency: str, amount: str, reason: str
) -> None:
    deposit = {"JPY": "3000", "USD": "150.00", "KWD": "20.000"}[currency]
    hourly = {"JPY": "1000", "USD": "12.50", "KWD": "5.120"}[currency]
    async with shop_selling(
        tmp_path, clock, currency=currency, hourly=hourly, deposit=deposit
    ) as shop:
        await shop.say("BOOK Y1 tomorrow 10-11")
        await shop.say("YES")
        [session_id] = shop.fake.sessions
        paid = shop.fake.complete(session_id)
        await shop.client.post("/webhooks/stripe", data=paid.body, headers=paid.headers)
        await shop.run()
        booking = await Booking.get()
        hold = await Payment.get(booking=booking, purpose="deposit")

        refused = await keyturn(
            "deposits", "claim", booking.reference, "--amount", amount, env=shop.env
        )

        assert refused.code == 2
        told = [line for line in refused.stderr.splitlines() if line.startswith("keyturn:")]
        assert len(told) == 1 and told[0].startswith(f"keyturn: {reason}"), refused.stderr
        assert shop.fake.payment_intents[str(hold.provider_ref)]["status"] == "requires_capture"
        assert not await Payment.filter(booking=booking, purpose="claim").exists()


@pytest.mark.parametrize(
    ("currency", "hourly", "refund_shown", "refunded_at_stripe", "refund_recorded"),
    [
        pytest.param("KWD", "5.010", "KWD2.500", 2500, 2500, id="dinar-rounded-to-ten-fils"),
        pytest.param("JPY", "1001", "¥500", 500, 500, id="yen-rounded-down-to-a-yen"),
        pytest.param("ISK", "1001", "ISK500", 50000, 500, id="krona-in-hundredths-at-stripe"),
    ],
)
async def test_half_a_price_is_refunded_in_what_the_currency_can_be_paid_in(
    tmp_path: Path,
    clock: FakeClock,
    currency: str,
    hourly: str,
    refund_shown: str,
    refunded_at_stripe: int,
    refund_recorded: int,
) -> None:
    """Cancelled less than a day ahead, half the price comes back: rounded down to what
    Stripe charges in, and told to the renter as it is refunded."""
    async with shop_selling(tmp_path, clock, currency=currency, hourly=hourly, deposit="0") as shop:
        await shop.say("BOOK Y1 tomorrow 10-11")  # 13 hours ahead, in Tokyo
        await shop.say("YES")
        [session_id] = shop.fake.sessions
        paid = shop.fake.complete(session_id)
        await shop.client.post("/webhooks/stripe", data=paid.body, headers=paid.headers)
        await shop.run()

        offer = await shop.say("CANCEL")
        assert refund_shown in offer, offer
        done = await shop.say("YES")
        assert refund_shown in done, done

        [refund] = shop.fake.refunds.values()
        assert refund["amount"] == refunded_at_stripe
        await shop.webhook("charge.refunded")
        booking = await Booking.get()
        assert booking.state == BookingState.CANCELLED
        [recorded] = await Payment.filter(booking=booking, purpose="refund")
        assert recorded.amount_cents == refund_recorded


@pytest.mark.parametrize(
    ("currency", "hourly", "reason"),
    [
        ("JPY", "12.5", "asset 'Y1': price_per_hour 12.5 has decimal places, and JPY has none"),
        ("JPY", "1,000", "asset 'Y1': price_per_hour 1,000 has decimal places, and JPY has none"),
        (
            "KWD",
            "5.125",
            "asset 'Y1': price_per_hour 5.125 cannot be charged in KWD, "
            "which Stripe charges in steps of 0.010",
        ),
        ("USD", "12.505", "asset 'Y1': price_per_hour 12.505 has more than 2 decimal places"),
    ],
)
async def test_an_amount_the_currency_cannot_hold_is_refused_at_inventory_apply(
    tmp_path: Path, currency: str, hourly: str, reason: str
) -> None:
    env = {"KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/keyturn.sqlite3"}
    assert (await keyturn("migrate", env=env)).code == 0
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(
        INVENTORY.format(currency=currency, hourly=hourly, daily="8000", deposit="0")
    )

    refused = await keyturn("inventory", "apply", str(inventory), env=env)

    assert refused.code == 2
    line = INVENTORY.splitlines().index('price_per_hour = "{hourly}"') + 1
    assert f"inventory.toml:{line}: {reason}" in refused.stderr, refused.stderr
    shown = await keyturn("inventory", "show", env=env)
    assert "Y1" not in shown.stdout


async def test_inventory_show_writes_each_amount_in_its_currency(tmp_path: Path) -> None:
    env = {"KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/keyturn.sqlite3"}
    assert (await keyturn("migrate", env=env)).code == 0
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(
        INVENTORY.format(currency="JPY", hourly="1000", daily="8000", deposit="3000")
    )
    assert (await keyturn("inventory", "apply", str(inventory), env=env)).code == 0

    shown = await keyturn("inventory", "show", env=env)

    assert "¥1,000/hour, ¥8,000/day, deposit ¥3,000" in shown.stdout, shown.stdout


async def test_the_sandbox_checkout_page_asks_for_the_amount_in_its_currency(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with shop_selling(
        tmp_path, clock, currency="JPY", hourly="1000", deposit="0", stripe=False
    ) as shop:
        await shop.say("BOOK Y1 tomorrow 10-11")
        link = await shop.say("YES")
        found = re.search(r"/sandbox/pay/(\S+)", link)
        assert found, link

        page = await shop.client.get(f"/sandbox/pay/{found.group(1)}")

        assert "<button>Pay ¥1,000</button>" in await page.text()
        paid = await shop.client.post(f"/sandbox/pay/{found.group(1)}", allow_redirects=False)
        assert paid.status == 303
        booking = await Booking.get()
        assert booking.state == BookingState.AWAITING_ID
        [rental] = await Payment.filter(booking=booking, purpose="rental")
        assert (rental.amount_cents, rental.currency, rental.status) == (1000, "JPY", "paid")


async def renter_reads(shop: Shop) -> list[str]:
    """Every message the renter has read on the sandbox page, oldest first."""
    await shop.run()
    listing = await shop.client.get("/sandbox/api/messages", params={"address": RENTER})
    messages = (await listing.json())["messages"]
    return [str(m["text"]) for m in messages if m["direction"] == "out" and m["status"] == "sent"]


async def confirmed_with_a_deposit_held(shop: Shop, language: str) -> tuple[Booking, Payment, Any]:
    """The renter, speaking ``language``, books Y1, pays at the Stripe checkout (its deposit
    held on the card) and has their ID approved: the booking is confirmed."""
    await shop.say(f"LANG {language}")
    await shop.say("BOOK Y1 tomorrow 10-11")
    await shop.say("YES")
    [session_id] = shop.fake.sessions
    paid = shop.fake.complete(session_id)
    await shop.client.post("/webhooks/stripe", data=paid.body, headers=paid.headers)
    await shop.run()
    id_photo = "data:image/png;base64," + base64.b64encode(PNG).decode()
    sent = {"address": RENTER, "text": "", "image": id_photo}
    assert (await shop.client.post("/sandbox/api/messages", json=sent)).status == 202
    await shop.run()
    [check] = (await (await shop.client.get("/sandbox/api/identity")).json())["checks"]
    decision = f"/sandbox/api/identity/{check['id']}/decision"
    await shop.client.post(decision, json={"approve": True})
    await shop.run()
    booking = await Booking.get(state=BookingState.CONFIRMED)
    hold = await Payment.get(booking=booking, purpose="deposit")
    return booking, hold, shop.fake.payment_intents[str(hold.provider_ref)]


async def test_a_deposit_claimed_with_the_cli_is_told_to_the_renter_in_their_language(
    tmp_path: Path, clock: FakeClock
) -> None:
    """``keyturn deposits claim`` goes through the claim flow /claim takes: the renter hears
    of it in their language and their receipt says it was kept; a second claim is refused
    with nothing charged again."""
    clock.current = datetime.now(UTC)  # the CLI stages what it sends on the real clock
    async with shop_selling(
        tmp_path, clock, currency="USD", hourly="12.50", deposit="150.00"
    ) as shop:
        booking, hold, intent = await confirmed_with_a_deposit_held(shop, "de")
        before = len(await renter_reads(shop))

        claimed = await keyturn(
            "deposits", "claim", booking.reference, "--amount", "40", env=shop.env
        )

        assert claimed.code == 0, claimed.stderr
        assert claimed.stdout.startswith(f"claimed $40.00 of the deposit for {booking.reference}")
        assert intent["amount_received"] == 4000
        clock.current = datetime.now(UTC)  # the CLI ran at the real clock's now
        told = (await renter_reads(shop))[before:]
        assert len(told) == 1 and "40,00\xa0$ Ihrer Kaution" in told[0], told
        assert booking.reference in told[0]

        again = await keyturn("deposits", "claim", booking.reference, env=shop.env)
        assert again.code == 2
        assert f"the deposit of {booking.reference} is claimed already" in again.stderr
        assert "nothing was claimed" in again.stderr
        assert intent["amount_received"] == 4000
        assert await Payment.filter(booking=booking, purpose="claim").count() == 1

        booking = await Booking.get()
        clock.current = booking.end_at
        await shop.say("RETURN")
        await shop.say("DONE")
        # The review counts from when the renter's codes stop, the buffer after the end.
        clock.current += shop.runtime.journey.settings.returns.damage_review + timedelta(hours=1)
        [receipt] = [t for t in await renter_reads(shop) if "Kaution von 150,00\xa0$" in t]
        assert "40,00\xa0$ für Schäden einbehalten" in receipt, receipt
        assert (await Payment.get(id=hold.id)).status == "claimed"


async def test_a_deposit_released_is_not_claimed_with_the_cli(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with shop_selling(
        tmp_path, clock, currency="USD", hourly="12.50", deposit="150.00"
    ) as shop:
        booking, hold, intent = await confirmed_with_a_deposit_held(shop, "en")
        await Payment.filter(id=hold.id).update(status="released")

        refused = await keyturn("deposits", "claim", booking.reference, env=shop.env)

        assert refused.code == 2
        told = [line for line in refused.stderr.splitlines() if line.startswith("keyturn:")]
        assert told == [
            f"keyturn: the deposit of {booking.reference} was released already: nothing was claimed"
        ]
        assert intent["status"] == "requires_capture" and not intent.get("amount_received")
        assert not await Payment.filter(booking=booking, purpose="claim").exists()
        assert (await Payment.get(id=hold.id)).status == "released"
