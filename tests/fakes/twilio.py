"""A fake Twilio REST API (Messages resource and media) for driving the real ``twilio`` SDK.

It speaks what the SDK 9.13 sends and what Twilio answers:

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded, HTTP Basic auth with the
  account SID and auth token → 201 and the Message resource JSON (``sid`` ``SM`` + 32 hex,
  ``status`` ``queued``...). Wrong or missing credentials, or another account's path → 401
  ``{"code": 20003, ...}``, Twilio's legacy error shape, which the SDK turns into
  ``TwilioRestException``.
- Refusals with Twilio's codes: no ``To`` (21604) or ``From`` (21603); a ``To`` that is not E.164
  or ``whatsapp:`` + E.164 (21211); a ``From`` the account does not own (21659, WhatsApp 63007);
  ``From`` and ``To`` on different channels (21910); no ``Body``, ``MediaUrl`` or ``ContentSid``
  (21619); a ``MediaUrl`` that is not an http(s) URL (21620) or more than 10 of them (21623);
  a body over 1,600 characters (21617); ``ContentVariables`` without ``ContentSid`` (21654) or not
  a JSON object of non-empty strings (21656); a ``ContentSid`` not ``HX`` + 32 hex (21655).
- What only Twilio knows, set by the test: ``opted_out`` SMS numbers (21610, as after STOP),
  ``outside_window`` WhatsApp numbers (free-form text → 63016; templates pass),
  and ``window_closed`` for a message accepted (201 ``queued``) whose window had closed after all:
  the failed/63016 status callback Twilio usually sends instead of refusing the create call,
  ``not_on_whatsapp`` numbers (63024).
- ``fail_next`` answers the next requests with 500 (or any status), ``hang_next`` holds them.
- Media: ``add_media`` stores an attachment under a Twilio media URL that needs Basic auth and
  answers with a 307 to a signed URL on a second server (the "CDN", like Twilio's storage), which
  refuses requests carrying an ``Authorization`` header, as S3 refuses a second auth mechanism.
  ``DELETE /2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}/Media/{Sid}.json`` deletes it
  (204, empty body; 404 ``{"code": 20404, ...}`` for media the message does not have); the
  deletions are in ``deleted_media`` as (message sid, media sid).

``inbound`` and ``status_callback`` build webhook posts signed like Twilio's
(``RequestValidator.compute_signature`` over the public URL and the form). ``registry`` holds
the account, its numbers, Messaging Services and WhatsApp senders (``tests.fakes.twilio_numbers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import BasicAuth, web
from twilio.request_validator import RequestValidator

from tests.fakes.server import running
from tests.fakes.twilio_numbers import TwilioRegistry

ACCOUNT_SID = "AC" + "0f" * 16
AUTH_TOKEN = "5d6e" * 8
SMS_NUMBER = "+15005550006"
WHATSAPP_NUMBER = "whatsapp:+14155238886"

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
MAX_BODY = 1600

Json = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TwilioApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(status: int, code: int, message: str) -> Json:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass
class SentMessage:
    """A message the fake accepted."""

    sid: str
    to: str
    from_: str
    body: str | None
    content_sid: str | None
    content_variables: str | None
    status_callback: str | None
    params: dict[str, str] = field(repr=False)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: The ``MediaUrl`` values, in order (the parameter repeats, one per file).
    media_urls: list[str] = field(default_factory=list)
    #: What the Message resource says now: the last status posted to a callback, and its error.
    status: str = "queued"
    error_code: str | None = None


@dataclass
class _Media:
    content: bytes
    content_type: str
    chunked: bool
    token: str
    message_sid: str = ""


class FakeTwilio:
    def __init__(
        self,
        *,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        numbers: Sequence[str] = (SMS_NUMBER, WHATSAPP_NUMBER),
        public_url: str = "https://keyturn.example.com",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        #: Twilio's clock, which stamps the messages it accepts (a test's clock, usually).
        self.now = now
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.numbers = set(numbers)
        self.public_url = public_url.rstrip("/")
        self.base_url = ""
        self.cdn_url = ""
        #: Every Messages request that got past authentication, accepted or refused.
        self.requests: list[dict[str, str]] = []
        self.sent: list[SentMessage] = []
        self.opted_out: set[str] = set()
        self.outside_window: set[str] = set()
        self.not_on_whatsapp: set[str] = set()
        #: (path, carried an Authorization header) for every media and CDN request.
        self.media_requests: list[tuple[str, bool]] = []
        self._media: dict[str, _Media] = {}
        #: (message sid, media sid) of every media resource deleted through the API.
        self.deleted_media: list[tuple[str, str]] = []
        self._delete_failures = 0
        self._failures: list[int] = []
        self._hangs = 0
        self._hang_seconds = 30.0
        self._lost_answers = 0
        #: The query of every Messages list request (a retried send looking for itself).
        self.lookups: list[dict[str, str]] = []
        self._stopping = asyncio.Event()
        #: Where the account posts what renters send (numbers, services, WhatsApp senders).
        self.registry = TwilioRegistry(account_sid, auth_token)
        self.app = self._api_app()
        self.cdn_app = self._cdn_app()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeTwilio]:
        """Run the API and the media CDN on loopback ports for the length of a test."""
        async with running(self.app) as base, running(self.cdn_app) as cdn:
            self.base_url, self.cdn_url = base, cdn
            try:
                yield self
            finally:
                self._stopping.set()

    # -- what a test controls ---------------------------------------------------------------

    def fail_next(self, count: int = 1, *, status: int = 500) -> None:
        """The next ``count`` Messages requests fail with ``status`` and Twilio's error JSON."""
        self._failures.extend([status] * count)

    def fail_next_media_delete(self, count: int = 1) -> None:
        """The next ``count`` media DELETE requests fail with 500 and Twilio's error JSON."""
        self._delete_failures += count

    def hang_next(self, count: int = 1, *, seconds: float = 30.0) -> None:
        """The next ``count`` Messages requests answer only after ``seconds`` (or at stop)."""
        self._hangs += count
        self._hang_seconds = seconds

    def lose_answer_next(self, count: int = 1, *, seconds: float = 30.0) -> None:
        """The next ``count`` Messages requests are accepted (the message is sent), but the
        answer comes only after ``seconds``: the caller times out not knowing it was sent."""
        self._lost_answers += count
        self._hang_seconds = seconds

    def add_media(self, content: bytes, content_type: str, *, chunked: bool = False) -> str:
        """Store an attachment; returns its Twilio media URL (as ``MediaUrl0`` would carry it).

        ``chunked`` sends it without Content-Length, so only the bytes read tell its size.
        """
        message_sid, media_sid = new_sid("MM"), new_sid("ME")
        self._media[media_sid] = _Media(
            content, content_type, chunked, secrets.token_hex(8), message_sid
        )
        return (
            f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}"
            f"/Messages/{message_sid}/Media/{media_sid}"
        )

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        return str(RequestValidator(self.auth_token).compute_signature(url, dict(params)))

    def inbound(
        self,
        *,
        from_: str,
        body: str = "",
        sid: str | None = None,
        to: str | None = None,
        profile_name: str | None = None,
        media: Sequence[tuple[str, str]] = (),
        path: str = "/webhooks/twilio",
    ) -> tuple[dict[str, str], dict[str, str]]:
        """An inbound message webhook as Twilio posts it: the form and its signed headers."""
        whatsapp = from_.startswith("whatsapp:")
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid or new_sid("SM"),
            "NumMedia": str(len(media)),
            "SmsSid": "",
            "SmsStatus": "received",
            "Body": body,
            "To": to or (WHATSAPP_NUMBER if whatsapp else SMS_NUMBER),
            "NumSegments": "1",
            "MessageSid": "",
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": "2010-04-01",
        }
        params["SmsSid"] = params["MessageSid"] = params["SmsMessageSid"]
        for index, (url, content_type) in enumerate(media):
            params[f"MediaUrl{index}"] = url
            params[f"MediaContentType{index}"] = content_type
        if whatsapp:
            params["WaId"] = from_.removeprefix("whatsapp:+")
            params["ProfileName"] = profile_name or ""
        return params, self.signed_headers(path, params)

    def status_callback(
        self, sid: str, status: str, *, error_code: str | None = None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """A status callback for message ``sid``, as Twilio posts it to our status route."""
        sent = next((m for m in self.sent if m.sid == sid), None)
        if sent is not None and not sent.status_callback:
            raise AssertionError(f"{sid} was sent without a StatusCallback: Twilio posts none")
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": self.account_sid,
            "To": sent.to if sent else "+15550100001",
            "From": sent.from_ if sent else SMS_NUMBER,
            "ApiVersion": "2010-04-01",
        }
        if error_code is not None:
            params["ErrorCode"] = error_code
        if sent is not None:
            sent.status, sent.error_code = status, error_code
        url = (
            sent.status_callback if sent else None
        ) or self.public_url + "/webhooks/twilio/status"
        return params, {"X-Twilio-Signature": self.sign(url, params)}

    def window_closed(
        self, sid: str, status: str = "failed"
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The callback for free-form WhatsApp text ``sid`` that WhatsApp refused after Twilio
        accepted it: outside the 24-hour window (63016). Templates and SMS never fail so."""
        sent = next(m for m in self.sent if m.sid == sid)
        if not sent.to.startswith("whatsapp:") or sent.content_sid is not None:
            raise AssertionError(f"{sid} is not free-form WhatsApp text: 63016 cannot apply")
        return self.status_callback(sid, status, error_code="63016")

    def signed_headers(self, path: str, params: Mapping[str, str]) -> dict[str, str]:
        return {"X-Twilio-Signature": self.sign(self.public_url + path, params)}

    # -- the REST API -----------------------------------------------------------------------

    def _api_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._create_message)
        app.router.add_get("/2010-04-01/Accounts/{account}/Messages.json", self._list_messages)
        app.router.add_get(
            "/2010-04-01/Accounts/{account}/Messages/{message}/Media/{media}", self._media_get
        )
        app.router.add_delete(
            "/2010-04-01/Accounts/{account}/Messages/{message}/Media/{media}.json",
            self._media_delete,
        )
        self.registry.add_routes(app)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except TwilioApiError as err:
            return web.json_response(
                error_body(err.status, err.code, err.message), status=err.status
            )

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        try:
            auth = BasicAuth.decode(header)
        except ValueError:
            auth = None
        if (
            auth is None
            or not hmac.compare_digest(auth.login, self.account_sid)
            or not hmac.compare_digest(auth.password, self.auth_token)
            or request.match_info["account"] != self.account_sid
        ):
            raise TwilioApiError(401, 20003, "Authenticate")

    async def _create_message(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        form = await request.post()
        params = {key: str(value) for key, value in form.items()}
        self.requests.append(params)
        if self._hangs > 0:
            self._hangs -= 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._hang_seconds)
            if self._stopping.is_set():
                raise TwilioApiError(503, 20503, "Service unavailable")
        if self._failures:
            status = self._failures.pop(0)
            raise TwilioApiError(status, 20500 if status >= 500 else status, "Internal error")
        sent = self._validate(params, [str(url) for url in form.getall("MediaUrl", [])])
        self.sent.append(sent)
        if self._lost_answers > 0:
            self._lost_answers -= 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._hang_seconds)
        return web.json_response(self._resource(sent), status=201)

    async def _list_messages(self, request: web.Request) -> web.Response:
        """Read the account's messages, newest first, filtered by ``To`` and ``From``, one page
        of ``PageSize`` (50 by default, at most 1000) as Twilio's list resource answers it."""
        self._authenticate(request)
        query = dict(request.query)
        self.lookups.append(query)
        try:
            size = min(int(query.get("PageSize", "50")), 1000)
        except ValueError:
            raise TwilioApiError(400, 20001, "Invalid PageSize") from None
        found = [
            m
            for m in reversed(self.sent)
            if query.get("To", m.to) == m.to and query.get("From", m.from_) == m.from_
        ][:size]
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        return web.json_response(
            {
                "messages": [self._resource(m) for m in found],
                "end": max(len(found) - 1, 0),
                "first_page_uri": f"{uri}?PageSize={size}&Page=0",
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": f"{uri}?PageSize={size}&Page=0",
            }
        )

    def _validate(self, params: Mapping[str, str], media_urls: list[str]) -> SentMessage:
        to, from_ = params.get("To", ""), params.get("From", "")
        body, content_sid = params.get("Body"), params.get("ContentSid")
        variables = params.get("ContentVariables")
        if not to:
            raise TwilioApiError(400, 21604, "A 'To' phone number is required.")
        if not from_:
            raise TwilioApiError(400, 21603, "A 'From' phone number is required.")
        to_whatsapp, to_number = _split(to)
        from_whatsapp, _ = _split(from_)
        if not E164.fullmatch(to_number):
            raise TwilioApiError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if from_ not in self.numbers:
            if from_whatsapp:
                raise TwilioApiError(
                    400, 63007, "Twilio could not find a Channel with the specified From address"
                )
            raise TwilioApiError(
                400, 21659, f"'From' {from_} is not a Twilio phone number or Short Code."
            )
        if to_whatsapp != from_whatsapp:
            raise TwilioApiError(
                400, 21910, "Invalid 'From' and 'To' pair. They should be of the same channel."
            )
        if not body and not content_sid and not media_urls:
            raise TwilioApiError(
                400, 21619, "A Message Body, Media URL or Content SID is required."
            )
        if any(not url.startswith(("http://", "https://")) for url in media_urls):
            raise TwilioApiError(400, 21620, "Invalid media URL(s)")
        if len(media_urls) > 10:
            raise TwilioApiError(400, 21623, "Number of media files exceeds allowed limit")
        if body and len(body) > MAX_BODY:
            raise TwilioApiError(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if variables is not None and not content_sid:
            raise TwilioApiError(400, 21654, "ContentSid Required")
        if content_sid is not None and not CONTENT_SID.fullmatch(content_sid):
            raise TwilioApiError(400, 21655, "The ContentSid is Invalid")
        if variables is not None and not _valid_variables(variables):
            raise TwilioApiError(400, 21656, "The ContentVariables Parameter is invalid")
        if not to_whatsapp and to_number in self.opted_out:
            raise TwilioApiError(400, 21610, "Attempt to send to unsubscribed recipient")
        if to_whatsapp and to_number in self.not_on_whatsapp:
            raise TwilioApiError(400, 63024, "Invalid message recipient")
        if to_whatsapp and body and to_number in self.outside_window:
            raise TwilioApiError(
                400,
                63016,
                "Failed to send freeform message because you are outside the allowed window. "
                "If you are using WhatsApp, please use a Message Template.",
            )
        return SentMessage(
            sid=new_sid("SM"),
            to=to,
            from_=from_,
            body=body,
            content_sid=content_sid,
            content_variables=variables,
            status_callback=params.get("StatusCallback"),
            params=dict(params),
            created_at=self.now(),
            media_urls=media_urls,
        )

    def _resource(self, sent: SentMessage) -> Json:
        now = format_datetime(sent.created_at, usegmt=True)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sent.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": sent.body or "",
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": int(sent.error_code) if sent.error_code else None,
            "error_message": None,
            "from": sent.from_,
            "messaging_service_sid": None,
            "num_media": str(len(sent.media_urls)),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sent.sid,
            "status": sent.status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": sent.to,
            "uri": f"{uri}.json",
        }

    # -- media ------------------------------------------------------------------------------

    async def _media_get(self, request: web.Request) -> web.StreamResponse:
        self.media_requests.append((request.path, "Authorization" in request.headers))
        self._authenticate(request)
        media = self._media.get(request.match_info["media"])
        if media is None:
            raise TwilioApiError(404, 20404, "The requested resource was not found")
        target = f"{self.cdn_url}/media/{request.match_info['media']}?Signature={media.token}"
        raise web.HTTPTemporaryRedirect(target)

    async def _media_delete(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        if self._delete_failures > 0:
            self._delete_failures -= 1
            raise TwilioApiError(500, 20500, "Internal error")
        message_sid, media_sid = request.match_info["message"], request.match_info["media"]
        media = self._media.get(media_sid)
        if media is None or media.message_sid != message_sid:
            raise TwilioApiError(404, 20404, "The requested resource was not found")
        del self._media[media_sid]
        self.deleted_media.append((message_sid, media_sid))
        return web.Response(status=204)

    def _cdn_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/media/{media}", self._cdn_get)
        return app

    async def _cdn_get(self, request: web.Request) -> web.StreamResponse:
        self.media_requests.append((request.path, "Authorization" in request.headers))
        if "Authorization" in request.headers:
            return web.Response(
                status=400,
                text="Only one auth mechanism allowed",
                content_type="application/xml",
            )
        media = self._media.get(request.match_info["media"])
        if media is None or request.query.get("Signature") != media.token:
            return web.Response(status=403, text="AccessDenied", content_type="application/xml")
        if not media.chunked:
            return web.Response(body=media.content, content_type=media.content_type)
        response = web.StreamResponse(headers={"Content-Type": media.content_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(media.content), 1024):
            await response.write(media.content[start : start + 1024])
        await response.write_eof()
        return response


def _split(address: str) -> tuple[bool, str]:
    if address.startswith("whatsapp:"):
        return True, address.removeprefix("whatsapp:")
    return False, address


def _valid_variables(raw: str) -> bool:
    try:
        value = json.loads(raw)
    except ValueError:
        return False
    return isinstance(value, dict) and all(isinstance(v, str) and v != "" for v in value.values())
