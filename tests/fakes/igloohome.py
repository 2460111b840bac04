"""A fake igloohome cloud: the OAuth2 token endpoint and the API (devices, algoPINs, bridge jobs).

It follows what public igloohome API clients send and read (see ``locks/igloohome/client.py``) and
refuses what the vendor refuses: wrong client credentials (401 ``invalid_client``), a missing or
unknown bearer token (401), a token without the endpoint's scope (403), unknown devices (404), and
algoPIN dates that are not on the hour with an explicit offset, hourly windows outside 1–672 hours,
daily windows outside 29–367 days or not ending at their start's time of day (400).

algoPINs are derived from the device and the request, as the real ones are: the same window asks
for the same PIN. A test can make the next API calls fail with a status or hang until released.
Bridge jobs are read back through ``GET /jobs/{jobId}``: a test decides how many reads a job stays
not completed (``job_pending_reads``) and whether it then completes, fails or never runs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.server import Faults

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "igloohome"
API_PREFIX = "/igloohome"

_ON_THE_HOUR = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:00:00[+-]\d{2}:\d{2}$")

SCOPES_KEY = web.RequestKey("scopes", set[str])

_SCOPE_FOR_ROUTE = {
    "devices": "igloohomeapi/get-devices",
    "hourly": "igloohomeapi/algopin-hourly",
    "daily": "igloohomeapi/algopin-daily",
    "onetime": "igloohomeapi/algopin-onetime",
    "unlock": "igloohomeapi/unlock-bridge-proxied-job",
    "job": "igloohomeapi/get-job-status",
}


def load_devices() -> list[dict[str, Any]]:
    data = json.loads((FIXTURES / "devices.json").read_text())
    devices: list[dict[str, Any]] = data["payload"]
    return devices


@dataclass
class IssuedAlgoPin:
    device_id: str
    kind: str
    body: dict[str, Any]
    pin: str
    pin_id: str


@dataclass
class FakeIgloohome:
    client_id: str = "keyturn-client"
    client_secret: str = "keyturn-secret"
    expires_in: int = 3600
    devices: list[dict[str, Any]] = field(default_factory=load_devices)
    faults: Faults = field(default_factory=Faults)
    token_requests: int = 0
    tokens: dict[str, set[str]] = field(default_factory=dict)
    algopins: list[IssuedAlgoPin] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    #: How a bridge job ends: "completed", "never" (the bridge never runs it) or "failed".
    job_outcome: str = "completed"
    #: A job stays not completed for this many status reads before it ends as ``job_outcome``.
    job_pending_reads: int = 0
    api_calls: list[tuple[str, str]] = field(default_factory=list)
    _pin_secret: bytes = b"fake-igloohome-lock-secret"
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- test controls ---------------------------------------------------------------------

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def release(self) -> None:
        self.faults.release()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/oauth2/token", self._token)
        app.router.add_get(f"{API_PREFIX}/devices", self._devices)
        app.router.add_get(f"{API_PREFIX}/devices/{{deviceId}}", self._device)
        app.router.add_post(f"{API_PREFIX}/devices/{{deviceId}}/algopin/{{kind}}", self._algopin)
        app.router.add_post(
            f"{API_PREFIX}/devices/{{deviceId}}/jobs/bridges/{{bridgeId}}", self._bridge_job
        )
        app.router.add_get(f"{API_PREFIX}/jobs/{{jobId}}", self._job_status)
        return app

    # -- plumbing --------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        self.api_calls.append((request.method, request.path))
        faulted = await self.faults.apply()
        if faulted is not None:
            return faulted
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        if token not in self.tokens:
            return web.json_response({"message": "Unauthorized"}, status=401)
        request[SCOPES_KEY] = self.tokens[token]
        return await self.faults.carry_out(request, handler)

    @staticmethod
    def _require_scope(request: web.Request, route: str) -> None:
        if _SCOPE_FOR_ROUTE[route] not in request[SCOPES_KEY]:
            raise web.HTTPForbidden(
                text=json.dumps({"message": "Insufficient scope"}), content_type="application/json"
            )

    @staticmethod
    def _bad_request(message: str) -> web.HTTPBadRequest:
        return web.HTTPBadRequest(
            text=json.dumps({"message": message}), content_type="application/json"
        )

    def _find_device(self, device_id: str) -> dict[str, Any]:
        for device in self.devices:
            if device["deviceId"] == device_id:
                return device
        raise web.HTTPNotFound(
            text=json.dumps({"message": "Device not found"}), content_type="application/json"
        )

    # -- token -----------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        header = request.headers.get("Authorization", "")
        client_id = client_secret = None
        if header.startswith("Basic "):
            with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
                decoded = base64.b64decode(header.removeprefix("Basic ")).decode()
                client_id, client_secret = decoded.split(":", 1)
        if not (
            client_id is not None
            and client_secret is not None
            and hmac.compare_digest(client_id, self.client_id)
            and hmac.compare_digest(client_secret, self.client_secret)
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        scopes = set(str(form.get("scope") or "").split())
        token = f"fake-igloo-token-{next(self._ids)}"
        self.tokens[token] = scopes
        return web.json_response(
            {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        )

    # -- devices ---------------------------------------------------------------------------

    async def _devices(self, request: web.Request) -> web.Response:
        self._require_scope(request, "devices")
        return web.json_response({"nextCursor": "", "payload": self.devices})

    async def _device(self, request: web.Request) -> web.Response:
        self._require_scope(request, "devices")
        return web.json_response(self._find_device(request.match_info["deviceId"]))

    # -- algoPINs --------------------------------------------------------------------------

    def _date(self, body: dict[str, Any], key: str) -> datetime:
        value = body.get(key)
        if not isinstance(value, str) or not _ON_THE_HOUR.match(value):
            raise self._bad_request(f"'{key}' must be in format YYYY-MM-DDTHH:00:00+hh:mm")
        return datetime.fromisoformat(value)

    async def _algopin(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind not in ("hourly", "daily", "onetime"):
            raise web.HTTPNotFound(
                text=json.dumps({"message": "Not found"}), content_type="application/json"
            )
        self._require_scope(request, kind)
        device_id = request.match_info["deviceId"]
        device = self._find_device(device_id)
        if device["type"] != "Lock":
            raise self._bad_request("algoPINs are only available on locks")
        try:
            body = await request.json()
        except ValueError as err:
            raise self._bad_request("body must be JSON") from err
        if not isinstance(body, dict):
            raise self._bad_request("body must be an object")
        variance = body.get("variance")
        if not isinstance(variance, int) or isinstance(variance, bool) or variance < 1:
            raise self._bad_request("'variance' must be a positive integer")
        if not isinstance(body.get("accessName"), str) or not body["accessName"]:
            raise self._bad_request("'accessName' is required")
        start = self._date(body, "startDate")
        end_key = ""
        if kind == "hourly":
            end = self._date(body, "endDate")
            seconds = (end - start).total_seconds()
            if seconds % 3600 or not 1 <= seconds / 3600 <= 672:
                raise self._bad_request("hourly algoPINs last 1 to 672 hours")
            end_key = end.isoformat()
        elif kind == "daily":
            end = self._date(body, "endDate")
            if end.time() != start.time():
                raise self._bad_request("daily algoPINs end at the same time of day they start")
            if not 29 <= (end.date() - start.date()).days <= 367:
                raise self._bad_request("daily algoPINs last 29 to 367 days")
            end_key = end.isoformat()
        material = f"{device_id}|{kind}|{start.isoformat()}|{end_key}|{variance}"
        digest = hmac.new(self._pin_secret, material.encode(), hashlib.sha256).digest()
        pin = str(100_000_000 + int.from_bytes(digest[:8], "big") % 900_000_000)
        pin_id = str(uuid.uuid4())
        self.algopins.append(IssuedAlgoPin(device_id, kind, body, pin, pin_id))
        return web.json_response({"pin": pin, "pinId": pin_id})

    # -- bridge jobs -----------------------------------------------------------------------

    async def _bridge_job(self, request: web.Request) -> web.Response:
        device_id = request.match_info["deviceId"]
        bridge_id = request.match_info["bridgeId"]
        self._find_device(device_id)
        bridge = self._find_device(bridge_id)
        try:
            body = await request.json()
        except ValueError as err:
            raise self._bad_request("body must be JSON") from err
        job_type = body.get("jobType") if isinstance(body, dict) else None
        if job_type == 2:
            self._require_scope(request, "unlock")
        elif not isinstance(job_type, int):
            raise self._bad_request("'jobType' is required")
        linked = {d["deviceId"] for d in bridge.get("linkedDevices") or ()}
        if bridge["type"] != "Bridge" or device_id not in linked:
            raise self._bad_request("the device is not linked to this bridge")
        job_id = f"job-{next(self._ids)}"
        self.jobs.append(
            {
                "jobId": job_id,
                "deviceId": device_id,
                "bridgeId": bridge_id,
                **body,
                "_reads": 0,
                "_created": datetime.now(UTC),
            }
        )
        return web.json_response({"jobId": job_id})

    async def _job_status(self, request: web.Request) -> web.Response:
        self._require_scope(request, "job")
        job = next((j for j in self.jobs if j["jobId"] == request.match_info["jobId"]), None)
        if job is None:
            raise web.HTTPNotFound(
                text=json.dumps({"message": "job not found"}), content_type="application/json"
            )
        job["_reads"] += 1
        done = job["_reads"] > self.job_pending_reads and self.job_outcome != "never"
        response: dict[str, Any] = {}
        if done and self.job_outcome == "failed":
            response = {"error": "lock_unreachable"}
        return web.json_response(
            {
                "jobId": job["jobId"],
                "jobType": job["jobType"],
                "expiryDate": (job["_created"] + timedelta(hours=1)).isoformat(),
                "completed": done,
                "jobResponse": response,
            }
        )
