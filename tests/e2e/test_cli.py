"""The keyturn command as an operator uses it from the README."""

from __future__ import annotations

import os
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
