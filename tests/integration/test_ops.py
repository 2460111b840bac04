"""The operators' Telegram side against the fake Bot API: every command for an allowed and a
refused role, bad arguments, the ID review by button, and an alert storm in one message."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import encode_basic_auth
from tortoise import Tortoise
from tortoise.transactions import in_transaction

from flows.effects import Alert, Outcome
from flows.staging import run_unit, stage_outcome
from locks import LockUnavailable
from locks.port import UnlockResult
from storage.journal import raise_alert
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
    Lock,
    OpsAlert,
    OutboxEffect,
    Renter,
    SimulatedUnlock,
    StaffMember,
    StaffRole,
)
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.integration.ops_harness import (
    MAINTENANCE,
    MANAGER,
    OPS_CHAT,
    OWNER,
    RENTER_PHONE,
    STRANGER,
    SUPPORT,
    Json,
    Ops,
    a_regular_with_twelve_rentals,
    altstadt_booking,
    buttons,
    ops_app,
)
from tests.support import rental_times

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8


@pytest.fixture
async def ops(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Ops]:
    async with ops_app(tmp_path, sqlite_template) as running:
        yield running


async def pending_check(ops: Ops, booking: Booking) -> IdentityCheck:
    """An ID photo as the journey stores it, with its review alert."""
    check = await IdentityCheck.create(
        renter_id=booking.renter_id,
        booking=booking,
        method="manual",
        document_encrypted=ops.runtime.journey.sealer.seal_bytes(JPEG),
        document_content_type="image/jpeg",
    )
    alert = Alert(
        "id_review",
        f"id-review:{check.id}",
        "ops.id_review",
        {"booking": booking.reference, "check": check.id},
    )
    async with in_transaction() as conn:
        await stage_outcome(conn, Outcome(alerts=[alert]), ops.clock.now())
    return check


# (command, a role allowed to use it, a role refused, a piece of the allowed answer)
COMMANDS = [
    ("/today", SUPPORT, MAINTENANCE, "KBIKE01"),
    ("/booking KBIKE01", SUPPORT, MAINTENANCE, "KBIKE01 (confirmed)"),
    ("/find Rita", SUPPORT, MAINTENANCE, "Rita Renter"),
    ("/find 15112345678", OWNER, MAINTENANCE, "KBIKE01"),
    ("/cancel KBIKE01 full", MANAGER, SUPPORT, "cancelled; refund €32.00"),
    ("/revoke KBIKE01", MANAGER, SUPPORT, "Revoking 2 codes"),
    ("/extend KBIKE01 2h", OWNER, SUPPORT, "now ends"),
    ("/open altstadt-b1", MAINTENANCE, SUPPORT, "Asking Bike box 1 to open"),
    ("/staffcode altstadt-c1 3 Cleaning", MAINTENANCE, SUPPORT, "Staff code"),
    ("/locks", SUPPORT, MAINTENANCE, "altstadt-b1 (Bike box 1)"),
    ("/audit KBIKE01", SUPPORT, MAINTENANCE, "access.planned"),
    ("/takeover KBIKE01", SUPPORT, MAINTENANCE, "topic"),
    ("/release", SUPPORT, MAINTENANCE, "You have no conversation"),
    ("/reply KBIKE01 hello", SUPPORT, MAINTENANCE, "not yours"),
    ("/approve {check}", SUPPORT, MAINTENANCE, "approved"),
    ("/reject {check} blurry photo", SUPPORT, MAINTENANCE, "rejected: blurry photo"),
    ("/help", MAINTENANCE, STRANGER, "/staffcode"),
]


@pytest.mark.parametrize(("text", "allowed", "refused", "expected"), COMMANDS)
async def test_each_command_for_an_allowed_and_a_refused_member(
    ops: Ops, text: str, allowed: int, refused: int, expected: str
) -> None:
    booking = await altstadt_booking(ops)
    check = await pending_check(ops, booking)
    await ops.deliver()
    text = text.format(check=check.id)
    effects = await OutboxEffect.all().count()
    refusal = await ops.command(refused, text)
    assert "may not use" in refusal or "Only Keyturn staff" in refusal
    audit = await AuditEvent.get(action="ops.refused")
    assert audit.actor == f"telegram:{refused}"
    assert await OutboxEffect.all().count() == effects, "a refused command changes nothing"
    await booking.refresh_from_db()
    assert booking.state == BookingState.CONFIRMED
    answer = await ops.command(allowed, text)
    assert expected in answer, answer
    assert "may not use" not in answer


async def test_commands_change_state_through_the_flows(ops: Ops) -> None:
    booking = await altstadt_booking(ops)
    await ops.command(OWNER, "/extend KBIKE01 2h")
    await booking.refresh_from_db()
    assert booking.end_at == ops.clock.now() + timedelta(hours=8)
    assert (await Extension.get(booking=booking)).state == "applied"
    await ops.deliver()
    assert any("now ends" in text for text in ops.sms.texts()), "the renter is told"

    answer = await ops.command(MAINTENANCE, "/staffcode altstadt-c1 3 Cleaning")
    assert "Sent to you in a private chat" in answer
    [pin_message] = ops.fake.sent(MAINTENANCE)
    code = await AccessCode.get(staff__telegram_user_id=MAINTENANCE)
    pin = ops.runtime.access.sealer.open(code.pin_encrypted)
    assert pin in pin_message["text"] and pin not in answer, "the PIN only goes privately"
    await ops.deliver()
    await code.refresh_from_db()
    assert code.state == AccessCodeState.SET and code.label == "Cleaning"

    await ops.command(MANAGER, "/cancel KBIKE01")
    await booking.refresh_from_db()
    assert booking.state == BookingState.CANCELLED
    await ops.deliver()
    codes = await AccessCode.filter(booking=booking)
    assert codes and all(c.state == AccessCodeState.REMOVED for c in codes)
    assert any("is cancelled" in text for text in ops.sms.texts())
    assert await AuditEvent.filter(actor=f"staff:{MANAGER}", action="booking.cancelled").exists()


async def test_extend_into_the_next_renters_turnaround_is_refused(ops: Ops) -> None:
    booking = await altstadt_booking(ops)  # Altstadt: 10 minutes before, 20 after
    bike = await Asset.get(code="B1")
    next_start = booking.end_at + timedelta(minutes=30)  # its range starts where ours ends
    await Booking.create(
        reference="KBIKE02",
        renter=await Renter.create(phone="+4915112345679"),
        asset=bike,
        **await rental_times(bike.id, next_start, next_start + timedelta(hours=2)),
        state=BookingState.CONFIRMED,
        currency="EUR",
        price_cents=1600,
    )
    answer = await ops.command(OWNER, "/extend KBIKE01 5m")
    assert "Cannot extend KBIKE01: the time after it is taken." in answer
    ends, blocked_until = booking.end_at, booking.blocked_until
    await booking.refresh_from_db()
    assert (booking.end_at, booking.blocked_until) == (ends, blocked_until)
    assert not await Extension.exists()


async def test_scope_and_strangers_are_refused_and_audited(ops: Ops) -> None:
    await altstadt_booking(ops)
    trailer = await Asset.get(code="T1")
    harbor = await Booking.create(
        reference="KHARB01",
        renter=await Renter.create(phone="+15550100001"),
        asset=trailer,
        **await rental_times(trailer.id, ops.clock.now(), ops.clock.now() + timedelta(hours=2)),
        state=BookingState.CONFIRMED,
        currency="USD",
        price_cents=2500,
    )
    answer = await ops.command(SUPPORT, f"/booking {harbor.reference}")
    assert "outside your locations" in answer
    assert "outside your locations" in await ops.command(MAINTENANCE, "/open harbor-gate")
    assert "Only Keyturn staff" in await ops.command(STRANGER, "/today", private=True)
    refused = await AuditEvent.filter(action="ops.refused").values_list("actor", flat=True)
    assert set(refused) == {
        f"telegram:{SUPPORT}",
        f"telegram:{MAINTENANCE}",
        f"telegram:{STRANGER}",
    }


@pytest.mark.parametrize(
    ("text", "usage"),
    [
        ("/extend KBIKE01 soon", "Usage: /extend <ref> <duration>"),
        ("/staffcode altstadt-b1 forever", "Usage: /staffcode <lock> <hours>"),
        ("/cancel KBIKE01 lots", "Usage: /cancel <ref>"),
        ("/booking", "Usage: /booking <ref>"),
        ("/approve first", "Usage: /approve <check>"),
        # Digits str.isdigit takes that are not ASCII, and numbers past every column and bound.
        ("/approve ²", "Usage: /approve <check>"),
        ("/approve " + "9" * 40, "Usage: /approve <check>"),
        ("/reject ① blurry", "Usage: /reject <check>"),
        ("/staffcode altstadt-c1 ١٠", "Usage: /staffcode <lock> <hours>"),
        ("/staffcode altstadt-c1 1e2", "Usage: /staffcode <lock> <hours>"),
        ("/cancel KBIKE01 NaN", "Usage: /cancel <ref>"),
        ("/cancel KBIKE01 Infinity", "Usage: /cancel <ref>"),
        ("/cancel KBIKE01 ３", "Usage: /cancel <ref>"),
        ("/extend KBIKE01 999999999999 days", "Usage: /extend <ref> <duration>"),
        ("/extend KBIKE01 " + "9" * 400, "Usage: /extend <ref> <duration>"),
    ],
)
async def test_a_bad_argument_answers_with_the_usage_and_changes_nothing(
    ops: Ops, text: str, usage: str
) -> None:
    booking = await altstadt_booking(ops)
    effects = await OutboxEffect.all().count()
    codes = await AccessCode.all().count()
    answer = await ops.command(OWNER, text)
    assert answer.startswith(usage), answer
    assert await OutboxEffect.all().count() == effects
    assert await AccessCode.all().count() == codes
    assert not await Extension.exists()
    await booking.refresh_from_db()
    assert (
        booking.state == BookingState.CONFIRMED
        and booking.end_at == booking.start_at + timedelta(hours=4)
    )


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("12.5", "12.5 is not a refund it can get"),  # yen have no decimals
        ("1,500", "1,500 is not a refund it can get"),  # not a thousand and a half yen
        ("3001", "3001 is not a refund it can get"),  # more than was paid
    ],
)
async def test_a_refund_amount_is_read_in_the_bookings_currency(
    ops: Ops, amount: str, reason: str
) -> None:
    booking = await altstadt_booking(ops)
    await Asset.filter(code="B1").update(currency="JPY")
    await Booking.filter(id=booking.id).update(currency="JPY", price_cents=3000)
    effects = await OutboxEffect.all().count()

    refused = await ops.command(MANAGER, f"/cancel KBIKE01 {amount}")

    assert refused.startswith(f"Booking KBIKE01: {reason}"), refused
    assert "an amount in JPY from 0 to 3000" in refused
    await booking.refresh_from_db()
    assert booking.state == BookingState.CONFIRMED
    assert await OutboxEffect.all().count() == effects

    cancelled = await ops.command(MANAGER, "/cancel KBIKE01 1500")

    assert cancelled == "Booking KBIKE01 cancelled; refund ¥1,500.", cancelled
    await ops.deliver()
    assert any("¥1,500" in text and "is cancelled" in text for text in ops.sms.texts())


async def test_the_id_review_round_trip_by_button(ops: Ops) -> None:
    booking = await altstadt_booking(ops, BookingState.AWAITING_ID)
    check = await pending_check(ops, booking)
    await ops.deliver()
    [photo_call] = ops.fake.calls_to("sendPhoto")
    assert photo_call.files["photo"] == JPEG and int(photo_call.params["chat_id"]) == OPS_CHAT
    photo, alert_message = ops.ops_messages()
    assert f"check {check.id}" in photo["caption"]
    assert f"An ID is waiting for review for booking {booking.reference}" in alert_message["text"]
    assert buttons(alert_message) == [
        ("Approve", f"ops:approve:{check.id}"),
        ("Reject", f"ops:reject:{check.id}"),
    ]
    # A maintenance member cannot decide.
    assert "may not use" in await ops.press(MAINTENANCE, alert_message, f"ops:approve:{check.id}")
    await check.refresh_from_db()
    assert check.status == "pending"
    answer = await ops.press(SUPPORT, alert_message, f"ops:approve:{check.id}")
    assert f"ID check {check.id} approved" in answer
    await check.refresh_from_db()
    assert check.status == "approved" and check.document_encrypted is None
    assert (await Renter.get(id=booking.renter_id)).verified_at is not None
    await ops.deliver()
    edited = ops.fake.messages[(OPS_CHAT, alert_message["message_id"])]
    assert "Resolved" in edited["text"] and "by Jonas Weber" in edited["text"]
    assert buttons(edited) == []
    assert len(ops.fake.calls_to("sendPhoto")) == 1
    assert (OPS_CHAT, photo["message_id"]) in ops.fake.deleted, "the ID image leaves the group"
    assert (OPS_CHAT, photo["message_id"]) not in ops.fake.messages

    # Rejecting asks the member for the reason, which they give by replying to the prompt.
    second = await pending_check(ops, booking)
    await ops.deliver()
    message = ops.ops_messages()[-1]
    prompt_text = await ops.press(SUPPORT, message, f"ops:reject:{second.id}")
    assert prompt_text.startswith(f"Jonas Weber, why is ID check {second.id} rejected?")
    prompt = ops.ops_messages()[-1]
    force_reply = ops.fake.force_replies[(OPS_CHAT, prompt["message_id"])]
    assert force_reply["selective"] is True and force_reply["input_field_placeholder"]
    [mention] = prompt["entities"]
    assert mention["type"] == "text_mention" and mention["user"]["id"] == SUPPORT
    assert (mention["offset"], mention["length"]) == (0, len("Jonas Weber"))
    await second.refresh_from_db()
    assert second.status == "pending", "nothing is decided before the reason comes"
    assert "reason for the rejection" in await ops.reply(SUPPORT, prompt, "/approve")
    assert await ops.reply(MAINTENANCE, prompt, "blurry") == "", "the prompt asked Jonas"
    # A bot message that only reads like a prompt (a renter's words relayed, say) asks nobody.
    assert ops.runtime.ops_chat is not None
    lookalike_id = await ops.runtime.ops_chat.send(OPS_CHAT, prompt_text)
    lookalike = ops.fake.messages[(OPS_CHAT, lookalike_id)]
    assert await ops.reply(SUPPORT, lookalike, "blurry") == ""
    await second.refresh_from_db()
    assert second.status == "pending"
    answer = await ops.reply(SUPPORT, prompt, "face not visible")
    assert f"ID check {second.id} rejected: face not visible" in answer
    await second.refresh_from_db()
    assert second.status == "rejected" and second.reason == "face not visible"
    assert "was already decided" in await ops.press(SUPPORT, message, f"ops:reject:{second.id}")
    # /reject with the reason still works, and a reply to any other bot message is not taken
    # for a reason.
    third = await pending_check(ops, booking)
    assert await ops.reply(SUPPORT, ops.ops_messages()[0], "face not visible") == ""
    assert "rejected" in await ops.command(SUPPORT, f"/reject {third.id} expired licence")
    await third.refresh_from_db()
    assert third.status == "rejected" and third.reason == "expired licence"


async def test_an_alert_storm_is_one_message_that_updates(ops: Ops) -> None:
    body = "Courtyard gate is offline"
    for burst in range(5):
        for _ in range(10):
            await raise_alert(
                None,
                now=ops.clock.now(),
                kind="lock_offline",
                group_key="lock-offline:altstadt-gate",
                message_key="ops.lock_offline",
                params={"lock": "Courtyard gate", "at_risk": "none"},
            )
        await ops.deliver()
        ops.clock.advance(timedelta(minutes=burst + 1))
    alerts = [m for m in ops.ops_messages() if body in m.get("text", "")]
    assert len(alerts) == 1, "one message for the whole storm"
    [message] = alerts
    assert "Seen 50 times" in message["text"]
    assert buttons(message) == [("Resolve", f"ops:resolve:{(await OpsAlert.get()).id}")]
    edits = ops.fake.calls_to("editMessageText")
    assert 1 <= len(edits) <= 4
    answer = await ops.press(OWNER, message, buttons(message)[0][1])
    assert "Resolved." in answer
    await ops.deliver()
    message = ops.fake.messages[(OPS_CHAT, message["message_id"])]
    assert "Resolved" in message["text"] and "by Ana Reyes" in message["text"]
    assert buttons(message) == []
    alert = await OpsAlert.get()
    assert alert.occurrences == 50 and alert.resolved_by == "Ana Reyes"
    assert await AuditEvent.filter(action="alert.resolved", actor=f"staff:{OWNER}").exists()


async def test_a_failing_revocation_is_retried_by_button(ops: Ops) -> None:
    booking = await altstadt_booking(ops)
    code = await AccessCode.filter(booking=booking).first()
    assert code is not None
    [effect] = [
        e for e in await OutboxEffect.filter(kind="access.set") if e.payload["code"] == code.id
    ]
    await raise_alert(
        None,
        now=ops.clock.now(),
        kind="effect_failing",
        group_key=f"effect:{effect.id}",
        message_key="ops.effect_failing",
        params={"kind": "access.remove", "attempts": 5, "error": "LockUnavailable"},
    )
    await OutboxEffect.filter(id=effect.id).update(
        state="dead", next_attempt_at=ops.clock.now() + timedelta(hours=1)
    )
    await ops.deliver()
    message = ops.ops_messages()[-1]
    assert [label for label, _ in buttons(message)] == ["Retry", "Resolve"]
    assert "may not use" in await ops.press(SUPPORT, message, buttons(message)[0][1])
    assert "Trying again" in await ops.press(MANAGER, message, buttons(message)[0][1])
    await effect.refresh_from_db()
    assert effect.state == "pending" and effect.next_attempt_at <= ops.clock.now()
    assert not await Conversation.filter(agent_id__isnull=False).exists()


async def stored_anywhere(needle: str) -> list[str]:
    """Every stored row whose text mentions ``needle``."""
    found = []
    for model in Tortoise.apps["models"].values():
        for row in await model.all():
            values = {name: getattr(row, name) for name in model._meta.db_fields}
            if needle in json.dumps(values, default=str):
                found.append(f"{model.__name__} {row.pk}")
    return found


async def test_an_id_sent_by_mms_is_deleted_at_twilio_when_ops_decide(
    tmp_path: Path, sqlite_template: Path
) -> None:
    twilio = FakeTwilio(public_url="https://keyturn.example")
    async with twilio.serving(), ops_app(tmp_path, sqlite_template, twilio=twilio) as ops:
        booking = await altstadt_booking(ops, BookingState.AWAITING_ID)
        url = twilio.add_media(JPEG, "image/jpeg")
        message_sid, media_sid = url.split("/Messages/")[1].split("/Media/")
        form, headers = twilio.inbound(from_=RENTER_PHONE, media=[(url, "image/jpeg")])
        assert (await ops.client.post("/webhooks/twilio", data=form, headers=headers)).status == 200
        await ops.deliver()
        check = await IdentityCheck.get(booking=booking)
        assert check.status == "pending" and await stored_anywhere(media_sid)
        assert twilio.deleted_media == []

        twilio.fail_next_media_delete()  # Twilio has a bad moment: the deletion is retried
        answer = await ops.command(SUPPORT, f"/approve {check.id}")
        assert f"ID check {check.id} approved" in answer
        await ops.deliver()
        effect = await OutboxEffect.get(kind="identity.delete_media")
        assert effect.state == EffectState.PENDING and effect.attempts == 1 and effect.critical
        assert twilio.deleted_media == []
        ops.clock.advance(timedelta(minutes=5))
        await ops.deliver()

        assert twilio.deleted_media == [(message_sid, media_sid)]
        auth = {"Authorization": encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN)}
        fetched = await ops.client.session.get(url, headers=auth)
        assert fetched.status == 404, "Twilio no longer serves the photo"
        assert await stored_anywhere(media_sid) == []
        assert await stored_anywhere(url) == []
        await booking.refresh_from_db()
        assert booking.state == BookingState.CONFIRMED
        effect = await OutboxEffect.get(kind="identity.delete_media")
        assert effect.state == EffectState.DONE

        # The collect effect run again (a worker died before marking it done): nothing is
        # fetched from Twilio and the renter is not told their ID is unreadable.
        before, fetches = len(twilio.sent), len(twilio.media_requests)
        collect = await OutboxEffect.get(kind="identity.collect")
        follow_up = await ops.runtime.journey.execute_collect_id(collect)
        if follow_up is not None:  # what it learnt, committed as the dispatcher would
            await run_unit(follow_up, ops.runtime.clock.now())
        await ops.deliver()
        assert (len(twilio.sent), len(twilio.media_requests)) == (before, fetches)


async def test_an_id_still_in_review_is_deleted_when_its_booking_is_cancelled(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """The renter cancels before anyone looked at their ID: it has no purpose left, so it goes
    as a decision would make it go, at Twilio too, and the review leaves the group."""
    twilio = FakeTwilio(public_url="https://keyturn.example")
    async with twilio.serving(), ops_app(tmp_path, sqlite_template, twilio=twilio) as ops:
        booking = await altstadt_booking(ops, BookingState.AWAITING_ID)
        url = twilio.add_media(JPEG, "image/jpeg")
        message_sid, media_sid = url.split("/Messages/")[1].split("/Media/")
        form, headers = twilio.inbound(from_=RENTER_PHONE, media=[(url, "image/jpeg")])
        assert (await ops.client.post("/webhooks/twilio", data=form, headers=headers)).status == 200
        await ops.deliver()
        check = await IdentityCheck.get(booking=booking)
        assert check.status == "pending" and check.document_encrypted
        review = await OpsAlert.get(open_key=f"id-review:{check.id}")

        before = len(twilio.sent)
        await ops.renter_says("CANCEL")
        [question] = [m.body or "" for m in twilio.sent[before:]]
        assert "YES" in question
        await ops.renter_says("YES")

        await booking.refresh_from_db()
        assert booking.state == BookingState.CANCELLED
        await check.refresh_from_db()
        assert (check.status, check.document_encrypted) == ("withdrawn", None)
        assert twilio.deleted_media == [(message_sid, media_sid)]
        assert await stored_anywhere(media_sid) == []
        await review.refresh_from_db()
        assert review.resolved_at is not None
        answer = await ops.command(SUPPORT, f"/approve {check.id}")
        assert "approved" not in answer
        await booking.refresh_from_db()
        assert booking.state == BookingState.CANCELLED


async def test_a_telegram_id_file_id_is_forgotten_when_ops_decide(ops: Ops) -> None:
    booking = await altstadt_booking(ops, BookingState.AWAITING_ID)
    renter = ops.fake.private_chat(777000111, "Rita")
    await Renter.filter(id=booking.renter_id).update(phone=None, telegram_id=777000111)
    update = ops.fake.photo_update(renter, JPEG)
    file_id = update["message"]["photo"][-1]["file_id"]
    await ops.post(update)
    await ops.deliver()
    check = await IdentityCheck.get(booking=booking)
    assert await stored_anywhere(file_id), "the file id is what the photo is fetched by"

    answer = await ops.command(SUPPORT, f"/reject {check.id} blurred")
    assert f"ID check {check.id} rejected" in answer
    await ops.deliver()

    assert await stored_anywhere(file_id) == []
    await check.refresh_from_db()
    assert check.status == "rejected" and check.document_encrypted is None


async def harbor_booking(ops: Ops) -> Booking:
    """A trailer booking at Harbor Yard (outside the Altstadt members' scope), codes planned."""
    trailer = await Asset.get(code="T1")
    starts = ops.clock.now() + timedelta(hours=2)
    booking = await Booking.create(
        reference="KHARB01",
        renter=await Renter.create(phone="+15550100001", name="Hal Harbor"),
        asset=trailer,
        **await rental_times(trailer.id, starts, starts + timedelta(hours=4)),
        state=BookingState.CONFIRMED,
        currency="USD",
        price_cents=5000,
    )
    async with in_transaction() as conn:
        outcome = await ops.runtime.access.plan_booking_codes(conn, booking)
        await stage_outcome(conn, outcome, ops.clock.now())
    await ops.deliver()
    return booking


async def a_dead_effect_alert(ops: Ops, booking: Booking) -> tuple[OutboxEffect, Json]:
    """One of the booking's code effects, given up on, with its alert in the ops group."""
    code_ids = await AccessCode.filter(booking=booking).values_list("id", flat=True)
    [effect, *_] = [
        e for e in await OutboxEffect.filter(kind="access.set") if e.payload["code"] in code_ids
    ]
    await raise_alert(
        None,
        now=ops.clock.now(),
        kind="effect_failing",
        group_key=f"effect:{effect.id}",
        message_key="ops.effect_dead",
        params={"kind": "access.set", "attempts": 8, "error": "LockUnavailable"},
    )
    await OutboxEffect.filter(id=effect.id).update(
        state="dead", next_attempt_at=ops.clock.now() + timedelta(hours=1)
    )
    await ops.deliver()
    return effect, ops.ops_messages()[-1]


ALTSTADT_MANAGER = 100000009


async def altstadt_manager(ops: Ops) -> None:
    """A manager (who may retry) whose scope is Altstadt only."""
    await StaffMember.create(
        telegram_user_id=ALTSTADT_MANAGER,
        name="Lena Lead",
        role=StaffRole.MANAGER,
        location_scope=["altstadt"],
    )
    ops.users[ALTSTADT_MANAGER] = ops.fake.private_chat(ALTSTADT_MANAGER, "Lena")


async def test_alert_buttons_are_refused_outside_the_members_locations(ops: Ops) -> None:
    await altstadt_manager(ops)
    booking = await harbor_booking(ops)
    effect, message = await a_dead_effect_alert(ops, booking)
    retry, resolve = (data for _, data in buttons(message))
    for member in (SUPPORT, ALTSTADT_MANAGER):  # both Altstadt-only
        answer = await ops.press(member, message, resolve)
        assert (
            answer == f"Alert {(await OpsAlert.get()).id} is about a location outside yours;"
            " nothing was changed."
        )
    answer = await ops.press(ALTSTADT_MANAGER, message, retry)
    assert "outside yours" in answer and "Trying again" not in answer
    await effect.refresh_from_db()
    assert effect.state == "dead", "the dead effect is not queued again"
    alert = await OpsAlert.get()
    assert alert.resolved_at is None and alert.open_key is not None
    refused = await AuditEvent.filter(action="ops.refused").values_list("actor", flat=True)
    assert sorted(refused) == sorted(
        [f"telegram:{SUPPORT}", f"telegram:{ALTSTADT_MANAGER}", f"telegram:{ALTSTADT_MANAGER}"]
    )
    assert not await AuditEvent.filter(action__in=["alert.resolved", "alert.retried"]).exists()

    # A lock alert at Harbor is as far out of reach; one at Altstadt is theirs.
    for lock in ("harbor-gate", "altstadt-gate"):
        await raise_alert(
            None,
            now=ops.clock.now(),
            kind="lock_offline",
            group_key=f"lock-offline:{lock}",
            message_key="ops.lock_offline",
            params={"lock": lock, "at_risk": "none"},
        )
    await ops.deliver()
    harbor_gate, altstadt_gate = ops.ops_messages()[-2:]
    assert "outside yours" in await ops.press(SUPPORT, harbor_gate, buttons(harbor_gate)[0][1])
    assert "Resolved." in await ops.press(SUPPORT, altstadt_gate, buttons(altstadt_gate)[0][1])
    assert await OpsAlert.filter(resolved_at__isnull=True).count() == 2

    # Members without a location scope act on every alert.
    assert "Trying again" in await ops.press(MANAGER, message, retry)
    await effect.refresh_from_db()
    assert effect.state == "pending"
    assert "Resolved." in await ops.press(OWNER, harbor_gate, buttons(harbor_gate)[0][1])


async def test_an_id_review_alert_cannot_be_resolved_only_decided(ops: Ops) -> None:
    booking = await altstadt_booking(ops, BookingState.AWAITING_ID)
    check = await pending_check(ops, booking)
    await ops.deliver()
    photo, message = ops.ops_messages()
    alert = await OpsAlert.get(kind="id_review")
    for member in (SUPPORT, OWNER):  # a forged button: the alert offers none
        answer = await ops.press(member, message, f"ops:resolve:{alert.id}")
        assert answer == (
            "An ID review is decided with Approve or Reject, not Resolve: "
            f"ID check {check.id} is still waiting."
        )
    await ops.deliver()
    await check.refresh_from_db()
    assert check.status == "pending" and check.document_encrypted is not None
    await alert.refresh_from_db()
    assert alert.resolved_at is None
    assert (OPS_CHAT, photo["message_id"]) not in ops.fake.deleted, "the photo stays for review"
    assert buttons(ops.fake.messages[(OPS_CHAT, message["message_id"])]) == [
        ("Approve", f"ops:approve:{check.id}"),
        ("Reject", f"ops:reject:{check.id}"),
    ]
    assert "approved" in await ops.press(SUPPORT, message, f"ops:approve:{check.id}")


async def test_an_id_review_outside_the_members_locations_is_refused(ops: Ops) -> None:
    booking = await harbor_booking(ops)
    await Booking.filter(id=booking.id).update(state=BookingState.AWAITING_ID)
    check = await pending_check(ops, booking)
    await ops.deliver()
    message = ops.ops_messages()[-1]
    for data in (f"ops:approve:{check.id}", f"ops:reject:{check.id}"):
        assert "KHARB01 is outside your locations" in await ops.press(SUPPORT, message, data)
    await check.refresh_from_db()
    assert check.status == "pending" and check.document_encrypted is not None


@pytest.mark.parametrize(
    "data",
    [
        "ops:resolve:²",
        "ops:retry:①",
        "ops:approve:٣",
        "ops:reject:３",
        "ops:take:²",
        "ops:resolve:" + "9" * 40,
        "ops:approve:" + "9" * 19,
        "ops:take:" + "9" * 12,
    ],
)
async def test_a_button_whose_id_is_no_number_is_answered_and_changes_nothing(
    ops: Ops, data: str
) -> None:
    booking = await altstadt_booking(ops, BookingState.AWAITING_ID)
    check = await pending_check(ops, booking)
    await ops.deliver()
    message = ops.ops_messages()[-1]
    effects = await OutboxEffect.all().count()
    answer = await ops.press(OWNER, message, data)
    assert answer.startswith("Nothing found for "), answer
    await check.refresh_from_db()
    assert check.status == "pending"
    assert await OutboxEffect.all().count() == effects
    assert not await Conversation.filter(agent_id__isnull=False).exists()


@pytest.mark.parametrize(
    "text",
    [
        "/takeover ²",
        "/reply ٣ hello",
        "/takeover " + "9" * 30,
        "/takeover +" + "1" * 30,
        "/takeover " + "ß" * 12,  # upper-cased, twice as long as any reference
        "/booking " + "K" * 30,
        "/audit " + "ß" * 7,
        "/open " + "gate" * 20,
    ],
)
async def test_an_id_no_record_can_have_is_not_found(ops: Ops, text: str) -> None:
    await altstadt_booking(ops)
    answer = await ops.command(OWNER, text)
    assert answer.startswith("Nothing found for "), answer
    assert not await Conversation.filter(agent_id__isnull=False).exists()


async def harbor_subject(ops: Ops, kind: str, booking: Booking) -> str:
    """The group key of an alert of ``kind`` about something at Harbor Yard."""
    code = await AccessCode.filter(booking=booking).first()
    assert code is not None
    if kind == "agent":
        await ops.renter_says("AGENT", phone="+15550100001")
        conversation = await Conversation.get(renter_id=booking.renter_id)
        return f"agent:{conversation.id}"
    if kind == "effect":  # an effect about the booking itself, not one of its codes
        effect = await OutboxEffect.create(
            kind="payment.refund",
            payload={"booking": booking.id, "amount": 100},
            idempotency_key="refund:KHARB01:test",
            state="dead",
            next_attempt_at=ops.clock.now() + timedelta(hours=1),
            created_at=ops.clock.now(),
        )
        return f"effect:{effect.id}"
    return {
        "payment-failed": "payment-failed:KHARB01",
        "lock-battery": "lock-battery:harbor-t1",
        "asset-without-lock": f"asset-without-lock:{booking.asset_id}",
        "code-cannot-be-revoked": f"code-cannot-be-revoked:{code.id}",
    }[kind]


@pytest.mark.parametrize(
    "kind",
    [
        "payment-failed",
        "lock-battery",
        "asset-without-lock",
        "code-cannot-be-revoked",
        "agent",
        "effect",
    ],
)
async def test_every_kind_of_alert_at_another_location_is_out_of_reach(ops: Ops, kind: str) -> None:
    await altstadt_manager(ops)
    booking = await harbor_booking(ops)
    group_key = await harbor_subject(ops, kind, booking)
    alert = await raise_alert(
        None,
        now=ops.clock.now(),
        kind="effect_failing" if kind == "effect" else kind.replace("-", "_"),
        group_key=group_key,
        message_key="ops.effect_dead",
        params={"kind": "test", "attempts": 8, "error": "LockUnavailable"},
    )
    await ops.deliver()
    message = ops.ops_messages()[-1]
    effects = await OutboxEffect.filter(state="pending").count()
    for member, action in (
        (SUPPORT, "resolve"),
        (ALTSTADT_MANAGER, "resolve"),
        (ALTSTADT_MANAGER, "retry"),
    ):
        answer = await ops.press(member, message, f"ops:{action}:{alert.id}")
        assert answer == f"Alert {alert.id} is about a location outside yours; nothing was changed."
    await alert.refresh_from_db()
    assert alert.resolved_at is None
    assert await OutboxEffect.filter(state="pending").count() == effects
    assert "Resolved." in await ops.press(OWNER, message, f"ops:resolve:{alert.id}")


@pytest.mark.parametrize("member", [STRANGER, SUPPORT])
async def test_a_command_name_longer_than_any_is_answered(ops: Ops, member: int) -> None:
    answer = await ops.command(member, "/" + "x" * 100)
    assert "Only Keyturn staff" in answer or "Unknown command" in answer, answer
    if member == STRANGER:
        [audit] = await AuditEvent.filter(action="ops.refused")
        assert audit.actor == f"telegram:{STRANGER}" and audit.subject.startswith("xxxx")


class _DownLock:
    """A provider whose locks do not answer an unlock (the rest is the simulated one's)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.unlocks = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def unlock(
        self, device_id: str, *, wait: float | None = None, within: float | None = None
    ) -> UnlockResult:
        self.unlocks += 1
        raise LockUnavailable("the bridge does not answer")


async def test_ops_open_is_reported_once_the_lock_confirms_or_that_it_could_not(ops: Ops) -> None:
    answer = await ops.command(MAINTENANCE, "/open altstadt-b1")
    assert "Asking Bike box 1 to open" in answer and "opened" not in answer, answer
    await ops.deliver()
    assert await SimulatedUnlock.filter(source="remote", accepted=True).count() == 1
    assert any(
        "Bike box 1 opened remotely (Max Fixer)" in m.get("text", "") for m in ops.ops_messages()
    )

    down = _DownLock(ops.runtime.access.providers["simulated"])
    ops.runtime.access.providers["simulated"] = down
    ops.clock.advance(timedelta(minutes=5))
    await ops.command(MAINTENANCE, "/open altstadt-b1")
    for _ in range(11):  # 55 s: still trying
        await ops.deliver()
        ops.clock.advance(timedelta(seconds=5))
    could_not = "Bike box 1 could not be opened remotely in time for Max Fixer"
    assert not any(could_not in m.get("text", "") for m in ops.ops_messages())
    assert down.unlocks >= 3
    ops.clock.advance(timedelta(seconds=5))
    await ops.deliver()
    assert any(could_not in m.get("text", "") for m in ops.ops_messages())
    tried = down.unlocks
    ops.clock.advance(timedelta(hours=1))
    await ops.deliver()
    assert down.unlocks == tried, "nothing is tried past the lifetime"


async def test_a_busy_day_shows_its_first_entries_and_how_to_see_the_rest(ops: Ops) -> None:
    """A business with many rentals a day: /today stays one readable message, saying how many
    more entries a location has and how to list that location alone."""
    first = await altstadt_booking(ops)
    bike = await Asset.get(code="B1")
    start = first.end_at + timedelta(minutes=30)
    for n in range(40):  # finished rentals of the day, each 10 minutes, one after the other
        at = start + timedelta(minutes=10 * n)
        await Booking.create(
            reference=f"KDAY{n:03d}",
            renter_id=first.renter_id,
            asset=bike,
            **await rental_times(bike.id, at, at + timedelta(minutes=10)),
            state=BookingState.COMPLETED,
            currency="EUR",
            price_cents=500,
        )

    everywhere = await ops.command(OWNER, "/today")
    # Two locations share the answer's 60 entries: 30 of Altstadt's 82 (41 starts, 41 ends).
    assert everywhere.count("KDAY") + everywhere.count("KBIKE01") == 30, everywhere
    assert "… and 52 more today: /today altstadt" in everywhere
    assert "KBIKE01" in everywhere  # the day's first entries come first

    alone = await ops.command(SUPPORT, "/today altstadt")
    assert alone.count("KDAY") + alone.count("KBIKE01") == 60, alone
    assert "… and 22 more today: /today altstadt" in alone
    assert "Harbor" not in alone

    assert await ops.command(SUPPORT, "/today nowhere") == "Nothing found for nowhere."


async def test_a_site_with_many_locks_lists_those_that_need_a_look_first(ops: Ops) -> None:
    """Hundreds of locks: /locks stays one readable message, the offline lock and the one
    whose battery runs low come first, and /locks <location> lists one location."""
    gate = await Lock.get(key="altstadt-gate")
    await Lock.filter(location_id=gate.location_id).update(online=True, battery_level=0.8)
    for n in range(70):  # a row of storage bays, all well
        await Lock.create(
            key=f"altstadt-bay{n:02d}",
            provider="simulated",
            device_id=f"sim-altstadt-bay{n:02d}",
            label=f"Bay {n}",
            timezone=gate.timezone,
            location_id=gate.location_id,
            online=True,
            battery_level=0.9,
        )
    await Lock.filter(key="altstadt-bay42").update(online=False)
    await Lock.filter(key="altstadt-bay07").update(battery_level=0.05)

    everywhere = await ops.command(OWNER, "/locks")
    lines = everywhere.splitlines()
    assert lines[0].startswith("altstadt-bay42 (Bay 42)"), everywhere
    assert lines[1].startswith("altstadt-bay07 (Bay 7)") and "5%" in lines[1], everywhere
    assert "… and 43 more locks: /locks altstadt" in everywhere  # 30 of Altstadt's 73
    assert "harbor-gate" in everywhere

    alone = await ops.command(OWNER, "/locks altstadt")
    assert "harbor" not in alone and "… and 13 more locks: /locks altstadt" in alone
    assert await ops.command(OWNER, "/locks nowhere") == "Nothing found for nowhere."


async def test_find_shows_a_regulars_five_latest_bookings_newest_first(ops: Ops) -> None:
    newest_first = await a_regular_with_twelve_rentals(ops)
    answer = await ops.command(SUPPORT, "/find Rita")
    shown = [part.split()[0] for part in answer.split(": ", 1)[1].split(", ")]
    assert shown == newest_first[:5], answer
