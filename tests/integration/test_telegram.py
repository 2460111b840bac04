"""The Telegram transport against the fake Bot API: the real python-telegram-bot code paths, the
webhook route inside the app, and the outbox delivering replies with an injected clock."""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest

from bot.app import Runtime, build_runtime, create_app
from bot.channels import ChannelError, Undeliverable
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from bot.transports.telegram import (
    MediaRefused,
    RateLimited,
    TelegramChannel,
    TelegramTimeouts,
    update_to_inbound,
)
from bot.transports.telegram_routes import SECRET_HEADER, WEBHOOK_PATH, setup_telegram
from flows.inventory import apply_inventory, load_inventory
from flows.messages import Choice, OutboundMessage
from storage import db
from storage.models import (
    Conversation,
    EffectState,
    Message,
    OutboxEffect,
    ProcessedWebhook,
    Renter,
)
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.fakes.server import running
from tests.fakes.telegram import TOKEN, FakeTelegram

SECRET = "kt-webhook_5f2a9c0e1d"
PUBLIC_URL = "https://keyturn.example"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 20
FAST = TelegramTimeouts(connect=1.0, read=1.0, write=1.0, pool=1.0, download=3.0)


@dataclass
class Harness:
    client: TestClient[Any, Any]
    fake: FakeTelegram
    channel: TelegramChannel
    runtime: Runtime
    clock: FakeClock

    async def post(self, update: dict[str, Any], secret: str | None = SECRET) -> int:
        headers = {} if secret is None else {SECRET_HEADER: secret}
        response = await self.client.post(WEBHOOK_PATH, json=update, headers=headers)
        return response.status

    async def deliver(self) -> int:
        """One outbox pass at the injected clock's time."""
        return await self.runtime.dispatcher.run_once()


@pytest.fixture
async def harness(
    sqlite_template: Path, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Harness]:
    path = tmp_path / "app.sqlite3"
    shutil.copy(sqlite_template, path)
    url = f"sqlite://{path}"
    await db.open_database(url)
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
    await db.close_database()
    settings = Settings.from_env(
        {"KEYTURN_DATABASE_URL": url, "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    )
    fake = FakeTelegram()
    async with running(fake.web_app()) as api_base:
        channel = TelegramChannel(TOKEN, api_base=api_base, timeouts=FAST)
        runtime = build_runtime(settings, clock=clock, channels={"telegram": channel})
        app = create_app(runtime, workers=False)
        setup_telegram(app, channel, secret=SECRET, public_url=PUBLIC_URL)
        async with TestClient(TestServer(app)) as client:
            yield Harness(client, fake, channel, runtime, clock)


def _buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    return [(b["text"], b["callback_data"]) for row in rows for b in row]


async def _outbound(status: str | None = None) -> list[Message]:
    rows = Message.filter(direction="out")
    if status is not None:
        rows = rows.filter(status=status)
    return await rows.order_by("id")


async def test_start_up_checks_the_token_and_sets_the_webhook(harness: Harness) -> None:
    assert harness.fake.calls_to("getMe")
    assert harness.fake.webhook == {
        "url": "https://keyturn.example/webhooks/telegram",
        "secret_token": SECRET,
        "allowed_updates": ["message", "callback_query"],
    }


async def test_a_text_update_gets_a_reply_with_inline_buttons(harness: Harness) -> None:
    user = harness.fake.private_chat(4242, "Ada", last_name="Lovelace")
    assert await harness.post(harness.fake.text_update(user, "hi")) == 200
    assert harness.fake.sent(4242) == [], "replies go through the outbox, not the webhook"
    assert await harness.deliver() == 1
    [reply] = harness.fake.sent(4242)
    assert reply["text"].startswith("Welcome to Keyturn!")
    assert _buttons(reply) == [("Altstadt Depot", "1"), ("Harbor Yard", "2")]
    [row] = await _outbound()
    assert row.status == "sent" and row.provider_id == str(reply["message_id"])
    renter = await Renter.get(telegram_id=4242)
    assert renter.name == "Ada Lovelace"


async def test_pressing_a_button_continues_and_answers_the_query(harness: Harness) -> None:
    fake = harness.fake
    user = fake.private_chat(4243)
    await harness.post(fake.text_update(user, "hello"))
    await harness.deliver()
    press = fake.callback_update(user, label="Harbor Yard")
    query_id = press["callback_query"]["id"]
    assert await harness.post(press) == 200
    assert fake.callback_queries[query_id] is True, "the button's spinner was stopped"
    await harness.deliver()
    _greeting, items = fake.sent(4243)
    assert items["text"] == "Items at Harbor Yard:"
    labels = [label for label, _ in _buttons(items)]
    assert any("/hour" in label for label in labels) and len(labels) >= 2
    inbound = await Message.filter(direction="in").order_by("id")
    assert [m.body for m in inbound] == ["hello", "2"]


async def test_a_redelivered_update_is_handled_once(harness: Harness) -> None:
    fake = harness.fake
    user = fake.private_chat(4244)
    update = fake.text_update(user, "hi")
    assert await harness.post(update) == 200
    assert await harness.post(update) == 200, "a duplicate is acknowledged so Telegram stops"
    await harness.deliver()
    assert len(fake.sent(4244)) == 1
    assert await Message.filter(direction="in").count() == 1
    press = fake.callback_update(user, label="Altstadt Depot")
    assert await harness.post(press) == 200
    assert await harness.post(press) == 200
    await harness.deliver()
    assert len(fake.sent(4244)) == 2
    assert await Message.filter(direction="in").count() == 2


async def _nothing_changed(harness: Harness) -> None:
    assert await Message.all().count() == 0
    assert await ProcessedWebhook.all().count() == 0
    assert await Conversation.all().count() == 0
    assert await harness.deliver() == 0
    assert harness.fake.calls_to("sendMessage") == []


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x", SECRET.upper()])
async def test_a_missing_or_wrong_secret_is_refused_and_changes_nothing(
    harness: Harness, secret: str | None
) -> None:
    user = harness.fake.private_chat(4245)
    assert await harness.post(harness.fake.text_update(user, "hi"), secret=secret) == 403
    await _nothing_changed(harness)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"update_id": 1}', "text/plain", 415),
        (b"update_id=1", "application/x-www-form-urlencoded", 415),
        (b"{not json", "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"message": {}}', "application/json", 400),
        (b'{"update_id": 7, "message": "text"}', "application/json", 400),
        (b'{"update_id": 1, "x": "' + b"a" * 300_000 + b'"}', "application/json", 413),
    ],
)
async def test_a_body_that_is_not_an_update_is_refused(
    harness: Harness, body: bytes, content_type: str, status: int
) -> None:
    response = await harness.client.post(
        WEBHOOK_PATH, data=body, headers={SECRET_HEADER: SECRET, "Content-Type": content_type}
    )
    assert response.status == status
    await _nothing_changed(harness)


async def test_group_posts_and_edited_messages_are_acknowledged_and_ignored(
    harness: Harness,
) -> None:
    fake = harness.fake
    user = fake.private_chat(4246)
    group = fake.group_chat(-1001234567890)
    assert await harness.post(fake.text_update(user, "hi", chat=group)) == 200
    assert await harness.post(fake.edited_text_update(user, "hi again")) == 200
    assert await harness.post({"update_id": 815_999_999, "my_chat_member": None}) == 200
    await _nothing_changed(harness)


async def test_a_photo_is_fetched_with_get_file_and_downloaded(harness: Harness) -> None:
    fake = harness.fake
    user = fake.private_chat(4247)
    update = fake.photo_update(user, JPEG, caption="my ID")
    largest = update["message"]["photo"][-1]["file_id"]
    assert await harness.post(update) == 200
    [inbound] = await Message.filter(direction="in")
    assert inbound.body == "my ID"
    assert inbound.media == [{"url": f"telegram-file:{largest}", "content_type": "image/jpeg"}]
    data, content_type = await harness.channel.fetch_photo(
        f"telegram-file:{largest}", max_bytes=len(JPEG)
    )
    assert (data, content_type) == (JPEG, "image/jpeg")
    [get_file] = fake.calls_to("getFile")
    assert get_file.params["file_id"] == largest
    assert fake.downloads == [fake.files[largest].file_path]


async def test_an_oversized_photo_is_refused_before_it_is_downloaded(harness: Harness) -> None:
    fake = harness.fake
    user = fake.private_chat(4248)
    update = fake.photo_update(user, JPEG)
    inbound = update_to_inbound(Update.de_json(update, harness.channel.bot), datetime.now(UTC))
    assert inbound is not None
    with pytest.raises(MediaRefused, match="at most 1000"):
        await harness.channel.fetch_photo(inbound.media[0].url, max_bytes=1000)
    assert fake.calls_to("getFile") and fake.downloads == []
    # Telegram may leave file_size out: the download itself is then measured.
    unsized = fake.photo_update(user, JPEG, report_size=False)
    file_id = unsized["message"]["photo"][-1]["file_id"]
    with pytest.raises(MediaRefused, match="at most 1000"):
        await harness.channel.fetch_photo(f"telegram-file:{file_id}", max_bytes=1000)
    assert len(fake.downloads) == 1


async def test_files_that_are_not_images_or_unknown_are_refused(harness: Harness) -> None:
    fake = harness.fake
    user = fake.private_chat(4249)
    update = fake.document_update(
        user, b"%PDF-1.7 ...", mime_type="application/pdf", file_name="id.pdf"
    )
    inbound = update_to_inbound(Update.de_json(update, harness.channel.bot), datetime.now(UTC))
    assert inbound is not None
    [media] = inbound.media
    assert media.content_type == "application/pdf"
    with pytest.raises(MediaRefused, match="not a JPEG"):
        await harness.channel.fetch_photo(media.url, max_bytes=1_000_000)
    with pytest.raises(MediaRefused, match=r"(?i)wrong file_id"):
        await harness.channel.fetch_photo("telegram-file:AgACnope", max_bytes=1_000_000)
    with pytest.raises(MediaRefused):
        await harness.channel.fetch_photo("https://example.com/a.jpg", max_bytes=1_000_000)


async def test_a_user_who_blocked_the_bot_is_undeliverable_and_not_retried(
    harness: Harness,
) -> None:
    fake = harness.fake
    user = fake.private_chat(4250)
    await harness.post(fake.text_update(user, "hi"))
    fake.block(4250)
    assert await harness.deliver() == 1
    [row] = await _outbound()
    assert row.status == "undeliverable"
    [effect] = await OutboxEffect.all()
    assert effect.state == EffectState.DONE
    harness.clock.advance(timedelta(hours=1))
    assert await harness.deliver() == 0
    [call] = fake.calls_to("sendMessage")
    assert call.status == 403


async def test_flood_control_is_retried_later_and_sent_once(harness: Harness) -> None:
    fake = harness.fake
    user = fake.private_chat(4251)
    fake.rate_limit_next("sendMessage", retry_after=5)
    await harness.post(fake.text_update(user, "hi"))
    assert await harness.deliver() == 1
    [effect] = await OutboxEffect.all()
    assert effect.state == EffectState.PENDING and "retry after 5" in effect.last_error
    assert effect.next_attempt_at > harness.clock.now()
    assert [m.status for m in await _outbound()] == ["queued"]
    assert await harness.deliver() == 0, "nothing is sent before the backoff"
    harness.clock.advance(timedelta(seconds=6))
    assert await harness.deliver() == 1
    assert len(fake.sent(4251)) == 1
    assert [c.status for c in fake.calls_to("sendMessage")] == [429, 200]
    assert [m.status for m in await _outbound()] == ["sent"]


async def test_the_language_code_picks_the_reply_language(harness: Harness) -> None:
    fake = harness.fake
    user = fake.private_chat(4252, "Grete", language_code="de")
    await harness.post(fake.text_update(user, "hallo"))
    await harness.deliver()
    [reply] = fake.sent(4252)
    assert reply["text"].startswith("Willkommen bei Keyturn!")
    assert "Welcher Standort?" in reply["text"]


def _out(address: str, text: str = "Hi", *choices: Choice) -> OutboundMessage:
    return OutboundMessage(channel="telegram", address=address, text=text, choices=choices)


async def test_send_errors_become_channel_errors(harness: Harness) -> None:
    fake = harness.fake
    fake.private_chat(4253)
    with pytest.raises(Undeliverable, match=r"[Cc]hat not found"):
        await harness.channel.send(_out("999000111"), "k1")
    with pytest.raises(Undeliverable, match="chat id"):
        await harness.channel.send(_out("@someone"), "k2")
    fake.fail_next("sendMessage")
    with pytest.raises(ChannelError) as failed:
        await harness.channel.send(_out("4253"), "k3")
    assert not isinstance(failed.value, Undeliverable)
    fake.rate_limit_next("sendMessage", retry_after=7)
    with pytest.raises(RateLimited) as limited:
        await harness.channel.send(_out("4253"), "k4")
    assert limited.value.retry_after == timedelta(seconds=7)
    fake.hang_next("sendMessage")
    with pytest.raises(ChannelError, match="timed out") as hung:
        await harness.channel.send(_out("4253"), "k5")
    assert not isinstance(hung.value, Undeliverable)
    assert fake.sent(4253) == []
    assert TOKEN.split(":")[1] not in " ".join(str(e.value) for e in (failed, limited, hung))


async def test_long_callback_data_is_refused_here_and_by_the_api(harness: Harness) -> None:
    fake = harness.fake
    fake.private_chat(4254)
    long_value = "é" * 33  # 66 bytes in UTF-8, 33 characters
    with pytest.raises(Undeliverable, match="64 bytes"):
        await harness.channel.send(_out("4254", "Pick", Choice(long_value, "Long")), "k1")
    assert fake.calls_to("sendMessage") == []
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Long", callback_data=long_value)]])
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await harness.channel.bot.send_message(chat_id=4254, text="Pick", reply_markup=markup)
    assert fake.sent(4254) == []


async def test_a_long_text_is_split_and_a_retry_resends_only_what_failed(
    harness: Harness,
) -> None:
    fake = harness.fake
    fake.private_chat(4255)
    text = "\n".join(f"line {i:04d} " + "x" * 60 for i in range(120))  # about 8,400 characters
    message = _out("4255", text, Choice("1", "One"), Choice("2", "Two"))
    fake.fail_next("sendMessage", after=1)
    with pytest.raises(ChannelError):
        await harness.channel.send(message, "long-1")
    assert len(fake.sent(4255)) == 1
    provider_id = await harness.channel.send(message, "long-1")
    parts = fake.sent(4255)
    assert len(parts) == 3 and provider_id == str(parts[-1]["message_id"])
    assert "\n".join(p["text"] for p in parts) == text
    assert all(len(p["text"]) <= 4096 for p in parts)
    assert [_buttons(p) for p in parts] == [[], [], [("One", "1"), ("Two", "2")]]


async def test_a_wrong_token_fails_at_start_up(harness: Harness) -> None:
    base = str(harness.channel.bot.base_url).removesuffix("/bot" + TOKEN)
    wrong = TelegramChannel(
        "7301945562:AAGk3nQz8vR2wXy5tLmP0bC7dE9fH1jK4sX", api_base=base, timeouts=FAST
    )
    with pytest.raises(ChannelError, match="TELEGRAM_BOT_TOKEN") as refused:
        await wrong.start()
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert harness.fake.calls_to("getMe")[-1].status == 401


async def test_the_token_never_reaches_info_logs(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake = harness.fake
    user = fake.private_chat(4256)
    await harness.post(fake.text_update(user, "hi"))
    await harness.deliver()
    file_id = fake.photo_update(user, JPEG)["message"]["photo"][-1]["file_id"]
    await harness.channel.fetch_photo(f"telegram-file:{file_id}", max_bytes=len(JPEG))
    assert "sendMessage" in caplog.text and "bot<token>" in caplog.text
    secret_part = TOKEN.split(":")[1]
    assert secret_part not in caplog.text
    assert all(secret_part not in json.dumps(r.args, default=str) for r in caplog.records)


async def test_the_fake_refuses_like_the_bot_api(harness: Harness) -> None:
    """JSON bodies, tokens, topics and edits, as the operators' bot will use them."""
    fake = harness.fake
    base = str(harness.channel.bot.base_url).removesuffix(TOKEN)
    session = harness.client.session
    group = fake.group_chat(-1009876543210, forum=True)
    plain = fake.group_chat(-4001234567)

    async def call(method: str, body: dict[str, Any], token: str = TOKEN) -> tuple[int, Any]:
        async with session.post(f"{base}{token}/{method}", json=body) as response:
            return response.status, await response.json()

    assert await call("getMe", {}, token="7301945562:AAwrongwrongwrongwrongwrongwrongwrong") == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    assert (await call("getMe", {}, token="not-a-token"))[0] == 404
    assert (await call("sendCarrierPigeon", {}))[0] == 404
    status, topic = await call("createForumTopic", {"chat_id": group["id"], "name": "Ada #4242"})
    assert status == 200 and topic["ok"] is True
    thread_id = topic["result"]["message_thread_id"]
    status, sent = await call(
        "sendMessage",
        {
            "chat_id": group["id"],
            "message_thread_id": thread_id,
            "text": "Renter asked for a person",
            "reply_markup": {"inline_keyboard": [[{"text": "Take over", "callback_data": "t:1"}]]},
        },
    )
    assert status == 200 and sent["result"]["is_topic_message"] is True
    message_id = sent["result"]["message_id"]
    assert (await call("createForumTopic", {"chat_id": plain["id"], "name": "x"}))[1][
        "description"
    ] == "Bad Request: the chat is not a forum"
    assert (
        await call("sendMessage", {"chat_id": group["id"], "message_thread_id": 999, "text": "x"})
    )[1]["description"] == "Bad Request: message thread not found"
    edit = {"chat_id": group["id"], "message_id": message_id, "text": "Renter asked for a person"}
    status, same = await call(
        "editMessageText",
        {**edit, "reply_markup": sent["result"]["reply_markup"]},
    )
    assert status == 400 and "message is not modified" in same["description"]
    status, edited = await call("editMessageText", {**edit, "text": "Taken over by Bea"})
    assert status == 200 and "reply_markup" not in edited["result"]
    assert (await call("editMessageReplyMarkup", {**edit, "message_id": 999}))[1][
        "description"
    ] == "Bad Request: message to edit not found"
    photo = await harness.channel.bot.send_photo(chat_id=group["id"], photo=JPEG, caption="ID")
    [upload] = fake.calls_to("sendPhoto")
    assert upload.files["photo"] == JPEG and upload.params["caption"] == "ID"
    assert photo.photo[-1].file_id in fake.files
    with pytest.raises(BadRequest, match=r"(?i)query id is invalid"):
        await harness.channel.bot.answer_callback_query("123")
    with pytest.raises(BadRequest, match=r"(?i)https url"):
        await harness.channel.bot.set_webhook("http://keyturn.example/webhooks/telegram")


async def test_no_secret_reaches_any_handler_at_debug(
    sqlite_template: Path, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """python-telegram-bot logs its base URL (token included) when its Bot is made, and every
    call's parameters (the webhook secret of setWebhook) at DEBUG: none of it may show."""
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "app.sqlite3"
    shutil.copy(sqlite_template, path)
    fake = FakeTelegram()
    async with running(fake.web_app()) as api_base:
        settings = Settings.from_env(
            {
                "KEYTURN_DATABASE_URL": f"sqlite://{path}",
                "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "KEYTURN_PUBLIC_URL": PUBLIC_URL,
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_WEBHOOK_SECRET": SECRET,
                "TELEGRAM_API_BASE": api_base,
            }
        )
        runtime = build_runtime(settings, clock=clock)
        # A handler added after start-up, writing everything the way a log file would.
        later = io.StringIO()
        handler = logging.StreamHandler(later)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        logging.getLogger().addHandler(handler)
        try:
            async with TestClient(TestServer(create_app(runtime, workers=False))) as client:
                user = fake.private_chat(4257)
                response = await client.post(
                    WEBHOOK_PATH,
                    json=fake.text_update(user, "hi"),
                    headers={SECRET_HEADER: SECRET},
                )
                assert response.status == 200
                await runtime.dispatcher.run_once()
        finally:
            logging.getLogger().removeHandler(handler)
    assert fake.calls_to("setWebhook") and fake.sent(4257)
    captured = caplog.text + "\n".join(logging.Formatter().format(r) for r in caplog.records)
    assert "Set Bot API URL" in captured and "setWebhook" in captured
    assert "sendMessage" in later.getvalue()
    for output in (captured, later.getvalue()):
        assert TOKEN.split(":")[1] not in output
        assert SECRET not in output
        assert settings.encryption_key not in output


async def test_the_fake_bot_api_takes_albums_as_documented_and_refuses_the_rest() -> None:
    """``sendMediaGroup``: ``media`` a JSON array of 2-10 InputMediaPhoto whose ``attach://``
    names are parts of the upload; ``sendPhoto`` refuses a PDF as Telegram does."""
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256))
    fake = FakeTelegram()
    fake.group_chat(-100777)

    def album(count: int, *, named: int | None = None) -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field("chat_id", "-100777")
        uploaded = count if named is None else named
        media = [
            {"type": "photo", "media": f"attach://p{n}", "caption": f"#{n}"} for n in range(count)
        ]
        form.add_field("media", json.dumps(media))
        for n in range(uploaded):
            form.add_field(f"p{n}", jpeg, filename=f"p{n}.jpg", content_type="image/jpeg")
        return form

    async with running(fake.web_app()) as api_base, aiohttp.ClientSession() as http:
        url = f"{api_base}/bot{TOKEN}/sendMediaGroup"

        async def send(form: aiohttp.FormData) -> tuple[int, dict[str, Any]]:
            async with http.post(url, data=form) as response:
                return response.status, await response.json()

        status, body = await send(album(3))
        assert status == 200 and [m["caption"] for m in body["result"]] == ["#0", "#1", "#2"]
        assert len({m["media_group_id"] for m in body["result"]}) == 1
        for count in (1, 11):
            status, body = await send(album(count))
            assert status == 400 and "2-10 items" in body["description"]
        status, body = await send(album(3, named=2))
        assert status == 400 and body["description"].endswith("media not found")
        assert len(fake.sent(-100777)) == 3, "a refused album posts nothing"

        pdf = aiohttp.FormData()
        pdf.add_field("chat_id", "-100777")
        pdf.add_field("photo", b"%PDF-1.7\n", filename="id.pdf", content_type="application/pdf")
        async with http.post(f"{api_base}/bot{TOKEN}/sendPhoto", data=pdf) as response:
            assert response.status == 400
            assert (await response.json())["description"] == "Bad Request: IMAGE_PROCESS_FAILED"
