"""Shared fixtures. `studio_server` is a real `manage.py runstudio` process with its own fresh
storage (a temporary SQLite directory, or a new PostgreSQL database when DATABASE_URL points at
PostgreSQL), so end-to-end tests exercise exactly what a user runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class StudioServer:
    process: subprocess.Popen[str]
    port: int
    grpc_port: int
    data_dir: Path
    env: dict[str, str]
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def api(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.url}{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def trace(self, trace_id: str) -> dict[str, Any]:
        return self.api(f"/api/traces/{trace_id}/")

    def wait_for_trace(self, trace_id: str, spans: int, timeout: float = 20) -> dict[str, Any]:
        """Poll the API until the trace has `spans` spans (exporters flush in the background)."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = requests.get(f"{self.url}/api/traces/{trace_id}/", timeout=30)
            if response.status_code == 200:
                last = response.json()
                if len(last["spans"]) >= spans:
                    return last
            time.sleep(0.05)
        raise AssertionError(
            f"trace {trace_id} has {len(last.get('spans', []))} spans, not {spans}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _fresh_database_url(base_url: str) -> tuple[str, Callable[[], None]]:
    """A new, empty PostgreSQL database beside the one DATABASE_URL names, and its dropper."""
    import psycopg

    parts = urlsplit(base_url)
    # Named after the database DATABASE_URL names, so that parallel test runs keep apart.
    name = f"{parts.path.strip('/') or 'studio'}_e2e_{uuid.uuid4().hex[:12]}"
    admin = urlunsplit(
        (parts.scheme.replace("postgresql", "postgres"), parts.netloc, "/postgres", "", "")
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, "")), drop


def start_studio(
    tmp_path: Path, extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> tuple[StudioServer, Callable[[], None]]:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["STUDIO_DATA_DIR"] = str(tmp_path)
    env["PYTHONUNBUFFERED"] = "1"
    # The fixtures' traces keep the times they were captured at and age past any policy:
    # no background purge unless a test asks for one.
    env.setdefault("STUDIO_RETENTION_INTERVAL", "0")
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        env["DATABASE_URL"], cleanup = _fresh_database_url(database_url)
    env.update(extra_env or {})
    port, grpc_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "runstudio",
            "--port",
            str(port),
            "--grpc-port",
            str(grpc_port),
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = StudioServer(process, port, grpc_port, tmp_path, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            cleanup()
            raise RuntimeError(f"runstudio exited with {process.returncode}:\n{output}")
        try:
            if requests.get(f"{server.url}/healthz", timeout=5).status_code == 200:
                return server, cleanup
        except requests.RequestException:  # not listening yet, or slow on a busy machine
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    cleanup()
    raise RuntimeError("runstudio did not become healthy within 60 s")


@pytest.fixture(scope="session")
def studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    """One Studio for the whole session: tests use their own trace ids, so they do not collide."""
    server, cleanup = start_studio(tmp_path_factory.mktemp("studio"))
    yield server
    server.stop()
    cleanup()


@pytest.fixture
def fresh_studio(tmp_path: Path) -> Iterator[Callable[..., StudioServer]]:
    """A factory for a Studio of the test's own, empty storage (for empty states, shutdowns)."""
    started: list[tuple[StudioServer, Callable[[], None]]] = []

    def make(**extra_env: str) -> StudioServer:
        server, cleanup = start_studio(tmp_path / f"studio{len(started)}", extra_env)
        started.append((server, cleanup))
        return server

    yield make
    for server, cleanup in started:
        server.stop()
        cleanup()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (Playwright cannot download its own here)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def page_problems(page: Any) -> list[str]:
    """What a browser test expects none of on its page, gathered from now on: script errors and
    Content-Security-Policy violations."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return problems


def export_one_span(exporter: Any, service: str, name: str) -> str:
    """One span sent through an official OTel exporter, as an instrumented app sends it: its
    trace id."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span(name) as span:
        trace_id = f"{span.get_span_context().trace_id:032x}"
    provider.shutdown()
    return trace_id


@pytest.fixture
def watched(page: Any) -> Iterator[Any]:
    """The page, failing the test on script errors or Content-Security-Policy violations."""
    problems = page_problems(page)
    yield page
    assert problems == []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Playwright's sync API keeps an event loop running in the main thread for as long as the
    # session-scoped browser lives; async_to_sync and asyncio.run refuse to run beside it. So
    # browser tests go last, after every test that needs a free main thread.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session", autouse=True)
def _stop_the_writer_before_the_test_database_goes(django_db_setup: None) -> Iterator[None]:
    # Tests that go through the process-wide writer leave its thread holding a connection, and
    # PostgreSQL will not drop a test database someone is connected to.
    yield
    from ingest import writer

    if writer._writer is not None:
        writer._writer.close(timeout=10)
