"""The keyturn command as an operator uses it from the README."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from bot.cli import DEMO_INVENTORY


def keyturn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_help_lists_the_commands() -> None:
    result = keyturn("--help")
    assert result.returncode == 0
    for command in ("serve", "demo", "migrate", "inventory"):
        assert command in result.stdout
    inventory = keyturn("inventory", "--help")
    assert "apply" in inventory.stdout and "show" in inventory.stdout


def test_a_malformed_setting_stops_with_one_line() -> None:
    result = keyturn("migrate", env={"KEYTURN_PORT": "eighty"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "keyturn: KEYTURN_PORT: must be a whole number, got 'eighty'"
    ]


def test_serve_without_an_encryption_key_refuses_to_start(tmp_path: Path) -> None:
    result = keyturn(
        "serve",
        env={
            "KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/k.sqlite3",
            "KEYTURN_ENCRYPTION_KEY": "",
        },
    )
    assert result.returncode == 2
    assert result.stderr.startswith("keyturn: KEYTURN_ENCRYPTION_KEY:")


def test_migrate_then_inventory_apply_show_and_apply_again(tmp_path: Path) -> None:
    env = {"KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/var/keyturn.sqlite3"}
    migrated = keyturn("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied models.0001_initial" in migrated.stdout
    assert keyturn("migrate", env=env).stdout.strip() == "database is up to date"
    applied = keyturn("inventory", "apply", str(DEMO_INVENTORY), env=env)
    assert applied.returncode == 0, applied.stderr
    assert "created location harbor" in applied.stdout
    again = keyturn("inventory", "apply", str(DEMO_INVENTORY), env=env)
    assert again.stdout.strip() == "inventory unchanged"
    shown = keyturn("inventory", "show", env=env)
    assert "Harbor Yard" in shown.stdout and "Altstadt Depot" in shown.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[locations]\n", "bad.toml:1:"),
        ('[[locations]]\nslug = "x"\nname = "X"\ntimezone = "Mars/Olympus"\n', "bad.toml:"),
    ],
)
def test_a_bad_inventory_file_is_refused_with_its_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    env = {"KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/keyturn.sqlite3"}
    keyturn("migrate", env=env)
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    result = keyturn("inventory", "apply", str(bad), env=env)
    assert result.returncode == 2
    assert expected in result.stderr
    assert keyturn("inventory", "show", env=env).stdout.strip() in ("", "no locations")


def test_locks_check_staff_code_and_revoke(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    env = {
        "KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/keyturn.sqlite3",
        "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    keyturn("migrate", env=env)
    keyturn("inventory", "apply", str(DEMO_INVENTORY), env=env)
    checked = keyturn("locks", "check", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "harbor-t1 (Trailer Bay 1): OK" in checked.stdout
    assert "set and removed a test code" in checked.stdout
    unknown = keyturn("locks", "check", "no-such-lock", env=env)
    assert unknown.returncode == 2 and "no lock 'no-such-lock'" in unknown.stderr
    issued = keyturn(
        "codes",
        "staff",
        "harbor-t1",
        "--staff",
        "100000001",
        "--hours",
        "2",
        "--label",
        "Cleaning",
        env=env,
    )
    assert issued.returncode == 0, issued.stdout + issued.stderr
    assert "on Trailer Bay 1:" in issued.stdout and "works until" in issued.stdout
    code_id = issued.stdout.split()[1]
    outsider = keyturn("codes", "staff", "harbor-t1", "--staff", "999", env=env)
    assert outsider.returncode == 2 and "no active staff member" in outsider.stderr
    revoked = keyturn("codes", "revoke", code_id, env=env)
    assert revoked.returncode == 0 and revoked.stdout.strip() == f"code {code_id} is removed"
    assert keyturn("locks", "reconcile", env=env).returncode == 0


def _serve_env(tmp_path: Path) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {
        "KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/keyturn.sqlite3",
        "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    # Whatever the machine has set, these runs have no Stripe.
    env.update(dict.fromkeys(("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE"), ""))
    return env


def test_serve_without_stripe_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    env = _serve_env(tmp_path)
    assert keyturn("migrate", env=env).returncode == 0
    result = keyturn("serve", "--port", "1", env=env)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("keyturn: STRIPE_API_KEY: ")
    assert "--no-payments" in line


def test_serve_with_no_payments_starts_without_stripe(tmp_path: Path) -> None:
    import socket
    import time
    import urllib.request

    env = _serve_env(tmp_path)
    assert keyturn("migrate", env=env).returncode == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--no-payments", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and worker.poll() is None and not ready:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    ready = r.status == 200
            except OSError:
                time.sleep(0.2)
        assert ready, f"serve --no-payments did not start (exit {worker.poll()})"
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    assert "bookings are confirmed without payment" in output


def test_a_code_left_removing_without_its_removal_is_taken_off(tmp_path: Path) -> None:
    """A code marked removing whose removal was lost (as a revocation whose commit failed under
    an earlier release left it) comes off its lock by `codes revoke` or `locks reconcile`."""
    import sqlite3

    from cryptography.fernet import Fernet

    database = tmp_path / "keyturn.sqlite3"
    env = {
        "KEYTURN_DATABASE_URL": f"sqlite://{database}",
        "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    keyturn("migrate", env=env)
    keyturn("inventory", "apply", str(DEMO_INVENTORY), env=env)
    staff = ("--staff", "100000001", "--hours", "2")
    codes = [
        keyturn("codes", "staff", lock, *staff, env=env) for lock in ("harbor-t1", "harbor-s1")
    ]
    assert all(issued.returncode == 0 for issued in codes), [c.stderr for c in codes]
    bay, storage = (issued.stdout.split()[1] for issued in codes)
    with sqlite3.connect(database) as db:
        db.execute("UPDATE access_code SET state = 'removing'")
        db.execute("DELETE FROM outbox_effect WHERE kind = 'access.remove'")
        (on_locks,) = db.execute("SELECT count(*) FROM simulated_code WHERE removed_at IS NULL")
    assert on_locks == (2,)

    revoked = keyturn("codes", "revoke", bay, env=env)
    assert revoked.returncode == 0 and revoked.stdout.strip() == f"code {bay} is removed"
    reconciled = keyturn("locks", "reconcile", "harbor-s1", env=env)
    assert reconciled.returncode == 0, reconciled.stderr
    assert "removing again 1 revoked codes" in reconciled.stdout
    with sqlite3.connect(database) as db:
        states = dict(db.execute("SELECT id, state FROM access_code"))
        (on_locks,) = db.execute("SELECT count(*) FROM simulated_code WHERE removed_at IS NULL")
    assert states == {int(bay): "removed", int(storage): "removed"}
    assert on_locks == (0,)
    assert keyturn("locks", "reconcile", env=env).stdout.count("matches") >= 2


def test_migrate_creates_the_sqlite_file_readable_by_its_owner_only(tmp_path: Path) -> None:
    database = tmp_path / "var" / "keyturn.sqlite3"
    result = subprocess.run(
        # umask 000: a file made without an explicit mode would be world-writable.
        ["/bin/sh", "-c", f'umask 000 && exec "{sys.executable}" -m bot migrate'],
        capture_output=True,
        text=True,
        env={**os.environ, "KEYTURN_DATABASE_URL": f"sqlite://{database}"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "applied models.0001_initial" in result.stdout
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    leftovers = [p for p in database.parent.iterdir() if p != database]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in leftovers), leftovers


@pytest.mark.parametrize(
    "args",
    [
        ("codes", "revoke", "9" * 30),
        ("codes", "revoke", "٣"),
        ("codes", "staff", "harbor-t1", "--staff", "1" + "0" * 30),
        ("codes", "staff", "harbor-t1", "--staff", "²"),
    ],
)
def test_an_id_no_column_holds_is_refused_with_the_usage(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    env = {"KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/keyturn.sqlite3"}
    result = keyturn(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert "is not an id (digits 0-9" in result.stderr
    assert "Traceback" not in result.stderr


# -- starting and stopping under faults ----------------------------------------------------


def _key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _said(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What keyturn itself said on stderr (log lines aside), after checking it was no trace."""
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("keyturn:")]


def test_serve_on_an_unreachable_database_exits_at_once_naming_it() -> None:
    started = time.monotonic()
    result = keyturn(
        "serve",
        "--no-payments",
        "--port",
        str(_free_port()),
        env={
            "KEYTURN_DATABASE_URL": "postgres://postgres:s3cret@127.0.0.1:1/keyturn",
            "KEYTURN_ENCRYPTION_KEY": _key(),
        },
    )
    assert time.monotonic() - started < 20
    assert result.returncode == 1
    [line] = _said(result)
    assert line.startswith("keyturn: cannot start: the database postgres://postgres@127.0.0.1:1/")
    assert "s3cret" not in result.stderr + result.stdout, "the password is not shown"


def test_serve_with_telegram_unreachable_at_get_me_exits_naming_it(tmp_path: Path) -> None:
    env = {
        "KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/k.sqlite3",
        "KEYTURN_ENCRYPTION_KEY": _key(),
        "TELEGRAM_BOT_TOKEN": "123456:" + "A" * 35,
        "TELEGRAM_WEBHOOK_SECRET": "kt-secret_1",
        "TELEGRAM_API_BASE": f"http://127.0.0.1:{_free_port()}",
    }
    assert keyturn("migrate", env=env).returncode == 0
    started = time.monotonic()
    result = keyturn("serve", "--no-payments", "--port", str(_free_port()), env=env)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    [line] = _said(result)
    assert line.startswith("keyturn: cannot start: Telegram getMe"), line
    assert "A" * 35 not in result.stderr, "the bot token is not shown"


@pytest.mark.parametrize("command", [("demo",), ("serve", "--sandbox")])
@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "keyturn.example.com"])  # noqa: S104
def test_the_sandbox_is_refused_off_a_loopback_address(
    tmp_path: Path, command: tuple[str, ...], host: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", *command, "--host", host, "--port", str(_free_port())],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/k.sqlite3",
            "KEYTURN_ENCRYPTION_KEY": _key(),
        },
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "keyturn: the sandbox is served only on a loopback address (127.0.0.1, ::1 or"
        f" localhost), not {host}"
    ]
    assert not (tmp_path / "var").exists(), "the demo made nothing"


async def test_a_trickled_body_is_cut_off_and_does_not_hold_up_shutdown(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/k.sqlite3",
        "KEYTURN_ENCRYPTION_KEY": _key(),
        "KEYTURN_BODY_TIMEOUT_SECONDS": "1",
        "TWILIO_ACCOUNT_SID": "AC" + "0f" * 16,
        "TWILIO_AUTH_TOKEN": "5d6e" * 8,
        "TWILIO_SMS_FROM": "+15005550006",
        "TWILIO_API_BASE": f"http://127.0.0.1:{_free_port()}",
    }
    assert keyturn("migrate", env=env).returncode == 0
    port = _free_port()
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", "--no-payments", "--port", str(port), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await _until_ready(port)
        request = (
            "POST /webhooks/twilio HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\nFrom="
        )
        slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        for _, writer in slow:
            writer.write(request.encode())
        started = time.monotonic()
        answers = await asyncio.wait_for(
            asyncio.gather(*(_trickle(reader, writer) for reader, writer in slow)), 15
        )
        assert time.monotonic() - started < 5, "cut off after the 1 s body timeout"
        assert set(answers) == {"HTTP/1.1 408 Request Timeout"}

        more = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        for _, writer in more:
            writer.write(request.encode())
        await asyncio.sleep(0.2)
        worker.terminate()
        stopping = time.monotonic()
        assert await asyncio.wait_for(worker.wait(), 10) == 0
        assert time.monotonic() - stopping < 5, "trickling clients do not hold up the stop"
        for _, writer in more:
            writer.close()
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


async def _until_ready(port: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise AssertionError("keyturn serve did not become ready")


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    """Send the body a byte every 0.2 s until the server answers; its status line."""
    try:
        while not reader.at_eof():
            try:
                line = await asyncio.wait_for(reader.readline(), 0.2)
            except TimeoutError:
                writer.write(b"x")
                continue
            return line.decode().strip()
        return "closed"
    finally:
        writer.close()


def test_an_inventory_giving_one_private_lock_to_two_items_is_refused(tmp_path: Path) -> None:
    """Availability is per item: two items on one lock that is not shared would give two
    renters codes for the same door at the same time."""
    env = {"KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/keyturn.sqlite3"}
    assert keyturn("migrate", env=env).returncode == 0
    text = DEMO_INVENTORY.read_text().replace('locks = ["harbor-t2"]', 'locks = ["harbor-t1"]')
    assert 'locks = ["harbor-t2"]' not in text
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(text)
    applied = keyturn("inventory", "apply", str(inventory), env=env)
    assert applied.returncode != 0
    assert "lock 'harbor-t1' already opens item 'T1'" in applied.stderr
    shown = keyturn("inventory", "show", env=env)
    assert "T2" not in shown.stdout, "nothing of the refused file was applied"


def _with_harbor_leads(leads: str) -> str:
    """The demo inventory with ``leads`` (TOML lines) added to the Harbor Yard location."""
    anchor = 'timezone = "America/New_York"\n'
    text = DEMO_INVENTORY.read_text()
    assert text.count(anchor) == 1
    return text.replace(anchor, anchor + leads)


def test_a_locations_lead_times_are_applied_and_shown_with_the_defaults_elsewhere(
    tmp_path: Path,
) -> None:
    env = {
        "KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/keyturn.sqlite3",
        "KEYTURN_PIN_LEAD_MINUTES": "45",
    }
    assert keyturn("migrate", env=env).returncode == 0
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(
        _with_harbor_leads(
            "code_lead_minutes = 120\nconfirm_before_minutes = 30\npin_lead_minutes = 15\n"
        )
    )
    applied = keyturn("inventory", "apply", str(inventory), env=env)
    assert applied.returncode == 0, applied.stderr
    shown = keyturn("inventory", "show", env=env).stdout.splitlines()
    leads = [line.strip() for line in shown if line.strip().startswith("lead times:")]
    assert leads == [
        "lead times: codes programmed 1440 min (default) before,"
        " set by 60 min (default) before, PIN sent 45 min (default) before",
        "lead times: codes programmed 120 min before, set by 30 min before, PIN sent 15 min before",
    ], "altstadt (first by slug) takes the environment's defaults, harbor its own"


@pytest.mark.parametrize(
    ("leads", "env_extra", "expected"),
    [
        (
            "code_lead_minutes = 120\nconfirm_before_minutes = 180\n",
            {},
            "location 'harbor': confirm_before_minutes (180) must not exceed"
            " code_lead_minutes (120)",
        ),
        (
            "code_lead_minutes = 30\n",
            {},
            "location 'harbor': confirm_before_minutes (60) must not exceed code_lead_minutes (30)",
        ),
        (
            "pin_lead_minutes = 90\n",
            {"KEYTURN_CODE_LEAD_MINUTES": "60"},
            "location 'harbor': pin_lead_minutes (90) must not exceed code_lead_minutes (60)",
        ),
        ("pin_lead_minutes = 0\n", {}, "location 'harbor': pin_lead_minutes must be at least 1"),
        (
            'code_lead_minutes = "a day"\n',
            {},
            "location 'harbor': code_lead_minutes must be a whole number",
        ),
        ("code_lead_minutes = 50000\n", {}, "location 'harbor': code_lead_minutes is too large"),
    ],
)
def test_lead_times_that_break_a_rule_are_refused_naming_the_location(
    tmp_path: Path, leads: str, env_extra: dict[str, str], expected: str
) -> None:
    env = {"KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/keyturn.sqlite3", **env_extra}
    assert keyturn("migrate", env=env).returncode == 0
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(_with_harbor_leads(leads))
    applied = keyturn("inventory", "apply", str(inventory), env=env)
    assert applied.returncode == 2
    assert expected in applied.stderr
    assert "Harbor Yard" not in keyturn("inventory", "show", env=env).stdout


def test_default_lead_times_that_break_a_rule_stop_the_command() -> None:
    result = keyturn(
        "migrate",
        env={
            "KEYTURN_CODE_LEAD_MINUTES": "30",
            "KEYTURN_CONFIRM_BEFORE_MINUTES": "30",
            "KEYTURN_PIN_LEAD_MINUTES": "45",
        },
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "keyturn: KEYTURN_PIN_LEAD_MINUTES: must not exceed KEYTURN_CODE_LEAD_MINUTES (30), got 45"
    ]


def test_reconcile_leaves_codes_past_the_locks_pace_waiting_not_failed(tmp_path: Path) -> None:
    """A lock whose provider has taken its minute's creations (another application on the same
    account) refuses one more: `locks reconcile` leaves the lost code waiting for the lock's
    pace, says so, and counts no failed attempt."""
    import sqlite3

    from cryptography.fernet import Fernet

    database = tmp_path / "keyturn.sqlite3"
    env = {
        "KEYTURN_DATABASE_URL": f"sqlite://{database}",
        "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    keyturn("migrate", env=env)
    keyturn("inventory", "apply", str(DEMO_INVENTORY), env=env)
    issued = keyturn("codes", "staff", "harbor-t1", "--staff", "100000001", env=env)
    assert issued.returncode == 0, issued.stderr
    with sqlite3.connect(database) as db:
        # Ten more creations at the lock in the same minute, and the lock lost Keyturn's code.
        for _ in range(10):
            db.execute(
                "INSERT INTO simulated_code"
                " (device_id, name, pin_encrypted, starts_at, ends_at, removed_at, created_at)"
                " SELECT device_id, 'another app', pin_encrypted, starts_at, ends_at,"
                " created_at, created_at FROM simulated_code WHERE name != 'another app'"
            )
        db.execute("UPDATE simulated_code SET removed_at = created_at")

    reconciled = keyturn("locks", "reconcile", "harbor-t1", env=env)
    assert reconciled.returncode == 0, reconciled.stderr
    assert "reprogramming 1" in reconciled.stdout
    assert "1 effects wait in the outbox" in reconciled.stdout
    with sqlite3.connect(database) as db:
        [(state, attempts, error)] = db.execute(
            "SELECT state, attempts, last_error FROM outbox_effect"
            " WHERE kind = 'access.set' AND state = 'pending'"
        )
        (code_state,) = db.execute("SELECT state FROM access_code").fetchone()
        (alerts,) = db.execute("SELECT count(*) FROM ops_alert WHERE kind = 'effect_failing'")
    assert (state, attempts, error) == ("pending", 0, "")
    assert code_state == "pending" and alerts == (0,)
