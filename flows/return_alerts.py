"""An item's "not returned" alert: raised by the return check (``flows.gps.return_check``),
one per item however many of its rentals are late, and resolved by the return that brings the
last of them back, the way any alert whose cause went away is (its message in the ops group
says so). A return with another rental of the item still out past its grace leaves it open."""

from __future__ import annotations

from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.journal import resolve_alert
from storage.models import Asset, Booking
from storage.returns import RETURNABLE_STATES


def not_returned_key(code: str) -> str:
    return f"not-returned:{code}"


async def resolve_not_returned(
    conn: BaseDBAsyncClient, asset: Asset, reference: str, now: datetime
) -> bool:
    """The item's "not returned" alert resolved by the return of ``reference`` (recorded
    already), unless a rental of the item is still not back past its end and grace. False
    when it stays open or none was."""
    overdue = now - timedelta(minutes=asset.late_grace_minutes)
    still_out = await (
        Booking.filter(
            asset_id=asset.id,
            state__in=RETURNABLE_STATES,
            returned_at__isnull=True,
            end_at__lte=overdue,
        )
        .using_db(conn)
        .exists()
    )
    if still_out:
        return False
    return await resolve_alert(
        conn, group_key=not_returned_key(asset.code), now=now, by=f"the return of {reference}"
    )
