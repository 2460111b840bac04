"""Prometheus metrics: counters kept by this process, and gauges read from the database."""

from __future__ import annotations

import hmac
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from tortoise.functions import Count

from flows.engine import TurnResult
from flows.messages import InboundMessage
from storage.models import AccessCode, EffectState, OutboxEffect, Timer, TimerState

REGISTRY = CollectorRegistry()
MESSAGES_IN = Counter(
    "keyturn_messages_in", "Inbound renter messages", ["channel", "result"], registry=REGISTRY
)
MESSAGES_OUT = Counter(
    "keyturn_messages_out",
    "Outbound messages handed to a channel",
    ["channel", "status"],
    registry=REGISTRY,
)
TURN_SECONDS = Histogram(
    "keyturn_turn_seconds",
    "Time to handle one renter message, commit included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
EFFECT_FAILURES = Counter(
    "keyturn_effect_failures",
    "Failed outbox effect attempts (provider errors)",
    ["kind"],
    registry=REGISTRY,
)
TIMER_LATENESS = Histogram(
    "keyturn_timer_lateness_seconds",
    "How late timers fired",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)


def bearer_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``, compared in constant time."""
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def observe_turn(message: InboundMessage, result: TurnResult, seconds: float) -> None:
    MESSAGES_IN.labels(message.channel, result.value).inc()
    TURN_SECONDS.observe(seconds)


async def exposition(now: datetime) -> bytes:
    """This process's counters, then gauges of the shared state every worker sees."""
    registry = CollectorRegistry()
    pending = OutboxEffect.filter(state=EffectState.PENDING)
    oldest = await pending.order_by("created_at").first()
    Gauge("keyturn_outbox_depth", "Effects waiting to run", registry=registry).set(
        await pending.count()
    )
    Gauge(
        "keyturn_outbox_oldest_age_seconds", "Age of the oldest waiting effect", registry=registry
    ).set((now - oldest.created_at).total_seconds() if oldest else 0)
    Gauge("keyturn_outbox_dead", "Effects given up on", registry=registry).set(
        await OutboxEffect.filter(state=EffectState.DEAD).count()
    )
    Gauge("keyturn_timers_overdue", "Timers past their due time", registry=registry).set(
        await Timer.filter(state=TimerState.PENDING, due_at__lte=now).count()
    )
    codes = Gauge("keyturn_access_codes", "Access codes by state", ["state"], registry=registry)
    rows = await AccessCode.annotate(n=Count("id")).group_by("state").values("state", "n")
    for row in rows:
        codes.labels(str(row["state"])).set(row["n"])
    return generate_latest(REGISTRY) + generate_latest(registry)
