"""The README's example script plays a week of rentals against a real `keyturn demo` through the
sandbox's HTTP API, and what it prints is what the keypads did."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.demo_process import running_demo

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "week_of_rentals.py"


def test_the_example_plays_a_week_of_rentals_and_prints_what_the_keypads_did(
    tmp_path: Path,
) -> None:
    with running_demo(tmp_path, "--speed", "600") as page:
        played = subprocess.run(
            [sys.executable, str(EXAMPLE), "--url", page.removesuffix("/sandbox")],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    assert played.returncode == 0, played.stderr
    out = played.stdout
    assert len(re.findall(r"booked \w+ .*: K\w+, confirmed", out)) == 4, out
    for lock in ("Trailer Bay 1", "Bike box 1", "Storage Bay 1 door", "Trailer Bay 2"):
        answers = re.findall(rf"keypad {lock} \(.+\), PIN \d+: (\w+)", out)
        assert answers == ["refused", "opens", "refused"], (lock, out)
    # T2 sends its own PIN only after the pickup's photos and checklist, which the script answers.
    assert "the pickup check of Enclosed cargo trailer 5x8 is done" in out, out
    assert out.count("was sent: Return of") == 8, "each return noted, then confirmed"
    assert out.count("was sent: Receipt for booking") == 4, out
    assert "8 of 8 PINs opened their keypad inside their window only" in out
