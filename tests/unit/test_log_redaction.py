"""Every configured secret is redacted from log lines, whichever library logs it."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from cryptography.fernet import Fernet

from bot.config import Settings
from bot.log_redaction import redact_secrets_in_logs, settings_secrets

SECRETS = {
    "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    "TWILIO_AUTH_TOKEN": "twilio-auth-9f8e7d6c5b4a",
    "TELEGRAM_BOT_TOKEN": "7301945562:AAHsecretPartOfTheBotToken_x1",
    "TELEGRAM_WEBHOOK_SECRET": "tg-hook-secret-5a4b3c",
    "STRIPE_API_KEY": "sk_test_51SecretStripeKey0000",
    "STRIPE_WEBHOOK_SECRET": "whsec_StripeWebhookSecret11",
    "SEAM_API_KEY": "seam_SecretSeamKey_2222",
    "SEAM_WEBHOOK_SECRET": "whsec_SeamWebhookSecret333",
    "IGLOOHOME_CLIENT_SECRET": "igloo-client-secret-4444",
    "NUKI_API_TOKEN": "nuki-api-token-55555555",
}
DATABASE_PASSWORD = "pg-password-666666"


@pytest.fixture
def every_provider() -> Settings:
    return Settings.from_env(
        {
            **SECRETS,
            "KEYTURN_DATABASE_URL": f"postgres://keyturn:{DATABASE_PASSWORD}@db.internal/keyturn",
            "TWILIO_ACCOUNT_SID": "AC" + "0f" * 16,
            "TWILIO_SMS_FROM": "+15005550006",
            "IGLOOHOME_CLIENT_ID": "igloo-client",
        }
    )


@pytest.fixture
def log_file() -> Iterator[io.StringIO]:
    """A handler added after redaction was installed, as a log shipper would add one."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield output
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_every_configured_secret_is_known(every_provider: Settings) -> None:
    found = set(settings_secrets(every_provider))
    assert set(SECRETS.values()) | {DATABASE_PASSWORD} <= found
    assert "AC" + "0f" * 16 not in found and "+15005550006" not in found


def test_secrets_are_redacted_at_every_level_in_messages_args_and_tracebacks(
    every_provider: Settings, log_file: io.StringIO
) -> None:
    redact_secrets_in_logs(settings_secrets(every_provider))
    library = logging.getLogger("some.sdk.http")
    for secret in [*SECRETS.values(), DATABASE_PASSWORD]:
        library.debug("calling https://api.example/%s/resource", secret)
        library.info("header: Bearer " + quote(secret, safe=""))
        try:
            raise RuntimeError(f"refused credentials {secret}")
        except RuntimeError:
            library.exception("request failed")
    written = log_file.getvalue()
    assert written.count("<redacted>") >= 3 * (len(SECRETS) + 1)
    for secret in [*SECRETS.values(), DATABASE_PASSWORD]:
        assert secret not in written and quote(secret, safe="") not in written
    assert "refused credentials <redacted>" in written
