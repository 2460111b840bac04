"""Where a fake Twilio account posts what renters send: its Account resource, IncomingPhoneNumbers
(``sms_url``), Messaging Services (``inbound_request_url``) and WhatsApp senders (Senders API,
``/v2/Channels/Senders``, ``webhook.callback_url``), as the ``twilio`` SDK 9.13 reads and
updates them (the OpenAPI specs in twilio/twilio-oai).

Both domains (api.twilio.com and messaging.twilio.com) are served on the fake's one base URL;
their paths do not overlap. It refuses what Twilio refuses: wrong credentials, or another
account's path → 401 (20003); an unknown number, service or sender → 404 (20404); a
``SmsUrl`` / ``InboundRequestUrl`` / ``callback_url`` that is not an http(s) URL → 400 (21502);
a method other than GET or POST (POST or PUT for a sender's webhook) → 400; an unknown
parameter to a sender's update → 400; listing senders without ``Channel`` → 400.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import BasicAuth, web

Json = dict[str, Any]


class RegistryError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(err: RegistryError) -> web.Response:
    body = {
        "code": err.code,
        "message": err.message,
        "more_info": f"https://www.twilio.com/docs/errors/{err.code}",
        "status": err.status,
    }
    return web.json_response(body, status=err.status)


def _url(value: object) -> str:
    text = str(value or "")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RegistryError(400, 21502, f"Invalid callback url: {text!r}")
    return text


def _method(value: object, allowed: tuple[str, ...] = ("GET", "POST")) -> str:
    method = str(value).upper()
    if method not in allowed:
        raise RegistryError(400, 21503, f"Invalid method {value!r}: use {' or '.join(allowed)}")
    return method


@dataclass
class TwilioRegistry:
    """The numbers, Messaging Services and WhatsApp senders of one account."""

    account_sid: str
    auth_token: str
    friendly_name: str = "Keyturn Rentals"
    status: str = "active"
    numbers: dict[str, Json] = field(default_factory=dict)
    services: dict[str, Json] = field(default_factory=dict)
    senders: dict[str, Json] = field(default_factory=dict)
    #: Every update it accepted, as (path, parameters).
    updates: list[tuple[str, Json]] = field(default_factory=list)
    _serial: int = 0

    def _sid(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}{self._serial:032x}"

    def add_number(self, phone: str, *, sms_url: str = "", sms_method: str = "POST") -> Json:
        sid = self._sid("PN")
        self.numbers[sid] = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "beta": False,
            "capabilities": {"voice": True, "sms": True, "mms": True, "fax": False},
            "date_created": "Mon, 02 Nov 2026 09:00:00 +0000",
            "date_updated": "Mon, 02 Nov 2026 09:00:00 +0000",
            "friendly_name": phone,
            "phone_number": phone,
            "origin": "twilio",
            "sid": sid,
            "sms_application_sid": "",
            "sms_fallback_method": "POST",
            "sms_fallback_url": "",
            "sms_method": sms_method,
            "sms_url": sms_url,
            "status_callback": "",
            "status_callback_method": "POST",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/IncomingPhoneNumbers/{sid}.json",
            "status": "in-use",
            "type": "local",
        }
        return self.numbers[sid]

    def add_service(self, *, inbound_request_url: str | None = None) -> Json:
        sid = self._sid("MG")
        self.services[sid] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "friendly_name": "Keyturn",
            "date_created": "2026-11-02T09:00:00Z",
            "date_updated": "2026-11-02T09:00:00Z",
            "inbound_request_url": inbound_request_url,
            "inbound_method": "POST",
            "fallback_url": None,
            "fallback_method": "POST",
            "status_callback": None,
            "sticky_sender": True,
            "mms_converter": True,
            "smart_encoding": True,
            "scan_message_content": "inherit",
            "fallback_to_long_code": True,
            "area_code_geomatch": True,
            "synchronous_validation": True,
            "validity_period": 14400,
            "url": f"https://messaging.twilio.com/v1/Services/{sid}",
            "links": {},
            "usecase": "notifications",
            "us_app_to_person_registered": False,
            "use_inbound_webhook_on_number": False,
        }
        return self.services[sid]

    def add_sender(self, address: str, *, callback_url: str | None = None) -> Json:
        sid = self._sid("XE")
        self.senders[sid] = {
            "sid": sid,
            "status": "ONLINE",
            "sender_id": address,
            "configuration": {"waba_id": "1234567890", "verification_method": "sms"},
            "webhook": {
                "callback_url": callback_url,
                "callback_method": "POST",
                "fallback_url": None,
                "fallback_method": "POST",
                "status_callback_url": "https://status.example.net/whatsapp",
                "status_callback_method": "POST",
            },
            "profile": {"name": "Keyturn Rentals"},
            "properties": {"quality_rating": "HIGH", "messaging_limit": "10K"},
            "offline_reasons": None,
            "compliance": None,
            "url": f"https://messaging.twilio.com/v2/Channels/Senders/{sid}",
        }
        return self.senders[sid]

    # -- the routes ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        account = "/2010-04-01/Accounts/{account}"
        app.router.add_get(account + ".json", self._account)
        app.router.add_get(account + "/IncomingPhoneNumbers.json", self._numbers)
        app.router.add_post(account + "/IncomingPhoneNumbers/{sid}.json", self._number_update)
        app.router.add_get("/v1/Services/{sid}", self._service)
        app.router.add_post("/v1/Services/{sid}", self._service_update)
        app.router.add_get("/v2/Channels/Senders", self._senders)
        app.router.add_get("/v2/Channels/Senders/{sid}", self._sender)
        app.router.add_post("/v2/Channels/Senders/{sid}", self._sender_update)

    def _authenticate(self, request: web.Request) -> None:
        try:
            auth = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            auth = None
        account = request.match_info.get("account", self.account_sid)
        if (
            auth is None
            or not hmac.compare_digest(auth.login, self.account_sid)
            or not hmac.compare_digest(auth.password, self.auth_token)
            or account != self.account_sid
        ):
            raise RegistryError(401, 20003, "Authenticate")

    @staticmethod
    def _found(table: Mapping[str, Json], sid: str) -> Json:
        if sid not in table:
            raise RegistryError(404, 20404, f"The requested resource {sid} was not found")
        return table[sid]

    async def _account(self, request: web.Request) -> web.Response:
        try:
            self._authenticate(request)
        except RegistryError as err:
            return _error(err)
        sid = self.account_sid
        return web.json_response(
            {
                "date_created": "Mon, 02 Nov 2026 09:00:00 +0000",
                "date_updated": "Mon, 02 Nov 2026 09:00:00 +0000",
                "friendly_name": self.friendly_name,
                "owner_account_sid": sid,
                "sid": sid,
                "status": self.status,
                "subresource_uris": {},
                "type": "Full",
                "uri": f"/2010-04-01/Accounts/{sid}.json",
            }
        )

    async def _numbers(self, request: web.Request) -> web.Response:
        try:
            self._authenticate(request)
        except RegistryError as err:
            return _error(err)
        pattern = request.query.get("PhoneNumber", "")
        size = int(request.query.get("PageSize", "50"))
        found = [n for n in self.numbers.values() if pattern in n["phone_number"]][:size]
        uri = f"/2010-04-01/Accounts/{self.account_sid}/IncomingPhoneNumbers.json"
        return web.json_response(
            {
                "end": max(len(found) - 1, 0),
                "first_page_uri": f"{uri}?PageSize={size}&Page=0",
                "incoming_phone_numbers": found,
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": f"{uri}?PageSize={size}&Page=0",
            }
        )

    async def _number_update(self, request: web.Request) -> web.Response:
        try:
            self._authenticate(request)
            number = self._found(self.numbers, request.match_info["sid"])
            form = {k: str(v) for k, v in (await request.post()).items()}
            changes: Json = {}
            if "SmsUrl" in form:
                changes["sms_url"] = _url(form["SmsUrl"]) if form["SmsUrl"] else ""
            if "SmsMethod" in form:
                changes["sms_method"] = _method(form["SmsMethod"])
        except RegistryError as err:
            return _error(err)
        number.update(changes)
        self.updates.append((request.path, form))
        return web.json_response(number)

    async def _service(self, request: web.Request) -> web.Response:
        try:
            self._authenticate(request)
            return web.json_response(self._found(self.services, request.match_info["sid"]))
        except RegistryError as err:
            return _error(err)

    async def _service_update(self, request: web.Request) -> web.Response:
        try:
            self._authenticate(request)
            service = self._found(self.services, request.match_info["sid"])
            form = {k: str(v) for k, v in (await request.post()).items()}
            changes: Json = {}
            if "InboundRequestUrl" in form:
                given = form["InboundRequestUrl"]
                changes["inbound_request_url"] = _url(given) if given else None
            if "InboundMethod" in form:
                changes["inbound_method"] = _method(form["InboundMethod"])
            if "UseInboundWebhookOnNumber" in form:
                flag = form["UseInboundWebhookOnNumber"]
                if flag not in ("true", "false"):
                    raise RegistryError(400, 20001, f"Invalid UseInboundWebhookOnNumber: {flag}")
                changes["use_inbound_webhook_on_number"] = flag == "true"
        except RegistryError as err:
            return _error(err)
        service.update(changes)
        self.updates.append((request.path, form))
        return web.json_response(service)

    async def _senders(self, request: web.Request) -> web.Response:
        try:
            self._authenticate(request)
            channel = request.query.get("Channel")
            if channel not in ("whatsapp", "rcs"):
                raise RegistryError(400, 20001, "Channel must be whatsapp or rcs")
        except RegistryError as err:
            return _error(err)
        prefix = f"{channel}:"
        found = [s for s in self.senders.values() if s["sender_id"].startswith(prefix)]
        size = int(request.query.get("PageSize", "20"))
        url = f"https://messaging.twilio.com/v2/Channels/Senders?Channel={channel}&PageSize={size}"
        meta = {
            "page": 0,
            "page_size": size,
            "first_page_url": url + "&Page=0",
            "previous_page_url": None,
            "url": url + "&Page=0",
            "next_page_url": None,
            "key": "senders",
        }
        return web.json_response({"senders": found[:size], "meta": meta})

    async def _sender(self, request: web.Request) -> web.Response:
        try:
            self._authenticate(request)
            return web.json_response(self._found(self.senders, request.match_info["sid"]))
        except RegistryError as err:
            return _error(err)

    async def _sender_update(self, request: web.Request) -> web.Response:
        try:
            self._authenticate(request)
            sender = self._found(self.senders, request.match_info["sid"])
            if request.content_type != "application/json":
                raise RegistryError(400, 20001, "Expected an application/json body")
            try:
                body = await request.json()
            except json.JSONDecodeError:
                raise RegistryError(400, 20001, "Malformed JSON body") from None
            if not isinstance(body, dict):
                raise RegistryError(400, 20001, "Expected a JSON object")
            if unknown := set(body) - {"friendly_name", "configuration", "webhook", "profile"}:
                raise RegistryError(400, 20001, f"Unknown parameter {sorted(unknown)[0]}")
            hook = body.get("webhook")
            changes: Json = {}
            if hook is not None:
                if not isinstance(hook, dict):
                    raise RegistryError(400, 20001, "webhook must be an object")
                changes = {k: v for k, v in hook.items() if v is not None}
                if unknown := set(changes) - set(sender["webhook"]):
                    raise RegistryError(
                        400, 20001, f"Unknown parameter webhook.{sorted(unknown)[0]}"
                    )
                for key in ("callback_url", "fallback_url", "status_callback_url"):
                    if key in changes:
                        _url(changes[key])
                for key in ("callback_method", "fallback_method"):
                    if key in changes:
                        changes[key] = _method(changes[key], ("POST", "PUT"))
        except RegistryError as err:
            return _error(err)
        sender["webhook"].update(changes)
        self.updates.append((request.path, body))
        return web.json_response(sender, status=202)
