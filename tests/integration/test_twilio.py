"""Twilio SMS and WhatsApp: signed webhooks in, replies out through the fake REST API.

The app is the real engine and outbox with the Twilio channels injected and the webhook routes
added; the outbox is driven by hand (``deliver``) and time by the fake clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from tortoise.transactions import in_transaction
from twilio.request_validator import HMAC_SHA256, RequestValidator

from bot.app import Runtime, build_runtime
from bot.channels import ChannelError, Undeliverable, numbered_text
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from bot.keys import CLOCK, ENGINE
from bot.media_links import MediaLinks
from bot.transports.twilio import (
    MediaRefused,
    TwilioAccount,
    TwilioChannel,
    TwilioWhatsAppChannel,
    twilio_channels,
)
from bot.transports.twilio_routes import EMPTY_TWIML, setup_twilio
from flows.inventory import apply_inventory, load_inventory
from flows.media_types import ID_DOCUMENT_TYPES
from flows.messages import Choice, Media, OutboundMessage
from storage.db import connection
from storage.models import (
    Conversation,
    EffectState,
    Message,
    OpsAlert,
    OutboxEffect,
    ProcessedWebhook,
    Renter,
)
from storage.outbox import enqueue_effect
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.fakes.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SMS_NUMBER,
    WHATSAPP_NUMBER,
    FakeTwilio,
)
from tests.integration.conftest import codes_of, confirmed_booking

PUBLIC_URL = "https://keyturn.example.com"
RENTER = "+15550100001"
PIN_TEMPLATE = "HX" + "a1" * 16
TEMPLATES = {"pin": PIN_TEMPLATE}


@dataclass
class Harness:
    client: TestClient[Any, Any]
    fake: FakeTwilio
    runtime: Runtime
    account: TwilioAccount
    channels: dict[str, TwilioChannel]
    clock: FakeClock

    async def post(
        self, form: dict[str, str], headers: dict[str, str], path: str = "/webhooks/twilio"
    ) -> ClientResponse:
        return await self.client.post(path, data=form, headers=headers)

    async def deliver(self) -> int:
        return await self.runtime.dispatcher.run_once()

    async def stage(self, message: OutboundMessage, key: str) -> Message:
        """An outbound message staged as a flow would: a queued row and its send effect."""
        now = self.clock.now()
        conversation, _ = await Conversation.get_or_create(
            channel=message.channel, address=message.address
        )
        async with in_transaction() as conn:
            row = await Message.create(
                conversation=conversation,
                direction="out",
                body=message.text,
                status="queued",
                created_at=now,
                using_db=conn,
            )
            await enqueue_effect(
                conn,
                kind="send_message",
                payload={"message_id": row.id, "message": message.to_payload()},
                idempotency_key=key,
                now=now,
            )
        return row


@pytest.fixture
async def harness(database: str, clock: FakeClock) -> AsyncIterator[Harness]:
    settings = Settings.from_env(
        {
            "KEYTURN_DATABASE_URL": database,
            "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "KEYTURN_PUBLIC_URL": PUBLIC_URL,
        }
    )
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
    fake = FakeTwilio(public_url=PUBLIC_URL, now=clock.now)
    async with fake.serving():
        account = TwilioAccount(
            ACCOUNT_SID, AUTH_TOKEN, public_url=PUBLIC_URL, api_base=fake.base_url, timeout=0.5
        )
        await account.start()
        try:
            channels = twilio_channels(
                account,
                clock=clock,
                sms_from=SMS_NUMBER,
                whatsapp_from=WHATSAPP_NUMBER,
                whatsapp_templates=TEMPLATES,
            )
            runtime = build_runtime(settings, clock=clock, channels=channels)
            app = web.Application()
            app[ENGINE] = runtime.engine
            app[CLOCK] = clock
            setup_twilio(app, auth_token=AUTH_TOKEN, public_url=PUBLIC_URL)
            async with TestClient(TestServer(app)) as client:
                yield Harness(client, fake, runtime, account, channels, clock)
        finally:
            await account.close()


def _numbered(row: Message) -> str:
    """The stored reply as SMS shows it: its text, then its choices as numbered lines."""
    choices = tuple(Choice(str(pair[0]), str(pair[1])) for pair in row.choices)  # type: ignore[index]
    return numbered_text(OutboundMessage(channel="sms", address="", text=row.body, choices=choices))


async def _nothing_stored() -> None:
    assert await Conversation.all().count() == 0
    assert await Message.all().count() == 0
    assert await ProcessedWebhook.all().count() == 0


# -- inbound SMS ----------------------------------------------------------------------------


async def test_a_signed_sms_gets_a_reply_with_numbered_choices(harness: Harness) -> None:
    form, headers = harness.fake.inbound(from_=RENTER, body="hi")
    response = await harness.post(form, headers)
    assert response.status == 200
    assert response.content_type == "text/xml"
    assert await response.text() == EMPTY_TWIML
    assert harness.fake.sent == [], "the reply goes through the outbox, not the webhook answer"

    assert await harness.deliver() == 1
    [sent] = harness.fake.sent
    assert sent.to == RENTER and sent.from_ == SMS_NUMBER
    assert sent.content_sid is None
    assert sent.status_callback == f"{PUBLIC_URL}/webhooks/twilio/status"
    reply = await Message.get(direction="out")
    assert reply.status == "sent" and reply.provider_id == sent.sid
    assert reply.choices, "the greeting offers choices"
    assert sent.body == _numbered(reply)
    assert "1. Altstadt Depot" in sent.body.splitlines()

    inbound = await Message.get(direction="in")
    assert inbound.provider_id == form["MessageSid"] and inbound.body == "hi"
    conversation = await Conversation.get()
    assert (conversation.channel, conversation.address) == ("sms", RENTER)


async def test_a_retried_message_sid_is_handled_once(harness: Harness) -> None:
    form, headers = harness.fake.inbound(from_=RENTER, body="hi")
    first = await harness.post(form, headers)
    again = await harness.post(form, headers)
    assert first.status == again.status == 200
    assert await again.text() == EMPTY_TWIML
    await harness.deliver()
    assert await Message.filter(direction="in").count() == 1
    assert len(harness.fake.sent) == 1


async def test_the_signature_is_checked_on_the_public_url_with_its_query(
    harness: Harness,
) -> None:
    path = "/webhooks/twilio?site=harbor"
    form, headers = harness.fake.inbound(from_=RENTER, body="hi", path=path)
    assert (await harness.post(form, headers, path=path)).status == 200
    assert await Message.filter(direction="in").count() == 1


def _wrong_signatures(fake: FakeTwilio, server_url: str) -> dict[str, tuple[dict[str, str], Any]]:
    form, headers = fake.inbound(from_=RENTER, body="hi")
    other_token = FakeTwilio(auth_token="0" * 32, public_url=PUBLIC_URL)
    tampered = {**form, "Body": "CANCEL"}
    return {
        "missing": (form, {}),
        "empty": (form, {"X-Twilio-Signature": ""}),
        "other token": (form, other_token.signed_headers("/webhooks/twilio", form)),
        "server url": (form, {"X-Twilio-Signature": fake.sign(server_url, form)}),
        "tampered": (tampered, headers),
        # The caller does not choose the algorithm: Keyturn checks HMAC-SHA1, as Twilio signs.
        "algorithm from the header": (
            form,
            {
                "X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(
                    f"{PUBLIC_URL}/webhooks/twilio", form, HMAC_SHA256
                ),
                "X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_SHA256",
            },
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["missing", "empty", "other token", "server url", "tampered", "algorithm from the header"],
)
async def test_a_missing_or_wrong_signature_is_refused_and_changes_nothing(
    harness: Harness, case: str
) -> None:
    server_url = str(harness.client.make_url("/webhooks/twilio"))
    assert server_url.startswith("http://127.0.0.1")
    form, headers = _wrong_signatures(harness.fake, server_url)[case]
    response = await harness.post(form, headers)
    assert response.status == 403
    await _nothing_stored()
    await harness.deliver()
    assert harness.fake.requests == []


async def test_non_forms_and_oversized_posts_are_refused(harness: Harness) -> None:
    form, headers = harness.fake.inbound(from_=RENTER, body="hi")
    as_json = await harness.client.post(
        "/webhooks/twilio",
        data=json.dumps(form),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert as_json.status == 415
    huge, huge_headers = harness.fake.inbound(from_=RENTER, body="x" * 70_000)
    assert (await harness.post(huge, huge_headers)).status == 413
    await _nothing_stored()


async def test_inbound_media_is_recorded_with_the_message(harness: Harness) -> None:
    url = harness.fake.add_media(b"\xff\xd8\xff" + b"0" * 100, "image/jpeg")
    form, headers = harness.fake.inbound(from_=RENTER, media=[(url, "image/jpeg")])
    assert (await harness.post(form, headers)).status == 200
    inbound = await Message.get(direction="in")
    assert inbound.media == [{"url": url, "content_type": "image/jpeg"}]


# -- sending failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "refuse"),
    [
        (RENTER, lambda fake: fake.opted_out.add(RENTER)),
        (f"whatsapp:{RENTER}", lambda fake: fake.not_on_whatsapp.add(RENTER)),
    ],
    ids=["sms opted out (21610)", "not on whatsapp (63024)"],
)
async def test_an_unreachable_recipient_is_marked_undeliverable_not_retried(
    harness: Harness, sender: str, refuse: Any
) -> None:
    refuse(harness.fake)
    form, headers = harness.fake.inbound(from_=sender, body="hi")
    assert (await harness.post(form, headers)).status == 200
    assert await harness.deliver() == 1
    reply = await Message.get(direction="out")
    assert reply.status == "undeliverable" and reply.provider_id is None
    effect = await OutboxEffect.get(kind="send_message")
    assert effect.state == EffectState.DONE
    harness.clock.advance(timedelta(hours=1))
    assert await harness.deliver() == 0
    assert len(harness.fake.requests) == 1 and harness.fake.sent == []
    renter = await Renter.get(phone=RENTER)
    assert renter.opted_out is sender.startswith("+"), "only SMS STOP is mirrored"


@pytest.mark.parametrize("trouble", ["500", "hang"])
async def test_a_failed_send_is_retried_and_sent_once(harness: Harness, trouble: str) -> None:
    if trouble == "500":
        harness.fake.fail_next(1, status=500)
    else:
        harness.fake.hang_next(1, seconds=30)
    form, headers = harness.fake.inbound(from_=RENTER, body="hi")
    await harness.post(form, headers)
    await harness.deliver()
    reply = await Message.get(direction="out")
    assert reply.status == "queued" and harness.fake.sent == []
    effect = await OutboxEffect.get(kind="send_message")
    assert effect.state == EffectState.PENDING and effect.attempts == 1
    harness.clock.advance(timedelta(minutes=1))
    assert await harness.deliver() == 1
    assert len(harness.fake.requests) == 2 and len(harness.fake.sent) == 1
    reply = await Message.get(direction="out")
    assert reply.status == "sent" and reply.provider_id == harness.fake.sent[0].sid
    harness.clock.advance(timedelta(hours=1))
    assert await harness.deliver() == 0
    assert len(harness.fake.sent) == 1


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
async def test_a_send_accepted_with_its_answer_lost_is_not_sent_again(
    harness: Harness, channel: str
) -> None:
    sender = RENTER if channel == "sms" else "whatsapp:" + RENTER
    harness.fake.lose_answer_next(1, seconds=30)  # Twilio takes it; the answer never comes
    form, headers = harness.fake.inbound(from_=sender, body="hi")
    await harness.post(form, headers)
    await harness.deliver()
    assert len(harness.fake.sent) == 1, "Twilio has it"
    reply = await Message.get(direction="out")
    assert reply.status == "queued", "Keyturn does not know"
    harness.clock.advance(timedelta(minutes=1))
    assert await harness.deliver() == 1
    assert len(harness.fake.sent) == 1, "the retry found it and did not send it twice"
    assert len(harness.fake.requests) == 1 and len(harness.fake.lookups) == 1
    assert harness.fake.lookups[0]["To"] == sender
    reply = await Message.get(direction="out")
    assert reply.status == "sent" and reply.provider_id == harness.fake.sent[0].sid


async def test_a_retry_sends_what_twilio_does_not_have(harness: Harness) -> None:
    """The same text to the same renter, sent just before and recorded, is another message."""
    reminder = OutboundMessage(channel="sms", address=RENTER, text="Your rental ends at 14:00.")
    await harness.stage(reminder, "reminder:1")
    await harness.deliver()
    [earlier] = harness.fake.sent
    await harness.stage(reminder, "reminder:2")
    harness.fake.fail_next(1, status=503)
    await harness.deliver()
    harness.clock.advance(timedelta(seconds=30))
    assert await harness.deliver() == 1
    assert len(harness.fake.lookups) == 1, "the retry looked first"
    assert [m.body for m in harness.fake.sent] == [reminder.text, reminder.text]
    rows = await Message.filter(direction="out").order_by("id")
    assert [r.provider_id for r in rows] == [earlier.sid, harness.fake.sent[1].sid]


async def test_a_retry_does_not_adopt_a_message_from_before_it_was_staged(
    harness: Harness,
) -> None:
    """The same text sent ten minutes earlier outside Keyturn's records is not this message."""
    reminder = OutboundMessage(channel="sms", address=RENTER, text="Your rental ends at 14:00.")
    unrecorded = await harness.channels["sms"].send(reminder, "by-hand")
    harness.clock.advance(timedelta(minutes=10))
    await harness.stage(reminder, "reminder:1")
    harness.fake.fail_next(1, status=503)
    await harness.deliver()
    harness.clock.advance(timedelta(minutes=1))
    assert await harness.deliver() == 1
    assert len(harness.fake.lookups) == 1 and len(harness.fake.sent) == 2
    row = await Message.get(direction="out")
    assert row.provider_id == harness.fake.sent[1].sid != unrecorded


async def test_wrong_credentials_are_retried_not_given_up(harness: Harness) -> None:
    account = TwilioAccount(
        ACCOUNT_SID, "f" * 32, public_url=PUBLIC_URL, api_base=harness.fake.base_url
    )
    await account.start()
    try:
        channel = twilio_channels(
            account, clock=harness.clock, sms_from=SMS_NUMBER, whatsapp_from=None
        )["sms"]
        message = OutboundMessage(channel="sms", address=RENTER, text="hello")
        with pytest.raises(ChannelError) as caught:
            await channel.send(message, "k")
        assert not isinstance(caught.value, Undeliverable)
        assert "20003" in str(caught.value) and "f" * 32 not in str(caught.value)
    finally:
        await account.close()


# -- WhatsApp and its 24-hour window --------------------------------------------------------


async def _renter_writes_on_whatsapp(harness: Harness) -> None:
    form, headers = harness.fake.inbound(from_=f"whatsapp:{RENTER}", body="hi", profile_name="Ana")
    assert (await harness.post(form, headers)).status == 200
    await harness.deliver()


def _pin(kind: str = "pin") -> OutboundMessage:
    return OutboundMessage(
        channel="whatsapp",
        address=RENTER,
        text="Your code for Trailer Bay 1 is 4821#",
        kind=kind,
        template_variables={"1": "Trailer Bay 1", "2": "4821#"},
    )


async def test_whatsapp_within_24_hours_gets_free_form_text(harness: Harness) -> None:
    await _renter_writes_on_whatsapp(harness)
    [sent] = harness.fake.sent
    assert sent.to == f"whatsapp:{RENTER}" and sent.from_ == WHATSAPP_NUMBER
    assert sent.body == _numbered(await Message.get(direction="out"))
    assert sent.content_sid is None
    conversation = await Conversation.get()
    assert (conversation.channel, conversation.address) == ("whatsapp", RENTER)
    assert (await Renter.get(phone=RENTER)).name == "Ana"

    harness.clock.advance(timedelta(hours=23))
    row = await harness.stage(_pin(), "pin-1")
    await harness.deliver()
    assert harness.fake.sent[-1].body == _pin().text
    assert (await Message.get(id=row.id)).status == "sent"


async def test_whatsapp_outside_24_hours_sends_the_template(harness: Harness) -> None:
    await _renter_writes_on_whatsapp(harness)
    harness.clock.advance(timedelta(hours=25))
    harness.fake.outside_window.add(RENTER)
    row = await harness.stage(_pin(), "pin-1")
    assert await harness.deliver() == 1
    sent = harness.fake.sent[-1]
    assert sent.to == f"whatsapp:{RENTER}" and sent.from_ == WHATSAPP_NUMBER
    assert sent.body is None, "a template goes without a body"
    assert sent.content_sid == PIN_TEMPLATE
    assert sent.content_variables is not None
    assert json.loads(sent.content_variables) == {"1": "Trailer Bay 1", "2": "4821#"}
    stored = await Message.get(id=row.id)
    assert stored.status == "sent" and stored.provider_id == sent.sid
    assert len(harness.fake.requests) == 2, "no free-form attempt outside the window"


async def test_whatsapp_refusing_free_form_text_falls_back_to_the_template(
    harness: Harness,
) -> None:
    await _renter_writes_on_whatsapp(harness)
    harness.fake.outside_window.add(RENTER)  # Twilio's clock says the window closed
    await harness.stage(_pin(), "pin-1")
    await harness.deliver()
    refused, accepted = harness.fake.requests[-2:]
    assert "Body" in refused and "ContentSid" not in refused
    assert accepted["ContentSid"] == PIN_TEMPLATE and "Body" not in accepted
    assert harness.fake.sent[-1].content_sid == PIN_TEMPLATE


async def test_whatsapp_outside_24_hours_without_a_template_goes_by_sms(
    harness: Harness,
) -> None:
    await _renter_writes_on_whatsapp(harness)
    harness.clock.advance(timedelta(hours=30))
    harness.fake.outside_window.add(RENTER)
    row = await harness.stage(_pin(kind="reminder"), "reminder-1")
    await harness.deliver()
    sent = harness.fake.sent[-1]
    assert sent.to == RENTER and sent.from_ == SMS_NUMBER
    assert sent.body == _pin().text and sent.content_sid is None
    assert (await Message.get(id=row.id)).provider_id == sent.sid


async def test_whatsapp_never_written_counts_as_outside_the_window(harness: Harness) -> None:
    await harness.stage(_pin(), "pin-1")
    await harness.deliver()
    [sent] = harness.fake.sent
    assert sent.content_sid == PIN_TEMPLATE and sent.body is None


async def test_whatsapp_outside_24_hours_without_template_or_sms_is_undeliverable(
    harness: Harness,
) -> None:
    await _renter_writes_on_whatsapp(harness)
    harness.clock.advance(timedelta(hours=25))
    channel = TwilioWhatsAppChannel(
        harness.account, from_address=WHATSAPP_NUMBER, clock=harness.clock, templates={}
    )
    requests = len(harness.fake.requests)
    with pytest.raises(Undeliverable):
        await channel.send(_pin(kind="reminder"), "reminder-1")
    assert len(harness.fake.requests) == requests


# -- status callbacks -----------------------------------------------------------------------


async def _sent_reply(harness: Harness) -> tuple[Message, str]:
    form, headers = harness.fake.inbound(from_=RENTER, body="hi")
    await harness.post(form, headers)
    await harness.deliver()
    reply = await Message.get(direction="out")
    assert reply.status == "sent" and reply.provider_id is not None
    return reply, reply.provider_id


@pytest.mark.parametrize(
    ("callbacks", "final"),
    [
        (["sending", "queued"], "sent"),
        (["delivered", "sent", "sending"], "delivered"),
        (["delivered", "undelivered", "failed"], "delivered"),
        (["read", "delivered"], "read"),
        (["undelivered", "sent", "queued", "failed"], "undelivered"),
        (["failed", "delivered", "read"], "read"),
        (["canceled", "bogus", ""], "sent"),
    ],
)
async def test_status_callbacks_move_forward_never_backwards(
    harness: Harness, callbacks: list[str], final: str
) -> None:
    reply, sid = await _sent_reply(harness)
    for status in callbacks:
        form, headers = harness.fake.status_callback(sid, status)
        response = await harness.post(form, headers, path="/webhooks/twilio/status")
        assert response.status == 200
    assert (await Message.get(id=reply.id)).status == final


async def test_status_callbacks_need_a_signature_and_a_known_sid(harness: Harness) -> None:
    reply, sid = await _sent_reply(harness)
    form, headers = harness.fake.status_callback(sid, "delivered")
    unsigned = await harness.post(form, {}, path="/webhooks/twilio/status")
    assert unsigned.status == 403
    forged = await harness.post(
        {**form, "MessageStatus": "failed"}, headers, path="/webhooks/twilio/status"
    )
    assert forged.status == 403
    assert (await Message.get(id=reply.id)).status == "sent"
    unknown, unknown_headers = harness.fake.status_callback("SM" + "9" * 32, "delivered")
    response = await harness.post(unknown, unknown_headers, path="/webhooks/twilio/status")
    assert response.status == 200
    assert await Message.filter(status="delivered").count() == 0


# -- media ----------------------------------------------------------------------------------

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20


async def test_media_is_fetched_with_credentials_that_stay_on_twilio(harness: Harness) -> None:
    url = harness.fake.add_media(JPEG, "image/jpeg")
    content, content_type = await harness.account.fetch_media(
        url, max_bytes=1_000_000, allowed_types=ID_DOCUMENT_TYPES
    )
    assert content == JPEG and content_type == "image/jpeg"
    [(api_path, api_auth), (cdn_path, cdn_auth)] = harness.fake.media_requests
    assert api_path.startswith("/2010-04-01/") and api_auth
    assert cdn_path.startswith("/media/") and not cdn_auth


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_media_too_large_is_refused(harness: Harness, chunked: bool) -> None:
    url = harness.fake.add_media(JPEG, "image/jpeg", chunked=chunked)
    with pytest.raises(MediaRefused) as refused:
        await harness.account.fetch_media(
            url, max_bytes=len(JPEG) - 1, allowed_types=ID_DOCUMENT_TYPES
        )
    assert refused.value.reason == "too_large"


async def test_media_of_another_type_is_refused(harness: Harness) -> None:
    url = harness.fake.add_media(b"GIF89a" + b"0" * 100, "image/gif")
    with pytest.raises(MediaRefused) as refused:
        await harness.account.fetch_media(url, max_bytes=1_000_000, allowed_types=ID_DOCUMENT_TYPES)
    assert refused.value.reason == "unsupported_type"


async def test_media_off_the_twilio_host_is_not_fetched(harness: Harness) -> None:
    for url in (f"{harness.fake.cdn_url}/media/ME123", "ftp://example.com/x", "not a url"):
        with pytest.raises(MediaRefused) as refused:
            await harness.account.fetch_media(
                url, max_bytes=1_000_000, allowed_types=ID_DOCUMENT_TYPES
            )
        assert refused.value.reason == "untrusted_host"
    assert harness.fake.media_requests == []


async def test_media_twilio_no_longer_has_is_unavailable(harness: Harness) -> None:
    url = harness.fake.add_media(JPEG, "image/jpeg").rsplit("/", 1)[0] + "/ME" + "0" * 32
    with pytest.raises(MediaRefused) as refused:
        await harness.account.fetch_media(url, max_bytes=1_000_000, allowed_types={"image/jpeg"})
    assert refused.value.reason == "unavailable"


async def test_a_photo_goes_by_link_and_a_retry_finds_it_by_its_media(harness: Harness) -> None:
    harness.account.media_links = MediaLinks(
        PUBLIC_URL, Fernet.generate_key().decode(), harness.clock
    )
    photo = Media("telegram-file:AgACAgIAAxkBAAI", "image/jpeg")
    text_only = OutboundMessage(channel="sms", address=RENTER, text="")
    with pytest.raises(Undeliverable):
        await harness.channels["sms"].send(text_only, "empty")  # Twilio: 21619
    # An earlier photo without a caption to the same renter is not this one's send.
    await harness.channels["sms"].send(
        OutboundMessage(channel="sms", address=RENTER, text="", media=(photo,)), "earlier"
    )
    second = OutboundMessage(channel="sms", address=RENTER, text="", media=(photo, photo))
    harness.fake.lose_answer_next(1, seconds=30)
    await harness.stage(second, "photos")
    await harness.deliver()
    harness.clock.advance(timedelta(minutes=1))
    assert await harness.deliver() == 1
    first, accepted = harness.fake.sent
    assert accepted.body is None and len(accepted.media_urls) == 2
    assert all(url.startswith(f"{PUBLIC_URL}/media/") for url in accepted.media_urls)
    row = await Message.get(direction="out")
    assert row.provider_id == accepted.sid != first.sid, "adopted by its two photos"
    too_many = OutboundMessage(channel="sms", address=RENTER, text="x", media=(photo,) * 11)
    with pytest.raises(Undeliverable, match="at most 10"):
        await harness.channels["sms"].send(too_many, "many")


async def test_whatsapp_takes_one_photo_and_a_closed_window_sends_it_by_mms(
    harness: Harness,
) -> None:
    harness.account.media_links = MediaLinks(
        PUBLIC_URL, Fernet.generate_key().decode(), harness.clock
    )
    photo = Media("telegram-file:AgACAgIAAxkBAAI", "image/jpeg")
    await _renter_writes_on_whatsapp(harness)
    whatsapp = harness.channels["whatsapp"]
    two = OutboundMessage(channel="whatsapp", address=RENTER, text="", media=(photo, photo))
    with pytest.raises(Undeliverable, match="at most 1"):
        await whatsapp.send(two, "two")
    one = OutboundMessage(channel="whatsapp", address=RENTER, text="Here", media=(photo,))
    await whatsapp.send(one, "one")
    sent = harness.fake.sent[-1]
    assert sent.to == f"whatsapp:{RENTER}" and len(sent.media_urls) == 1
    # Outside the 24 hours a template would carry no photo: it goes by SMS instead.
    harness.clock.advance(timedelta(hours=25))
    later = OutboundMessage(
        channel="whatsapp", address=RENTER, text="Here", kind="pin", media=(photo,)
    )
    await whatsapp.send(later, "later")
    sent = harness.fake.sent[-1]
    assert sent.to == RENTER and sent.content_sid is None and len(sent.media_urls) == 1


async def test_a_renter_typing_their_own_pin_has_it_stored_sealed(harness: Harness) -> None:
    booking = await confirmed_booking(harness.runtime)
    [pin] = {harness.runtime.journey.sealer.open(c.pin_encrypted) for c in await codes_of(booking)}
    spaced = f"{pin[:2]} {pin[2:]}"
    for text in (f"my code {pin} does not work", f"is it {spaced}?", "call me at 5550 1234"):
        form, headers = harness.fake.inbound(from_=RENTER, body=text)
        assert (await harness.post(form, headers)).status == 200
    rows = await Message.filter(direction="in").order_by("id")
    assert [row.sealed for row in rows] == [True, True, False]
    assert all(pin not in row.body.replace(" ", "") for row in rows[:2])
    assert rows[2].body == "call me at 5550 1234", "other numbers are kept as written"
    opened = [harness.runtime.journey.sealer.open(row.body) for row in rows[:2]]
    assert opened == [f"my code {pin} does not work", f"is it {spaced}?"]


async def test_media_deleted_at_twilio_stays_deleted_and_only_twilio_media_is_deleted(
    harness: Harness,
) -> None:
    url = harness.fake.add_media(b"\xff\xd8\xff" + b"0" * 100, "image/jpeg")
    assert await harness.account.delete_media(url)
    assert len(harness.fake.deleted_media) == 1
    assert await harness.account.delete_media(url), "already gone (404) counts as deleted"
    with pytest.raises(MediaRefused):
        await harness.account.fetch_media(url, max_bytes=1000, allowed_types=ID_DOCUMENT_TYPES)
    assert not await harness.account.delete_media("https://elsewhere.example/Media/ME1")
    assert not await harness.account.delete_media("telegram-file:AgAC")
    assert len(harness.fake.deleted_media) == 1


# -- WhatsApp's window reported closed on the status callback (63016) ------------------------


async def _free_form_pin(harness: Harness, kind: str = "pin") -> tuple[Message, str]:
    """A message sent as free-form WhatsApp text, accepted by Twilio (201 queued)."""
    await _renter_writes_on_whatsapp(harness)
    row = await harness.stage(_pin(kind=kind), f"{kind}-1")
    assert await harness.deliver() == 1
    sent = harness.fake.sent[-1]
    assert sent.body is not None and sent.content_sid is None
    return row, sent.sid


async def test_window_closed_on_the_status_callback_resends_by_template_once(
    harness: Harness,
) -> None:
    row, sid = await _free_form_pin(harness)
    form, headers = harness.fake.window_closed(sid)
    assert (await harness.post(form, headers, path="/webhooks/twilio/status")).status == 200
    # Twilio posts a callback again when it has no answer: still one resend.
    assert (await harness.post(form, headers, path="/webhooks/twilio/status")).status == 200
    assert await harness.deliver() == 1
    resent = harness.fake.sent[-1]
    assert resent.to == f"whatsapp:{RENTER}" and resent.content_sid == PIN_TEMPLATE
    assert resent.body is None
    assert json.loads(resent.content_variables or "") == {"1": "Trailer Bay 1", "2": "4821#"}
    stored = await Message.get(id=row.id)
    assert stored.status == "sent" and stored.provider_id == resent.sid
    assert await harness.deliver() == 0
    assert len(harness.fake.sent) == 3  # the renter's reply, the free-form text, the template
    assert await OpsAlert.all().count() == 0


async def test_window_closed_without_a_template_resends_by_sms(harness: Harness) -> None:
    row, sid = await _free_form_pin(harness, kind="reminder")
    form, headers = harness.fake.window_closed(sid, status="undelivered")
    assert (await harness.post(form, headers, path="/webhooks/twilio/status")).status == 200
    assert await harness.deliver() == 1
    resent = harness.fake.sent[-1]
    assert resent.to == RENTER and resent.from_ == SMS_NUMBER
    assert resent.body == _pin().text
    assert (await Message.get(id=row.id)).provider_id == resent.sid


async def test_a_second_63016_for_the_resend_alerts_instead_of_looping(harness: Harness) -> None:
    row, sid = await _free_form_pin(harness)
    form, headers = harness.fake.window_closed(sid)
    await harness.post(form, headers, path="/webhooks/twilio/status")
    await harness.deliver()
    resent = harness.fake.sent[-1]
    again, again_headers = harness.fake.status_callback(resent.sid, "failed", error_code="63016")
    assert (await harness.post(again, again_headers, path="/webhooks/twilio/status")).status == 200
    await harness.deliver()
    assert len(harness.fake.sent) == 3, "no third send to the renter"
    [alert] = await OpsAlert.all()
    assert alert.kind == "message_not_delivered"
    assert (await Message.get(id=row.id)).status == "failed"


async def test_a_63016_whose_resend_was_not_stored_is_resent_when_twilio_posts_it_again(
    harness: Harness,
) -> None:
    row, sid = await _free_form_pin(harness)
    form, headers = harness.fake.window_closed(sid)
    await connection().execute_script("ALTER TABLE outbox_effect RENAME TO outbox_effect_away")
    try:
        response = await harness.post(form, headers, path="/webhooks/twilio/status")
        assert response.status == 500, "Twilio is told to post it again"
    finally:
        await connection().execute_script("ALTER TABLE outbox_effect_away RENAME TO outbox_effect")
    assert (await harness.post(form, headers, path="/webhooks/twilio/status")).status == 200
    assert await harness.deliver() == 1
    resent = harness.fake.sent[-1]
    assert resent.content_sid == PIN_TEMPLATE, "the PIN goes again, by its template"
    assert (await Message.get(id=row.id)).provider_id == resent.sid
    assert await OpsAlert.all().count() == 0


async def test_a_send_twilio_reports_failed_is_not_adopted_by_the_retry(harness: Harness) -> None:
    await _renter_writes_on_whatsapp(harness)
    harness.fake.lose_answer_next(1, seconds=30)  # Twilio takes it; the answer never comes
    row = await harness.stage(_pin(), "pin-1")
    await harness.deliver()
    lost = harness.fake.sent[-1]
    # WhatsApp refuses it before Keyturn knows its sid: the callback finds no message.
    form, headers = harness.fake.window_closed(lost.sid)
    assert (await harness.post(form, headers, path="/webhooks/twilio/status")).status == 200
    harness.clock.advance(timedelta(minutes=1))
    assert await harness.deliver() == 1
    again = harness.fake.sent[-1]
    assert again.sid != lost.sid, "the PIN that never arrived is sent again"
    assert (await Message.get(id=row.id)).provider_id == again.sid


async def test_a_pin_that_cannot_be_delivered_alerts_the_operators(harness: Harness) -> None:
    harness.fake.opted_out.add(RENTER)
    await Renter.create(phone=RENTER, name="Rita Renter", language="en")
    pin = OutboundMessage(channel="sms", address=RENTER, text="Your code is 4821#", kind="pin")
    row = await harness.stage(pin, "pin-1")
    reply = await harness.stage(replace(pin, text="See you soon", kind="reply"), "reply-1")
    assert await harness.deliver() == 2
    for message in (row, reply):
        assert (await Message.get(id=message.id)).status == "undeliverable"
    [alert] = await OpsAlert.all()
    assert alert.kind == "message_not_delivered" and alert.group_key == f"message:{row.id}"
    assert alert.params["kind"] == "pin" and "21610" in alert.params["reason"]
    assert (await Renter.get(phone=RENTER)).opted_out, "Twilio's block is mirrored"
