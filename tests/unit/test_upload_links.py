"""Upload links: where MMS reaches Keyturn, and tokens that bind a renter and a booking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet

from flows.upload_links import CONDITION_PHOTO, ID_PHOTO, UploadLinks, mms_reaches_us
from tests.conftest import FakeClock

US_NUMBER = "+12025550123"
CA_NUMBER = "+14165550123"
DE_NUMBER = "+4915112345678"


def test_mms_reaches_keyturn_only_between_numbers_in_mms_countries() -> None:
    us_ca = {"US", "CA"}
    assert mms_reaches_us(US_NUMBER, CA_NUMBER, us_ca)
    assert mms_reaches_us(US_NUMBER, "+15550100001", us_ca), "a test range counts as +1's US"
    assert not mms_reaches_us(US_NUMBER, DE_NUMBER, us_ca), "a Berlin phone texting a US number"
    assert not mms_reaches_us(DE_NUMBER, US_NUMBER, us_ca), "Twilio takes no MMS on a DE number"
    assert not mms_reaches_us(US_NUMBER, CA_NUMBER, {"US"})
    assert mms_reaches_us(None, CA_NUMBER, us_ca), "a Messaging Service: the renter decides"
    assert not mms_reaches_us(US_NUMBER, "not a number", us_ca)


def test_a_token_names_its_renter_and_booking_for_30_minutes() -> None:
    clock = FakeClock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    links = UploadLinks("https://keyturn.example.com/", Fernet.generate_key().decode(), clock)
    url = links.url_for(7, 42)
    assert url.startswith("https://keyturn.example.com/upload/")
    token = url.rsplit("/", 1)[1]
    grant = links.open(token)
    assert grant is not None and (grant.renter_id, grant.booking_id) == (7, 42)
    assert links.open(links.url_for(7, 42).rsplit("/", 1)[1]) != grant, "each link is its own"
    other = UploadLinks("https://keyturn.example.com", Fernet.generate_key().decode(), clock)
    assert other.open(token) is None, "another key does not open it"
    clock.current += timedelta(minutes=29)
    assert links.open(token) is not None
    clock.current += timedelta(minutes=2)
    assert links.open(token) is None


def test_a_token_names_what_it_is_for_so_an_id_link_is_no_condition_photo_link() -> None:
    clock = FakeClock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    links = UploadLinks("https://keyturn.example.com", Fernet.generate_key().decode(), clock)
    id_grant = links.open(links.url_for(7, 42).rsplit("/", 1)[1])
    photo_grant = links.open(links.url_for(7, 42, CONDITION_PHOTO).rsplit("/", 1)[1])
    assert id_grant is not None and id_grant.purpose == ID_PHOTO
    assert photo_grant is not None and photo_grant.purpose == CONDITION_PHOTO
