"""Audit events and operator alerts, written in the transaction of what they describe.

Every new alert and every change of an open one (another occurrence, resolved) stages an
``ops.alert`` outbox effect in the same transaction, so the operators' chat hears of it at least
once and a storm of one group is one message that is edited as it grows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from storage.db import connection, sql
from storage.models import AuditEvent, OpsAlert, Timer
from storage.outbox import enqueue_effect

_RECORD_AUDIT = (
    "INSERT INTO audit_event (at, actor, action, subject, details) VALUES ($1, $2, $3, $4, $5)"
)

#: The outbox effect that shows an alert (or its change) to the operators.
ALERT_EFFECT = "alert.show"

#: An alert is opened, or folded into the open one of its group, in one statement: two
#: transactions raising one group at once both succeed (the second waits for the first and
#: folds into it) rather than one failing on the unique open key.
_RAISE = (
    "INSERT INTO ops_alert (kind, group_key, open_key, message_key, params, occurrences,"
    " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $7)"
    " ON CONFLICT (open_key) DO UPDATE SET occurrences = ops_alert.occurrences + 1,"
    " updated_at = EXCLUDED.updated_at, message_key = EXCLUDED.message_key{params}"
    " RETURNING *"
)
#: An occurrence without parameters keeps those the alert has.
_RAISE_KEEPING_PARAMS = _RAISE.format(params="")
_RAISE_WITH_PARAMS = _RAISE.format(params=", params = EXCLUDED.params")


async def record_audit(
    conn: BaseDBAsyncClient | None,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit event (in ``conn``'s transaction when given), in one hand-written
    INSERT: bookings, codes and opens write one on the hot path of a renter's turn."""
    fields = AuditEvent._meta.fields_map
    for name, value in (("actor", actor), ("action", action), ("subject", subject)):
        fields[name].validate(value)  # the lengths the ORM's create checks
    encode = fields["details"].to_db_value
    await (conn or connection()).execute_query(
        sql(_RECORD_AUDIT), [at, actor, action, subject, encode(details or {}, AuditEvent)]
    )


async def latest_recorded_at() -> datetime | None:
    """The latest time recorded: of an audit event, or of a timer firing. The demo's clock goes
    on from there after a restart, so it never runs behind what it already did."""
    audit = await AuditEvent.all().order_by("-at").first()
    timer = await Timer.filter(fired_at__isnull=False).order_by("-fired_at").first()
    times = [audit.at if audit else None, timer.fired_at if timer else None]
    return max((moment for moment in times if moment is not None), default=None)


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
    if conn is None:
        async with in_transaction() as own:
            return await raise_alert(
                own,
                now=now,
                kind=kind,
                group_key=group_key,
                message_key=message_key,
                params=params,
            )
    encode = OpsAlert._meta.fields_map["params"].to_db_value
    rows = await conn.execute_query_dict(
        sql(_RAISE_WITH_PARAMS if params else _RAISE_KEEPING_PARAMS),
        [kind, group_key, group_key, message_key, encode(params or {}, OpsAlert), now, now],
    )
    alert = OpsAlert._init_from_db(**rows[0])
    await _announce(conn, alert, now)
    return alert


async def resolve_alert(
    conn: BaseDBAsyncClient | None, *, group_key: str, now: datetime, by: str
) -> bool:
    if conn is None:
        async with in_transaction() as own:
            return await resolve_alert(own, group_key=group_key, now=now, by=by)
    alerts = await OpsAlert.filter(open_key=group_key).using_db(conn).select_for_update()
    if not alerts:
        return False
    await (
        OpsAlert.filter(id__in=[a.id for a in alerts])
        .using_db(conn)
        .update(resolved_at=now, resolved_by=by, open_key=None, updated_at=now)
    )
    for alert in alerts:
        alert.resolved_at = now
        await _announce(conn, alert, now)
    return True


async def _announce(conn: BaseDBAsyncClient, alert: OpsAlert, now: datetime) -> None:
    resolved = "resolved" if alert.resolved_at is not None else "open"
    await enqueue_effect(
        conn,
        kind=ALERT_EFFECT,
        payload={"alert": alert.id},
        idempotency_key=f"alert:{alert.id}:{alert.occurrences}:{resolved}",
        now=now,
    )


async def record_past_alert(
    *,
    raised_at: datetime,
    now: datetime,
    kind: str,
    group_key: str,
    message_key: str,
    params: dict[str, Any],
    telegram_message_id: int | None,
    by: str,
) -> OpsAlert:
    """Record an alert that was raised while the database could not take it (sent to the ops
    chat straight away, as ``telegram_message_id``), resolved now that it can: the alert's
    message is edited to say so rather than sent again."""
    async with in_transaction() as conn:
        alert = await raise_alert(
            conn,
            now=raised_at,
            kind=kind,
            group_key=group_key,
            message_key=message_key,
            params=params,
        )
        if telegram_message_id is not None:
            await (
                OpsAlert.filter(id=alert.id)
                .using_db(conn)
                .update(telegram_message_id=telegram_message_id)
            )
        await resolve_alert(conn, group_key=group_key, now=now, by=by)
    return alert
