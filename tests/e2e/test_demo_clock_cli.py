"""`keyturn demo --speed` and `keyturn serve --speed` as an operator types them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.e2e.demo_process import running_demo


def keyturn(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=cwd,
        timeout=120,
        check=False,
    )


def clock(base: str, change: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if change is None else json.dumps(change).encode()
    request = urllib.request.Request(  # noqa: S310 (a local test server)
        f"{base}/sandbox/api/clock", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        state: dict[str, Any] = json.load(response)
        return state


def test_serve_refuses_the_fast_clock_with_one_line(tmp_path: Path) -> None:
    for speed in ("600", "1", "fast"):
        result = keyturn("serve", "--sandbox", "--speed", speed, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "keyturn: the fast clock (--speed) is for the demo only, where everything is"
            " simulated: run `keyturn demo --speed N`"
        ]


def test_demo_refuses_a_speed_outside_1_to_3600(tmp_path: Path) -> None:
    for speed in ("0", "3601", "1.5", "６"):
        result = keyturn("demo", "--speed", speed, cwd=tmp_path)
        assert result.returncode == 2
        assert "is not a speed (a whole number from 1 to 3600)" in result.stderr
    assert not (tmp_path / "var").exists(), "refused before anything was set up"


def test_a_restarted_demo_goes_on_from_where_its_clock_stopped(tmp_path: Path) -> None:
    with running_demo(tmp_path, "--speed", "60") as page:
        base = page.removesuffix("/sandbox")
        state = clock(base)
        assert state["speed"] == 60 and state["paused"] is False
        ahead = datetime.fromisoformat(state["now"]) + timedelta(days=3)
        clock(base, {"advance_to": ahead.isoformat()})
        clock(base, {"advance_to": "next"})  # a timer fires (and is audited) three days on
        stopped = datetime.fromisoformat(clock(base)["now"])
    with running_demo(tmp_path) as page:
        again = clock(page.removesuffix("/sandbox"))
        assert again["speed"] == 1
        assert datetime.fromisoformat(again["now"]) >= ahead
        assert datetime.fromisoformat(again["now"]) >= stopped - timedelta(hours=6)
