"""Routes of the sandbox page: chat as a renter, watch alerts and audit events as an operator."""

from __future__ import annotations

import base64
import binascii
import html
import uuid
from pathlib import Path
from typing import Any

import phonenumbers
from aiohttp import web
from tortoise.queryset import QuerySet

from bot.keys import ACCESS, CHANNELS, CLOCK, ENGINE, JOURNEY, SEALER, TRANSLATOR
from bot.payment_routes import apply_payment_event
from bot.sandbox.channel import SandboxChannel
from bot.sandbox.clock_routes import setup_clock
from bot.sandbox.payments import PROVIDER, new_event_id
from bot.sandbox.reports import setup_reports
from bot.webhook_json import UnreadableJson, load_json
from flows.digits import DATABASE_ID_MAX, INT64_MAX, is_ascii_number, typed_int
from flows.engine import MAX_TEXT_LENGTH, SANDBOX_CHANNEL, ConversationEngine
from flows.i18n import Translator
from flows.messages import InboundMessage, Media
from flows.payments import PaymentEvent, PaymentEventKind
from flows.staging import stage_outcome
from storage.columns import fits_column
from storage.journal import record_audit, resolve_alert
from storage.models import (
    AuditEvent,
    Booking,
    Conversation,
    IdentityCheck,
    Lock,
    Message,
    OpsAlert,
    Payment,
)
from storage.money import Money
from storage.uow import unit_of_work

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 16 * 1024


def setup_sandbox(app: web.Application) -> None:
    app.router.add_get("/sandbox", page)
    app.router.add_post("/sandbox/api/messages", post_message)
    app.router.add_get("/sandbox/api/messages", list_messages)
    app.router.add_get("/sandbox/api/ops", ops_feed)
    app.router.add_post("/sandbox/api/alerts/{alert_id:\\d+}/resolve", resolve)
    app.router.add_get("/sandbox/api/locks", list_locks)
    app.router.add_post("/sandbox/api/keypad", keypad)
    app.router.add_get("/sandbox/pay/{session}", pay_page)
    app.router.add_post("/sandbox/pay/{session}", pay)
    app.router.add_get("/sandbox/api/identity", identity_checks)
    app.router.add_get("/sandbox/api/identity/{check:\\d+}/document", identity_document)
    app.router.add_post("/sandbox/api/identity/{check:\\d+}/decision", identity_decision)
    setup_reports(app)

    setup_clock(app)


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def _address(raw: Any) -> str:
    try:
        number = phonenumbers.parse(str(raw or ""), None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_possible_number(number):
        raise web.HTTPUnprocessableEntity(
            text="address must be a phone number in international form, like +15550100001"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _path_id(request: web.Request, name: str) -> int:
    """A record's id in the path: ASCII digits that fit its column (else nothing has it)."""
    number = typed_int(request.match_info[name], at_most=DATABASE_ID_MAX)
    if number is None:
        raise web.HTTPNotFound(text="no record with that id")
    return number


async def _json(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        body = load_json(await request.read())
    except UnreadableJson:  # also nested past any form's depth
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


async def post_message(request: web.Request) -> web.Response:
    body = await _json(request)
    address = _address(body.get("address"))
    text = str(body.get("text", ""))
    media: tuple[Media, ...] = ()
    image = body.get("image")
    if isinstance(image, str) and image:
        media = (_keep_image(request, image),)
    if not text.strip() and not media:
        raise web.HTTPUnprocessableEntity(text="text is empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise web.HTTPUnprocessableEntity(text=f"text is longer than {MAX_TEXT_LENGTH} characters")
    engine: ConversationEngine = request.app[ENGINE]
    message = InboundMessage(
        channel="sandbox",
        address=address,
        text=text,
        provider_id=str(body.get("id") or uuid.uuid4()),
        received_at=request.app[CLOCK].now(),
        media=media,
    )
    result = await engine.handle(message)
    return web.json_response({"result": result.value}, status=202)


async def list_messages(request: web.Request) -> web.Response:
    address = _address(request.query.get("address"))
    after = typed_int(request.query.get("after", "0") or "0", at_most=INT64_MAX)
    if after is None:
        raise web.HTTPBadRequest(text="after must be a message's id")
    conversation = await Conversation.get_or_none(channel="sandbox", address=address)
    if conversation is None:
        return web.json_response({"messages": []})
    rows = await Message.filter(conversation=conversation, id__gt=after).order_by("id").limit(200)
    messages = [
        {
            "id": row.id,
            "direction": row.direction,
            "text": request.app[SEALER].open(row.body) if row.sealed else row.body,
            "choices": row.choices,
            "status": row.status,
            "at": row.created_at.isoformat(),
        }
        for row in rows
    ]
    return web.json_response({"messages": messages})


async def ops_feed(request: web.Request) -> web.Response:
    translator: Translator = request.app[TRANSLATOR]
    after_audit = typed_int(request.query.get("after_audit", "0") or "0", at_most=INT64_MAX)
    if after_audit is None:
        raise web.HTTPBadRequest(text="after_audit must be an audit event's id")
    alerts = await OpsAlert.all().order_by("-updated_at", "-id").limit(50)
    audit = await AuditEvent.filter(id__gt=after_audit).order_by("id").limit(200)
    return web.json_response(
        {
            "alerts": [
                {
                    "id": a.id,
                    "kind": a.kind,
                    "text": translator.text("en", a.message_key, **a.params),
                    "occurrences": a.occurrences,
                    "opened_at": a.created_at.isoformat(),
                    "updated_at": a.updated_at.isoformat(),
                    "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None,
                    "resolved_by": a.resolved_by,
                }
                for a in alerts
            ],
            "audit": [
                {
                    "id": e.id,
                    "at": e.at.isoformat(),
                    "actor": e.actor,
                    "action": e.action,
                    "subject": e.subject,
                    "details": e.details,
                }
                for e in audit
            ],
        }
    )


async def resolve(request: web.Request) -> web.Response:
    alert = await OpsAlert.get_or_none(id=_path_id(request, "alert_id"))
    if alert is None or alert.open_key is None:
        raise web.HTTPNotFound(text="no open alert with that id")
    if alert.kind == "id_review":  # resolving would leave the check pending
        raise web.HTTPConflict(text="an ID review is decided with approve or reject, not resolved")
    now = request.app[CLOCK].now()
    # The alert is resolved with its audit event, or neither is.
    async with unit_of_work() as conn:
        if not await resolve_alert(conn, group_key=alert.open_key, now=now, by="sandbox operator"):
            raise web.HTTPNotFound(text="no open alert with that id")
        await record_audit(
            conn,
            at=now,
            actor="sandbox operator",
            action="alert.resolved",
            subject=f"alert:{alert.id}",
        )
    return web.json_response({"resolved": alert.id})


async def list_locks(request: web.Request) -> web.Response:
    locks = await Lock.filter(retired_at__isnull=True).order_by("key").prefetch_related("location")
    return web.json_response(
        {
            "locks": [
                {
                    "key": lock.key,
                    "label": lock.label,
                    "location": lock.location.name,
                    "provider": lock.provider,
                    "shared": lock.shared,
                    "online": lock.online,
                }
                for lock in locks
            ]
        }
    )


async def keypad(request: web.Request) -> web.Response:
    """Type a PIN on a simulated lock's keypad: it opens only inside the code's window."""
    body = await _json(request)
    key = str(body.get("lock", ""))
    lock = None
    if fits_column(Lock, "key", key):
        lock = await Lock.get_or_none(key=key, provider="simulated")
    if lock is None:
        raise web.HTTPNotFound(text="no simulated lock with that key")
    pin = str(body.get("pin", ""))
    if not is_ascii_number(pin, most_digits=8) or len(pin) < 4:
        raise web.HTTPUnprocessableEntity(text="a PIN is 4 to 8 digits")
    now = request.app[CLOCK].now()
    opens = await request.app[ACCESS].check_pin(lock, pin, now)
    await record_audit(
        None,
        at=now,
        actor="sandbox keypad",
        action="lock.keypad_opened" if opens else "lock.keypad_refused",
        subject=f"lock:{lock.key}",
    )
    return web.json_response({"opens": opens, "lock": lock.label})


IMAGE_TYPES = ("image/jpeg", "image/png")


def _keep_image(request: web.Request, data_url: str) -> Media:
    """A picture sent from the page as a data: URL, kept until the flow fetches it."""
    header, _, encoded = data_url.partition(",")
    content_type = header.removeprefix("data:").removesuffix(";base64")
    if content_type not in IMAGE_TYPES:
        raise web.HTTPUnprocessableEntity(text="send a JPEG or PNG picture")
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise web.HTTPBadRequest(text="the picture is not valid base64") from None
    channel = request.app[CHANNELS].get("sandbox")
    if not isinstance(channel, SandboxChannel):
        raise web.HTTPNotFound(text="the sandbox channel is not running")
    try:
        url = channel.keep_media(content, content_type)
    except ValueError:
        raise web.HTTPRequestEntityTooLarge(
            max_size=5 * 1024 * 1024, actual_size=len(content)
        ) from None
    return Media(url=url, content_type=content_type)


async def _sandbox_payment(request: web.Request) -> Payment:
    session = request.match_info["session"]
    payment = None
    if fits_column(Payment, "provider_ref", session):
        payment = await Payment.get_or_none(provider_ref=session, provider=PROVIDER)
    if payment is None:
        raise web.HTTPNotFound(text="no such checkout")
    return payment


async def pay_page(request: web.Request) -> web.Response:
    payment = await _sandbox_payment(request)
    booking = await Booking.get(id=payment.booking_id).prefetch_related("asset")
    amount = Money(payment.amount_cents, payment.currency).format("en")
    state = {
        "open": '<form method="post"><button>Pay {amount}</button></form>',
        "paid": "<p>Paid. You can go back to the chat.</p>",
    }.get(payment.status, f"<p>This checkout is {html.escape(payment.status)}.</p>")
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Keyturn sandbox checkout</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}
button{{font-size:1.1rem;padding:.6rem 1.4rem;background:#1f7aec;color:#fff;border:0;
border-radius:6px}}
</style></head><body><h1>Sandbox checkout</h1>
<p>{html.escape(booking.asset.label)} · booking {html.escape(booking.reference)}</p>
<p>Nothing is charged: this page stands in for the card payment.</p>
{state.format(amount=html.escape(amount))}</body></html>"""
    return web.Response(text=page, content_type="text/html")


async def pay(request: web.Request) -> web.Response:
    payment = await _sandbox_payment(request)
    booking = await Booking.get(id=payment.booking_id)
    session = payment.provider_ref or ""
    event = PaymentEvent(
        event_id=new_event_id(),
        kind=PaymentEventKind.CHECKOUT_PAID,
        occurred_at=request.app[CLOCK].now(),
        booking_reference=booking.reference,
        object_id=session,
        amount=payment.amount_cents,
        currency=payment.currency,
        payment_intent=f"sbx_pi_{session}",
        customer="sbx_cus_sandbox",
        payment_method="sbx_pm_card",
    )
    if payment.status == "open":
        await apply_payment_event(request.app[JOURNEY], PROVIDER, event)
    raise web.HTTPSeeOther(f"/sandbox/pay/{session}")


def _sandbox_checks() -> QuerySet[IdentityCheck]:
    """ID checks of sandbox renters only: next to real channels (``serve --sandbox``), the page
    never shows or decides a real renter's ID."""
    return IdentityCheck.filter(renter__conversations__channel=SANDBOX_CHANNEL).distinct()


async def identity_checks(request: web.Request) -> web.Response:
    checks = (
        await _sandbox_checks().filter(status="pending").order_by("id").prefetch_related("booking")
    )
    return web.json_response(
        {
            "checks": [
                {
                    "id": check.id,
                    "booking": check.booking.reference if check.booking else None,
                    "submitted_at": check.created_at.isoformat(),
                }
                for check in checks
            ]
        }
    )


async def identity_document(request: web.Request) -> web.Response:
    check = await _sandbox_checks().filter(id=_path_id(request, "check")).first()
    if check is None or check.document_encrypted is None:
        raise web.HTTPGone(text="the document was deleted when the decision was made")
    content = request.app[SEALER].open_bytes(check.document_encrypted)
    return web.Response(
        body=content,
        content_type=check.document_content_type or "application/octet-stream",
        headers={"Cache-Control": "no-store"},
    )


async def identity_decision(request: web.Request) -> web.Response:
    body = await _json(request)
    approve = body.get("approve")
    if not isinstance(approve, bool):
        raise web.HTTPUnprocessableEntity(text="approve must be true or false")
    reason = str(body.get("reason", ""))[:200]
    if not approve and not reason.strip():
        raise web.HTTPUnprocessableEntity(text="a rejection needs a reason")
    check_id = _path_id(request, "check")
    if not await _sandbox_checks().filter(id=check_id).exists():
        raise web.HTTPNotFound(text="no such check on the sandbox")
    journey = request.app[JOURNEY]
    now = request.app[CLOCK].now()
    async with unit_of_work() as conn:
        decided = await journey.review_identity(
            conn, check_id, approved=approve, reviewer="sandbox operator", reason=reason, now=now
        )
        if decided is not None:
            await stage_outcome(conn, decided, now)
    if decided is None:
        raise web.HTTPConflict(text="this check was already decided")
    return web.json_response({"decided": True})
