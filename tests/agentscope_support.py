"""Running the real AgentScope application of tests/agentscope_app.py against a Studio."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from tests.conftest import StudioServer

APP = Path(__file__).resolve().parent / "agentscope_app.py"
TIMEOUT = 60


class App:
    """The application in a subprocess, its output read by a thread so that waiting for a line
    can time out."""

    def __init__(
        self,
        studio: StudioServer,
        mode: str,
        *,
        url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        # `url`: another form of the studio_url (with a key in it); `env`: added to ours.
        self.process = subprocess.Popen(
            [sys.executable, str(APP), url or studio.url, mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env} if env else None,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def json_line(self, key: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next line printed as a JSON object with `key` (agentscope logs in between)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if line.startswith("{") and key in line:
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        raise AssertionError(f"no {key!r} line; the app printed:\n{''.join(self.output)}")

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"the app did not exit:\n{''.join(self.output)}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def running_apps(studio: StudioServer) -> Iterator[Callable[..., App]]:
    """For a test module's `app` fixture: starts apps, and kills those still running after."""
    started: list[App] = []

    def start(mode: str, **options: Any) -> App:
        started.append(App(studio, mode, **options))
        return started[-1]

    yield start
    for each in started:
        each.kill()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_of(studio: StudioServer, run_id: str) -> dict[str, Any]:
    return studio.api(f"/api/runs/{run_id}/")


def pending_request(studio: StudioServer, run_id: str) -> dict[str, Any] | None:
    response = requests.get(f"{studio.url}/api/runs/{run_id}/", timeout=10)
    if response.status_code != 200:
        return None
    pending = [r for r in response.json()["input_requests"] if r["answered_at"] is None]
    return pending[0] if pending else None
