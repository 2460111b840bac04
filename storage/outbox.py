"""The transactional outbox: effects staged with the state that asked for them, claimed by workers.

On PostgreSQL due rows are claimed with ``FOR UPDATE SKIP LOCKED`` so several workers never run the
same row; claiming pushes ``next_attempt_at`` forward by a lease, so a row whose worker died is
claimed again once the lease runs out (at least once). On SQLite one worker runs.

Each claim records the worker and counts the attempt; the attempt number fences the result: a
worker whose lease ran out and was taken over cannot mark the row done, failed or dead under the
worker that holds it now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from storage.conversations import record_send
from storage.db import connection, dialect, sql
from storage.models import EffectState, OutboxEffect

_INSERT_EFFECT = (
    "INSERT INTO outbox_effect (kind, payload, idempotency_key, state, critical, attempts,"
    " next_attempt_at, last_error, alerted, claimed_by, created_at)"
    " VALUES ($1, $2, $3, $4, $5, 0, $6, '', $7, '', $8)"
    " ON CONFLICT (idempotency_key) DO NOTHING"
)


@dataclass(frozen=True)
class StagedEffect:
    kind: str
    payload: dict[str, Any]
    idempotency_key: str
    critical: bool = False


async def enqueue_effects(
    conn: BaseDBAsyncClient, effects: Sequence[StagedEffect], *, now: datetime
) -> None:
    """Stage effects in the caller's transaction, in one statement; a key staged before is not
    staged again (the unique key's conflict is ignored, so no lookup precedes the insert)."""
    if not effects:
        return
    encode = OutboxEffect._meta.fields_map["payload"].to_db_value
    await conn.execute_many(
        sql(_INSERT_EFFECT),
        [
            [
                effect.kind,
                encode(effect.payload, OutboxEffect),
                effect.idempotency_key,
                EffectState.PENDING.value,
                effect.critical,
                now,
                False,
                now,
            ]
            for effect in effects
        ],
    )


async def enqueue_effect(
    conn: BaseDBAsyncClient,
    *,
    kind: str,
    payload: dict[str, Any],
    idempotency_key: str,
    now: datetime,
    critical: bool = False,
) -> None:
    """Stage one effect in the caller's transaction; a key staged before is not staged again."""
    await enqueue_effects(conn, [StagedEffect(kind, payload, idempotency_key, critical)], now=now)


#: The claim in one statement on PostgreSQL: lock the due rows nobody else holds, push their
#: lease forward and return them. It starts with WITH so Tortoise's client fetches its rows.
_CLAIM_POSTGRES = (
    "WITH due AS ("
    " SELECT id FROM outbox_effect WHERE state = $1 AND next_attempt_at <= $2"
    " ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED"
    ") UPDATE outbox_effect SET next_attempt_at = $4, attempts = outbox_effect.attempts + 1,"
    " claimed_by = $5 FROM due WHERE outbox_effect.id = due.id RETURNING outbox_effect.*"
)


async def claim_due_effects(
    now: datetime, *, limit: int, lease: timedelta, worker: str
) -> list[OutboxEffect]:
    """Claim up to ``limit`` due effects for ``worker``, for the length of ``lease``."""
    if dialect() == "postgres":
        conn = connection()
        claimed: list[OutboxEffect] = await conn.executor_class(
            model=OutboxEffect, db=conn
        ).execute_select(
            _CLAIM_POSTGRES, [EffectState.PENDING.value, now, limit, now + lease, worker]
        )
        return sorted(claimed, key=lambda effect: effect.id)
    async with in_transaction() as conn:
        rows = (
            await OutboxEffect.filter(state=EffectState.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "id")
            .limit(limit)
            .select_for_update(skip_locked=True)
            .using_db(conn)
        )
        if not rows:
            return []
        ids = [row.id for row in rows]
        await (
            OutboxEffect.filter(id__in=ids)
            .using_db(conn)
            .update(next_attempt_at=now + lease, attempts=F("attempts") + 1, claimed_by=worker)
        )
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + lease
        row.claimed_by = worker
    return rows


#: Every write of a claim's result holds only while the claim does: the row is still pending and
#: not claimed again since (``attempts`` is the claim's number).
_MARK_DONE = (
    "UPDATE outbox_effect SET state = $1, done_at = $2, last_error = ''"
    " WHERE id = $3 AND state = $4 AND attempts = $5"
)
_MARK_RETRY = (
    "UPDATE outbox_effect SET last_error = $1, alerted = $2, next_attempt_at = $3"
    " WHERE id = $4 AND state = $5 AND attempts = $6"
)
_MARK_DEAD = (
    "UPDATE outbox_effect SET last_error = $1, alerted = $2, state = $3"
    " WHERE id = $4 AND state = $5 AND attempts = $6"
)


async def mark_done(
    effect: OutboxEffect, now: datetime, conn: BaseDBAsyncClient | None = None
) -> bool:
    """Mark the claimed effect done (in ``conn``'s transaction when given, with what the effect
    learnt); False when another claim has taken it over meanwhile."""
    changed, _ = await (conn or connection()).execute_query(
        sql(_MARK_DONE),
        [EffectState.DONE.value, now, effect.id, EffectState.PENDING.value, effect.attempts],
    )
    return bool(changed)


#: A send's completion in one statement on PostgreSQL: the effect is marked done under its claim
#: and, only if it was, its message records what became of it. Both or neither, as in one
#: transaction, for one round trip instead of four (BEGIN, two UPDATEs, COMMIT).
_MARK_SENT_POSTGRES = (
    "WITH done AS (" + _MARK_DONE + " RETURNING id),"  # noqa: S608 (fixed text joined)
    " sent AS (UPDATE message SET status = $6, provider_id = $7"
    " WHERE id = $8 AND EXISTS (SELECT 1 FROM done))"
    " SELECT count(*) AS marked FROM done"
)


async def mark_sent(
    effect: OutboxEffect,
    now: datetime,
    *,
    message_id: int,
    status: str,
    provider_id: str | None,
) -> bool:
    """Mark the claimed send effect done and record on its message what became of the send
    (``sent`` with the provider's id, or ``undeliverable``), atomically: one statement on
    PostgreSQL, one transaction on SQLite. False (and nothing written) when another claim has
    taken the effect over meanwhile."""
    fence = [EffectState.DONE.value, now, effect.id, EffectState.PENDING.value, effect.attempts]
    if dialect() == "postgres":
        rows = await connection().execute_query_dict(
            _MARK_SENT_POSTGRES, [*fence, status, provider_id, message_id]
        )
        return bool(rows and rows[0]["marked"])
    async with in_transaction() as conn:
        changed, _ = await conn.execute_query(sql(_MARK_DONE), fence)
        if changed:
            await record_send(message_id, status=status, provider_id=provider_id, conn=conn)
    return bool(changed)


async def mark_failed(
    effect: OutboxEffect,
    *,
    error: str,
    retry_at: datetime | None,
    alerted: bool,
    conn: BaseDBAsyncClient | None = None,
) -> bool:
    """Record a failed attempt: retry at ``retry_at``, or give up (``None``) and keep the row
    (in ``conn``'s transaction when given, with the alert it raises). False when another claim
    has taken the effect over meanwhile (its result stands)."""
    statement, then = (
        (_MARK_DEAD, EffectState.DEAD.value) if retry_at is None else (_MARK_RETRY, retry_at)
    )
    changed, _ = await (conn or connection()).execute_query(
        sql(statement),
        [error[:500], alerted, then, effect.id, EffectState.PENDING.value, effect.attempts],
    )
    return bool(changed)


async def record_progress(effect: OutboxEffect, key: str, value: Any) -> bool:
    """Note on the claimed effect's payload how far its outside calls got (``key`` = ``value``),
    committed at once: an effect of several sends whose later one fails resumes after the last
    one that went out instead of sending it again. False when another claim has taken it over."""
    payload = {**effect.payload, key: value}
    changed = await OutboxEffect.filter(
        id=effect.id, state=EffectState.PENDING, attempts=effect.attempts
    ).update(payload=payload)
    if changed:
        effect.payload = payload
    return bool(changed)


async def defer_effect(effect: OutboxEffect, until: datetime, notes: dict[str, Any]) -> bool:
    """Put the claimed effect off to ``until`` without counting this claim as an attempt (it
    made no outside call, or one the provider refused before doing anything), with ``notes``
    added to its payload. False when another claim has taken it over."""
    payload = {**effect.payload, **notes}
    changed = await OutboxEffect.filter(
        id=effect.id, state=EffectState.PENDING, attempts=effect.attempts
    ).update(next_attempt_at=until, attempts=F("attempts") - 1, payload=payload)
    if changed:
        effect.payload = payload
    return bool(changed)


_RELEASE = (
    "UPDATE outbox_effect SET next_attempt_at = $1"
    " WHERE id = $2 AND state = $3 AND attempts = $4 AND claimed_by = $5"
)


async def release_claims(effects: Sequence[OutboxEffect], now: datetime, *, worker: str) -> int:
    """Give back claims ``worker`` holds and has not finished (it is stopping): each effect is
    due again at ``now``, for another worker or this one restarted. A claim taken over since
    (a newer attempt, another worker) is left as it is. Returns how many were released."""
    released = 0
    for effect in effects:
        changed, _ = await connection().execute_query(
            sql(_RELEASE),
            [now, effect.id, EffectState.PENDING.value, effect.attempts, worker],
        )
        released += bool(changed)
    return released


async def pending_count() -> int:
    return await OutboxEffect.filter(state=EffectState.PENDING).count()
