"""Settings: defaults without an account anywhere, one clear error naming a bad variable."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from bot.config import Settings, SettingsError


def test_defaults_need_no_account() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite://var/keyturn.sqlite3"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.started_providers() == []
    assert (settings.max_unpaid_per_renter, settings.booking_horizon_days) == (2, 90)
    assert settings.body_timeout_seconds == 10
    assert settings.alert_after_attempts == 5
    assert settings.open_lifetime_seconds == 60
    assert settings.metrics_token is None


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KEYTURN_PORT": "eighty"}, "KEYTURN_PORT"),
        ({"KEYTURN_PORT": "70000"}, "KEYTURN_PORT"),
        ({"KEYTURN_DATABASE_URL": "mysql://x"}, "KEYTURN_DATABASE_URL"),
        ({"KEYTURN_PUBLIC_URL": "keyturn.example"}, "KEYTURN_PUBLIC_URL"),
        ({"KEYTURN_ENCRYPTION_KEY": "short"}, "KEYTURN_ENCRYPTION_KEY"),
        ({"KEYTURN_BODY_TIMEOUT_SECONDS": "0"}, "KEYTURN_BODY_TIMEOUT_SECONDS"),
        ({"KEYTURN_BODY_TIMEOUT_SECONDS": "soon"}, "KEYTURN_BODY_TIMEOUT_SECONDS"),
        ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_SMS_FROM": "+15550100000"}, "TWILIO_AUTH_TOKEN"),
        ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"}, "TWILIO_SMS_FROM"),
        (
            {
                "TWILIO_ACCOUNT_SID": "AC1",
                "TWILIO_AUTH_TOKEN": "t",
                "TWILIO_WHATSAPP_FROM": "+15550100000",
            },
            "TWILIO_WHATSAPP_FROM",
        ),
        ({"TELEGRAM_BOT_TOKEN": "1:abc"}, "TELEGRAM_WEBHOOK_SECRET"),
        (
            {
                "TELEGRAM_BOT_TOKEN": "1:abc",
                "TELEGRAM_WEBHOOK_SECRET": "s",
                "TELEGRAM_OPS_CHAT_ID": "ops",
            },
            "TELEGRAM_OPS_CHAT_ID",
        ),
        ({"STRIPE_API_KEY": "pk_live_1"}, "STRIPE_API_KEY"),
        ({"STRIPE_API_KEY": "sk_test_1"}, "STRIPE_WEBHOOK_SECRET"),
        (
            {
                "TWILIO_ACCOUNT_SID": "AC123",
                "TWILIO_AUTH_TOKEN": "t",
                "TWILIO_SMS_FROM": "+15550100000",
                "TWILIO_MESSAGING_SERVICE_SID": "PN" + "0" * 32,
            },
            "TWILIO_MESSAGING_SERVICE_SID",
        ),
        ({"SEAM_API_KEY": "key"}, "SEAM_API_KEY"),
        ({"IGLOOHOME_CLIENT_ID": "id"}, "IGLOOHOME_CLIENT_SECRET"),
        ({"KEYTURN_MAX_UNPAID_PER_RENTER": "0"}, "KEYTURN_MAX_UNPAID_PER_RENTER"),
        ({"KEYTURN_MAX_UNPAID_PER_RENTER": "two"}, "KEYTURN_MAX_UNPAID_PER_RENTER"),
        ({"KEYTURN_BOOKING_HORIZON_DAYS": "0"}, "KEYTURN_BOOKING_HORIZON_DAYS"),
        ({"KEYTURN_ALERT_AFTER_ATTEMPTS": "0"}, "KEYTURN_ALERT_AFTER_ATTEMPTS"),
        ({"KEYTURN_ALERT_AFTER_ATTEMPTS": "-3"}, "KEYTURN_ALERT_AFTER_ATTEMPTS"),
        ({"KEYTURN_ALERT_AFTER_ATTEMPTS": "five"}, "KEYTURN_ALERT_AFTER_ATTEMPTS"),
        ({"KEYTURN_OPEN_LIFETIME_SECONDS": "0"}, "KEYTURN_OPEN_LIFETIME_SECONDS"),
        ({"KEYTURN_OPEN_LIFETIME_SECONDS": "3600"}, "KEYTURN_OPEN_LIFETIME_SECONDS"),
        ({"KEYTURN_BOOKING_HORIZON_DAYS": "99999999999"}, "KEYTURN_BOOKING_HORIZON_DAYS"),
    ],
)
def test_a_bad_or_missing_value_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert message.startswith(variable + ":")
    assert "\n" not in message


def test_providers_with_credentials_are_configured() -> None:
    key = Fernet.generate_key().decode()
    settings = Settings.from_env(
        {
            "KEYTURN_ENCRYPTION_KEY": key,
            "TWILIO_ACCOUNT_SID": "AC123",
            "TWILIO_AUTH_TOKEN": "token",
            "TWILIO_WHATSAPP_FROM": "whatsapp:+15550100000",
            "TWILIO_API_BASE": "http://127.0.0.1:9000/",
            "TELEGRAM_BOT_TOKEN": "1:abc",
            "TELEGRAM_WEBHOOK_SECRET": "s",
            "TELEGRAM_OPS_CHAT_ID": "-100123",
        }
    )
    assert settings.started_providers() == ["twilio", "telegram"]
    assert settings.twilio is not None and settings.twilio.api_base == "http://127.0.0.1:9000"
    assert settings.telegram is not None and settings.telegram.ops_chat_id == -100123
    assert settings.telegram.api_base == "https://api.telegram.org"
    assert settings.require_encryption_key() == key


def test_serving_requires_an_encryption_key() -> None:
    with pytest.raises(SettingsError, match=r"^KEYTURN_ENCRYPTION_KEY:"):
        Settings.from_env({}).require_encryption_key()


def test_the_renter_limits_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {"KEYTURN_MAX_UNPAID_PER_RENTER": "1", "KEYTURN_BOOKING_HORIZON_DAYS": "30"}
    )
    assert (settings.max_unpaid_per_renter, settings.booking_horizon_days) == (1, 30)


def test_mms_is_asked_for_in_the_us_and_canada_unless_told_otherwise() -> None:
    twilio = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "TWILIO_SMS_FROM": "+1555"}
    default = Settings.from_env(twilio).twilio
    assert default is not None and default.mms_countries == {"US", "CA"}
    chosen = Settings.from_env({**twilio, "TWILIO_MMS_COUNTRIES": " us, pr "}).twilio
    assert chosen is not None and chosen.mms_countries == {"US", "PR"}
    with pytest.raises(SettingsError, match=r"^TWILIO_MMS_COUNTRIES:"):
        Settings.from_env({**twilio, "TWILIO_MMS_COUNTRIES": "USA"})


def test_the_lead_times_default_to_a_day_an_hour_and_an_hour() -> None:
    assert Settings.from_env({}).lead_times.minutes() == (1440, 60, 60)
    settings = Settings.from_env(
        {
            "KEYTURN_CODE_LEAD_MINUTES": "120",
            "KEYTURN_CONFIRM_BEFORE_MINUTES": "120",
            "KEYTURN_PIN_LEAD_MINUTES": "15",
        }
    )
    assert settings.lead_times.minutes() == (120, 120, 15)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"KEYTURN_CODE_LEAD_MINUTES": "30"},
            "KEYTURN_CONFIRM_BEFORE_MINUTES: must not exceed KEYTURN_CODE_LEAD_MINUTES (30),"
            " got 60",
        ),
        ({"KEYTURN_PIN_LEAD_MINUTES": "0"}, "KEYTURN_PIN_LEAD_MINUTES: must be"),
        ({"KEYTURN_CODE_LEAD_MINUTES": "43201"}, "KEYTURN_CODE_LEAD_MINUTES: must be"),
    ],
)
def test_lead_times_that_break_a_rule_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert str(refused.value).startswith(message)
