"""The dependency rule: bot → flows → (locks, storage); never upward, and flows stays free of
the transports' libraries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "flows": {"bot", "aiohttp", "telegram", "twilio", "stripe"},
    "locks": {"flows", "bot"},
    "storage": {"flows", "bot", "locks"},
}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_upward(package: str) -> None:
    files = list((ROOT / package).rglob("*.py"))
    assert files
    for path in files:
        bad = imported_roots(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_a_worker_loads_only_the_vendor_libraries_it_is_configured_for() -> None:
    """A worker without Telegram, Stripe or Seam settings (the demo, an SMS-only operator) does
    not load their SDKs: each costs start-up time and tens of MB in every worker."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from cryptography.fernet import Fernet\n"
        "from bot.app import build_runtime, create_app\n"
        "from bot.config import Settings\n"
        "settings = Settings.from_env({'KEYTURN_DATABASE_URL': 'sqlite://:memory:',"
        " 'KEYTURN_ENCRYPTION_KEY': Fernet.generate_key().decode()})\n"
        "create_app(build_runtime(settings, sandbox=True), sandbox=True)\n"
        "print(sorted(m for m in ('telegram', 'stripe', 'seam', 'svix') if m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
