"""The sandbox's view of condition reports: what the ops group is shown after a pickup or a
return (the checklist's answers, the photos, a return's timing), with the "Damage?" button
that claims the deposit through the same claim flow as ``/claim``.

Only sandbox renters' reports and photos are shown: next to real channels
(``serve --sandbox``) the page never shows a real renter's photos.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.keys import CLOCK, OPS, TRANSLATOR
from bot.webhook_json import UnreadableJson, load_json
from flows.digits import DATABASE_ID_MAX, typed_int
from flows.engine import SANDBOX_CHANNEL
from flows.ops import BadArguments, ConditionReport, Refused, condition_report
from flows.staging import run_unit
from storage.models import Booking
from storage.rental_models import ConditionPhoto, Handover
from storage.sealing import SealError

REPORTS_SHOWN = 20
ACTOR = "sandbox operator"
MAX_BODY = 1024


def setup_reports(app: web.Application) -> None:
    app.router.add_get("/sandbox/api/reports", list_reports)
    app.router.add_get("/sandbox/api/reports/photos/{photo:\\d+}", report_photo)
    app.router.add_post("/sandbox/api/reports/{booking:\\d+}/claim", claim)


def _number(request: web.Request, name: str) -> int:
    number = typed_int(request.match_info[name], at_most=DATABASE_ID_MAX)
    if number is None:
        raise web.HTTPNotFound(text=f"no such {name}")
    return number


async def list_reports(request: web.Request) -> web.Response:
    handovers = (
        await Handover.filter(
            completed_at__isnull=False, booking__renter__conversations__channel=SANDBOX_CHANNEL
        )
        .distinct()
        .order_by("-completed_at", "-id")
        .limit(REPORTS_SHOWN)
    )
    reports = []
    for handover in handovers:
        report = await condition_report(request.app[TRANSLATOR], handover.booking_id, handover.kind)
        if report is not None:
            reports.append(_shown(report))
    return web.json_response({"reports": reports})


def _shown(report: ConditionReport) -> dict[str, Any]:
    return {
        "booking": report.booking_id,
        "reference": report.reference,
        "kind": report.kind.value,
        "text": report.text,
        "answers": [{"question": q, "answer": a} for q, a in report.answers],
        "photos": [
            {
                "id": photo.id,
                "prompt": photo.prompt,
                "caption": photo.caption,
                "url": f"/sandbox/api/reports/photos/{photo.id}" if photo.sealed else None,
            }
            for photo in report.photos
        ],
        "damage": report.damage_button,
    }


async def report_photo(request: web.Request) -> web.Response:
    photo = (
        await ConditionPhoto.filter(
            id=_number(request, "photo"),
            booking__renter__conversations__channel=SANDBOX_CHANNEL,
        )
        .distinct()
        .first()
    )
    if photo is None:
        raise web.HTTPNotFound(text="no such photo on the sandbox")
    if photo.image_encrypted is None:
        raise web.HTTPGone(text="the photo was deleted by retention")
    try:
        content = request.app[OPS].journey.sealer.open_bytes(photo.image_encrypted)
    except SealError:
        raise web.HTTPGone(text="the photo cannot be opened with this key") from None
    return web.Response(
        body=content,
        content_type=photo.content_type or "application/octet-stream",
        headers={"Cache-Control": "no-store"},
    )


async def claim(request: web.Request) -> web.Response:
    """The report's "Damage?" button: ``{"amount": "45.50"}`` of the deposit, or all of it
    without an amount."""
    desk = request.app[OPS]
    booking = await Booking.filter(
        id=_number(request, "booking"), renter__conversations__channel=SANDBOX_CHANNEL
    ).first()
    if booking is None:
        raise web.HTTPNotFound(text="no such booking on the sandbox")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        body = load_json(await request.read()) if request.can_read_body else {}
    except UnreadableJson:
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    amount = body.get("amount") if isinstance(body, dict) else None
    word = str(amount).strip() if amount not in (None, "") else None
    try:
        wanted = await desk.claim_for(booking, word, ACTOR)
    except Refused as refused:
        raise web.HTTPConflict(text=desk.t(refused.key, **refused.params)) from None
    except BadArguments:
        raise web.HTTPUnprocessableEntity(text=desk.t("ops.usage_claim")) from None
    lines, record = await desk.claim(wanted)
    if record is None:
        raise web.HTTPConflict(text="\n".join(lines))
    try:
        await run_unit(record, request.app[CLOCK].now())
    except LookupError:
        meanwhile = desk.t("ops.claim_meanwhile", booking=booking.reference)
        raise web.HTTPConflict(text=meanwhile) from None
    return web.json_response({"claimed": "\n".join(lines)})
