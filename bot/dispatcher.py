"""The outbox dispatcher: executes staged effects at least once, with backoff and jitter.

Each effect carries its idempotency key to the provider. A failing effect is retried with
exponential backoff and jitter; after ``alert_after`` attempts ops gets ONE alert for it (folded
by group key), resolved when the effect finally succeeds. Non-critical effects are given up after
``give_up_after`` attempts; critical ones (revoking a code) are retried until a person decides.
An effect whose payload carries ``expires_at`` (a remote open) is worth nothing later: its next
attempt is never put off past that instant, so its executor can give it up on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from bot.channels import Channel, ChannelError, FindsSent, SendsOutsideWindow, Undeliverable
from bot.metrics import EFFECT_FAILURES, MESSAGES_OUT
from flows.clock import Clock, DemoClock, SystemClock, real_seconds
from flows.effects import Alert, Deferred, EffectExecutor, FollowUp, Outcome
from flows.messages import OutboundMessage
from flows.staging import stage_outcome
from storage.conversations import record_send, recorded_provider_ids
from storage.journal import raise_alert, resolve_alert
from storage.kinds import AlertKind
from storage.models import OutboxEffect
from storage.outbox import (
    claim_due_effects,
    defer_effect,
    mark_done,
    mark_failed,
    mark_sent,
    release_claims,
)
from storage.sealing import Sealer
from storage.uow import unit_of_work

log = logging.getLogger(__name__)

#: The most often (real seconds) an idle dispatcher looks for due effects, however fast the
#: demo's clock goes.
MIN_POLL_SECONDS = 0.1

#: The most a stopping worker waits to release its claims.
RELEASE_SECONDS = 5.0


def this_worker() -> str:
    """How this process signs the effects and timers it claims: host and process id."""
    return f"{socket.gethostname()}/{os.getpid()}"


@dataclass(frozen=True)
class RetryPolicy:
    base: timedelta = timedelta(seconds=2)
    cap: timedelta = timedelta(minutes=15)
    alert_after: int = 5
    give_up_after: int = 12

    def delay(self, attempts: int, rng: random.Random) -> timedelta:
        """Exponential backoff with equal jitter: half fixed, half random."""
        ceiling = min(self.cap, self.base * (1 << min(max(attempts - 1, 0), 30)))
        jitter: float = rng.random()
        return ceiling / 2 + ceiling * (jitter / 2)


class OutboxDispatcher:
    def __init__(
        self,
        clock: Clock,
        executors: Mapping[str, EffectExecutor],
        *,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        batch_size: int = 50,
        lease: timedelta = timedelta(minutes=2),
        effect_timeout: float = 30.0,
        worker: str | None = None,
    ) -> None:
        # An effect must finish (or time out) well inside its lease, or another worker would
        # claim it while it still runs.
        if effect_timeout >= lease.total_seconds() / 2:
            raise ValueError("an effect's timeout must stay well inside its lease")
        self.clock = clock
        self.executors = dict(executors)
        self.policy = policy or RetryPolicy()
        self.rng = rng or random.Random()  # noqa: S311 (jitter only, nothing secret)
        self.batch_size = batch_size
        self.lease = lease
        self.effect_timeout = effect_timeout
        self.worker = worker or this_worker()
        self._wake = asyncio.Event()
        #: Effects claimed and not yet finished, by id: released if the worker stops first.
        self._held: dict[int, OutboxEffect] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: One pass at a time in this process: a pass that asks while another runs waits for
        #: it, so neither claims an effect the other is executing (the demo's clock can jump
        #: past a running effect's lease).
        self._pass = asyncio.Lock()
        if isinstance(clock, DemoClock):
            clock.on_change(self.wake)  # effects the jump made due run at once

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Execute every effect due now; returns how many were attempted."""
        async with self._pass:
            return await self._run_once()

    async def _run_once(self) -> int:
        attempted = 0
        while not self._stopping:
            effects = await claim_due_effects(
                self.clock.now(), limit=self.batch_size, lease=self.lease, worker=self.worker
            )
            if not effects:
                return attempted
            self._held.update((effect.id, effect) for effect in effects)
            await asyncio.gather(*(self._execute(effect) for effect in effects))
            attempted += len(effects)
            if len(effects) < self.batch_size:
                # A short batch took everything that was due; what became due since then
                # woke the dispatcher, which comes straight back.
                return attempted
        return attempted

    def start(self) -> None:
        """Run the dispatcher in the background until ``stop``."""
        self._stopping = False
        self._task = asyncio.create_task(self.run_forever(), name="outbox")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; give the effects running now ``grace`` seconds to finish, then cancel
        them and release their claims, so they run at once elsewhere (or after a restart)
        instead of waiting out the lease."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            _, running = await asyncio.wait({task}, timeout=grace)
            if running:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.release_held()

    async def release_held(self) -> int:
        """Release the claims this dispatcher holds and has not finished; how many were."""
        held, self._held = list(self._held.values()), {}
        if not held:
            return 0
        try:
            # Bounded: a pass cancelled inside a database call may leave the connection busy.
            async with asyncio.timeout(RELEASE_SECONDS):
                released = await release_claims(held, self.clock.now(), worker=self.worker)
        except TimeoutError:
            log.warning("%d effect claims were not released; their leases run out", len(held))
            return 0
        log.info("released %d unfinished effect claims", released)
        return released

    async def run_forever(self, poll_interval: float = 1.0) -> None:
        while not self._stopping:
            # Cleared before the pass, so a commit made during it brings the next pass at once.
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:
                log.exception("outbox pass failed; trying again shortly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll(poll_interval))

    def _poll(self, interval: float) -> float:
        """Real seconds to wait for a wake-up: ``interval`` of the clock's own time, so that a
        retry in backoff runs about as late on the demo's fast clock as on the real one."""
        wait = real_seconds(self.clock, interval)
        return interval if wait is None else max(wait, MIN_POLL_SECONDS)

    async def _execute(self, effect: OutboxEffect) -> None:
        await self._attempt(effect)
        # Not reached when cancelled: the claim stays held, and ``stop`` releases it.
        self._held.pop(effect.id, None)

    async def _attempt(self, effect: OutboxEffect) -> None:
        executor = self.executors.get(effect.kind)
        try:
            if executor is None:
                raise LookupError(f"no executor for effect kind {effect.kind!r}")
            async with asyncio.timeout(self.effect_timeout):
                follow_up = await executor(effect)
            # Marked done at once, not with the rest of the batch: a worker killed in between
            # runs this effect again after the lease, so the window stays as short as it can be.
            # What the effect learnt commits with its completion, or (its claim taken over)
            # not at all: the newer claim records its own.
            now = self.clock.now()
            if follow_up is None and not effect.alerted:
                # Nothing to record with it: one statement, atomic by itself.
                if not await mark_done(effect, now):
                    _taken_over(effect)
                return
            if isinstance(follow_up, RecordedSend) and follow_up.plain and not effect.alerted:
                # A send that learnt only its provider id: recorded with its completion in one
                # statement where the database allows it.
                if not await mark_sent(
                    effect,
                    now,
                    message_id=follow_up.message_id,
                    status=follow_up.status,
                    provider_id=follow_up.provider_id,
                ):
                    _taken_over(effect)
                return
            async with unit_of_work() as conn:
                if not await mark_done(effect, now, conn):
                    _taken_over(effect)
                    return
                if follow_up is not None:
                    await stage_outcome(conn, await follow_up(conn), now)
                if effect.alerted:
                    await resolve_alert(conn, group_key=_group(effect), now=now, by="dispatcher")
        except Deferred as deferred:
            await self._deferred(effect, deferred)
        except Exception as err:
            try:
                await self._failed(effect, err)
            except Exception:
                # Neither the failure nor its alert is recorded: the claim runs out and the
                # effect is attempted (and fails, and alerts) again.
                log.exception("effect %s: its failed attempt was not recorded", effect.id)

    async def _deferred(self, effect: OutboxEffect, deferred: Deferred) -> None:
        """The effect waits its turn: not an attempt, so neither backoff nor alert grows."""
        until = deferred.until
        expires_at = _expires_at(effect)
        if expires_at is not None:
            until = min(until, max(expires_at, self.clock.now()))
        try:
            if not await defer_effect(effect, until, deferred.notes):
                _taken_over(effect)
                return
        except Exception:
            log.exception("effect %s: its wait was not recorded; its lease runs out", effect.id)
            return
        log.debug("effect %s (%s) waits until %s: %s", effect.id, effect.kind, until, deferred)

    async def _failed(self, effect: OutboxEffect, err: Exception) -> None:
        now = self.clock.now()
        error = f"{type(err).__name__}: {err}"[:300]
        EFFECT_FAILURES.labels(effect.kind).inc()
        log.warning(
            "effect %s (%s) attempt %d failed: %s",
            effect.id,
            effect.kind,
            effect.attempts,
            type(err).__name__,
        )
        give_up = not effect.critical and effect.attempts >= self.policy.give_up_after
        # A critical effect that keeps failing (a code that stays on a lock) is raised again
        # every ``alert_after`` attempts until a person acts; the alert is one message that grows.
        should_alert = (
            give_up
            or (not effect.alerted and effect.attempts >= self.policy.alert_after)
            or (effect.critical and effect.attempts % self.policy.alert_after == 0)
        )
        retry_at = None if give_up else now + self.policy.delay(effect.attempts, self.rng)
        expires_at = _expires_at(effect)
        if retry_at is not None and expires_at is not None:
            retry_at = min(retry_at, max(expires_at, now))
        # Recorded first: a claim that was taken over meanwhile neither counts nor alerts. The
        # alert commits with the mark that says it was raised, or neither does (the attempt is
        # then failed again once its lease runs out, and alerts then).
        async with unit_of_work() as conn:
            if not await mark_failed(
                effect,
                error=error,
                retry_at=retry_at,
                alerted=effect.alerted or should_alert,
                conn=conn,
            ):
                _taken_over(effect)
                return
            if should_alert:
                await raise_alert(
                    conn,
                    now=now,
                    kind=AlertKind.EFFECT_FAILING,
                    group_key=_group(effect),
                    message_key="ops.effect_dead" if give_up else "ops.effect_failing",
                    params={"kind": effect.kind, "attempts": effect.attempts, "error": error},
                )


def _expires_at(effect: OutboxEffect) -> datetime | None:
    raw = effect.payload.get("expires_at")
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


def _taken_over(effect: OutboxEffect) -> None:
    log.warning(
        "effect %s (%s) attempt %d outlasted its lease and was claimed again; its result is"
        " left to the newer claim",
        effect.id,
        effect.kind,
        effect.attempts,
    )


def _group(effect: OutboxEffect) -> str:
    return f"effect:{effect.id}"


class RecipientRefused(Undeliverable):
    """Undeliverable, and what the refusal says about the recipient (an SMS number that sent
    STOP at the provider): ``learnt`` is recorded with the send's outcome, in the unit of work
    that marks the effect done."""

    def __init__(self, reason: str, learnt: FollowUp) -> None:
        super().__init__(reason)
        self.learnt = learnt


#: Messages a renter cannot do without (their PIN, what they paid, where to pay): one that cannot
#: be delivered is an alert, so a person reaches the renter another way.
MUST_REACH = frozenset({"pin", "receipt", "payment_link"})

#: Marks a ``send_message`` effect that sends again, the closed-window way, a message WhatsApp
#: refused after Twilio had accepted it (63016 on the status callback).
OUTSIDE_WINDOW = "outside_window"


class MessageSender:
    """Executes ``send_message`` effects through the channel the message belongs to."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        sealer: Sealer | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.channels = channels
        self.sealer = sealer
        self.clock = clock or SystemClock()

    async def __call__(self, effect: OutboxEffect) -> FollowUp | None:
        message = OutboundMessage.from_payload(effect.payload["message"])  # type: ignore[arg-type]
        if effect.payload.get("sealed"):
            if self.sealer is None:
                raise ChannelError("a sealed message needs the encryption key to be sent")
            message = replace(message, text=self.sealer.open(message.text))
            if effect.payload.get("sealed_variables"):
                # Staged before template variables were sealed, an effect has them in clear.
                variables = message.template_variables
                message = replace(
                    message,
                    template_variables={k: self.sealer.open(v) for k, v in variables.items()},
                )
        channel = self.channels.get(message.channel)
        if channel is None:
            raise ChannelError(f"channel {message.channel!r} is not running")
        if effect.attempts > 1 and isinstance(channel, FindsSent):
            # An earlier attempt may have been accepted with its answer lost (a timeout, or a
            # worker that died before recording it): adopt it rather than send it twice. A
            # message like it that is recorded already is another message, not this one.
            found = await channel.find_sent(message, effect.created_at)
            taken = (
                await recorded_provider_ids(found, besides=_message_id(effect)) if found else set()
            )
            earlier = next((sid for sid in found if sid not in taken), None)
            if earlier is not None:
                log.info("message %s was accepted by an earlier attempt", _message_id(effect))
                MESSAGES_OUT.labels(message.channel, "sent").inc()
                return _recorded(_message_id(effect), "sent", earlier)
        resend = bool(effect.payload.get(OUTSIDE_WINDOW))
        try:
            if resend:
                if not isinstance(channel, SendsOutsideWindow):
                    raise Undeliverable(f"channel {message.channel!r} has no closed-window path")
                provider_id = await channel.send_outside_window(message)
            else:
                provider_id = await channel.send(message, effect.idempotency_key)
        except Undeliverable as err:
            MESSAGES_OUT.labels(message.channel, "undeliverable").inc()
            log.info("message %s cannot be delivered: %s", effect.payload["message_id"], err)
            learnt = Outcome()
            if resend or message.kind in MUST_REACH:
                learnt.alerts.append(not_delivered(_message_id(effect), message, str(err)))
            then = err.learnt if isinstance(err, RecipientRefused) else None
            return _recorded(_message_id(effect), "undeliverable", None, learnt, then)
        MESSAGES_OUT.labels(message.channel, "sent").inc()
        return _recorded(_message_id(effect), "sent", provider_id)


@dataclass(frozen=True)
class RecordedSend:
    """What became of a send, recorded with the effect's completion (with the ``outcome`` it
    asks for, such as an alert, and what ``then`` records): a send whose record is lost is found
    at the provider on the next attempt, never sent twice."""

    message_id: int
    status: str
    provider_id: str | None
    outcome: Outcome | None = None
    then: FollowUp | None = None

    @property
    def plain(self) -> bool:
        """Nothing to record but the message's status and provider id."""
        return self.then is None and (self.outcome is None or self.outcome == Outcome())

    async def __call__(self, conn: BaseDBAsyncClient) -> Outcome:
        await record_send(
            self.message_id, status=self.status, provider_id=self.provider_id, conn=conn
        )
        learnt = await self.then(conn) if self.then is not None else Outcome()
        return (self.outcome or Outcome()) + learnt


def _recorded(
    message_id: int,
    status: str,
    provider_id: str | None,
    outcome: Outcome | None = None,
    then: FollowUp | None = None,
) -> FollowUp:
    return RecordedSend(message_id, status, provider_id, outcome, then)


def not_delivered(message_id: int, message: OutboundMessage, reason: str) -> Alert:
    """The alert telling the operators that a message the renter needs did not reach them."""
    return Alert(
        kind=AlertKind.MESSAGE_NOT_DELIVERED,
        group_key=f"message:{message_id}",
        message_key="ops.message_not_delivered",
        params={"kind": message.kind, "channel": message.channel, "reason": reason},
    )


def _message_id(effect: OutboxEffect) -> int:
    return int(str(effect.payload["message_id"]))
