"""Hostile input at every door: fuzzed renter texts, forged and malformed webhook bodies,
oversized bodies, wrong content types and replayed Stripe signatures.

A renter's text, whatever it holds (control characters, right-to-left marks, emoji, thousands of
characters, digits that are not ASCII, numbers past any bound, days at the end of the calendar),
is answered with a helpful reply or refused clearly, never with a 5xx. A webhook without the
provider's valid signature is refused with a 4xx and leaves every table as it was; one with it
but nested past reason or holding ids no database column holds is refused with 400 the same way.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from svix.webhooks import Webhook
from tortoise.models import Model
from yarl import URL

from bot.app import Runtime
from bot.transports.telegram_routes import SECRET_HEADER, WEBHOOK_PATH
from flows.engine import MAX_TEXT_LENGTH
from flows.messages import Media
from storage import models
from storage.models import (
    Booking,
    BookingState,
    Extension,
    IdentityCheck,
    Message,
    OpsAlert,
    Payment,
)
from tests.conftest import FakeClock
from tests.e2e.test_channel_journeys import (
    TELEGRAM_SECRET,
    TelegramRenter,
    TwilioRenter,
    World,
    world,
)
from tests.e2e.test_sandbox_journey import PNG, Renter, book_and_confirm, journey, pay, run
from tests.fakes.seam import WEBHOOK_SECRET as SEAM_SECRET
from tests.fakes.seam import FakeSeam
from tests.fakes.stripe import WEBHOOK_SECRET as STRIPE_SECRET
from tests.fakes.twilio import FakeTwilio
from tests.integration.test_seam_lifecycle import webhook_client

__all__ = ["journey", "world"]  # the fixtures, imported for these tests

Sandbox = tuple[TestClient[Any, Any], Runtime, FakeClock]
FUZZ = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
MODELS = [
    m
    for m in vars(models).values()
    if isinstance(m, type) and issubclass(m, Model) and m is not Model
]
_phones = itertools.count(1)
FORM = "application/x-www-form-urlencoded"


def a_phone() -> str:
    return f"+1555020{next(_phones):04d}"


async def row_counts() -> dict[str, int]:
    return {m.__name__: await m.all().count() for m in MODELS}


# -- what renters type ------------------------------------------------------------------------

#: Characters ``str.isdigit`` says yes to that are not ASCII digits: superscripts, circled,
#: Arabic-Indic, full-width, subscripts, N'Ko, Malayalam.
UNICODE_DIGITS = "²³¹①⑳٣٠３０⁹₇߃൬"
digit_like = st.text(
    st.sampled_from([*UNICODE_DIGITS, *"0123456789", "-", ".", ":", " "]), max_size=24
)
huge_numbers = st.integers(min_value=10**6, max_value=10**400).map(str)
far_days = st.sampled_from(
    [
        "31.12.9999 22-23",
        "31.12.9999 22-02",
        "9999-12-31 22-23",
        "0001-01-01 10-12",
        "1.1.1 00-01",
        "in 99999999 years 10-12",
        "in 999999 days 10-12",
        "2026-02-30 10-12",
        "12/31/9999 10am to 2pm",
    ]
)
huge_amounts = st.sampled_from(
    ["999999999999 days", "9" * 400, "9" * 400 + " h", "99999999 days", "1e999 h", "NaN", "inf h"]
)
awkward = st.one_of(
    digit_like,
    huge_numbers,
    far_days,
    huge_amounts,
    st.builds(
        lambda a, b: f"{a}-{b}", st.sampled_from(UNICODE_DIGITS), st.sampled_from(UNICODE_DIGITS)
    ),
    st.text(max_size=300),
    st.text(st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Zs", "Mn"]), max_size=50),
    st.text(st.characters(min_codepoint=0x0590, max_codepoint=0x06FF), max_size=80),  # RTL
    st.text(st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=80),  # emoji
    st.sampled_from(
        [
            "\u202eBOOK T1 tomorrow 10-14\u202c",
            "BOOK\u200bT1\x00 tomorrow 10\u201314",
            "YES" * 600,
            "x" * (MAX_TEXT_LENGTH - 1),
            "x" * MAX_TEXT_LENGTH,
            "x" * (MAX_TEXT_LENGTH + 1),
            "\U0001f6b2" * MAX_TEXT_LENGTH,
            "BOOK T1 " + "9" * 5000,
            "\r\n\t\x1b[31m\x7f",
            "%s%n{0}{{}}<script>'\"; DROP TABLE renter;--",
        ]
    ),
)
keyword = st.sampled_from(
    ["", "BOOK T1 ", "BOOK T1 tomorrow ", "BOOK T1 31.12.9999 ", "EXTEND ", "LANG ", "CODE "]
)


async def replies_to(messages: list[dict[str, Any]]) -> list[str]:
    out = [m for m in messages if m["direction"] == "out"]
    assert all(m["status"] == "sent" for m in out), out
    return [str(m["text"]) for m in out]


@FUZZ
@given(prefix=keyword, text=awkward)
async def test_any_text_on_the_sandbox_gets_a_reply_or_a_clear_refusal(
    journey: Sandbox, prefix: str, text: str
) -> None:
    client, runtime, _ = journey
    address = a_phone()
    body = prefix + text
    response = await client.post("/sandbox/api/messages", json={"address": address, "text": body})
    assert response.status < 500, await response.text()
    if response.status != 202:
        assert response.status in (413, 422), response.status
        reason = await response.text()
        assert "text is empty" in reason or "longer than" in reason or "body size" in reason
        # JSON-escaped, an emoji is 12 bytes: 1,600 of them are more than the API's 16 KiB.
        assert not body.strip() or len(body) > MAX_TEXT_LENGTH or len(body.encode()) > 4000
        return
    await run(runtime)
    listing = await client.get("/sandbox/api/messages", params={"address": address})
    assert listing.status == 200
    messages = (await listing.json())["messages"]
    [inbound] = [m for m in messages if m["direction"] == "in"]
    assert inbound["text"] == body.strip()[:MAX_TEXT_LENGTH]
    replies = await replies_to(messages)
    assert replies and all(r.strip() for r in replies), "a reply, never silence"


@FUZZ
@given(address=st.text(max_size=40))
async def test_a_sandbox_address_that_is_not_a_phone_number_is_refused(
    journey: Sandbox, address: str
) -> None:
    client, _, _ = journey
    before = await row_counts()
    response = await client.post("/sandbox/api/messages", json={"address": address, "text": "hi"})
    assert response.status in (202, 422), response.status
    if response.status == 422:
        assert "international form" in await response.text()
        assert await row_counts() == before


@FUZZ
@given(prefix=keyword, text=awkward)
async def test_any_text_by_sms_gets_a_reply_or_a_clear_refusal(
    world: World, prefix: str, text: str
) -> None:
    phone = a_phone()
    form, headers = world.twilio.inbound(from_=phone, body=prefix + text)
    response = await world.client.post("/webhooks/twilio", data=form, headers=headers)
    assert response.status < 500, await response.text()
    if response.status == 413:  # only a body no phone can send (Twilio's limit is 1,600)
        assert len(text.encode()) * 3 > 64 * 1024
        return
    assert response.status == 200 and "<Response></Response>" in await response.text()
    await world.run()
    replies = [m for m in world.twilio.sent if m.to == phone]
    assert replies and all((m.body or "").strip() for m in replies), "a reply, never silence"
    stored = await Message.filter(direction="out", conversation__address=phone)
    assert {m.status for m in stored} == {"sent"}, "Twilio accepted every reply"


async def test_texts_over_the_limit_are_cut_not_refused(world: World) -> None:
    phone = a_phone()
    form, headers = world.twilio.inbound(from_=phone, body="BOOK T1 tomorrow 10-14 " + "z" * 5000)
    response = await world.client.post("/webhooks/twilio", data=form, headers=headers)
    assert response.status == 200
    await world.run()
    [inbound] = await Message.filter(direction="in", conversation__address=phone)
    assert len(inbound.body or "") == MAX_TEXT_LENGTH
    assert [m.to for m in world.twilio.sent] == [phone]


def no_choice(text: str) -> bool:
    """Not a number any menu offers: ASCII digits alone pick a choice."""
    return bool(text.strip()) and not text.strip().isascii()


#: What a renter might type for a number that picks nothing: other scripts' digits, numbers past
#: every menu.
not_a_choice = st.one_of(
    digit_like.filter(no_choice), huge_numbers, st.sampled_from(UNICODE_DIGITS)
)


@FUZZ
@given(text=not_a_choice)
async def test_any_number_typed_for_a_choice_or_a_time_gets_a_reply(
    journey: Sandbox, text: str
) -> None:
    """In each state that asks for a number (a location, an item, then when), a number that is
    not ASCII or is past every choice is answered with what to type, and the choices stay."""
    client, runtime, _ = journey
    renter = Renter(client, runtime, a_phone())
    await renter.say("hi")
    assert await renter.say(text) == [
        "Please reply with a number from 1 to 2, 0 to go back, or HELP."
    ]
    [items] = await renter.say("2")  # the menu is where it was: Harbor Yard's items
    assert items.startswith("Items at Harbor Yard:")
    [answer] = await renter.say(text)
    assert answer.startswith("Please reply with a number from 1 to")
    [details] = await renter.say("T1")
    assert details.startswith("T1 ")
    replies = await renter.say(text)
    assert replies and all(r.strip() for r in replies), "a reply, never silence"
    assert not await Booking.exists(), "nothing held"


extensions = st.one_of(
    huge_amounts,
    huge_numbers,
    digit_like,
    st.builds("{} {}".format, huge_numbers, st.sampled_from(["days", "h", "min", "Tage", "jours"])),
)


@FUZZ
@given(amount=extensions)
async def test_any_extension_a_renter_asks_for_gets_a_reply_and_changes_nothing(
    journey: Sandbox, amount: str
) -> None:
    client, runtime, _ = journey
    renter = Renter(client, runtime)
    booking = await Booking.get_or_none(state=BookingState.CONFIRMED)
    if booking is None:  # the first example books; the others reuse it
        booking = await book_and_confirm(client, runtime, renter, "tomorrow 10-14")
    # Another answer between examples: the same answer again and again asks for a person.
    await renter.say("HELP")
    ends = booking.end_at
    replies = await renter.say(f"EXTEND {amount}")
    assert replies and all(r.strip() for r in replies), "a reply, never silence"
    if not amount.strip().isascii() or len(amount.strip()) > 12:
        assert replies == ["How much longer? For example: EXTEND 2h or EXTEND 1 day."]
    await booking.refresh_from_db()
    assert booking.end_at == ends and booking.state == BookingState.CONFIRMED
    assert not await Extension.exists()


TOO_FAR = "T1 can be booked at most 365 days ahead. Please pick an earlier day."
ASK_WHEN = "When do you need T1? Write a day and hours"


@pytest.mark.parametrize(
    ("when", "answer"),
    [
        ("31.12.9999 22-23", TOO_FAR),
        ("31.12.9999 22-02", TOO_FAR),
        ("9999-12-31 23-02", TOO_FAR),
        ("in 99999999 years 10-12", ASK_WHEN),
    ],
)
async def test_a_day_past_the_calendar_gets_a_reply_and_holds_nothing(
    world: World, when: str, answer: str
) -> None:
    renter = TwilioRenter(world, a_phone())
    [reply] = await renter.say(f"BOOK T1 {when}")
    assert reply.startswith(answer)
    [again] = await renter.say("YES")
    assert "no current booking" in again or "YES" not in again
    assert not await Booking.exists()
    assert not await Payment.exists()


@pytest.mark.parametrize(
    "iso", ["2026-06-03 10:00-13:00", "2026-06-03 10-13", "on 2026-06-03 10am-1pm"]
)
async def test_an_iso_date_is_quoted_like_any_other_form(journey: Sandbox, iso: str) -> None:
    client, runtime, _ = journey
    [usual] = await Renter(client, runtime, a_phone()).say("BOOK T1 Wednesday 10-13")
    assert "Wed, Jun 3" in usual and "10:00" in usual and "1:00" in usual, usual
    [quote] = await Renter(client, runtime, a_phone()).say(f"BOOK T1 {iso}")
    assert quote == usual


# -- forged, malformed and oversized webhooks -------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=400),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [
            b"",
            b"{}",
            b'{"update_id": 1, "message": {"text": "hi"}}',
            b'{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {}}}',
            b'{"event_id": "x", "event_type": "access_code.set_on_device"}',
            b"\xff\xfe\x00",
            b"[" * 100_000 + b"]" * 100_000,
            b'{"update_id": 1, "message": {"chat": {"id": 1' + b"0" * 30 + b"}}}",
            b'{"update_id": 1' + b"0" * 30 + b', "message": {"text": "hi"}}',
            b'{"update_id": 1, "message": {"date": NaN, "chat": {"id": 1e999}}}',
        ]
    ),
)
#: What fits in a header at all (a client cannot send control characters there).
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
signatures = st.one_of(
    st.none(), st.text(PRINTABLE, max_size=80), st.sampled_from(["t=1,v1=00", "v1,abc"])
)


def headers_with(name: str, value: str | None, content_type: str) -> dict[str, str]:
    headers = {"Content-Type": content_type}
    if value is not None:
        headers[name] = value.encode("ascii", "replace").decode()
    return headers


@FUZZ
@given(
    form=st.dictionaries(st.text(max_size=20), st.text(max_size=60), max_size=8),
    signature=signatures,
    forged=st.booleans(),
)
async def test_an_unsigned_or_forged_twilio_post_is_refused_and_changes_nothing(
    world: World, form: dict[str, str], signature: str | None, forged: bool
) -> None:
    before = await row_counts()
    if forged:  # signed, but with another account's token
        headers = FakeTwilio(auth_token="0" * 32).signed_headers("/webhooks/twilio", form)
    else:
        headers = headers_with("X-Twilio-Signature", signature, FORM)
    headers["Content-Type"] = FORM
    for path in ("/webhooks/twilio", "/webhooks/twilio/status"):
        response = await world.client.post(path, data=urlencode(form), headers=headers)
        assert response.status == 403, response.status
    await world.run()
    assert await row_counts() == before
    assert world.twilio.requests == []


@FUZZ
@given(body=bodies, secret=st.one_of(st.none(), st.text(PRINTABLE, max_size=40)))
async def test_a_telegram_post_without_the_secret_is_refused_and_changes_nothing(
    world: World, body: bytes, secret: str | None
) -> None:
    before = await row_counts()
    headers = headers_with(SECRET_HEADER, secret, "application/json")
    if headers.get(SECRET_HEADER) == TELEGRAM_SECRET:
        headers[SECRET_HEADER] = "wrong"
    response = await world.client.post(WEBHOOK_PATH, data=body, headers=headers)
    assert response.status == 403
    assert await row_counts() == before


@FUZZ
@given(body=bodies)
async def test_a_malformed_telegram_update_with_the_secret_is_refused_and_changes_nothing(
    world: World, body: bytes
) -> None:
    before = await row_counts()
    headers = {SECRET_HEADER: TELEGRAM_SECRET, "Content-Type": "application/json"}
    response = await world.client.post(WEBHOOK_PATH, data=body, headers=headers)
    assert response.status in (200, 400), response.status
    if response.status == 400:
        assert await row_counts() == before


TELEGRAM_HEADERS = {SECRET_HEADER: TELEGRAM_SECRET, "Content-Type": "application/json"}
#: Nested past any provider's payload, each within the size cap: json.loads recurses on each.
DEEP_BODIES = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"update_id": 1, "message": ' + b'{"a": ' * 20_000 + b"1" + b"}" * 20_001,
    b'{"update_id": 1, "message": {"text": "hi", "x": ' + b"[" * 1_000 + b"]" * 1_000 + b"}}",
]


@pytest.mark.parametrize("body", DEEP_BODIES, ids=["array", "objects", "a thousand levels"])
async def test_a_telegram_update_nested_past_reason_is_refused_with_400(
    world: World, body: bytes
) -> None:
    before = await row_counts()
    response = await world.client.post(WEBHOOK_PATH, data=body, headers=TELEGRAM_HEADERS)
    assert response.status == 400, await response.text()
    assert "JSON" in await response.text()
    await world.run()
    assert await row_counts() == before


@pytest.mark.parametrize(
    ("where", "huge"),
    [
        ("chat", 10**30),
        ("from", 10**30),
        ("update_id", 2**63),
        ("chat", -(2**63) - 1),
        ("date", 2**62),  # fits 64 bits, but no calendar has that second
        ("date", -(2**62)),
    ],
)
async def test_a_telegram_number_no_column_or_calendar_holds_is_refused_and_stores_nothing(
    world: World, where: str, huge: int
) -> None:
    renter = TelegramRenter(world)
    update = copy.deepcopy(world.telegram.text_update(renter.user, "BOOK T1 tomorrow 10-14"))
    if where == "update_id":
        update["update_id"] = huge
    elif where == "date":
        update["message"]["date"] = huge
    else:
        update["message"][where]["id"] = huge
    before = await row_counts()
    assert await renter.post(update) == 400
    await world.run()
    assert await row_counts() == before
    assert world.telegram.calls_to("sendMessage") == []
    # The same update with its real ids is a renter's like any other.
    assert await renter.say("BOOK T1 tomorrow 10-14") != []


#: Where in a renter's update a field can be swapped for anything JSON holds.
UPDATE_FIELDS = [
    ("update_id",),
    ("message",),
    ("message", "message_id"),
    ("message", "date"),
    ("message", "chat"),
    ("message", "chat", "id"),
    ("message", "chat", "type"),
    ("message", "from"),
    ("message", "from", "id"),
    ("message", "from", "language_code"),
    ("message", "text"),
    ("message", "entities"),
    ("message", "photo"),
    ("callback_query", "id"),
    ("callback_query", "data"),
    ("callback_query", "from"),
    ("callback_query", "message", "chat", "id"),
]
any_value = st.one_of(
    json_values,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(["²", "", "x" * 5000, [], {}, None, True, 2**62, 1.5]),
)


_fuzzed_chats = itertools.count(5_000_001)


async def renter_update(
    world: World, renter: TelegramRenter, field: tuple[str, ...]
) -> dict[str, Any]:
    if field[0] == "callback_query":  # a press on the list of locations
        await renter.say("hi")
        return copy.deepcopy(world.telegram.callback_update(renter.user, data="1"))
    return copy.deepcopy(world.telegram.text_update(renter.user, "BOOK T1 tomorrow 10-14"))


def swap(update: dict[str, Any], field: tuple[str, ...], value: object) -> None:
    target = update
    for name in field[:-1]:
        target = target[name]
    target[field[-1]] = value


@FUZZ
@given(field=st.sampled_from(UPDATE_FIELDS), value=any_value)
async def test_a_telegram_update_with_any_field_swapped_is_taken_or_refused_with_400(
    world: World, field: tuple[str, ...], value: object
) -> None:
    # A new renter each example: an earlier example's taken update may have moved the same
    # renter's conversation on (to a person, or past the list of locations).
    renter = TelegramRenter(world, chat_id=next(_fuzzed_chats))
    update = await renter_update(world, renter, field)
    swap(update, field, value)
    before = await row_counts()
    response = await world.client.post(WEBHOOK_PATH, json=update, headers=TELEGRAM_HEADERS)
    assert response.status in (200, 400), (field, value, response.status)
    if response.status == 400:
        assert await row_counts() == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (("message", "text"), ["BOOK", "T1"]),
        (("message", "text"), 14),
        (("message", "chat", "id"), None),
        (("message", "chat", "id"), "4242"),
        (("message", "chat"), None),
        (("message", "from", "language_code"), 1),
        (("callback_query", "from"), None),
    ],
)
async def test_a_telegram_field_of_the_wrong_type_is_refused_with_400(
    world: World, field: tuple[str, ...], value: object
) -> None:
    renter = TelegramRenter(world)
    update = await renter_update(world, renter, field)
    swap(update, field, value)
    before, sent = await row_counts(), len(world.telegram.calls_to("sendMessage"))
    response = await world.client.post(WEBHOOK_PATH, json=update, headers=TELEGRAM_HEADERS)
    assert response.status == 400
    assert "Bot API's type" in await response.text()
    await world.run()
    assert await row_counts() == before
    assert len(world.telegram.calls_to("sendMessage")) == sent


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (
            ("message", "passport_data"),
            {
                "data": [{"type": "passport", "data": "x", "hash": "h"}],
                "credentials": {"data": "d", "hash": "h", "secret": "s"},
            },
        ),
    ],
)
async def test_fields_of_other_types_keep_the_bot_apis_types_and_are_taken(
    world: World, field: tuple[str, ...], value: object
) -> None:
    """A passport's ``data`` is a list (a button's is a string): not refused for it."""
    renter = TelegramRenter(world)
    update = await renter_update(world, renter, field)
    swap(update, field, value)
    response = await world.client.post(WEBHOOK_PATH, json=update, headers=TELEGRAM_HEADERS)
    assert response.status == 200


def stripe_signature(body: bytes, *, secret: str = STRIPE_SECRET, age: int = 0) -> str:
    moment = int(time.time()) - age
    digest = hmac.new(secret.encode(), f"{moment}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


@FUZZ
@given(body=bodies, signature=signatures, forged=st.booleans())
async def test_an_unsigned_or_forged_stripe_event_is_refused_and_changes_nothing(
    world: World, body: bytes, signature: str | None, forged: bool
) -> None:
    before = await row_counts()
    if forged:
        signature = stripe_signature(body, secret="whsec_not_ours")
    headers = headers_with("Stripe-Signature", signature, "application/json")
    response = await world.client.post("/webhooks/stripe", data=body, headers=headers)
    assert response.status == 400
    assert "signature refused" in await response.text()
    await world.run()
    assert await row_counts() == before


@FUZZ
@given(body=bodies)
async def test_a_signed_stripe_body_that_is_no_event_is_refused_not_a_crash(
    world: World, body: bytes
) -> None:
    before = await row_counts()
    headers = {"Stripe-Signature": stripe_signature(body), "Content-Type": "application/json"}
    response = await world.client.post("/webhooks/stripe", data=body, headers=headers)
    assert response.status in (200, 400), response.status
    if response.status == 400:
        assert await row_counts() == before


async def test_a_signed_stripe_body_nested_past_reason_is_refused_not_a_crash(
    world: World,
) -> None:
    before = await row_counts()
    body = DEEP_BODIES[0]
    headers = {"Stripe-Signature": stripe_signature(body), "Content-Type": "application/json"}
    response = await world.client.post("/webhooks/stripe", data=body, headers=headers)
    assert response.status == 400
    assert await row_counts() == before


async def a_checkout_completed(world: World) -> tuple[TelegramRenter, dict[str, Any]]:
    """A renter holding T1, and Stripe's (not yet delivered) event that their checkout is paid."""
    renter = TelegramRenter(world)
    await renter.say("BOOK T1 tomorrow 10-14")
    await renter.say("YES")
    [session_id] = world.stripe.sessions
    event: dict[str, Any] = json.loads(world.stripe.complete(session_id).body)
    return renter, event


async def test_a_signed_stripe_event_from_past_the_calendar_is_refused_not_a_crash(
    world: World,
) -> None:
    renter, event = await a_checkout_completed(world)
    before = await row_counts()
    for created in (10**30, -(10**30), 2**62):
        assert await world.stripe_webhook(world.stripe.sign({**event, "created": created})) == 400
    assert await row_counts() == before
    assert await renter.inbox() == []


async def test_a_signed_stripe_event_with_ids_longer_than_any_is_answered_not_a_crash(
    world: World,
) -> None:
    renter, event = await a_checkout_completed(world)
    before = await row_counts()
    long_event = {**event, "id": "evt_" + "x" * 500}
    assert await world.stripe_webhook(world.stripe.sign(long_event)) == 400
    assert await row_counts() == before
    long_object = copy.deepcopy(event)
    long_object["id"] = "evt_long_object"
    long_object["data"]["object"]["id"] = "cs_" + "x" * 5000
    assert await world.stripe_webhook(world.stripe.sign(long_object)) in (200, 400)
    assert await renter.inbox() == []
    assert (await Booking.get()).state == BookingState.AWAITING_PAYMENT


async def test_text_that_is_not_unicode_is_refused_with_400(world: World) -> None:
    """A lone surrogate is valid JSON but no character: no database can store it."""
    renter = TelegramRenter(world)
    before = await row_counts()
    for field in (("message", "text"), ("message", "from", "first_name")):
        update = world.telegram.text_update(renter.user, "hi")
        swap(update, field, "hi \ud800")
        response = await world.client.post(
            WEBHOOK_PATH, data=json.dumps(update).encode(), headers=TELEGRAM_HEADERS
        )
        assert response.status == 400, field
    assert await row_counts() == before


async def test_sandbox_text_that_is_not_unicode_is_refused_with_400(journey: Sandbox) -> None:
    client, _, _ = journey
    before = await row_counts()
    for text in ("BOOK T1 \ud800 10-14", "\ud83d"):
        posted = await client.post(
            "/sandbox/api/messages",
            data=json.dumps({"address": "+15550100001", "text": text}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert posted.status == 400, text
    assert await row_counts() == before


async def test_a_replayed_old_stripe_signature_is_refused(world: World) -> None:
    renter, event = await a_checkout_completed(world)
    before = await row_counts()
    for age in (301, 3600, 86400 * 3):
        old = world.stripe.sign(event, timestamp=int(time.time()) - age)
        assert await world.stripe_webhook(old) == 400, age
    assert await row_counts() == before
    assert await renter.inbox() == []
    # The very same event, signed now, is taken: the refusal was for the age alone.
    assert await world.stripe_webhook(world.stripe.sign(event)) == 200
    [ask_id] = await renter.inbox()
    assert "photo of your ID" in ask_id


@pytest.fixture
async def seam_hook(journey: Sandbox) -> AsyncIterator[TestClient[Any, Any]]:
    client = await webhook_client(journey[1])
    try:
        yield client
    finally:
        await client.close()


@FUZZ
@given(body=bodies, signature=signatures, forged=st.booleans())
async def test_an_unsigned_or_forged_seam_event_is_refused_and_changes_nothing(
    seam_hook: TestClient[Any, Any], body: bytes, signature: str | None, forged: bool
) -> None:
    before = await row_counts()
    if forged:
        payload = {"event_id": "e1", "event_type": "device.disconnected", "device_id": "d1"}
        body, headers = FakeSeam().sign_webhook(payload, secret="whsec_" + "QUJD" * 8)
    else:
        headers = headers_with("svix-signature", signature, "application/json")
        headers.update({"svix-id": "msg_1", "svix-timestamp": str(int(time.time()))})
    response = await seam_hook.post("/webhooks/seam", data=body, headers=headers)
    assert response.status == 403, response.status
    assert await row_counts() == before


@FUZZ
@given(payload=st.dictionaries(st.text(max_size=12), json_values, max_size=6))
async def test_a_signed_seam_body_that_is_no_event_is_refused_not_a_crash(
    seam_hook: TestClient[Any, Any], payload: dict[str, Any]
) -> None:
    before = await row_counts()
    body, headers = FakeSeam().sign_webhook(payload, secret=SEAM_SECRET)
    response = await seam_hook.post("/webhooks/seam", data=body, headers=headers)
    assert response.status in (200, 400), response.status
    if response.status == 400:
        assert await response.text() == "not a Seam event", "signed: not a signature problem"
        assert await row_counts() == before


async def test_a_signed_seam_body_nested_past_reason_is_refused_not_a_crash(
    seam_hook: TestClient[Any, Any],
) -> None:
    before = await row_counts()
    body, moment, msg_id = DEEP_BODIES[0].decode(), datetime.now(UTC), "msg_deep"
    headers = {
        "svix-id": msg_id,
        "svix-timestamp": str(int(moment.timestamp())),
        "svix-signature": Webhook(SEAM_SECRET).sign(msg_id, moment, body),
        "content-type": "application/json",
    }
    response = await seam_hook.post("/webhooks/seam", data=body.encode(), headers=headers)
    assert response.status == 400
    assert await response.text() == "not a Seam event"
    assert await row_counts() == before


async def chunks(total: int) -> AsyncIterator[bytes]:
    """A body sent without Content-Length: only the bytes read tell its size."""
    for _ in range(total // 8192):
        yield b"a" * 8192


async def test_oversized_webhooks_are_refused_with_413(world: World) -> None:
    before = await row_counts()
    form, headers = world.twilio.inbound(from_=a_phone(), body="x" * 70_000)
    twilio = await world.client.post("/webhooks/twilio", data=form, headers=headers)
    assert twilio.status == 413
    streamed = await world.client.post(
        "/webhooks/twilio",
        data=chunks(128 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status == 413
    telegram_headers = {SECRET_HEADER: TELEGRAM_SECRET, "Content-Type": "application/json"}
    for data in (b" " * (300 * 1024), chunks(300 * 1024)):
        huge = await world.client.post(WEBHOOK_PATH, data=data, headers=telegram_headers)
        assert huge.status == 413
    big_event = json.dumps({"id": "evt_big", "pad": "p" * 600_000}).encode()
    for data in (big_event, chunks(600 * 1024)):
        stripe = await world.client.post(
            "/webhooks/stripe",
            data=data,
            headers={"Stripe-Signature": stripe_signature(big_event)},
        )
        assert stripe.status == 413
    await world.run()
    assert await row_counts() == before


async def test_oversized_sandbox_and_seam_posts_are_refused_with_413(
    journey: Sandbox, seam_hook: TestClient[Any, Any]
) -> None:
    before = await row_counts()
    client = journey[0]
    sandbox = await client.post(
        "/sandbox/api/messages", json={"address": a_phone(), "text": "y" * 20_000}
    )
    assert sandbox.status == 413
    body, headers = FakeSeam().sign_webhook({"event_id": "e", "pad": "p" * 300_000})
    seam = await seam_hook.post("/webhooks/seam", data=body, headers=headers)
    assert seam.status == 413
    assert await row_counts() == before


async def test_wrong_content_types_are_refused(world: World) -> None:
    before = await row_counts()
    form, headers = world.twilio.inbound(from_=a_phone(), body="BOOK T1 tomorrow 10-14")
    as_json = await world.client.post("/webhooks/twilio", json=form, headers=headers)
    assert as_json.status == 415
    as_multipart = await world.client.post(
        "/webhooks/twilio", data={**form, "file": b"x"}, headers=headers
    )
    assert as_multipart.status == 415
    update = world.telegram.text_update(TelegramRenter(world).user, "hi")
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = await world.client.post(
            WEBHOOK_PATH,
            data=json.dumps(update),
            headers={SECRET_HEADER: TELEGRAM_SECRET, "Content-Type": content_type},
        )
        assert response.status == 415
    await world.run()
    assert await row_counts() == before
    assert (
        world.twilio.requests == [] and world.telegram.sent(update["message"]["chat"]["id"]) == []
    )


async def test_a_sandbox_post_that_is_not_json_is_refused(journey: Sandbox) -> None:
    client = journey[0]
    before = await row_counts()
    for data, content_type in (
        ("address=%2B15550100001&text=hi", "application/x-www-form-urlencoded"),
        ("hi", "text/plain"),
        ('["+15550100001", "hi"]', "application/json"),
    ):
        response = await client.post(
            "/sandbox/api/messages", data=data, headers={"Content-Type": content_type}
        )
        assert response.status == 400, (content_type, response.status)
    assert await row_counts() == before


async def test_sandbox_posts_and_ids_past_reason_are_refused_not_a_crash(
    journey: Sandbox,
) -> None:
    client = journey[0]
    before = await row_counts()
    for body in DEEP_BODIES[:2]:
        response = await client.post(
            "/sandbox/api/messages",
            data=body[:16_000],
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 400, response.status
    for path, params in (
        ("/sandbox/api/messages", {"address": a_phone(), "after": "²"}),
        ("/sandbox/api/messages", {"address": a_phone(), "after": "9" * 400}),
        ("/sandbox/api/ops", {"after_audit": "①"}),
        ("/sandbox/api/ops", {"after_audit": "soon"}),
    ):
        response = await client.get(path, params=params)
        assert response.status == 400, (params, response.status)
    for path in (
        f"/sandbox/api/alerts/{'9' * 40}/resolve",
        "/sandbox/api/alerts/٣/resolve",
        f"/sandbox/api/identity/{'9' * 40}/decision",
    ):
        response = await client.post(path, json={"approve": True})
        assert response.status == 404, (path, response.status)
    response = await client.get(f"/sandbox/api/identity/{'9' * 40}/document")
    assert response.status == 404
    for session in ("s" * 300, "٣"):
        assert (await client.get(f"/sandbox/pay/{session}")).status == 404
        assert (await client.post(f"/sandbox/pay/{session}")).status == 404
    keypad = "/sandbox/api/keypad"
    long_key = await client.post(keypad, json={"lock": "gate" * 30, "pin": "1234"})
    assert long_key.status == 404
    for pin in ("²²²²", "١٢٣٤", "１２３４", "1" * 400):
        typed = await client.post(keypad, json={"lock": "harbor-t1", "pin": pin})
        assert typed.status == 422 and "4 to 8 digits" in await typed.text(), pin
    assert await row_counts() == before


async def test_an_id_review_on_the_sandbox_is_decided_not_resolved(journey: Sandbox) -> None:
    client, runtime, _ = journey
    renter = Renter(client, runtime)
    await renter.say("BOOK T1 tomorrow 10-14")
    _, link = await renter.say("YES")
    await pay(client, link)
    await renter.say(image=PNG)
    [alert] = await OpsAlert.filter(kind="id_review")
    response = await client.post(f"/sandbox/api/alerts/{alert.id}/resolve")
    assert response.status == 409
    assert "approve or reject" in await response.text()
    [check] = await IdentityCheck.all()
    assert check.status == "pending" and check.document_encrypted is not None
    await alert.refresh_from_db()
    assert alert.resolved_at is None


@FUZZ
@given(
    token=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=200)
)
async def test_a_media_link_that_keyturn_did_not_make_is_not_found(
    world: World, token: str
) -> None:
    before = len(world.telegram.calls_to("getFile"))
    response = await world.client.get("/media/" + quote(token, safe=""))
    assert response.status == 404
    assert len(world.telegram.calls_to("getFile")) == before, "nothing fetched for it"


async def test_a_media_link_to_a_file_telegram_does_not_have_is_not_found(world: World) -> None:
    links = world.runtime.media_links
    assert links is not None
    link = links.url_for(Media("telegram-file:AgACAgIAAxkBAAIgone", "image/jpeg"))
    response = await world.client.get(URL(link).path)
    assert response.status == 404
