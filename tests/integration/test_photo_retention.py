"""Condition photos' images are deleted ``KEYTURN_PHOTO_RETENTION_DAYS`` after their rental's
end by the retention pass, a batch at a time through their partial index, and counted in the
pass's audit; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

from tortoise.transactions import in_transaction

from bot.cli import DEMO_INVENTORY
from flows.inventory import apply_inventory, load_inventory
from flows.retention import RETENTION_KEY, RETENTION_TIMER, Retention, RetentionPolicy
from flows.staging import stage_outcome
from flows.timers import TimerFired
from storage.db import sql
from storage.models import Asset, AuditEvent, Booking, BookingState, Renter, Timer, TimerState
from storage.rental_models import ConditionPhoto, HandoverKind
from storage.retention import CONDITION_PHOTOS, CONDITION_PHOTOS_INDEX
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.support import rental_times

SEALED = "gAAAAABsealed-image"


async def rental_with_photos(reference: str, phone: str, ended: datetime, photos: int) -> Booking:
    renter = await Renter.create(phone=phone)
    bike = await Asset.get(code="B1")
    booking = await Booking.create(
        reference=reference,
        renter=renter,
        asset=bike,
        **await rental_times(bike.id, ended - timedelta(hours=2), ended),
        state=BookingState.COMPLETED,
        currency="EUR",
        price_cents=1600,
    )
    for position in range(photos):
        await ConditionPhoto.create(
            booking=booking,
            kind=HandoverKind.RETURN,
            position=position,
            prompt=f"side {position}",
            image_encrypted=f"{SEALED}-{reference}-{position}",
            content_type="image/jpeg",
            created_at=ended,
        )
    return booking


async def seeded(now: datetime) -> tuple[Booking, Booking]:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=now)
    old = await rental_with_photos("KOLD1", "+15550100001", now - timedelta(days=31), 3)
    recent = await rental_with_photos("KNEW1", "+15550100002", now - timedelta(days=29), 2)
    return old, recent


async def fire(retention: Retention, now: datetime, payload: dict[str, object]) -> None:
    """The retention timer fired, its outcome committed as the timer runner does."""
    event = TimerFired(1, RETENTION_TIMER, RETENTION_KEY, payload, now, now)
    outcome = await retention.on_due(event)
    async with unit_of_work() as conn:
        await stage_outcome(conn, outcome, now)


async def images(booking: Booking) -> list[str | None]:
    return list(
        await ConditionPhoto.filter(booking=booking)
        .order_by("position")
        .values_list("image_encrypted", flat=True)
    )


async def test_images_go_a_set_time_after_the_rental_ended_and_are_audited(
    database: str, clock: FakeClock
) -> None:
    now = clock.now()
    old, recent = await seeded(now)
    await fire(Retention(clock, RetentionPolicy(photo_days=30)), now, {})
    assert await images(old) == [None, None, None]
    assert await images(recent) == [f"{SEALED}-KNEW1-0", f"{SEALED}-KNEW1-1"]
    assert await ConditionPhoto.filter(booking=old).count() == 3, "the rows stay, not the images"
    [audit] = await AuditEvent.filter(action="retention.purged")
    assert audit.details["condition_photos"] == 3


async def test_a_backlog_of_photos_goes_a_batch_per_firing(database: str, clock: FakeClock) -> None:
    started = clock.now()
    old, recent = await seeded(started)
    retention = Retention(clock, RetentionPolicy(photo_days=30, batch=2))
    payload: dict[str, object] = {}
    for firing in range(1, 5):
        await fire(retention, clock.now(), payload)
        if await AuditEvent.filter(action="retention.purged").exists():
            break
        [timer] = await Timer.filter(kind=RETENTION_TIMER, state=TimerState.PENDING)
        left = [i for i in await images(old) if i is not None]
        assert len(left) == max(0, 3 - 2 * firing), "at most a batch of two per firing"
        payload = dict(timer.payload)
        await timer.delete()
        clock.advance(retention.policy.pause)
    assert firing == 2
    assert await images(old) == [None, None, None]
    assert None not in await images(recent)
    [audit] = await AuditEvent.filter(action="retention.purged")
    assert audit.details["condition_photos"] == 3
    assert audit.details["batches"] == 2


async def test_a_batch_of_photos_is_chosen_through_its_partial_index(
    database: str, clock: FakeClock
) -> None:
    cutoff = clock.now() - timedelta(days=30)
    async with in_transaction() as conn:
        if conn.capabilities.dialect == "postgres":
            # A plan prepared for any parameters: the index must serve every cutoff and batch.
            await conn.execute_script(
                "SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_generic_plan;"
                f" PREPARE purge_photos AS {CONDITION_PHOTOS}"
            )
            lines = await conn.execute_query_dict(
                f"EXPLAIN EXECUTE purge_photos('{cutoff.isoformat()}', 2000)"
            )
            await conn.execute_script("DEALLOCATE purge_photos")
            plan = "\n".join(line["QUERY PLAN"] for line in lines)
        else:
            rows = await conn.execute_query_dict(
                "EXPLAIN QUERY PLAN " + sql(CONDITION_PHOTOS), [cutoff, 2000]
            )
            plan = "\n".join(line["detail"] for line in rows)
    assert CONDITION_PHOTOS_INDEX in plan, plan
