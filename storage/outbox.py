"""The transactional outbox: effects staged with the state that asked for them, claimed by workers.

On PostgreSQL due rows are claimed with ``FOR UPDATE SKIP LOCKED`` so several workers never run the
same row; claiming pushes ``next_attempt_at`` forward by a lease, so a row whose worker died is
claimed again once the lease runs out (at least once). On SQLite one worker runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from storage.models import EffectState, OutboxEffect


async def enqueue_effect(
    conn: BaseDBAsyncClient,
    *,
    kind: str,
    payload: dict[str, Any],
    idempotency_key: str,
    now: datetime,
    critical: bool = False,
) -> OutboxEffect | None:
    """Stage an effect in the caller's transaction; a key staged before is not staged again."""
    if await OutboxEffect.filter(idempotency_key=idempotency_key).using_db(conn).exists():
        return None
    return await OutboxEffect.create(
        kind=kind,
        payload=payload,
        idempotency_key=idempotency_key,
        critical=critical,
        next_attempt_at=now,
        created_at=now,
        using_db=conn,
    )


async def claim_due_effects(now: datetime, *, limit: int, lease: timedelta) -> list[OutboxEffect]:
    """Claim up to ``limit`` due effects for this worker, for the length of ``lease``."""
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
            .update(next_attempt_at=now + lease, attempts=F("attempts") + 1)
        )
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + lease
    return rows


async def mark_done(effect: OutboxEffect, now: datetime) -> None:
    await OutboxEffect.filter(id=effect.id).update(
        state=EffectState.DONE, done_at=now, last_error=""
    )


async def mark_failed(
    effect: OutboxEffect, *, error: str, retry_at: datetime | None, alerted: bool
) -> None:
    """Record a failed attempt: retry at ``retry_at``, or give up (``None``) and keep the row."""
    update: dict[str, Any] = {"last_error": error[:500], "alerted": alerted}
    if retry_at is None:
        update["state"] = EffectState.DEAD
    else:
        update["next_attempt_at"] = retry_at
    await OutboxEffect.filter(id=effect.id).update(**update)


async def pending_count() -> int:
    return await OutboxEffect.filter(state=EffectState.PENDING).count()
