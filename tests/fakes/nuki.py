"""A fake Nuki Web API: smartlocks, their authorizations (keypad codes) and lock actions.

It follows Nuki's Swagger (see ``locks/nuki/client.py``) and refuses what Nuki refuses: a missing or
wrong bearer token (401), an unknown smartlock or authorization (404), an authorization without a
name or ``remoteAllowed``, a keypad code that is not 6 digits, contains 0 or starts with 12, a
window that ends before it starts, a lock already holding its maximum of keypad codes (400), and a
keypad code already on the lock (409). ``PUT …/auth`` answers 204 with no body, as Nuki does.

Nuki applies authorization changes asynchronously; a test can hide new authorizations from the
next listings, or leave an ``operationId`` on them, to play that out. It can also make the next
calls fail with a status or hang until released. A lock action shows in the smartlock log
(``GET …/log``) after ``action_log_after`` reads, as a success, a failure, or never.
"""

from __future__ import annotations

import copy
import hmac
import itertools
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.server import Faults

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nuki"

KEYPAD_CODE = 13
MAX_KEYPAD_CODES = {0: 100, 4: 200, 5: 200}


def load_smartlocks() -> list[dict[str, Any]]:
    smartlocks: list[dict[str, Any]] = json.loads((FIXTURES / "smartlocks.json").read_text())
    return smartlocks


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_error(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=json.dumps({"detailMessage": message}), content_type="application/json")


def keypad_code_refusal(code: object) -> str | None:
    if not isinstance(code, int) or isinstance(code, bool):
        return "code is required for a keypad code and must be a number"
    digits = str(code)
    if len(digits) != 6:
        return "code must have 6 digits"
    if "0" in digits:
        return "code must not contain 0"
    if digits.startswith("12"):
        return "code must not start with 12"
    return None


@dataclass
class FakeNuki:
    api_token: str = "nuki-test-token"
    smartlocks: list[dict[str, Any]] = field(default_factory=load_smartlocks)
    auths: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    faults: Faults = field(default_factory=lambda: Faults("detailMessage"))
    #: New authorizations stay out of this many listings (Nuki creates them asynchronously).
    hide_new_auths_for: int = 0
    #: New and updated authorizations keep an ``operationId`` (still being applied to the lock).
    pending_operations: bool = False
    actions: list[tuple[int, int]] = field(default_factory=list)
    #: How an action ends in the smartlock log: "success", "never" (no entry) or "failed"
    #: (an entry with completion state 1, motor blocked).
    action_outcome: str = "success"
    #: An action's log entry appears only after this many log reads.
    action_log_after: int = 0
    #: Each lock's log, newest first.
    logs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    _log_pending: list[list[Any]] = field(default_factory=list)
    _log_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(0x5E0000))
    calls: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[tuple[str, str, Any]] = field(default_factory=list)
    _hidden: dict[str, int] = field(default_factory=dict)
    _auth_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    # -- test controls ---------------------------------------------------------------------

    def release(self) -> None:
        self.faults.release()

    def add_keypad_code(
        self,
        smartlock_id: int,
        name: str,
        code: int,
        *,
        allowed_from: str | None = None,
        allowed_until: str | None = None,
        hidden_for: int = 0,
    ) -> dict[str, Any]:
        """Put a keypad code on a lock directly, as the Nuki app or another worker would."""
        auth = self._new_auth(
            smartlock_id,
            {
                "type": KEYPAD_CODE,
                "name": name,
                "code": code,
                "remoteAllowed": False,
                "allowedFromDate": allowed_from,
                "allowedUntilDate": allowed_until,
            },
        )
        if hidden_for:
            self._hidden[auth["id"]] = hidden_for
        return auth

    def keypad_codes(self, smartlock_id: int) -> list[dict[str, Any]]:
        return [a for a in self.auths.get(smartlock_id, []) if a["type"] == KEYPAD_CODE]

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        lock = "/smartlock/{smartlockId:\\d+}"
        app.router.add_get("/smartlock", self._list_smartlocks)
        app.router.add_get(lock, self._get_smartlock)
        app.router.add_get(f"{lock}/auth", self._list_auths)
        app.router.add_put(f"{lock}/auth", self._create_auth)
        app.router.add_get(f"{lock}/auth/{{id}}", self._get_auth)
        app.router.add_post(f"{lock}/auth/{{id}}", self._update_auth)
        app.router.add_delete(f"{lock}/auth/{{id}}", self._delete_auth)
        app.router.add_get(f"{lock}/log", self._log)
        app.router.add_post(f"{lock}/action", self._action)
        app.router.add_post(f"{lock}/action/unlock", self._action_unlock)
        app.router.add_post(f"{lock}/action/lock", self._action_lock)
        return app

    # -- plumbing --------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        faulted = await self.faults.apply()
        if faulted is not None:
            return faulted
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        if not token or not hmac.compare_digest(token, self.api_token):
            return web.json_response({"detailMessage": "Not authorized"}, status=401)
        return await self.faults.carry_out(request, handler)

    def _smartlock(self, request: web.Request) -> dict[str, Any]:
        smartlock_id = int(request.match_info["smartlockId"])
        for smartlock in self.smartlocks:
            if smartlock["smartlockId"] == smartlock_id:
                return smartlock
        raise _json_error(web.HTTPNotFound, "Smartlock not found")

    def _auth(self, request: web.Request) -> dict[str, Any]:
        smartlock = self._smartlock(request)
        for auth in self.auths.get(smartlock["smartlockId"], []):
            if auth["id"] == request.match_info["id"]:
                return auth
        raise _json_error(web.HTTPNotFound, "Smartlock authorization not found")

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError as err:
            raise _json_error(web.HTTPBadRequest, "Bad parameter: body is not JSON") from err
        if not isinstance(body, dict):
            raise _json_error(web.HTTPBadRequest, "Bad parameter: body is not an object")
        self.bodies.append((request.method, request.path, copy.deepcopy(body)))
        return body

    @staticmethod
    def _check_dates(body: dict[str, Any]) -> None:
        parsed: dict[str, datetime] = {}
        for key in ("allowedFromDate", "allowedUntilDate"):
            value = body.get(key)
            if value is None:
                continue
            try:
                parsed[key] = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError as err:
                raise _json_error(web.HTTPBadRequest, f"Bad parameter: {key}") from err
        if len(parsed) == 2 and parsed["allowedUntilDate"] <= parsed["allowedFromDate"]:
            raise _json_error(
                web.HTTPBadRequest, "Bad parameter: allowedUntilDate must follow allowedFromDate"
            )

    def _check_code(self, smartlock: dict[str, Any], code: object, exclude: str = "") -> None:
        refusal = keypad_code_refusal(code)
        if refusal is not None:
            raise _json_error(web.HTTPBadRequest, f"Bad parameter: {refusal}")
        if any(
            a["code"] == code and a["id"] != exclude
            for a in self.keypad_codes(smartlock["smartlockId"])
        ):
            raise _json_error(web.HTTPConflict, "Keypad code already exists on this smartlock")

    @staticmethod
    def _check_name(body: dict[str, Any]) -> None:
        name = body.get("name")
        if not isinstance(name, str) or not name or len(name) > 32:
            raise _json_error(web.HTTPBadRequest, "Bad parameter: name (1 to 32 chars)")

    def _new_auth(self, smartlock_id: int, body: dict[str, Any]) -> dict[str, Any]:
        stamp = _now()
        auth: dict[str, Any] = {
            "id": secrets.token_hex(12),
            "smartlockId": smartlock_id,
            "authId": next(self._auth_ids),
            "type": body.get("type", 0),
            "name": body["name"],
            "enabled": True,
            "remoteAllowed": body.get("remoteAllowed", False),
            "lockCount": 0,
            "creationDate": stamp,
            "updateDate": stamp,
        }
        for key in (
            "code",
            "accountUserId",
            "allowedFromDate",
            "allowedUntilDate",
            "allowedWeekDays",
            "allowedFromTime",
            "allowedUntilTime",
        ):
            if body.get(key) is not None:
                auth[key] = body[key]
        if self.pending_operations:
            auth["operationId"] = secrets.token_hex(12)
        self.auths.setdefault(smartlock_id, []).append(auth)
        return auth

    # -- smartlocks ------------------------------------------------------------------------

    async def _list_smartlocks(self, request: web.Request) -> web.Response:
        return web.json_response(self.smartlocks)

    async def _get_smartlock(self, request: web.Request) -> web.Response:
        return web.json_response(self._smartlock(request))

    # -- authorizations --------------------------------------------------------------------

    async def _list_auths(self, request: web.Request) -> web.Response:
        smartlock = self._smartlock(request)
        types = request.query.get("types")
        wanted = {int(t) for t in types.split(",") if t.strip()} if types else None
        shown = []
        for auth in self.auths.get(smartlock["smartlockId"], []):
            if self._hidden.get(auth["id"], 0) > 0:
                self._hidden[auth["id"]] -= 1
                continue
            if wanted is None or auth["type"] in wanted:
                shown.append(auth)
        return web.json_response(shown)

    async def _create_auth(self, request: web.Request) -> web.Response:
        smartlock = self._smartlock(request)
        body = await self._body(request)
        self._check_name(body)
        if not isinstance(body.get("remoteAllowed"), bool):
            raise _json_error(web.HTTPBadRequest, "Bad parameter: remoteAllowed is required")
        kind = body.get("type", 0)
        if kind == KEYPAD_CODE:
            config = smartlock.get("config") or {}
            if not (config.get("keypadPaired") or config.get("keypad2Paired")):
                raise _json_error(web.HTTPBadRequest, "Bad parameter: no keypad paired")
            limit = MAX_KEYPAD_CODES.get(smartlock["type"])
            if limit is not None and len(self.keypad_codes(smartlock["smartlockId"])) >= limit:
                raise _json_error(web.HTTPBadRequest, "Maximum number of keypad codes reached")
            self._check_code(smartlock, body.get("code"))
        elif not isinstance(body.get("accountUserId"), int):
            raise _json_error(web.HTTPBadRequest, "Bad parameter: accountUserId is required")
        self._check_dates(body)
        auth = self._new_auth(smartlock["smartlockId"], body)
        if self.hide_new_auths_for:
            self._hidden[auth["id"]] = self.hide_new_auths_for
        return web.Response(status=204)

    async def _get_auth(self, request: web.Request) -> web.Response:
        return web.json_response(self._auth(request))

    async def _update_auth(self, request: web.Request) -> web.Response:
        smartlock = self._smartlock(request)
        auth = self._auth(request)
        body = await self._body(request)
        self._check_name(body)
        if "code" in body:
            if auth["type"] != KEYPAD_CODE:
                raise _json_error(web.HTTPBadRequest, "Bad parameter: code is only for keypad")
            self._check_code(smartlock, body["code"], exclude=auth["id"])
        merged = {**auth, **{k: v for k, v in body.items() if v is not None}}
        self._check_dates(merged)
        for key in (
            "name",
            "code",
            "enabled",
            "remoteAllowed",
            "allowedFromDate",
            "allowedUntilDate",
            "allowedWeekDays",
            "allowedFromTime",
            "allowedUntilTime",
        ):
            if key in body:
                auth[key] = body[key]
        auth["updateDate"] = _now()
        if self.pending_operations:
            auth["operationId"] = secrets.token_hex(12)
        return web.Response(status=204)

    async def _delete_auth(self, request: web.Request) -> web.Response:
        smartlock = self._smartlock(request)
        auth = self._auth(request)
        self.auths[smartlock["smartlockId"]].remove(auth)
        return web.Response(status=204)

    # -- actions ---------------------------------------------------------------------------

    async def _action(self, request: web.Request) -> web.Response:
        smartlock = self._smartlock(request)
        body = await self._body(request)
        action = body.get("action")
        if not isinstance(action, int) or not 1 <= action <= 7:
            raise _json_error(web.HTTPBadRequest, "Bad parameter: action")
        self.actions.append((smartlock["smartlockId"], action))
        if self.action_outcome != "never":
            self._log_pending.append([self.action_log_after, smartlock["smartlockId"], action])
        return web.Response(status=204)

    def add_log_entry(
        self, smartlock_id: int, action: int, state: int = 0, *, trigger: int = 4
    ) -> dict[str, Any]:
        """Write an entry at the top of a lock's log, as the lock does once it has acted
        (``trigger`` 4: asked through the Web API; 1 manual, 2 the lock's button, …)."""
        entry = {
            "id": f"{next(self._log_ids):x}",
            "smartlockId": smartlock_id,
            "deviceType": 0,
            "name": "Keyturn",
            "action": action,
            "trigger": trigger,
            "state": state,
            "autoUnlock": False,
            "date": _now(),
        }
        self.logs.setdefault(smartlock_id, []).insert(0, entry)
        return entry

    async def _log(self, request: web.Request) -> web.Response:
        smartlock_id = self._smartlock(request)["smartlockId"]
        for pending in list(self._log_pending):
            if pending[0] <= 0:
                self._log_pending.remove(pending)
                state = 0 if self.action_outcome == "success" else 1
                self.add_log_entry(pending[1], pending[2], state)
            else:
                pending[0] -= 1
        limit = int(request.query.get("limit") or 20)
        return web.json_response(self.logs.get(smartlock_id, [])[: max(1, min(limit, 50))])

    async def _action_unlock(self, request: web.Request) -> web.Response:
        self.actions.append((self._smartlock(request)["smartlockId"], 1))
        return web.Response(status=204)

    async def _action_lock(self, request: web.Request) -> web.Response:
        self.actions.append((self._smartlock(request)["smartlockId"], 2))
        return web.Response(status=204)
