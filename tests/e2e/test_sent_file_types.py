"""A file a renter sends is what its own bytes say, not what the browser, the phone or the
provider declares: a PDF or a page of script declared image/jpeg is refused (on the upload
page with its 415 and message, in the chat with the ask again) and nothing is stored; a real
photo whose declared image type is wrong (a JPEG named .png) is stored as what it is. A PDF
sent as what it is, an ID's scan, reaches the operators as a document they can review."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.transports.telegram_routes import SECRET_HEADER, WEBHOOK_PATH
from storage.models import (
    Booking,
    BookingState,
    ConditionPhoto,
    IdentityCheck,
    OpsAlert,
    StaffMember,
    StaffRole,
)
from tests.e2e import test_channel_journeys
from tests.e2e.test_channel_journeys import (
    BERLIN_PHONE,
    JPEG,
    PDF,
    TELEGRAM_SECRET,
    TwilioRenter,
    World,
    approve,
    booked_and_paid_by_sms,
    channel_world,
    checkout_session,
    photo_form,
    upload_path,
)

world = test_channel_journeys.world

SCRIPT = b"<!doctype html><html><script>fetch('/sandbox/api/ops')</script></html>"
WRONG_FILE_DE = "Diese Datei kann nicht verwendet werden"
OPS_CHAT = -1009876543210
REVIEWER = 700000001


async def test_an_id_upload_is_stored_as_what_its_bytes_are(world: World) -> None:
    renter = TwilioRenter(world, BERLIN_PHONE)
    booking, ask_id = await booked_and_paid_by_sms(world, renter)
    path = upload_path(ask_id)

    for content in (PDF, SCRIPT):
        posing = await world.client.post(path, data=photo_form(content, "image/jpeg"))
        assert posing.status == 415 and WRONG_FILE_DE in await posing.text()
    assert not await IdentityCheck.filter(booking=booking).exists()
    assert not await OpsAlert.filter(kind="id_review").exists()
    assert await renter.inbox() == []

    misnamed = await world.client.post(path, data=photo_form(JPEG, "image/png"))
    assert misnamed.status == 200 and "Foto ist angekommen" in await misnamed.text()
    check = await IdentityCheck.get(booking=booking)
    assert check.document_content_type == "image/jpeg"
    assert check.document_encrypted is not None
    assert world.runtime.journey.sealer.open_bytes(check.document_encrypted) == JPEG


async def test_an_id_by_mms_is_stored_as_what_its_bytes_are(world: World) -> None:
    renter = TwilioRenter(world)
    booking, _ask_id = await booked_and_paid_by_sms(world, renter)

    received, again = await renter.send_id(PDF, "image/jpeg")
    assert "checking your ID" in received
    assert "Please send a clear photo (JPEG or PNG) of your ID" in again
    assert await IdentityCheck.all().count() == 0
    assert not await OpsAlert.filter(kind="id_review").exists()

    [thanks] = await renter.send_id(JPEG, "image/png")
    assert "checking your ID" in thanks
    check = await IdentityCheck.get(booking=booking)
    assert check.status == "pending" and check.document_content_type == "image/jpeg"


async def pickup_started(world: World, renter: TwilioRenter) -> tuple[Booking, str]:
    """T2 booked, paid and approved, its pickup asking for the first photo: the booking and
    that ask."""
    await renter.say("BOOK T2 tomorrow 10-14")
    _holding, link = await renter.say("YES" if renter.phone != BERLIN_PHONE else "JA")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    [ask_id] = await renter.inbox()
    if renter.phone == BERLIN_PHONE:
        sent = await world.client.post(upload_path(ask_id), data=photo_form(JPEG, "image/jpeg"))
        assert sent.status == 200
        await renter.inbox()
    else:
        await renter.send_id()
    assert await approve(world, (await IdentityCheck.get()).id)
    await renter.inbox()
    booking = await Booking.get()
    await world.at(booking.start_at - timedelta(hours=2))
    await world.at(booking.start_at - timedelta(hours=1))
    _gate_message, first_ask = await renter.inbox()
    return booking, first_ask


async def test_a_condition_photo_upload_is_stored_as_what_its_bytes_are(world: World) -> None:
    renter = TwilioRenter(world, BERLIN_PHONE)
    booking, first_ask = await pickup_started(world, renter)
    path = upload_path(first_ask)

    for content in (PDF, SCRIPT):
        posing = await world.client.post(path, data=photo_form(content, "image/jpeg"))
        assert posing.status == 415 and WRONG_FILE_DE in await posing.text()
    assert await ConditionPhoto.all().count() == 0
    assert await renter.inbox() == []

    misnamed = await world.client.post(path, data=photo_form(JPEG, "image/png"))
    assert misnamed.status == 200 and "Foto ist angekommen" in await misnamed.text()
    [photo] = await ConditionPhoto.filter(booking=booking)
    assert (photo.prompt, photo.content_type) == ("the hitch", "image/jpeg")
    assert world.runtime.journey.sealer.open_bytes(photo.image_encrypted or "") == JPEG


async def test_a_condition_photo_by_mms_is_stored_as_what_its_bytes_are(world: World) -> None:
    renter = TwilioRenter(world)
    booking, first_ask = await pickup_started(world, renter)
    assert first_ask == "Photo 1 of 2: please send a photo of the hitch."

    for content in (PDF, SCRIPT):
        [unusable] = await renter.send_id(content, "image/jpeg")
        assert "could not use that photo" in unusable and "the hitch" in unusable
    assert await ConditionPhoto.all().count() == 0

    assert await renter.send_id(JPEG, "image/png") == [
        "Photo 2 of 2: please send a photo of the left side."
    ]
    [photo] = await ConditionPhoto.filter(booking=booking)
    assert (photo.prompt, photo.content_type) == ("the hitch", "image/jpeg")


async def test_an_id_uploaded_as_a_pdf_reaches_the_ops_group_as_a_document_to_review(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """Telegram takes no PDF in sendPhoto: the scan goes as a document, with the review's
    caption, and the review's buttons decide it."""
    env = {"TELEGRAM_OPS_CHAT_ID": str(OPS_CHAT)}
    async with channel_world(sqlite_template, tmp_path, env) as world:
        world.telegram.group_chat(OPS_CHAT)
        reviewer = world.telegram.private_chat(REVIEWER, "Sam")
        await StaffMember.create(
            telegram_user_id=REVIEWER, name="Sam", role=StaffRole.SUPPORT, location_scope=[]
        )
        renter = TwilioRenter(world, BERLIN_PHONE)
        booking, ask_id = await booked_and_paid_by_sms(world, renter)

        sent = await world.client.post(upload_path(ask_id), data=photo_form(PDF, "application/pdf"))
        assert sent.status == 200 and "Foto ist angekommen" in await sent.text()
        check = await IdentityCheck.get(booking=booking)
        assert check.document_content_type == "application/pdf"
        await world.run()

        [document, review] = world.telegram.sent(OPS_CHAT)
        assert document["document"]["mime_type"] == "application/pdf"
        assert document["document"]["file_name"] == f"id-{check.id}.pdf"
        assert document["caption"] == f"ID for booking {booking.reference} (check {check.id})"
        assert world.telegram.files[document["document"]["file_id"]].data == PDF
        assert not world.telegram.calls_to("sendPhoto")
        rows = review["reply_markup"]["inline_keyboard"]
        assert [b["callback_data"] for row in rows for b in row] == [
            f"ops:approve:{check.id}",
            f"ops:reject:{check.id}",
        ]

        press = world.telegram._press(reviewer, review, f"ops:approve:{check.id}")
        response = await world.client.post(
            WEBHOOK_PATH, json=press, headers={SECRET_HEADER: TELEGRAM_SECRET}
        )
        assert response.status == 200
        await world.run()
        await booking.refresh_from_db()
        assert booking.state == BookingState.CONFIRMED
        assert (OPS_CHAT, document["message_id"]) in world.telegram.deleted, "the scan is gone"
