"""The operators' Telegram side when Telegram sends an update again (it does until it gets a 2xx)
and when the ops group refuses a forum topic: each command acts once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from storage.models import AccessCode, Conversation, Extension, Renter
from tests.integration.ops_harness import (
    MAINTENANCE,
    OPS_CHAT,
    OWNER,
    RENTER_PHONE,
    SUPPORT,
    Ops,
    altstadt_booking,
    ops_app,
)


@pytest.fixture
async def ops(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Ops]:
    async with ops_app(tmp_path, sqlite_template) as running:
        yield running


async def test_a_command_delivered_twice_acts_once(ops: Ops) -> None:
    booking = await altstadt_booking(ops)
    extend = ops.fake.text_update(ops.users[OWNER], "/extend KBIKE01 2h", chat=ops.group)
    await ops.post(extend)
    await ops.post(extend)
    await booking.refresh_from_db()
    assert booking.end_at == ops.clock.now() + timedelta(hours=8), "extended by 2h, not 4h"
    assert await Extension.filter(booking=booking).count() == 1

    staffcode = ops.fake.text_update(
        ops.users[MAINTENANCE], "/staffcode altstadt-c1 3 Cleaning", chat=ops.group
    )
    await ops.post(staffcode)
    await ops.post(staffcode)
    assert await AccessCode.filter(staff__telegram_user_id=MAINTENANCE).count() == 1
    assert len(ops.fake.sent(MAINTENANCE)) == 1, "one PIN, sent once"

    await ops.deliver()
    now_ends = [text for text in ops.sms.texts() if "now ends" in text]
    assert len(now_ends) == 1, now_ends


async def test_a_reply_delivered_twice_reaches_the_renter_once(
    tmp_path: Path, sqlite_template: Path
) -> None:
    async with ops_app(tmp_path, sqlite_template, forum=False) as ops:
        await Renter.create(phone=RENTER_PHONE, name="Rita Renter", language="en")
        await ops.renter_says("hi")
        conversation = await Conversation.get(channel="sms")
        await ops.command(SUPPORT, f"/takeover {conversation.id}", private=True)
        reply = ops.fake.text_update(ops.users[SUPPORT], f"/reply {conversation.id} Which bike?")
        await ops.post(reply)
        await ops.post(reply)
        await ops.deliver()
        assert ops.sms.texts().count("Which bike?") == 1


async def test_a_take_over_whose_topic_cannot_be_made_is_answered_with_reply(ops: Ops) -> None:
    await Renter.create(phone=RENTER_PHONE, name="Rita Renter", language="en")
    await ops.renter_says("hi")
    conversation = await Conversation.get(channel="sms")
    ops.fake.fail_next("createForumTopic")
    answer = await ops.command(SUPPORT, f"/takeover {conversation.id}")  # answered with 200
    assert f"/reply {conversation.id} <text>" in answer, answer
    await conversation.refresh_from_db()
    assert conversation.agent_id == SUPPORT and conversation.agent_thread_id is None
    assert not ops.fake.topics.get(OPS_CHAT)
