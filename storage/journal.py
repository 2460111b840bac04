"""Audit events and operator alerts, written in the transaction of what they describe."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.models import AuditEvent, OpsAlert


async def record_audit(
    conn: BaseDBAsyncClient | None,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    return await AuditEvent.create(
        at=at, actor=actor, action=action, subject=subject, details=details or {}, using_db=conn
    )


async def raise_alert(
    conn: BaseDBAsyncClient | None,
    *,
    now: datetime,
    kind: str,
    group_key: str,
    message_key: str,
    params: dict[str, Any] | None = None,
) -> OpsAlert:
    """Open an alert, or fold it into the open alert with the same group key."""
    existing = await OpsAlert.filter(open_key=group_key).using_db(conn).select_for_update().first()
    if existing is not None:
        existing.occurrences += 1
        existing.updated_at = now
        existing.params = params or existing.params
        existing.message_key = message_key
        await existing.save(using_db=conn)
        return existing
    return await OpsAlert.create(
        kind=kind,
        group_key=group_key,
        open_key=group_key,
        message_key=message_key,
        params=params or {},
        created_at=now,
        updated_at=now,
        using_db=conn,
    )


async def resolve_alert(
    conn: BaseDBAsyncClient | None, *, group_key: str, now: datetime, by: str
) -> bool:
    changed = (
        await OpsAlert.filter(open_key=group_key)
        .using_db(conn)
        .update(resolved_at=now, resolved_by=by, open_key=None, updated_at=now)
    )
    return changed > 0
