"""A fake Seam Connect API (https://docs.seam.co/latest/api) for driving the real ``seam`` SDK.

It speaks the routes, methods and JSON shapes the SDK 3.18 uses (reads by GET with query
parameters, also POST with a JSON body as Seam accepts; ``/access_codes/update`` by PATCH or POST;
``/access_codes/delete`` by DELETE with query parameters or POST) and refuses what Seam refuses:

- no or wrong ``Authorization: Bearer seam_...`` → 401 ``unauthorized``;
- unknown device → 404 ``device_not_found``; unknown code → 404 ``access_code_not_found``;
- malformed input (missing ids, one of ``starts_at``/``ends_at`` without the other, a window that
  ends before it starts or in the past, a non-numeric code or one of a length the lock does not
  support, a ``common_code_key`` with a different code) → 400 ``invalid_input`` with Seam's
  ``validation_errors``;
- a PIN another managed code on the same lock already has in an overlapping window → 400
  ``duplicate_access_code`` (what Seam answers synchronously);
- past Seam's per-device rate limits (docs.seam.co "Rate Limits and Guardrails": 10 access
  code creations, 10 updates and 20 deletions a minute per device), a 429 with Seam's error
  body. Seam documents neither the error's ``type`` nor a ``Retry-After`` header: the fake
  answers ``too_many_requests``, and a ``Retry-After`` only when ``retry_after_header`` is set.

What only the lock can tell happens later, as on Seam: a created code is ``setting`` until the test
calls ``program()``, which sets it (``access_code.set_on_device``) or fails it with Seam's errors —
``failed_to_set_on_device`` + ``duplicate_code_on_device`` (a PIN an unmanaged code already uses),
``no_space_for_access_code_on_device`` (the lock's ``max_active_codes_supported`` is reached) or
``code_constraints_violated`` (``no_zeros``, ``cannot_start_with_12``...). Deleting a code moves it
to ``removing``; ``program()`` then removes it (``access_code.removed_from_device``).

Offline codes (``is_offline_access_code``, for devices with ``can_program_offline_access_codes``)
are computed at once, with the window widened to whole hours (or days, ``max_time_rounding``);
giving a ``code`` is refused, and so are updating and deleting one: Seam's docs say an offline
code cannot be updated or deleted through the API.

Unlocking returns a pending action attempt that ``/action_attempts/get`` resolves according to
``unlock_outcome`` ("success", "pending" for ever, or an error type), after
``unlock_pending_polls`` polls that still answer ``pending``. ``fail_next`` and ``hang_next``
make the next requests fail or hang, ``lose_answer_next`` carries one out and drops its answer,
and ``sign_webhook`` produces Svix-signed webhook
deliveries like Seam's.

``/workspaces/get`` answers the workspace the key belongs to. Webhooks (``/webhooks/create``,
``list``, ``get``, ``update``, ``delete``) are kept in ``webhooks``, each with its Svix secret;
a URL that is not http(s), an event type Seam does not send, or an unknown ``webhook_id``
(``webhook_not_found``) is refused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from svix.webhooks import Webhook

from tests.fakes.server import drop_connection

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "seam"
API_KEY = "seam_test2bMS_94SrGUXuNR2JmJkjtvBQDg5c"
#: A Svix signing secret: ``whsec_`` + base64 of the key bytes, as Seam shows it.
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"keyturn-fake-seam-webhook-key!!").decode()
WORKSPACE_ID = "398d80b7-3f96-47c2-b85a-6f8ba21d07be"

Json = dict[str, Any]
#: ``max_time_rounding`` values Seam takes for offline codes, and the step each rounds to.
OFFLINE_ROUNDING = {
    "1hour": timedelta(hours=1),
    "1h": timedelta(hours=1),
    "1day": timedelta(days=1),
    "1d": timedelta(days=1),
}
#: Hourly offline (igloohome algoPIN) codes last 1 to 672 hours.
OFFLINE_HOURLY_MAX = timedelta(hours=672)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SeamApiError(Exception):
    """Raised inside a handler; becomes Seam's error body."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        validation_errors: Json | None = None,
        data: Json | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.validation_errors = validation_errors
        self.data = data
        self.retry_after = retry_after


def invalid_input(param: str, message: str) -> SeamApiError:
    return SeamApiError(
        400,
        "invalid_input",
        message,
        validation_errors={"_errors": [], param: {"_errors": [message]}},
    )


def load_fixture(name: str) -> Json:
    data: Json = json.loads((FIXTURES / name).read_text())
    return data


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(param: str, value: object) -> datetime:
    if not isinstance(value, str):
        raise invalid_input(param, f"{param} must be an ISO 8601 date-time string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as err:
        raise invalid_input(param, f"{param} is not a valid ISO 8601 date-time") from err
    if moment.tzinfo is None:
        raise invalid_input(param, f"{param} must include a time zone offset")
    return moment


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    return moment - (moment - epoch) % step


def _ceil(moment: datetime, step: timedelta) -> datetime:
    floored = _floor(moment, step)
    return floored if floored == moment else floored + step


def _overlaps(a: Json, starts_at: datetime | None, ends_at: datetime | None) -> bool:
    a_start = datetime.fromisoformat(a["starts_at"]) if a.get("starts_at") else None
    a_end = datetime.fromisoformat(a["ends_at"]) if a.get("ends_at") else None
    if a_start is None or a_end is None or starts_at is None or ends_at is None:
        return True  # an ongoing code overlaps everything
    return a_start < ends_at and starts_at < a_end


def _violated_constraint(code: str, constraints: list[Json]) -> str | None:
    kinds = {c.get("constraint_type") for c in constraints}
    if "no_zeros" in kinds and "0" in code:
        return "no_zeros"
    if "cannot_start_with_12" in kinds and code.startswith("12"):
        return "cannot_start_with_12"
    if "at_least_three_unique_digits" in kinds and len(set(code)) < 3:
        return "at_least_three_unique_digits"
    if "no_all_same_digits" in kinds and len(set(code)) == 1:
        return "no_all_same_digits"
    if "no_triple_consecutive_ints" in kinds:
        digits = [int(d) for d in code]
        for i in range(len(digits) - 2):
            a, b, c = digits[i : i + 3]
            if b - a == c - b and abs(b - a) <= 1:  # "consecutive or the same"
                return "no_triple_consecutive_ints"
    return None


@dataclass
class _Failure:
    status: int
    json_body: bool
    path: str | None


class FakeSeam:
    """Seam's HTTP API in memory. Build the app with ``app()``, serve it with ``running``."""

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        page_size: int = 50,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api_key = api_key
        self.page_size = page_size
        self.now = now
        self.devices: dict[str, Json] = {}
        self.access_codes: dict[str, Json] = {}
        self.unmanaged_codes: dict[str, list[str]] = {}
        self.action_attempts: dict[str, Json] = {}
        self.events: list[Json] = []
        #: Webhooks by id, as ``/webhooks/get`` answers them (their secret included).
        self.webhooks: dict[str, Json] = {}
        self.workspace: Json = {
            "workspace_id": WORKSPACE_ID,
            "name": "Keyturn Rentals",
            "company_name": "Keyturn Rentals",
            "connect_partner_name": "Keyturn Rentals",
            "is_sandbox": True,
            "is_suspended": False,
            "is_publishable_key_auth_enabled": False,
            "connect_webview_customization": {
                "inviter_logo_url": None,
                "logo_shape": "circle",
                "primary_button_color": "#232426",
                "primary_button_text_color": "#FFFFFF",
                "success_message": None,
            },
        }
        #: Every request that reached the fake, as (method, path), failures and hangs included.
        self.requests: list[tuple[str, str]] = []
        #: How the next unlock's action attempt ends: "success", "pending" (forever), or an
        #: error type such as "lock_jammed".
        self.unlock_outcome = "success"
        #: An unlock's action attempt stays ``pending`` for this many polls before it ends as
        #: ``unlock_outcome`` says (the lock acting a little later).
        self.unlock_pending_polls = 0
        #: When true, a created code is programmed before Seam answers (a lock that is quick,
        #: or a retried create): its failure is already on the code in the response.
        self.program_immediately = False
        #: Offline codes come back without their PIN (``setting``) until ``compute_offline()``:
        #: Seam's guides say a code may take a while to be computed.
        self.offline_pins_later = False
        #: Devices that keep their codes through a deletion, with Seam's answer to it.
        self.kept_on_delete: dict[str, int] = {}
        #: When true, a set code whose window is updated goes back to ``setting`` until the
        #: lock takes the new window (``program()``), as a lock that stores schedules does.
        self.reprogram_on_update = False
        #: Seam's documented per-device limits, per route, in calls a minute.
        self.rate_limits: dict[str, int] = {
            "/access_codes/create": 10,
            "/access_codes/update": 10,
            "/access_codes/delete": 20,
        }
        #: When true, a 429 says when to come back (``Retry-After``, in seconds).
        self.retry_after_header = False
        #: A ``Retry-After`` to send instead of the true wait (a proxy that says too much).
        self.retry_after_override: int | None = None
        #: Calls Seam took per (route, device), with when: what the rate limits count.
        self.taken: dict[tuple[str, str], list[datetime]] = {}
        #: How many calls were refused for a rate limit, per route.
        self.rate_limited: dict[str, int] = {}
        self._computed: dict[str, str] = {}
        self._failures: list[_Failure] = []
        self._hangs = 0
        self._lost: list[str] = []
        self._hang_seconds = 30.0
        self._release = asyncio.Event()

    # --- test controls ----------------------------------------------------------------------

    def add_device(
        self,
        *,
        name: str = "Trailer Bay 1",
        device_id: str | None = None,
        device_type: str = "august_lock",
        supported_code_lengths: tuple[int, ...] = (4, 5, 6, 7, 8),
        code_constraints: tuple[Json, ...] = (
            {"constraint_type": "no_zeros"},
            {"constraint_type": "name_length", "max_length": 14},
        ),
        max_active_codes: int | None = 250,
        online: bool = True,
        battery_level: float = 0.86,
        can_program_online_access_codes: bool = True,
        can_program_offline_access_codes: bool = False,
        can_remotely_unlock: bool = True,
    ) -> str:
        """A lock shaped like the recorded ``device.august_lock.json``, with overrides."""
        device = load_fixture("device.august_lock.json")
        device_id = device_id or str(uuid.uuid4())
        props = device["properties"]
        device.update(
            device_id=device_id,
            device_type=device_type,
            display_name=name,
            nickname=name,
            can_program_online_access_codes=can_program_online_access_codes,
            can_program_offline_access_codes=can_program_offline_access_codes,
            can_remotely_unlock=can_remotely_unlock,
            created_at=iso(self.now()),
        )
        props.update(
            name=name,
            online=online,
            battery_level=battery_level,
            battery={"level": battery_level, "status": "good" if battery_level > 0.2 else "low"},
            supported_code_lengths=list(supported_code_lengths),
            code_constraints=[dict(c) for c in code_constraints],
            max_active_codes_supported=max_active_codes,
        )
        if max_active_codes is None:
            del props["max_active_codes_supported"]
        self.devices[device_id] = device
        return device_id

    def set_online(self, device_id: str, online: bool) -> Json:
        self.devices[device_id]["properties"]["online"] = online
        return self._event("device.connected" if online else "device.disconnected", device_id)

    def set_battery(self, device_id: str, level: float) -> Json | None:
        props = self.devices[device_id]["properties"]
        props["battery_level"] = level
        props["battery"] = {"level": level, "status": "good" if level > 0.2 else "low"}
        if level <= 0.2:
            return self._event(
                "device.low_battery", device_id, battery_level=level, device_battery_level=level
            )
        return None

    def add_unmanaged_code(self, device_id: str, code: str) -> None:
        """A PIN programmed on the lock outside Seam (the owner's app, a keypad)."""
        self.unmanaged_codes.setdefault(device_id, []).append(code)

    def add_warning(self, access_code_id: str, warning_code: str, message: str = "") -> None:
        self.access_codes[access_code_id]["warnings"].append(
            {
                "warning_code": warning_code,
                "message": message or warning_code.replace("_", " "),
                "created_at": iso(self.now()),
            }
        )

    def fail_next(
        self, count: int = 1, *, status: int = 500, json_body: bool = True, path: str | None = None
    ) -> None:
        """The next ``count`` requests (to ``path`` if given) fail with ``status``.

        The body is Seam's error JSON, or plain text as a proxy in front of Seam would send.
        """
        self._failures.extend(_Failure(status, json_body, path) for _ in range(count))

    def hang_next(self, count: int = 1, *, seconds: float = 30.0) -> None:
        """The next ``count`` requests answer only after ``seconds`` (or when the fake stops)."""
        self._hangs += count
        self._hang_seconds = seconds

    def lose_answer_next(self, path: str, count: int = 1) -> None:
        """The next ``count`` requests to ``path`` are carried out, then the connection drops
        before the answer: the SDK cannot tell whether Seam took them."""
        self._lost.extend([path] * count)

    def compute_offline(self) -> None:
        """The vendor has computed the offline codes still waiting: their PINs appear."""
        for code_id, pin in self._computed.items():
            if code_id in self.access_codes:
                self.access_codes[code_id].update(code=pin, status="set", display_status="Set")
        self._computed.clear()

    def program(self, access_code_id: str | None = None) -> list[Json]:
        """Let the locks do their part: set or fail ``setting`` codes, remove ``removing`` ones.

        Returns the events Seam would send. Offline locks keep their codes pending.
        """
        events: list[Json] = []
        ids = [access_code_id] if access_code_id else list(self.access_codes)
        for code_id in ids:
            ac = self.access_codes.get(code_id)
            if ac is None:
                continue
            device = self.devices[ac["device_id"]]
            if not device["properties"]["online"]:
                continue
            if ac["status"] == "removing":
                del self.access_codes[code_id]
                events.append(self._event("access_code.removed_from_device", ac["device_id"], ac))
            elif ac["status"] == "setting":
                events.append(self._program_one(ac, device))
        return events

    def sign_webhook(
        self,
        payload: Mapping[str, Any],
        *,
        secret: str = WEBHOOK_SECRET,
        timestamp: datetime | None = None,
        msg_id: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A webhook delivery as Seam (through Svix) makes it: the body and its headers."""
        body = json.dumps(payload, separators=(",", ":"))
        moment = timestamp or datetime.now(UTC)
        msg_id = msg_id or f"msg_{uuid.uuid4().hex[:27]}"
        signature = Webhook(secret).sign(msg_id, moment, body)
        headers = {
            "svix-id": msg_id,
            "svix-timestamp": str(int(moment.timestamp())),
            "svix-signature": signature,
            "content-type": "application/json",
        }
        return body.encode(), headers

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults, self._auth, self._errors])
        routes: list[tuple[str, str, Handler]] = [
            ("/devices/list", "GET POST", self._devices_list),
            ("/devices/get", "GET POST", self._devices_get),
            ("/access_codes/create", "POST", self._access_codes_create),
            ("/access_codes/update", "PATCH POST", self._access_codes_update),
            ("/access_codes/delete", "DELETE POST", self._access_codes_delete),
            ("/access_codes/get", "GET POST", self._access_codes_get),
            ("/access_codes/list", "GET POST", self._access_codes_list),
            ("/locks/unlock_door", "POST", self._locks_unlock_door),
            ("/action_attempts/get", "GET POST", self._action_attempts_get),
            ("/workspaces/get", "GET POST", self._workspaces_get),
            ("/webhooks/create", "POST", self._webhooks_create),
            ("/webhooks/list", "GET POST", self._webhooks_list),
            ("/webhooks/get", "GET POST", self._webhooks_get),
            ("/webhooks/update", "PUT POST", self._webhooks_update),
            ("/webhooks/delete", "DELETE POST", self._webhooks_delete),
        ]
        for path, methods, handler in routes:
            for method in methods.split():
                app.router.add_route(method, path, handler)

        async def release_hung(_: web.Application) -> None:
            self._release.set()

        app.on_shutdown.append(release_hung)
        return app

    # --- middlewares ------------------------------------------------------------------------

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self._hangs:
            self._hangs -= 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), timeout=self._hang_seconds)
        failure = next(
            (f for f in self._failures if f.path is None or f.path == request.path), None
        )
        if failure is not None:
            self._failures.remove(failure)
            if not failure.json_body:
                return web.Response(status=failure.status, text="upstream connect error")
            return _error_response(
                SeamApiError(failure.status, "internal_server_error", "Internal server error")
            )
        response = await handler(request)
        if request.path in self._lost:
            self._lost.remove(request.path)
            drop_connection(request)
        return response

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error_response(SeamApiError(401, "unauthorized", "Unauthorized"))
        return await handler(request)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except SeamApiError as err:
            return _error_response(err)

    # --- routes -----------------------------------------------------------------------------

    async def _devices_list(self, request: web.Request) -> web.Response:
        params = await _params(request)
        devices = list(self.devices.values())
        if "device_ids" in params:
            wanted = set(_as_list(params["device_ids"]))
            devices = [d for d in devices if d["device_id"] in wanted]
        return self._page(params, "devices", devices)

    async def _devices_get(self, request: web.Request) -> web.Response:
        params = await _params(request)
        device_id, name = params.get("device_id"), params.get("name")
        if not device_id and not name:
            raise invalid_input("device_id", "Either 'device_id' or 'name' is required")
        for device in self.devices.values():
            if device["device_id"] == device_id or (name and device["display_name"] == name):
                return _ok(device=device)
        raise SeamApiError(404, "device_not_found", "Device not found")

    def _within_rate_limit(self, route: str, device_id: str) -> None:
        """Count one call of ``route`` at the device, or refuse it (429) past the limit."""
        limit = self.rate_limits.get(route)
        if limit is None:
            return
        now = self.now()
        taken = self.taken.setdefault((route, device_id), [])
        recent = [at for at in taken if at > now - timedelta(minutes=1)]
        if len(recent) >= limit:
            self.rate_limited[route] = self.rate_limited.get(route, 0) + 1
            wait = (recent[-limit] + timedelta(minutes=1) - now).total_seconds()
            raise SeamApiError(
                429,
                "too_many_requests",
                "Too many requests for this device. Try again later.",
                retry_after=self.retry_after_override
                or (max(int(wait) + 1, 1) if self.retry_after_header else None),
            )
        taken.append(now)

    async def _access_codes_create(self, request: web.Request) -> web.Response:
        body = await _params(request)
        device = self._device(_required_str(body, "device_id"))
        self._within_rate_limit(request.path, device["device_id"])
        if body.get("is_offline_access_code") is True:
            return self._create_offline(body, device)
        if not device.get("can_program_online_access_codes"):
            raise invalid_input("device_id", "Device does not support access codes")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise invalid_input("name", "Expected string")
        starts_at, ends_at = self._window(body)
        code = body.get("code")
        key = body.get("common_code_key")
        if key is not None:
            if not isinstance(key, str) or not key:
                raise invalid_input("common_code_key", "Expected non-empty string")
            shared = next(
                (c["code"] for c in self.access_codes.values() if c["common_code_key"] == key),
                None,
            )
            if shared is not None:
                if code is not None and code != shared:
                    raise invalid_input(
                        "code", "code must match the other access codes with this common_code_key"
                    )
                code = shared
        if code is None:
            code = self._generate_code(device)
        self._check_code(device, code)
        for other in self.access_codes.values():
            if (
                other["device_id"] == device["device_id"]
                and other["code"] == code
                and other["status"] != "removing"
                and _overlaps(other, starts_at, ends_at)
            ):
                raise SeamApiError(
                    400,
                    "duplicate_access_code",
                    "An access code with this code already exists on the device",
                    data={"access_code_id": other["access_code_id"]},
                )
        access_code = self._new_access_code(
            device, name=name, code=code, key=key, starts_at=starts_at, ends_at=ends_at
        )
        self.access_codes[access_code["access_code_id"]] = access_code
        self._event("access_code.created", device["device_id"], access_code)
        if self.program_immediately and device["properties"]["online"]:
            self._program_one(access_code, device)
        return _ok(access_code=access_code)

    def _new_access_code(
        self,
        device: Json,
        *,
        name: object,
        code: str,
        key: str | None,
        starts_at: datetime | None,
        ends_at: datetime | None,
    ) -> Json:
        """A managed code as Seam returns it from ``/access_codes/create``: ``setting``."""
        return {
            "access_code_id": str(uuid.uuid4()),
            "device_id": device["device_id"],
            "workspace_id": WORKSPACE_ID,
            "name": name,
            "code": code,
            "common_code_key": key,
            "type": "time_bound" if starts_at else "ongoing",
            "status": "setting",
            "display_status": "Issuing",
            "starts_at": iso(starts_at) if starts_at else None,
            "ends_at": iso(ends_at) if ends_at else None,
            "created_at": iso(self.now()),
            "errors": [],
            "warnings": [],
            "pending_mutations": [],
            "is_managed": True,
            "is_external_modification_allowed": False,
            "is_offline_access_code": False,
            "is_one_time_use": False,
            "is_backup_access_code_available": False,
            "is_scheduled_on_device": False,
            "is_waiting_for_code_assignment": False,
            "pulled_backup_access_code_id": None,
        }

    def _create_offline(self, body: Json, device: Json) -> web.Response:
        """An offline code: the vendor computes the PIN from the window, without the lock, so
        it is there at once and works while the lock is offline."""
        if not device.get("can_program_offline_access_codes"):
            raise invalid_input("is_offline_access_code", "Device cannot program offline codes")
        if body.get("code") is not None:
            raise invalid_input("code", "Offline access codes are generated; code cannot be set")
        rounding = body.get("max_time_rounding", "1hour")
        if rounding not in OFFLINE_ROUNDING:
            raise invalid_input("max_time_rounding", f"Expected one of {sorted(OFFLINE_ROUNDING)}")
        starts_at, ends_at = self._window(body)
        if starts_at is None or ends_at is None:
            raise invalid_input("starts_at", "Offline access codes need starts_at and ends_at")
        step = OFFLINE_ROUNDING[rounding]
        starts_at = _floor(starts_at, step)
        ends_at = _ceil(ends_at, step)
        if step == timedelta(hours=1) and ends_at - starts_at > OFFLINE_HOURLY_MAX:
            raise invalid_input("ends_at", "Hourly offline codes last at most 672 hours")
        access_code = self._new_access_code(
            device,
            name=body.get("name"),
            code=self._generate_code(device),
            key=None,
            starts_at=starts_at,
            ends_at=ends_at,
        )
        access_code.update(status="set", display_status="Set", is_offline_access_code=True)
        if self.offline_pins_later:
            self._computed[access_code["access_code_id"]] = access_code["code"]
            access_code.update(code=None, status="setting", display_status="Issuing")
        self.access_codes[access_code["access_code_id"]] = access_code
        self._event("access_code.created", device["device_id"], access_code)
        return _ok(access_code=access_code)

    async def _access_codes_update(self, request: web.Request) -> web.Response:
        body = await _params(request)
        access_code = self._access_code(body)
        self._within_rate_limit(request.path, access_code["device_id"])
        if access_code["is_offline_access_code"]:
            raise invalid_input("access_code_id", "Offline access codes cannot be updated")
        starts_at, ends_at = self._window(body)
        if "code" in body:
            self._check_code(self._device(access_code["device_id"]), body["code"])
            access_code["code"] = body["code"]
        if isinstance(body.get("name"), str):
            access_code["name"] = body["name"]
        if starts_at is not None and ends_at is not None:
            access_code.update(type="time_bound", starts_at=iso(starts_at), ends_at=iso(ends_at))
            if self.reprogram_on_update and access_code["status"] == "set":
                access_code.update(status="setting", display_status="Setting")
            self._event("access_code.time_frame_changed", access_code["device_id"], access_code)
        elif body.get("type") == "ongoing":
            access_code.update(type="ongoing", starts_at=None, ends_at=None)
        return _ok(action_attempt=self._action("UPDATE_ACCESS_CODE", "success"))

    def keep_after_delete(self, device_id: str, *, answer: int = 404) -> None:
        """The device keeps its codes through every deletion, while Seam answers ``answer`` (404
        ``access_code_not_found``, or 200): its list of codes goes on showing them."""
        self.kept_on_delete[device_id] = answer

    async def _access_codes_delete(self, request: web.Request) -> web.Response:
        params = await _params(request)
        access_code = self._access_code(params)
        self._within_rate_limit(request.path, access_code["device_id"])
        answer = self.kept_on_delete.get(access_code["device_id"])
        if answer == 404:
            raise SeamApiError(404, "access_code_not_found", "Access code not found")
        if answer is not None:
            return _ok(action_attempt=self._action("DELETE_ACCESS_CODE", "success"))
        if access_code["is_offline_access_code"]:
            raise invalid_input("access_code_id", "Offline access codes cannot be deleted")
        if access_code["status"] in ("set", "setting"):
            access_code["status"] = "removing"
            access_code["display_status"] = "Removing"
            access_code["pending_mutations"] = [
                {"mutation_code": "deleting", "created_at": iso(self.now()), "message": ""}
            ]
        elif access_code["status"] != "removing":
            del self.access_codes[access_code["access_code_id"]]
        self._event("access_code.deleted", access_code["device_id"], access_code)
        return _ok(action_attempt=self._action("DELETE_ACCESS_CODE", "success"))

    async def _access_codes_get(self, request: web.Request) -> web.Response:
        return _ok(access_code=self._access_code(await _params(request)))

    async def _access_codes_list(self, request: web.Request) -> web.Response:
        params = await _params(request)
        device_id = params.get("device_id")
        ids = params.get("access_code_ids")
        if not device_id and not ids:
            raise invalid_input("device_id", "Specify device_id or access_code_ids")
        codes = list(self.access_codes.values())
        if device_id:
            self._device(str(device_id))
            codes = [c for c in codes if c["device_id"] == device_id]
        if ids:
            wanted = set(_as_list(ids))
            codes = [c for c in codes if c["access_code_id"] in wanted]
        return self._page(params, "access_codes", codes)

    async def _locks_unlock_door(self, request: web.Request) -> web.Response:
        body = await _params(request)
        device = self._device(_required_str(body, "device_id"))
        if not device.get("can_remotely_unlock"):
            raise invalid_input("device_id", "Device does not support remote unlocking")
        attempt = self._action("UNLOCK_DOOR", "pending")
        attempt["_device_id"] = device["device_id"]
        return _ok(action_attempt=_public(attempt))

    async def _action_attempts_get(self, request: web.Request) -> web.Response:
        params = await _params(request)
        attempt = self.action_attempts.get(_required_str(params, "action_attempt_id"))
        if attempt is None:
            raise SeamApiError(404, "action_attempt_not_found", "action_attempt not found")
        if attempt["status"] == "pending" and attempt["action_type"] == "UNLOCK_DOOR":
            attempt["_polls"] = attempt.get("_polls", 0) + 1
            if attempt["_polls"] > self.unlock_pending_polls:
                self._resolve_unlock(attempt)
        return _ok(action_attempt=_public(attempt))

    # --- internals --------------------------------------------------------------------------

    def _device(self, device_id: str) -> Json:
        device = self.devices.get(device_id)
        if device is None:
            raise SeamApiError(
                404, "device_not_found", "Device not found", data={"device_id": device_id}
            )
        return device

    def _access_code(self, params: Json) -> Json:
        access_code_id = _required_str(params, "access_code_id")
        device_id = params.get("device_id")
        if device_id is not None:
            self._device(str(device_id))
        access_code = self.access_codes.get(access_code_id)
        if access_code is None or (device_id is not None and access_code["device_id"] != device_id):
            raise SeamApiError(
                404,
                "access_code_not_found",
                "Could not find an access_code with device_id or access_code_id",
                data={"access_code_id": access_code_id},
            )
        return access_code

    def _window(self, body: Json) -> tuple[datetime | None, datetime | None]:
        raw_start, raw_end = body.get("starts_at"), body.get("ends_at")
        if (raw_start is None) != (raw_end is None):
            raise invalid_input("ends_at", "Both starts_at and ends_at must be provided if one is")
        if raw_start is None:
            return None, None
        starts_at = _parse_time("starts_at", raw_start)
        ends_at = _parse_time("ends_at", raw_end)
        if ends_at <= starts_at:
            raise invalid_input("ends_at", "ends_at must be after starts_at")
        if ends_at <= self.now():
            raise invalid_input("ends_at", "ends_at must be in the future")
        return starts_at, ends_at

    def _check_code(self, device: Json, code: object) -> None:
        if not isinstance(code, str) or not code.isdigit():
            raise invalid_input("code", "code must be a string of digits")
        lengths = device["properties"].get("supported_code_lengths") or []
        if lengths and len(code) not in lengths:
            # Seam's messages may quote the code: callers must not pass them on verbatim.
            raise invalid_input(
                "code", f"Code {code} has a length this device does not support: {lengths}"
            )

    def _generate_code(self, device: Json) -> str:
        lengths = device["properties"].get("supported_code_lengths") or [4]
        constraints = device["properties"].get("code_constraints") or []
        taken = {c["code"] for c in self.access_codes.values()}
        kinds = {c.get("constraint_type") for c in constraints}
        on_device = [
            c["code"]
            for c in self.access_codes.values()
            if c["device_id"] == device["device_id"] and c["code"]
        ]
        first_fours = (
            {other[:4] for other in on_device} if "unique_first_four_digits" in kinds else set()
        )
        for _ in range(1000):
            code = "".join(random.choice("123456789") for _ in range(min(lengths)))
            if (
                code not in taken
                and code[:4] not in first_fours
                and _violated_constraint(code, constraints) is None
            ):
                return code
        raise SeamApiError(500, "internal_server_error", "could not generate a code")

    def _breaks_constraints(self, ac: Json, device: Json) -> bool:
        constraints = device["properties"].get("code_constraints") or []
        return bool(_violated_constraint(ac["code"], constraints)) or self._shares_first_four(
            ac, device
        )

    def _shares_first_four(self, ac: Json, device: Json) -> bool:
        """``unique_first_four_digits``: compared with the other codes on the device."""
        kinds = {
            c.get("constraint_type") for c in device["properties"].get("code_constraints") or []
        }
        if "unique_first_four_digits" not in kinds:
            return False
        others = [
            c["code"]
            for c in self.access_codes.values()
            if c["device_id"] == device["device_id"]
            and c is not ac
            and c["status"] in ("set", "removing")
        ] + self.unmanaged_codes.get(device["device_id"], [])
        return any(other[:4] == ac["code"][:4] for other in others if other)

    def _program_one(self, ac: Json, device: Json) -> Json:
        device_id = device["device_id"]
        failure: list[str] = []
        if ac["code"] in self.unmanaged_codes.get(device_id, []):
            failure = ["failed_to_set_on_device", "duplicate_code_on_device"]
        elif self._breaks_constraints(ac, device):
            failure = ["code_constraints_violated"]
        else:
            limit = device["properties"].get("max_active_codes_supported")
            in_use = len(self.unmanaged_codes.get(device_id, [])) + sum(
                1
                for c in self.access_codes.values()
                if c["device_id"] == device_id and c["status"] in ("set", "removing")
            )
            if limit is not None and in_use >= limit:
                failure = ["no_space_for_access_code_on_device"]
        if not failure:
            ac.update(status="set", display_status="Set", is_scheduled_on_device=True)
            return self._event("access_code.set_on_device", device_id, ac, code=ac["code"])
        ac.update(status="unset", display_status="Failed")
        ac["errors"] = [
            {
                "error_code": error_code,
                "is_access_code_error": True,
                "message": error_code.replace("_", " "),
                "created_at": iso(self.now()),
            }
            for error_code in failure
        ]
        return self._event("access_code.failed_to_set_on_device", device_id, ac)

    def _resolve_unlock(self, attempt: Json) -> None:
        device = self.devices.get(attempt["_device_id"])
        outcome = self.unlock_outcome
        if device is not None and not device["properties"]["online"]:
            outcome = "device_offline"
        if outcome == "pending":
            return
        if outcome == "success":
            attempt.update(status="success", result={"was_confirmed_by_device": True})
            self._event("lock.unlocked", attempt["_device_id"], method="remote")
            return
        attempt.update(
            status="error",
            result=None,
            error={"type": outcome, "message": outcome.replace("_", " ")},
        )

    def _action(self, action_type: str, status: str) -> Json:
        attempt: Json = {
            "action_attempt_id": str(uuid.uuid4()),
            "action_type": action_type,
            "status": status,
            "result": {} if status == "success" else None,
            "error": None,
        }
        self.action_attempts[attempt["action_attempt_id"]] = attempt
        return attempt

    async def _workspaces_get(self, request: web.Request) -> web.Response:
        return _ok(workspace=self.workspace)

    def _webhook(self, params: Json) -> Json:
        webhook_id = _required_str(params, "webhook_id")
        if webhook_id not in self.webhooks:
            raise SeamApiError(404, "webhook_not_found", "Webhook not found")
        return self.webhooks[webhook_id]

    async def _webhooks_create(self, request: web.Request) -> web.Response:
        params = await _params(request)
        url = _required_str(params, "url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid_input("url", "Invalid url")
        events = _event_types(params.get("event_types", list(SEAM_EVENT_TYPES)))
        webhook_id = str(uuid.uuid4())
        secret = "whsec_" + base64.b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode()
        self.webhooks[webhook_id] = {
            "webhook_id": webhook_id,
            "url": url,
            "event_types": events,
            "secret": secret,
        }
        return _ok(webhook=self.webhooks[webhook_id])

    async def _webhooks_list(self, request: web.Request) -> web.Response:
        await _params(request)
        return _ok(webhooks=list(self.webhooks.values()))

    async def _webhooks_get(self, request: web.Request) -> web.Response:
        return _ok(webhook=self._webhook(await _params(request)))

    async def _webhooks_update(self, request: web.Request) -> web.Response:
        params = await _params(request)
        webhook = self._webhook(params)
        if "event_types" not in params:
            raise invalid_input("event_types", "Required")
        webhook["event_types"] = _event_types(params["event_types"])
        return _ok()

    async def _webhooks_delete(self, request: web.Request) -> web.Response:
        params = await _params(request)
        del self.webhooks[self._webhook(params)["webhook_id"]]
        return _ok()

    def _page(self, params: Json, key: str, items: list[Json]) -> web.Response:
        limit = int(params.get("limit") or self.page_size)
        limit = max(1, min(limit, self.page_size))
        start = 0
        cursor = params.get("page_cursor")
        if cursor:
            try:
                start = int(base64.urlsafe_b64decode(str(cursor)).decode())
            except ValueError as err:
                raise invalid_input("page_cursor", "Invalid page_cursor") from err
        end = start + limit
        has_next = end < len(items)
        next_cursor = base64.urlsafe_b64encode(str(end).encode()).decode() if has_next else None
        return _ok(
            **{key: items[start:end]},
            pagination={
                "has_next_page": has_next,
                "next_page_cursor": next_cursor,
                "next_page_url": None,
            },
        )

    def _event(
        self, event_type: str, device_id: str, access_code: Json | None = None, **extra: Any
    ) -> Json:
        now = iso(self.now())
        device = self.devices.get(device_id, {})
        event: Json = {
            "event_id": str(uuid.uuid4()),
            "event_type": event_type,
            "workspace_id": WORKSPACE_ID,
            "device_id": device_id,
            "connected_account_id": device.get("connected_account_id"),
            "created_at": now,
            "occurred_at": now,
            "device_custom_metadata": {},
            "connected_account_custom_metadata": {},
        }
        if access_code is not None:
            event["access_code_id"] = access_code["access_code_id"]
        event.update(extra)
        self.events.append(event)
        return event


#: Event types a Seam webhook may subscribe to (the lock and access code ones; Seam has more).
SEAM_EVENT_TYPES = (
    "access_code.created",
    "access_code.changed",
    "access_code.scheduled_on_device",
    "access_code.set_on_device",
    "access_code.removed_from_device",
    "access_code.delay_in_setting_on_device",
    "access_code.failed_to_set_on_device",
    "access_code.deleted",
    "access_code.delay_in_removing_from_device",
    "access_code.failed_to_remove_from_device",
    "access_code.modified_external_to_seam",
    "access_code.deleted_external_to_seam",
    "access_code.unmanaged.converted_to_managed",
    "connected_account.connected",
    "connected_account.disconnected",
    "device.connected",
    "device.disconnected",
    "device.low_battery",
    "device.battery_status_changed",
    "device.tampered",
    "lock.locked",
    "lock.unlocked",
    "lock.access_denied",
)


def _event_types(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_input("event_types", "Expected an array of strings")
    if unknown := [v for v in value if v not in SEAM_EVENT_TYPES]:
        raise invalid_input("event_types", f"Invalid event type: {unknown[0]}")
    return list(value)


def _public(attempt: Json) -> Json:
    return {k: v for k, v in attempt.items() if not k.startswith("_")}


def _as_list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _required_str(params: Json, name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise invalid_input(name, "Required")
    return value


async def _params(request: web.Request) -> Json:
    """Seam reads parameters from the query string and from a JSON body alike."""
    params: Json = {}
    for key in request.query:
        values = request.query.getall(key)
        params[key.removesuffix("[]")] = values if len(values) > 1 else values[0]
    if request.can_read_body:
        if request.content_type != "application/json":
            raise SeamApiError(400, "invalid_input", "Expected a JSON body")
        try:
            body = await request.json()
        except json.JSONDecodeError as err:
            raise SeamApiError(400, "invalid_input", "Malformed JSON body") from err
        if not isinstance(body, dict):
            raise SeamApiError(400, "invalid_input", "Expected a JSON object")
        params.update(body)
    return params


def _ok(**payload: Any) -> web.Response:
    return web.json_response({**payload, "ok": True})


def _error_response(err: SeamApiError) -> web.Response:
    request_id = f"req_{uuid.uuid4().hex[:16]}"
    error: Json = {"type": err.error_type, "message": err.message, "request_id": request_id}
    if err.validation_errors is not None:
        error["validation_errors"] = err.validation_errors
    if err.data is not None:
        error["data"] = err.data
    headers = {"seam-request-id": request_id}
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    return web.json_response({"error": error, "ok": False}, status=err.status, headers=headers)


def far(hours: float) -> datetime:
    """A moment ``hours`` from now, on the minute, for access windows in tests."""
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(second=0, microsecond=0)
