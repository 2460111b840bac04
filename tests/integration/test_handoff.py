"""Support hand-off against the fake Bot API: an SMS renter handed to a support member in a forum
topic and back, a Telegram renter's photo relayed, /reply without topics, and the idle timeout."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from yarl import URL

from storage.models import AccessCode, AuditEvent, Conversation, Message, OutboxEffect, Renter
from tests.fakes.twilio import FakeTwilio
from tests.integration.ops_harness import (
    OPS_CHAT,
    RENTER_PHONE,
    SUPPORT,
    altstadt_booking,
    buttons,
    ops_app,
)

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8


async def test_a_full_hand_off_from_an_sms_renter_to_support_and_back(
    tmp_path: Path, sqlite_template: Path
) -> None:
    async with ops_app(tmp_path, sqlite_template, forum=True) as ops:
        await Renter.create(phone=RENTER_PHONE, name="Rita Renter", language="en")
        [menu] = await ops.renter_says("hi")
        assert menu.startswith("Welcome")
        [asked] = await ops.renter_says("AGENT")
        assert "A person from our team will answer" in asked
        alert = ops.ops_messages()[-1]
        assert "asked for a person" in alert["text"]
        [take, _resolve] = buttons(alert)
        assert take[0] == "Take over"

        # Waiting for a person, the bot stays silent; the message reaches the group.
        assert await ops.renter_says("my bike chain is off") == []
        assert "my bike chain is off" in ops.ops_messages()[-1]["text"]

        sent_before = len(ops.sms.sent)
        answer = await ops.press(SUPPORT, alert, take[1])
        conversation = await Conversation.get(channel="sms", address=RENTER_PHONE)
        assert conversation.agent_id == SUPPORT and conversation.agent_thread_id is not None
        topic = conversation.agent_thread_id
        assert "in its own topic" in answer
        [topic_name] = [t["name"] for t in ops.fake.topics[OPS_CHAT].values()]
        assert "Rita Renter" in topic_name and "sms" in topic_name
        transcript = next(m for m in ops.ops_messages() if m.get("message_thread_id") == topic)[
            "text"
        ]
        assert "renter: AGENT" in transcript and "renter: my bike chain is off" in transcript
        assert "bot: A person from our team" in transcript
        await ops.deliver()
        assert ops.sms.texts()[sent_before:] == [
            "You are now chatting with Jonas from our team. Just write here."
        ]
        edited = ops.fake.messages[(OPS_CHAT, alert["message_id"])]
        assert "Resolved" in edited["text"] and "Jonas Weber" in edited["text"]

        # Relayed both ways; the bot says nothing of its own meanwhile.
        for text in ("hello?", "BOOK B1 tomorrow 9-12", "HELP"):
            assert await ops.renter_says(text) == []
            last = ops.ops_messages()[-1]
            assert last["text"] == f"Rita Renter ({RENTER_PHONE}): {text}"
            assert last["message_thread_id"] == topic
        await ops.in_topic(SUPPORT, topic, "Flip the bike and pull the chain back on the gear.")
        await ops.deliver()
        assert ops.sms.texts()[-1] == "Flip the bike and pull the chain back on the gear."
        assert len(ops.sms.sent) == sent_before + 2

        # Another staff member without the talk permission cannot write to the renter.
        await ops.in_topic(100000004, topic, "hi from maintenance")
        await ops.deliver()
        assert len(ops.sms.sent) == sent_before + 2

        # /release in the topic: the bot is back and says so.
        answer = await ops.command(SUPPORT, "/release")
        assert "is back with the bot" in answer
        await ops.deliver()
        assert ops.sms.texts()[-1].startswith("You are back with the automatic assistant")
        conversation = await Conversation.get(id=conversation.id)
        assert conversation.agent_id is None
        [menu] = await ops.renter_says("MENU")
        assert menu.startswith("Welcome")
        actions = set(await AuditEvent.all().values_list("action", flat=True))
        assert {
            "conversation.agent_requested",
            "conversation.taken_over",
            "conversation.staff_message",
            "conversation.released",
        } <= actions


async def test_photos_between_a_telegram_renter_and_the_topic(
    tmp_path: Path, sqlite_template: Path
) -> None:
    async with ops_app(tmp_path, sqlite_template, forum=True) as ops:
        renter = ops.fake.private_chat(777001, "Tom")
        await ops.post(ops.fake.text_update(renter, "hello"))
        await ops.deliver()
        conversation = await Conversation.get(channel="telegram")
        answer = await ops.command(SUPPORT, f"/takeover {conversation.id}")
        assert "in its own topic" in answer
        conversation = await Conversation.get(id=conversation.id)
        assert conversation.agent_id == SUPPORT
        before = len(ops.fake.sent(777001))
        await ops.post(ops.fake.photo_update(renter, JPEG, caption="the lock is broken"))
        await ops.deliver()
        [photo] = [m for m in ops.ops_messages() if "photo" in m]
        assert photo["message_thread_id"] == conversation.agent_thread_id
        assert "Photo from Tom" in photo["caption"]
        assert ops.ops_messages()[-1]["text"].endswith("the lock is broken")
        # Only the hand-off notice went to the renter; the bot did not answer the photo.
        assert [m["text"] for m in ops.fake.sent(777001)[before:]] == [
            "You are now chatting with Jonas from our team. Just write here."
        ]

        # And the other way: a photo the member posts in the topic reaches the renter.
        topic = conversation.agent_thread_id
        assert topic is not None
        update = ops.fake.photo_update(
            ops.users[SUPPORT], JPEG, caption="Here it is", chat=ops.group, thread=topic
        )
        largest = update["message"]["photo"][-1]["file_id"]
        await ops.post(update)
        await ops.deliver()
        [photo] = [m for m in ops.fake.sent(777001) if "photo" in m]
        assert photo["caption"] == "Here it is"
        [call] = [c for c in ops.fake.calls_to("sendPhoto") if c.params["chat_id"] == "777001"]
        assert call.params["photo"] == largest, "sent by the file id Telegram already has"


async def test_without_topics_staff_reply_by_command_and_idle_hands_back(
    tmp_path: Path, sqlite_template: Path
) -> None:
    async with ops_app(tmp_path, sqlite_template, forum=False) as ops:
        await Renter.create(phone=RENTER_PHONE, name="Rita Renter", language="en")
        await ops.renter_says("hi")
        # Three answers the bot does not understand: it asks for a person itself.
        await ops.renter_says("blue")
        await ops.renter_says("green")
        [stuck] = await ops.renter_says("purple")
        assert "A person from our team will answer" in stuck
        assert "stuck with the bot" in ops.ops_messages()[-1]["text"]

        answer = await ops.command(SUPPORT, f"/takeover {RENTER_PHONE}", private=True)
        conversation = await Conversation.get(channel="sms")
        assert f"/reply {conversation.id} <text>" in answer
        assert "renter: purple" in answer
        assert conversation.agent_thread_id is None
        assert "Sent to" in await ops.command(
            SUPPORT, f"/reply {conversation.id} Which bike?", private=True
        )
        await ops.deliver()
        assert ops.sms.texts()[-1] == "Which bike?"
        # The renter's answer goes to the member's private chat, with how to reply.
        assert await ops.renter_says("the red one") == []
        relayed = ops.fake.sent(SUPPORT)[-1]["text"]
        assert "the red one" in relayed and f"/reply {conversation.id}" in relayed

        # Nobody writes for the idle time: the conversation goes back to the bot.
        ops.clock.advance(timedelta(minutes=29))
        await ops.deliver()
        assert (await Conversation.get(id=conversation.id)).agent_id == SUPPORT
        ops.clock.advance(timedelta(minutes=2))
        await ops.deliver()
        assert (await Conversation.get(id=conversation.id)).agent_id is None
        assert ops.sms.texts()[-1].startswith("You are back with the automatic assistant")
        assert "is back with the bot" in ops.fake.sent(SUPPORT)[-1]["text"]


async def test_a_staff_photo_reaches_an_sms_renter_by_a_link_twilio_fetches(
    tmp_path: Path, sqlite_template: Path
) -> None:
    twilio = FakeTwilio(public_url="https://keyturn.example")
    async with twilio.serving(), ops_app(tmp_path, sqlite_template, twilio=twilio) as ops:
        await Renter.create(phone=RENTER_PHONE, name="Rita Renter", language="en")
        await ops.renter_says("hi")
        conversation = await Conversation.get(channel="sms", address=RENTER_PHONE)
        assert "in its own topic" in await ops.command(SUPPORT, f"/takeover {conversation.id}")
        await conversation.refresh_from_db()
        topic = conversation.agent_thread_id
        assert topic is not None
        staff = ops.users[SUPPORT]
        caption = "The key box is left of the gate."
        await ops.post(
            ops.fake.photo_update(staff, JPEG, caption=caption, chat=ops.group, thread=topic)
        )
        await ops.deliver()
        [mms] = [m for m in twilio.sent if m.media_urls]
        assert (mms.to, mms.body) == (RENTER_PHONE, caption)
        [link] = mms.media_urls
        assert link.startswith("https://keyturn.example/media/")
        stored = await Message.filter(direction="out").order_by("-id").first()
        assert stored is not None and stored.body == caption
        [reference] = stored.media
        assert reference["url"].startswith("telegram-file:"), "a reference, never the bytes"

        # Twilio fetches the link when it sends: Keyturn fetches the photo from Telegram.
        path = URL(link).path
        fetched = await ops.client.get(path)
        assert fetched.status == 200 and fetched.content_type == "image/jpeg"
        assert await fetched.read() == JPEG
        forged = path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB")
        assert (await ops.client.get(forged)).status == 404

        # Anything but text and photos is not relayed, and the member hears so.
        before = len(twilio.sent)
        voice = ops.fake.document_update(
            staff, b"%PDF-1.7", mime_type="application/pdf", file_name="map.pdf"
        )
        voice["message"].update(chat=ops.group, message_thread_id=topic, is_topic_message=True)
        await ops.post(voice)
        await ops.deliver()
        assert len(twilio.sent) == before
        assert "Only text and photos reach the renter" in ops.ops_messages()[-1]["text"]

        ops.clock.advance(timedelta(hours=1, seconds=1))
        assert (await ops.client.get(path)).status == 404, "a link works for an hour"


async def test_a_pin_typed_to_a_person_reaches_them_but_is_kept_nowhere_in_clear(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """While a person has the conversation, a renter types their own PIN ("it says 482913 is
    wrong"): staff read it in the topic, and neither the message nor the relay keeps it."""
    async with ops_app(tmp_path, sqlite_template, forum=True) as ops:
        booking = await altstadt_booking(ops)
        [pin] = {
            ops.runtime.journey.sealer.open(code.pin_encrypted)
            for code in await AccessCode.filter(booking=booking)
        }
        await ops.renter_says("AGENT")
        said = f"the keypad says {pin} is wrong"
        assert await ops.renter_says(said) == []
        assert any(said in str(m.get("text")) for m in ops.ops_messages())

        stored = [row.body for row in await Message.filter(direction="in")]
        relays = [
            json.dumps(effect.payload)
            for effect in await OutboxEffect.filter(kind="handoff.to_staff")
        ]
        assert relays and not any(pin in text for text in stored + relays)


async def test_a_relay_whose_text_failed_after_its_photo_sends_the_photo_once(
    tmp_path: Path, sqlite_template: Path
) -> None:
    async with ops_app(tmp_path, sqlite_template, forum=True) as ops:
        renter = ops.fake.private_chat(777001, "Tom")
        await ops.post(ops.fake.text_update(renter, "hello"))
        await ops.deliver()
        conversation = await Conversation.get(channel="telegram")
        await ops.command(SUPPORT, f"/takeover {conversation.id}")
        await ops.deliver()
        photos = len(ops.fake.calls_to("sendPhoto"))
        ops.fake.fail_next("sendMessage")  # the photo reaches the topic, the words after it not
        await ops.post(ops.fake.photo_update(renter, JPEG, caption="the lock is broken"))
        await ops.deliver()
        ops.clock.advance(timedelta(minutes=1))
        await ops.deliver()
        assert len(ops.fake.calls_to("sendPhoto")) == photos + 1, "the photo is relayed once"
        words = [m for m in ops.ops_messages() if m.get("text", "").endswith("the lock is broken")]
        assert len(words) == 1
