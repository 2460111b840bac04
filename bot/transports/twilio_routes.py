"""Twilio's webhooks: inbound SMS/WhatsApp messages and delivery status callbacks.

Both are form posts signed with ``X-Twilio-Signature`` over the URL Twilio called and the form.
Behind a TLS proxy ``request.url`` is not that URL, so the signature is checked on
``KEYTURN_PUBLIC_URL + path?query``, always with HMAC-SHA1 and the account's Auth Token, which
is how Twilio signs for an Auth Token: ``X-Twilio-Webhooks-Signature-Settings`` does not choose
the algorithm, and a post whose header names another one (a SharedKey signature, which Keyturn
has no secret for) is refused. A post without a valid signature gets 403 and changes nothing;
so does one that is not a form (415) or is larger than any Twilio webhook (413).

An inbound message is answered at once with empty TwiML (Twilio gives up after 15 s); replies
go out through the outbox and the REST API. A retried delivery carries the same ``MessageSid``,
which the engine recognises and drops.

Delivery status only moves forward: queued < sending < sent < delivered < read. ``failed`` and
``undelivered`` rank between sent and delivered: they replace queued/sending/sent and nothing
moves them back, but a delivered/read receipt wins over them in either order (a receipt proves the
message arrived; a failure report next to it is stale), and the first of failed/undelivered stays.
Statuses Keyturn wrote itself that are not Twilio's (``undeliverable``) never change. Callbacks
arrive in any order and concurrently, so the rule is one conditional UPDATE.

A failure with ``ErrorCode`` 63016 (WhatsApp's 24-hour window had closed) sends the message
again, once, by template or SMS (``twilio_resend``), staged in the unit of work that records the
status.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import HMAC_SHA1, RequestValidator, get_signature_algorithm

from bot.keys import CLOCK, ENGINE
from bot.transports.twilio_resend import OUTSIDE_WHATSAPP_WINDOW, resend_outside_window
from bot.webhook_body import read_capped
from flows.i18n import renter_language
from flows.messages import InboundMessage, Media
from flows.staging import stage_outcome
from storage.models import Message
from storage.uow import unit_of_work

log = logging.getLogger(__name__)

INBOUND_PATH = "/webhooks/twilio"
STATUS_PATH = "/webhooks/twilio/status"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
#: A Twilio webhook is a few kilobytes (1,600 characters of body, ten media URLs, some ids).
MAX_FORM_BYTES = 64 * 1024
MAX_MEDIA = 10
SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
#: The one algorithm Twilio signs with for an Auth Token; whatever a request's header says.
SIGNATURE_ALGORITHM = HMAC_SHA1
WHATSAPP_PREFIX = "whatsapp:"
E164 = re.compile(r"\+[1-9][0-9]{1,14}")

#: How far along a message is; a status only replaces one of lower rank.
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "failed": 4,
    "undelivered": 4,
    "delivered": 5,
    "read": 6,
}


class TwilioWebhooks:
    """The two webhook handlers, holding what they need to check signatures."""

    def __init__(self, *, auth_token: str, public_url: str) -> None:
        self._validator = RequestValidator(auth_token)
        self.public_url = public_url.rstrip("/")

    async def inbound(self, request: web.Request) -> web.Response:
        form = await self._signed_form(request)
        sid = form.get("MessageSid") or form.get("SmsMessageSid")
        sender = form.get("From", "")
        if not sid or not sender:
            raise web.HTTPBadRequest(text="MessageSid and From are required")
        channel, address = _channel_and_address(sender)
        if not E164.fullmatch(address):
            # A short code or alphanumeric sender (carrier notices): nobody to rent to.
            log.info("ignoring Twilio message %s from a sender that is not a phone number", sid)
            return _twiml()
        message = InboundMessage(
            channel=channel,
            address=address,
            text=form.get("Body", ""),
            provider_id=sid,
            received_at=request.app[CLOCK].now(),
            media=_media(form),
            display_name=form.get("ProfileName") or None,
            raw=dict(form),
        )
        engine = request.app[ENGINE]
        try:
            result = await engine.handle(message)
        except Exception as err:
            # Nothing of the message was stored (the database cannot write...). Twilio does
            # not post it again after an error, so the renter is asked to send it again.
            log.error("Twilio %s message %s not stored: %s", channel, sid, type(err).__name__)
            language = renter_language(None, phone=address)
            return _twiml(engine.translator.text(language, "dialog.not_stored"))
        log.info("Twilio %s message %s: %s", channel, sid, result.value)
        return _twiml()

    async def status(self, request: web.Request) -> web.Response:
        form = await self._signed_form(request)
        sid = form.get("MessageSid") or form.get("SmsSid")
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
        rank = STATUS_RANK.get(status)
        if not sid or rank is None:
            log.info("Twilio status callback without a known status ignored")
            return web.Response(status=200)
        behind = [name for name, other in STATUS_RANK.items() if other < rank]
        now = request.app[CLOCK].now()
        # The status and the resend it calls for commit together, or neither does (and Twilio,
        # answered with an error, posts the callback again).
        async with unit_of_work() as conn:
            updated = await (
                Message.filter(provider_id=sid, direction="out", status__in=behind)
                .using_db(conn)
                .update(status=status)
            )
            if status in ("failed", "undelivered"):
                error = form.get("ErrorCode", "?")
                log.info("Twilio message %s %s (error %s)", sid, status, error)
                if error == OUTSIDE_WHATSAPP_WINDOW:
                    outcome = await resend_outside_window(conn, sid, now=now)
                    await stage_outcome(conn, outcome, now)
            elif not updated:
                log.debug("Twilio status %s for %s changed nothing", status, sid)
        return web.Response(status=200)

    async def _signed_form(self, request: web.Request) -> MultiDict[str]:
        if request.content_type != "application/x-www-form-urlencoded":
            raise web.HTTPUnsupportedMediaType(text="expected a form post")
        body = await read_capped(request, MAX_FORM_BYTES)
        try:
            text = body.decode(request.charset or "utf-8")
        except (UnicodeDecodeError, LookupError):
            raise web.HTTPBadRequest(text="the form is not valid text") from None
        form: MultiDict[str] = MultiDict(parse_qsl(text, keep_blank_values=True))
        signature = request.headers.get(SIGNATURE_HEADER, "")
        claimed = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
        url = self.public_url + request.path_qs
        if (
            not signature
            or claimed.upper() != SIGNATURE_ALGORITHM
            or not self._validator.validate(url, form, signature, SIGNATURE_ALGORITHM)
        ):
            log.warning("Twilio webhook on %s refused: missing or wrong signature", request.path)
            raise web.HTTPForbidden(text="invalid signature")
        return form


def setup_twilio(app: web.Application, *, auth_token: str, public_url: str) -> None:
    """Add Twilio's webhook routes; the app must hold ``ENGINE`` and ``CLOCK``."""
    hooks = TwilioWebhooks(auth_token=auth_token, public_url=public_url)
    app.router.add_post(INBOUND_PATH, hooks.inbound)
    app.router.add_post(STATUS_PATH, hooks.status)


def _channel_and_address(sender: str) -> tuple[str, str]:
    if sender.startswith(WHATSAPP_PREFIX):
        return "whatsapp", sender.removeprefix(WHATSAPP_PREFIX).strip()
    return "sms", sender.strip()


def _media(form: MultiDict[str]) -> tuple[Media, ...]:
    try:
        count = int(form.get("NumMedia", "0") or 0)
    except ValueError:
        count = 0
    media = []
    for index in range(max(0, min(count, MAX_MEDIA))):
        url = form.get(f"MediaUrl{index}")
        if url:
            content_type = form.get(f"MediaContentType{index}", "").lower()
            media.append(Media(url=url, content_type=content_type))
    return tuple(media)


def _twiml(reply: str | None = None) -> web.Response:
    """Empty TwiML, or TwiML that answers the sender with ``reply``."""
    if reply is None:
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")
    return web.Response(
        text=EMPTY_TWIML.replace(
            "<Response></Response>", f"<Response><Message>{escape(reply)}</Message></Response>"
        ),
        content_type="text/xml",
    )
