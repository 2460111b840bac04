"""The page behind an upload link: one ID photo from a renter whose SMS route carries no MMS.

A plain HTML form (no script), posted as multipart. The file is checked as MMS media is (type
and size), its type read from its own bytes rather than taken from the browser; it is stored
sealed and put up for review; the link's use is recorded in the same transaction, so a second
use is refused, also after a restart. A link that is forged, expired or used gets a clear page
and changes nothing.
"""

from __future__ import annotations

import html
import logging

from aiohttp import BodyPartReader, web

from bot.keys import CLOCK, JOURNEY
from flows.booking.handover_asks import PHOTO_TYPES
from flows.i18n import renter_language
from flows.media_types import ID_DOCUMENT_TYPES, stored_type
from flows.staging import stage_outcome
from flows.upload_links import (
    CONDITION_PHOTO,
    ID_PHOTO,
    UPLOAD_LINK_USES,
    UploadGrant,
    UploadLinks,
)
from storage.models import Booking, BookingState, ProcessedWebhook, Renter
from storage.uow import unit_of_work
from storage.webhooks import claim_event

log = logging.getLogger(__name__)

UPLOAD_LINKS = web.AppKey("upload_links", UploadLinks)
ROUTE = "/upload/{token}"
FIELD = "photo"
_INTRO = {ID_PHOTO: "upload.intro", CONDITION_PHOTO: "upload.condition_intro"}
_RECEIVED = {ID_PHOTO: "upload.received", CONDITION_PHOTO: "upload.condition_received"}


class _Used(Exception):
    """The link was used meanwhile (or the booking no longer awaits an ID): nothing is stored."""


def setup_upload_page(app: web.Application, links: UploadLinks, max_bytes: int) -> None:
    app[UPLOAD_LINKS] = links

    async def show(request: web.Request) -> web.Response:
        grant = links.open(request.match_info["token"])
        if grant is None or await _used(grant) or not await _awaits_photo(request, grant):
            return await _page(request, grant, "upload.refused", status=410)
        return await _page(request, grant, _INTRO[grant.purpose], form=True)

    async def receive(request: web.Request) -> web.Response:
        grant = links.open(request.match_info["token"])
        if grant is None or await _used(grant):
            return await _page(request, grant, "upload.refused", status=410)
        condition = grant.purpose == CONDITION_PHOTO
        photo = await _read_photo(request, max_bytes)
        accepted = PHOTO_TYPES if condition else ID_DOCUMENT_TYPES
        content, declared = photo or (b"", "")
        content_type = stored_type(content, declared, accepted)
        if content_type is None:
            return await _page(request, grant, "upload.wrong_file", form=True, status=415)
        journey = request.app[JOURNEY]
        receive = journey.receive_uploaded_photo if condition else journey.receive_uploaded_id
        now = request.app[CLOCK].now()
        try:
            async with unit_of_work() as conn:
                if not await claim_event(conn, UPLOAD_LINK_USES, grant.digest, at=now):
                    raise _Used
                outcome = await receive(conn, grant, content, content_type, now)
                if outcome is None:
                    raise _Used
                await stage_outcome(conn, outcome, now)
        except _Used:
            return await _page(request, grant, "upload.refused", status=410)
        what = "a condition photo" if condition else "an ID photo"
        log.info("%s arrived through an upload link for booking %s", what, grant.booking_id)
        return await _page(request, grant, _RECEIVED[grant.purpose])

    app.router.add_get(ROUTE, show)
    app.router.add_post(ROUTE, receive)


async def _used(grant: UploadGrant) -> bool:
    return await ProcessedWebhook.exists(provider=UPLOAD_LINK_USES, event_id=grant.digest)


async def _awaits_photo(request: web.Request, grant: UploadGrant) -> bool:
    """Checked again when the photo is stored; here so that no form is shown for nothing."""
    if grant.purpose == CONDITION_PHOTO:
        return await request.app[JOURNEY].awaits_uploaded_photo(grant)
    return grant.purpose == ID_PHOTO and await Booking.exists(
        id=grant.booking_id, renter_id=grant.renter_id, state=BookingState.AWAITING_ID
    )


async def _read_photo(request: web.Request, max_bytes: int) -> tuple[bytes, str] | None:
    """The posted file and its declared type, when that is one MMS media may have and the file
    is no larger than an MMS photo may be; read in chunks so an oversized one is cut off early.
    What the file is, the caller reads from its bytes."""
    if not request.content_type.startswith("multipart/"):
        return None
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader) or part.name != FIELD:
            continue
        content_type = part.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in ID_DOCUMENT_TYPES:
            return None
        body = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            body += chunk
            if len(body) > max_bytes:
                return None
        return (bytes(body), content_type) if body else None
    return None


async def _page(
    request: web.Request,
    grant: UploadGrant | None,
    key: str,
    *,
    form: bool = False,
    status: int = 200,
) -> web.Response:
    journey = request.app[JOURNEY]
    renter = await Renter.get_or_none(id=grant.renter_id) if grant is not None else None
    language = renter_language(renter)
    t = journey.translator
    body = f"<p>{html.escape(t.text(language, key))}</p>"
    if form:
        body += (
            '<form method="post" enctype="multipart/form-data">'
            f'<p><input type="file" name="{FIELD}" accept="image/*" required></p>'
            f'<p><button type="submit">{html.escape(t.text(language, "upload.send"))}</button>'
            "</p></form>"
        )
    page = (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(t.text(language, 'upload.title'))}</title></head>"
        '<body style="font-family:system-ui,sans-serif;max-width:30rem;margin:3rem auto;'
        f'padding:0 1rem"><h1>{html.escape(t.text(language, "upload.title"))}</h1>{body}'
        "</body></html>"
    )
    return web.Response(
        text=page,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"},
    )
