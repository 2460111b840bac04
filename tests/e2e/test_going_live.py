"""Going live as the README tells it: `keyturn connect` registers the webhooks with each
provider, `keyturn doctor` checks everything a live service needs. Both run through the CLI's
entry point against the fake providers, as an operator runs them."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.cli import main
from tests.fakes import seam as fake_seam
from tests.fakes import stripe as fake_stripe
from tests.fakes.igloohome import FakeIgloohome
from tests.fakes.nuki import FakeNuki
from tests.fakes.seam import FakeSeam
from tests.fakes.server import running
from tests.fakes.stripe import FakeStripe
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SMS_NUMBER, WHATSAPP_NUMBER, FakeTwilio

PUBLIC = "https://rentals.keyturn.example"
SECRET = "kt-live_9d2f61b0"
OPS_CHAT = -1001234567890
T1_DEVICE = "2f8b6f5e-0c1a-4e1b-9a53-6f3f7f0e1a01"
GATE_DEVICE = "2f8b6f5e-0c1a-4e1b-9a53-6f3f7f0e1a02"
SPARE_DEVICE = "2f8b6f5e-0c1a-4e1b-9a53-6f3f7f0e1a03"

#: What Keyturn acts on, as the providers list them to an operator.
STRIPE_EVENTS = [
    "charge.refunded",
    "checkout.session.async_payment_failed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.completed",
    "checkout.session.expired",
    "identity.verification_session.requires_input",
    "identity.verification_session.verified",
    "payment_intent.amount_capturable_updated",
    "payment_intent.canceled",
    "payment_intent.payment_failed",
    "payment_intent.succeeded",
]
SEAM_EVENTS = [
    "access_code.deleted_external_to_seam",
    "access_code.failed_to_set_on_device",
    "access_code.removed_from_device",
    "access_code.set_on_device",
    "device.connected",
    "device.disconnected",
    "device.low_battery",
    "lock.unlocked",
]

INVENTORY = f"""
[[locations]]
slug = "yard"
name = "Riverside Yard"
address = "1 River Road"
timezone = "Europe/Berlin"

[[assets]]
code = "T1"
label = "Box trailer"
location = "yard"
currency = "EUR"
price_per_hour = "9.00"
price_per_day = "45.00"
min_duration_minutes = 60
max_duration_minutes = 10080
locks = ["yard-t1"]

[[locks]]
key = "yard-t1"
provider = "seam"
device_id = "{T1_DEVICE}"
label = "Trailer bay 1"
location = "yard"

[[locks]]
key = "yard-gate"
provider = "seam"
device_id = "{GATE_DEVICE}"
label = "Yard gate"
location = "yard"
shared = true

[[staff]]
telegram_user_id = 100000001
name = "Ana Reyes"
role = "owner"
"""

#: Settings of other providers the machine may have: each test sets only its own.
OTHER_SETTINGS = (
    "STRIPE_WEBHOOK_SECRET",
    "SEAM_WEBHOOK_SECRET",
    "TWILIO_MESSAGING_SERVICE_SID",
    "KEYTURN_IDENTITY_METHOD",
)


@dataclass
class Providers:
    telegram: FakeTelegram
    twilio: FakeTwilio
    stripe: FakeStripe
    seam: FakeSeam
    env: pytest.MonkeyPatch
    tmp: Path


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def failing(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.startswith("FAIL")]


def _run(args: tuple[str, ...]) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return Run(code, out.getvalue(), err.getvalue())


async def keyturn(*args: str) -> Run:
    """``keyturn ARGS`` in-process: its own event loop in a thread, as from a shell."""
    return await asyncio.to_thread(_run, args)


@pytest.fixture
async def providers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Providers]:
    telegram = FakeTelegram()
    telegram.group_chat(OPS_CHAT, "Keyturn ops", forum=True)
    telegram.make_admin(OPS_CHAT, can_manage_topics=True)
    twilio = FakeTwilio(public_url=PUBLIC)
    twilio.registry.add_number(SMS_NUMBER, sms_url="https://demo.twilio.com/welcome/sms/reply")
    twilio.registry.add_sender(WHATSAPP_NUMBER)
    stripe = FakeStripe()
    seam = FakeSeam()
    seam.add_device(name="Trailer bay 1", device_id=T1_DEVICE)
    seam.add_device(name="Yard gate", device_id=GATE_DEVICE)
    igloohome, nuki = FakeIgloohome(), FakeNuki()
    async with (
        running(telegram.web_app()) as telegram_base,
        twilio.serving(),
        running(stripe.app()) as stripe_base,
        running(seam.app()) as seam_base,
        running(igloohome.app()) as igloohome_base,
        running(nuki.app()) as nuki_base,
    ):
        for name in OTHER_SETTINGS:
            monkeypatch.delenv(name, raising=False)
        settings = {
            "KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/keyturn.sqlite3",
            "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "KEYTURN_PUBLIC_URL": PUBLIC,
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "TELEGRAM_OPS_CHAT_ID": str(OPS_CHAT),
            "TELEGRAM_API_BASE": telegram_base,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_SMS_FROM": SMS_NUMBER,
            "TWILIO_WHATSAPP_FROM": WHATSAPP_NUMBER,
            "TWILIO_API_BASE": twilio.base_url,
            "STRIPE_API_KEY": fake_stripe.API_KEY,
            "STRIPE_API_BASE": stripe_base,
            "SEAM_API_KEY": fake_seam.API_KEY,
            "SEAM_API_BASE": seam_base,
            "IGLOOHOME_CLIENT_ID": igloohome.client_id,
            "IGLOOHOME_CLIENT_SECRET": igloohome.client_secret,
            "IGLOOHOME_API_BASE": f"{igloohome_base}/igloohome",
            "NUKI_API_TOKEN": nuki.api_token,
            "NUKI_API_BASE": nuki_base,
        }
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        yield Providers(telegram, twilio, stripe, seam, monkeypatch, tmp_path)


def _lines_of(run: Run, provider: str) -> list[str]:
    return [line for line in run.out.splitlines() if line.startswith(provider)]


async def test_connect_registers_each_provider_and_a_second_run_changes_nothing(
    providers: Providers,
) -> None:
    first = await keyturn("connect")
    assert first.code == 0, first.out + first.err

    assert providers.telegram.webhook == {
        "url": f"{PUBLIC}/webhooks/telegram",
        "secret_token": SECRET,
        "allowed_updates": ["message", "callback_query"],
    }
    [number] = providers.twilio.registry.numbers.values()
    assert (number["sms_url"], number["sms_method"]) == (f"{PUBLIC}/webhooks/twilio", "POST")
    [sender] = providers.twilio.registry.senders.values()
    assert sender["webhook"]["callback_url"] == f"{PUBLIC}/webhooks/twilio"
    assert sender["webhook"]["status_callback_url"] == "https://status.example.net/whatsapp"
    [endpoint] = providers.stripe.webhook_endpoints.values()
    assert endpoint["url"] == f"{PUBLIC}/webhooks/stripe"
    assert sorted(endpoint["enabled_events"]) == STRIPE_EVENTS
    assert f"STRIPE_WEBHOOK_SECRET={endpoint['secret']}" in first.out
    [webhook] = providers.seam.webhooks.values()
    assert webhook["url"] == f"{PUBLIC}/webhooks/seam"
    assert sorted(webhook["event_types"]) == SEAM_EVENTS
    assert f"SEAM_WEBHOOK_SECRET={webhook['secret']}" in first.out

    calls = len(providers.telegram.calls_to("setWebhook"))
    updates = list(providers.twilio.registry.updates)
    second = await keyturn("connect")
    assert second.code == 0, second.out + second.err
    for provider in ("telegram", "twilio sms", "twilio whatsapp", "stripe", "seam"):
        [line] = _lines_of(second, provider)
        assert "unchanged" in line, line
    assert "whsec_" not in second.out
    assert len(providers.telegram.calls_to("setWebhook")) == calls
    assert providers.twilio.registry.updates == updates
    assert len(providers.stripe.webhook_endpoints) == 1
    assert len(providers.stripe.posts("/v1/webhook_endpoints")) == 1  # the first run's
    assert len(providers.stripe.posts(f"/v1/webhook_endpoints/{endpoint['id']}")) == 0
    assert len(providers.seam.webhooks) == 1
    assert providers.seam.requests.count(("POST", "/webhooks/create")) == 1
    assert ("POST", "/webhooks/update") not in providers.seam.requests


async def test_connect_puts_right_what_differs(providers: Providers) -> None:
    providers.telegram.webhook = {
        "url": "https://old.example.com/webhooks/telegram",
        "secret_token": "old",
        "allowed_updates": ["message"],
    }
    stripe_url, seam_url = f"{PUBLIC}/webhooks/stripe", f"{PUBLIC}/webhooks/seam"
    providers.stripe.webhook_endpoints["we_existing"] = {
        "id": "we_existing",
        "object": "webhook_endpoint",
        "enabled_events": ["checkout.session.completed"],
        "secret": "whsec_kept",
        "status": "disabled",
        "url": stripe_url,
    }
    providers.seam.webhooks["wh-1"] = {
        "webhook_id": "wh-1",
        "url": seam_url,
        "event_types": ["lock.unlocked"],
        "secret": "whsec_seam",
    }

    run = await keyturn("connect")

    assert run.code == 0, run.out + run.err
    assert providers.telegram.webhook is not None
    assert providers.telegram.webhook["url"] == f"{PUBLIC}/webhooks/telegram"
    assert providers.telegram.webhook["secret_token"] == SECRET
    endpoint = providers.stripe.webhook_endpoints["we_existing"]
    assert sorted(endpoint["enabled_events"]) == STRIPE_EVENTS
    assert endpoint["status"] == "enabled"
    assert len(providers.stripe.webhook_endpoints) == 1
    assert sorted(providers.seam.webhooks["wh-1"]["event_types"]) == SEAM_EVENTS
    assert len(providers.seam.webhooks) == 1
    assert "whsec_" not in run.out  # the secrets did not change, so none is shown
    assert "updated" in _lines_of(run, "stripe")[0]
    assert "updated" in _lines_of(run, "seam")[0]


async def test_connect_sets_the_messaging_service_when_one_is_named(
    providers: Providers,
) -> None:
    service = providers.twilio.registry.add_service()
    providers.env.setenv("TWILIO_MESSAGING_SERVICE_SID", service["sid"])
    run = await keyturn("connect")
    assert run.code == 0, run.out + run.err
    assert service["inbound_request_url"] == f"{PUBLIC}/webhooks/twilio"
    [number] = providers.twilio.registry.numbers.values()
    assert number["sms_url"] == "https://demo.twilio.com/welcome/sms/reply"  # left alone
    again = await keyturn("connect")
    [line] = _lines_of(again, "twilio messaging service")
    assert "unchanged" in line


async def test_connect_refuses_a_public_url_that_is_not_https(providers: Providers) -> None:
    providers.env.setenv("KEYTURN_PUBLIC_URL", "http://rentals.keyturn.example")
    run = await keyturn("connect")
    assert run.code == 2
    assert run.err.strip().splitlines() == [
        "keyturn: KEYTURN_PUBLIC_URL: must be the https address the providers reach Keyturn at,"
        " got 'http://rentals.keyturn.example'"
    ]
    assert providers.telegram.calls_to("setWebhook") == []
    assert providers.stripe.webhook_endpoints == {}
    assert providers.seam.webhooks == {}


async def test_serve_still_needs_the_signing_secret_connect_printed(
    providers: Providers,
) -> None:
    run = await keyturn("serve")
    assert run.code == 2
    assert run.err.startswith("keyturn: STRIPE_WEBHOOK_SECRET: missing")
    assert (await keyturn("migrate")).code == 0  # commands that receive nothing run without it


async def test_connect_says_which_provider_it_could_not_reach(providers: Providers) -> None:
    providers.env.setenv("STRIPE_API_KEY", "sk_test_" + "x" * 40)
    providers.env.delenv("SEAM_API_KEY")
    run = await keyturn("connect")
    assert run.code == 1
    [stripe_line] = _lines_of(run, "stripe")
    assert stripe_line.startswith("stripe: not registered: Stripe: ")
    assert _lines_of(run, "seam") == ["seam: skipped: SEAM_API_KEY is not set"]
    assert providers.telegram.webhook is not None  # the others went through


# --- doctor ------------------------------------------------------------------------------------


@pytest.fixture
async def live(providers: Providers) -> Providers:
    """What an operator has after the README's steps: migrated, inventory applied, connected,
    and the printed secrets stored."""
    assert (await keyturn("migrate")).code == 0
    inventory = providers.tmp / "inventory.toml"
    inventory.write_text(INVENTORY)
    applied = await keyturn("inventory", "apply", str(inventory))
    assert applied.code == 0, applied.err
    assert (await keyturn("connect")).code == 0
    [endpoint] = providers.stripe.webhook_endpoints.values()
    [webhook] = providers.seam.webhooks.values()
    providers.env.setenv("STRIPE_WEBHOOK_SECRET", endpoint["secret"])
    providers.env.setenv("SEAM_WEBHOOK_SECRET", webhook["secret"])
    return providers


async def test_doctor_passes_when_everything_is_connected(live: Providers) -> None:
    run = await keyturn("doctor")
    assert run.code == 0, run.out + run.err
    assert run.failing() == []
    names = [line.split(": ")[0] for line in run.out.splitlines() if line.startswith("ok")]
    assert names == [
        f"ok    {name}"
        for name in (
            "public url",
            "telegram bot",
            "telegram webhook",
            "telegram deliveries",
            "ops chat",
            "twilio account",
            f"twilio sms {SMS_NUMBER}",
            f"twilio whatsapp {WHATSAPP_NUMBER}",
            "stripe account",
            "stripe webhook",
            "seam workspace",
            "seam webhook",
            "database",
            "encryption key",
            "igloohome credentials",
            "nuki credentials",
            "seam credentials",
            "lock yard-gate",
            "lock yard-t1",
        )
    ]
    assert any("CANCEL" in line for line in run.out.splitlines() if line.startswith("note"))
    assert run.out.splitlines()[-1] == "19 checks passed, 0 failed"


def _bad_token(p: Providers) -> None:
    p.env.setenv("TELEGRAM_BOT_TOKEN", "7301945562:AAwrongwrongwrongwrongwrongwrongwrong")


def _webhook_elsewhere(p: Providers) -> None:
    assert p.telegram.webhook is not None
    p.telegram.webhook["url"] = "https://old.example.com/webhooks/telegram"


def _pending(p: Providers) -> None:
    p.telegram.pending_updates = 3


def _delivery_error(p: Providers) -> None:
    p.telegram.webhook_error("Wrong response from the webhook: 502 Bad Gateway")


def _not_admin(p: Providers) -> None:
    p.telegram.make_admin(OPS_CHAT, can_manage_topics=False)


def _missing_event(p: Providers) -> None:
    [endpoint] = p.stripe.webhook_endpoints.values()
    endpoint["enabled_events"].remove("charge.refunded")


def _no_seam_webhook(p: Providers) -> None:
    p.seam.webhooks.clear()


def _sms_elsewhere(p: Providers) -> None:
    [number] = p.twilio.registry.numbers.values()
    number["sms_url"] = "https://old.example.com/sms"


def _bad_twilio_token(p: Providers) -> None:
    p.env.setenv("TWILIO_AUTH_TOKEN", "0" * 32)


def _unmigrated(p: Providers) -> None:
    fresh = p.tmp / "fresh.sqlite3"
    sqlite3.connect(fresh).close()  # an empty database: no table, no migration applied
    p.env.setenv("KEYTURN_DATABASE_URL", f"sqlite://{fresh}")


def _unknown_lock(p: Providers) -> None:
    del p.seam.devices[GATE_DEVICE]


def _no_key(p: Providers) -> None:
    p.env.delenv("KEYTURN_ENCRYPTION_KEY")


def _no_signing_secret(p: Providers) -> None:
    p.env.delenv("STRIPE_WEBHOOK_SECRET")


def _bot_left_the_group(p: Providers) -> None:
    p.telegram.bot_members[OPS_CHAT]["status"] = "left"


def _wrong_nuki_token(p: Providers) -> None:
    p.env.setenv("NUKI_API_TOKEN", "not-the-token")


def _wrong_igloohome_secret(p: Providers) -> None:
    p.env.setenv("IGLOOHOME_CLIENT_SECRET", "not-the-secret")


def _telegram_down(p: Providers) -> None:
    p.telegram.fail_next("getWebhookInfo", status=502, description="Bad Gateway")


def _seam_list_fails(p: Providers) -> None:
    p.seam.fail_next(10, path="/webhooks/list")  # the SDK retries reads


def _whatsapp_elsewhere(p: Providers) -> None:
    [sender] = p.twilio.registry.senders.values()
    sender["webhook"]["callback_url"] = "https://old.example.com/whatsapp"


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (_bad_token, "FAIL  telegram bot: Telegram refused the bot token"),
        (
            _webhook_elsewhere,
            "FAIL  telegram webhook: the bot posts to https://old.example.com/webhooks/telegram,"
            f" not {PUBLIC}/webhooks/telegram; fix: run `keyturn connect`",
        ),
        (_pending, "FAIL  telegram deliveries: 3 updates wait to be delivered"),
        (
            _delivery_error,
            "FAIL  telegram deliveries: the last delivery failed at ",
        ),
        (_not_admin, "FAIL  ops chat: 'Keyturn ops' is a forum and the bot cannot manage"),
        (
            _missing_event,
            "FAIL  stripe webhook: endpoint we_",
        ),
        (_no_seam_webhook, f"FAIL  seam webhook: no webhook posts to {PUBLIC}/webhooks/seam"),
        (
            _sms_elsewhere,
            f"FAIL  twilio sms {SMS_NUMBER}: incoming messages go to POST"
            " https://old.example.com/sms",
        ),
        (_bad_twilio_token, "FAIL  twilio account: Twilio: "),
        (_unmigrated, "FAIL  database: "),  # how many: see the test below
        (_unknown_lock, f"FAIL  lock yard-gate: seam knows no device {GATE_DEVICE}"),
        (_no_key, "FAIL  encryption key: KEYTURN_ENCRYPTION_KEY is not set"),
        (_no_signing_secret, "FAIL  stripe signing secret: STRIPE_WEBHOOK_SECRET is not set"),
        (_bot_left_the_group, f"FAIL  ops chat: chat {OPS_CHAT} cannot be read: Chat not found"),
        (_wrong_nuki_token, "FAIL  nuki credentials: "),
        (_telegram_down, "FAIL  telegram webhook: getWebhookInfo failed: "),
        (_seam_list_fails, "FAIL  seam webhook: Seam"),
        (_wrong_igloohome_secret, "FAIL  igloohome credentials: "),
        (
            _whatsapp_elsewhere,
            f"FAIL  twilio whatsapp {WHATSAPP_NUMBER}: incoming messages go to"
            " https://old.example.com/whatsapp",
        ),
    ],
)
async def test_doctor_fails_each_check_with_what_to_do(
    live: Providers, breakage: Callable[[Providers], None], expected: str
) -> None:
    breakage(live)
    run = await keyturn("doctor")
    assert run.code == 1, run.out + run.err
    [line] = run.failing()  # only the broken check fails
    assert line.startswith(expected), line
    assert "; fix: " in line
    assert run.out.splitlines()[-1].endswith("1 failed")


async def test_doctor_names_the_missing_event(live: Providers) -> None:
    _missing_event(live)
    run = await keyturn("doctor")
    [line] = run.failing()
    assert "missing charge.refunded" in line


async def test_doctor_fails_a_lock_that_opens_nothing(live: Providers) -> None:
    spare = (
        INVENTORY
        + f"""
[[locks]]
key = "yard-spare"
provider = "seam"
device_id = "{SPARE_DEVICE}"
label = "Spare keypad"
location = "yard"
"""
    )
    live.seam.add_device(name="Spare keypad", device_id=SPARE_DEVICE)
    inventory = live.tmp / "inventory.toml"
    inventory.write_text(spare)
    assert (await keyturn("inventory", "apply", str(inventory))).code == 0
    run = await keyturn("doctor")
    assert run.code == 1
    assert run.failing() == [
        f"FAIL  lock yard-spare: seam device {SPARE_DEVICE} opens no item and is not shared;"
        " fix: correct the lock in the inventory file and run `keyturn inventory apply`"
    ]


async def test_doctor_fails_a_key_that_does_not_open_the_stored_pins(live: Providers) -> None:
    staff = await keyturn("codes", "staff", "yard-gate", "--staff", "100000001", "--hours", "2")
    assert "code 1" in staff.out, staff.out + staff.err  # stored sealed, whatever Seam did next
    assert (await keyturn("doctor")).code == 0
    live.env.setenv("KEYTURN_ENCRYPTION_KEY", Fernet.generate_key().decode())
    run = await keyturn("doctor")
    assert run.code == 1
    assert run.failing() == [
        "FAIL  encryption key: KEYTURN_ENCRYPTION_KEY does not open the PINs stored in the"
        " database; fix: set the key the database was written with"
    ]


async def test_doctor_checks_the_messaging_service_when_one_is_named(
    live: Providers,
) -> None:
    service = live.twilio.registry.add_service(inbound_request_url="https://old.example.com/in")
    live.env.setenv("TWILIO_MESSAGING_SERVICE_SID", service["sid"])
    run = await keyturn("doctor")
    assert run.failing() == [
        f"FAIL  twilio messaging service {service['sid']}: incoming messages go to POST"
        f" https://old.example.com/in, not POST {PUBLIC}/webhooks/twilio;"
        " fix: run `keyturn connect`"
    ]
    assert (await keyturn("connect")).code == 0
    assert (await keyturn("doctor")).code == 0

    service["use_inbound_webhook_on_number"] = True  # each number's own sms_url wins
    deferring = await keyturn("doctor")
    assert [line.split(";")[0] for line in deferring.failing()] == [
        f"FAIL  twilio messaging service {service['sid']}: it passes incoming messages to each"
        " number's own URL (use inbound webhook on number)"
    ]
    assert (await keyturn("connect")).code == 0
    assert service["use_inbound_webhook_on_number"] is False
    assert (await keyturn("doctor")).code == 0


async def test_doctor_names_the_migrations_not_applied(live: Providers) -> None:
    _unmigrated(live)
    run = await keyturn("doctor")
    [line] = run.failing()
    assert re.fullmatch(
        r"FAIL  database: \d+ migrations not applied \(models\.0001_initial … models\.\d{4}_\w+\);"
        r" fix: run `keyturn migrate`",
        line,
    ), line


async def test_doctor_says_a_database_that_does_not_exist(live: Providers) -> None:
    missing = live.tmp / "elsewhere" / "keyturn.sqlite3"
    live.env.setenv("KEYTURN_DATABASE_URL", f"sqlite://{missing}")
    run = await keyturn("doctor")
    assert run.failing() == [
        f"FAIL  database: sqlite://{missing} does not exist; fix: run `keyturn migrate`"
    ]
    assert not missing.exists()  # the doctor created nothing


async def test_doctor_fails_a_public_url_that_is_not_https(live: Providers) -> None:
    live.env.setenv("KEYTURN_PUBLIC_URL", "http://rentals.keyturn.example")
    run = await keyturn("doctor")
    assert run.code == 1
    assert run.failing()[0].startswith("FAIL  public url: KEYTURN_PUBLIC_URL: must be the https")
