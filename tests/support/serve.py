"""Live `knhk serve` processes for tests that need the real server (its workers, its signals, its sockets)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from support.pgcluster import free_port

KNHK = str(Path(sys.executable).with_name("knhk"))

__all__ = ["KNHK", "free_port", "serve", "wait_ready"]


def wait_ready(url: str, proc: subprocess.Popen[Any], timeout: float = 60) -> None:
    """Wait (at most ``timeout`` seconds) until a started `knhk serve` answers /health/ready with 200."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"knhk serve exited: {proc.stdout.read() if proc.stdout else ''}"
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "knhk serve did not become ready"
        time.sleep(0.3)


@contextmanager
def serve(env: Mapping[str, str], *args: str, port: int | None = None,
          ready: bool = True) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start `knhk serve --port P ARGS` with ``env`` added to this process's environment; yield its base URL
    and process; terminate it (then kill it) afterwards."""
    port = port or free_port()
    proc = subprocess.Popen([KNHK, "serve", "--port", str(port), *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if ready:
            wait_ready(url, proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
