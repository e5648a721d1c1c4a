"""`manage.py runstudio`: health, ports, and a clean shutdown that loses nothing acknowledged."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.conftest import ROOT, StudioServer, free_port, start_studio

pytestmark = pytest.mark.server


def test_healthz_says_ok_once_both_receivers_listen(studio_server: StudioServer) -> None:
    response = requests.get(f"{studio_server.url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    with socket.create_connection(("127.0.0.1", studio_server.grpc_port), timeout=5):
        pass


def test_the_root_leads_to_the_traces(studio_server: StudioServer) -> None:
    response = requests.get(studio_server.url, allow_redirects=False, timeout=5)
    assert response.status_code == 302
    assert response.headers["Location"] == "/traces/"


def run_studio(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "manage.py", "runstudio", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("which", ["--port", "--grpc-port"])
def test_a_port_in_use_is_a_clear_error_naming_it(tmp_path: Path, which: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "--grpc-port" if which == "--port" else "--port"
        result = run_studio(tmp_path, which, str(port), other, str(free_port()))
    assert result.returncode != 0
    assert f"Port {port}" in result.stderr
    assert "already in use" in result.stderr


def request_body(trace_id: int, spans: int = 20) -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    for n in range(spans):
        span = scope_spans.spans.add()
        span.trace_id = trace_id.to_bytes(16, "big")
        span.span_id = (n + 1).to_bytes(8, "big")
        span.name = f"step {n}"
        span.start_time_unix_nano = 1_700_000_000_000_000_000 + n
        span.end_time_unix_nano = span.start_time_unix_nano + 5
    return request.SerializeToString()


def test_sigterm_drains_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    server, cleanup = start_studio(tmp_path / "data")
    acknowledged: list[int] = []
    stop = threading.Event()

    def sender(offset: int) -> None:
        trace_id = offset
        session = requests.Session()
        while not stop.is_set():
            trace_id += 1000
            try:
                response = session.post(
                    f"{server.url}/v1/traces",
                    data=request_body(trace_id),
                    headers={"Content-Type": "application/x-protobuf"},
                    timeout=30,
                )
            except requests.RequestException:
                return
            if response.status_code == 200:
                acknowledged.append(trace_id)

    threads = [threading.Thread(target=sender, args=(n + 1,)) for n in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 40:
        assert time.monotonic() < deadline and server.process.poll() is None, "no progress"
        threading.Event().wait(0.01)
    try:
        assert server.stop(signal.SIGTERM) == 0
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    output = server.process.stdout.read() if server.process.stdout else ""
    assert "Studio stopped." in output

    env = {"DATABASE_URL": server.env["DATABASE_URL"]} if "DATABASE_URL" in server.env else {}
    again, cleanup_again = start_studio(tmp_path / "data", env)
    try:
        for trace_id in acknowledged:
            assert again.trace(f"{trace_id:032x}")["span_count"] == 20
    finally:
        again.stop()
        cleanup_again()
        cleanup()
