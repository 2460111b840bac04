"""An upload link used twice at once, on SQLite and PostgreSQL: one photo is stored, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from bot.app import MAX_ID_BYTES, build_runtime
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from bot.keys import CLOCK, JOURNEY
from bot.upload_page import setup_upload_page
from flows.inventory import apply_inventory, load_inventory
from storage.models import (
    Asset,
    Booking,
    BookingState,
    Conversation,
    IdentityCheck,
    Message,
    OpsAlert,
    Renter,
)
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.integration.conftest import END, START
from tests.support import rental_times

BERLIN_PHONE = "+4915112345678"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8


@pytest.fixture
async def client(database: str, clock: FakeClock) -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings.from_env(
        {
            "KEYTURN_DATABASE_URL": database,
            "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "KEYTURN_PUBLIC_URL": "https://keyturn.example.com",
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "TWILIO_AUTH_TOKEN": "token",
            "TWILIO_SMS_FROM": "+12025550123",
        }
    )
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
    runtime = build_runtime(settings, clock=clock)
    assert runtime.journey.upload_links is not None
    app = web.Application()
    app[JOURNEY] = runtime.journey
    app[CLOCK] = clock
    setup_upload_page(app, runtime.journey.upload_links, MAX_ID_BYTES)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def awaiting_id() -> Booking:
    renter = await Renter.create(phone=BERLIN_PHONE)
    await Conversation.create(channel="sms", address=BERLIN_PHONE, renter=renter)
    asset = await Asset.get(code="T1")
    return await Booking.create(
        reference="KT2001",
        renter=renter,
        asset_id=asset.id,
        **await rental_times(asset.id, START, END),
        state=BookingState.AWAITING_ID,
        currency="USD",
        price_cents=5000,
    )


def photo() -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("photo", JPEG, filename="id.jpg", content_type="image/jpeg")
    return form


async def test_a_link_used_twice_at_once_stores_one_photo(
    client: TestClient[Any, Any], clock: FakeClock
) -> None:
    booking = await awaiting_id()
    links = client.app[JOURNEY].upload_links
    assert links is not None
    path = "/upload/" + links.url_for(booking.renter_id, booking.id).rsplit("/", 1)[1]

    first, second = await asyncio.gather(
        client.post(path, data=photo()), client.post(path, data=photo())
    )
    assert sorted([first.status, second.status]) == [200, 410]
    assert await IdentityCheck.filter(booking_id=booking.id).count() == 1
    assert await OpsAlert.filter(kind="id_review").count() == 1
    assert await Message.filter(direction="out").count() == 1, "told once that it arrived"
    assert (await client.post(path, data=photo())).status == 410
