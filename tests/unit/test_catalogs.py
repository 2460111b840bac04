"""Every message exists in every language with the same placeholders, and every key the code
uses is in the catalogs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flows.i18n import DEFAULT_LANGUAGE, SUPPORTED_LANGUAGES, placeholders, read_catalog

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = {m.id: m.string for m in read_catalog(DEFAULT_LANGUAGE) if m.id}
KEY_IN_CODE = re.compile(r"""["']((?:dialog|ops|keyword)\.[a-z_]+)["']""")


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_every_message_is_translated_with_the_same_placeholders(language: str) -> None:
    catalog = {m.id: m.string for m in read_catalog(language) if m.id}
    assert set(catalog) == set(REFERENCE), "message ids differ from the English catalog"
    for key, text in catalog.items():
        assert isinstance(text, str) and text.strip(), f"{language}: {key} is empty"
        assert placeholders(text) == placeholders(REFERENCE[key]), f"{language}: {key}"


def test_every_key_the_code_uses_is_in_the_catalogs() -> None:
    used: set[str] = set()
    for package in ("bot", "flows", "locks", "storage"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "storage" / "kinds.py":
                continue  # kinds' stored names ("ops.condition_report"), not message keys
            used |= set(KEY_IN_CODE.findall(path.read_text()))
    assert used, "the scan found no message keys at all"
    assert used <= set(REFERENCE), f"missing from the catalogs: {sorted(used - set(REFERENCE))}"
