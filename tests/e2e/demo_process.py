"""`keyturn demo` as a newcomer starts it: a process of its own on a free port, in a folder of its
own, stopped at the end of the test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_demo(tmp_path: Path, *options: str) -> Iterator[str]:
    """`keyturn demo` with ``options`` on a free port, in a folder of its own; yields the
    sandbox page's URL."""
    port = _free_port()
    keyturn = Path(sys.executable).with_name("keyturn")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "demo.log").open("w")
    process = subprocess.Popen(
        [str(keyturn), "demo", "--port", str(port), *options],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310
                    break
            except OSError:
                if process.poll() is not None:
                    break
                time.sleep(0.1)
        else:
            pytest.fail("keyturn demo did not start listening")
        if process.poll() is not None:
            pytest.fail("keyturn demo exited: " + (tmp_path / "demo.log").read_text())
        yield f"{url}/sandbox"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
