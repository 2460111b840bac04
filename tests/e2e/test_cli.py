"""The keyturn command as an operator uses it from the README."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

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
