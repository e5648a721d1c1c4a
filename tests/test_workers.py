"""Past one process: `runstudio --workers N` on one host, and several Studio processes sharing one
database and one Redis, behaving as one Studio."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import requests
from websockets.sync.client import connect

from tests.agentscope_support import App, pending_request, run_of, wait_for
from tests.conftest import ROOT, StudioServer, free_port, start_studio
from tests.test_live import (
    redis_url,  # noqa: F401  (a fixture: a redis-server of the test's own)
    row_ids,
)
from tests.test_runstudio import request_body

pytestmark = pytest.mark.server

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def test_more_than_one_worker_without_redis_is_refused_with_the_reason(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "manage.py", "runstudio", "--workers", "2", "--port", "0"],
        cwd=ROOT, env={**env, "STUDIO_DATA_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "--workers 2 needs REDIS_URL" in line and "live pages" in line


def worker_pids(server: StudioServer) -> list[int]:
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    pids = [int(pid) for pid in children.read_text().split()]
    return [pid for pid in pids if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]


def test_workers_share_both_ports_and_any_answers(tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    server, cleanup = start_studio(tmp_path / "data", {"REDIS_URL": redis_url}, ("--workers", "2"))
    try:
        assert len(worker_pids(server)) == 2
        # Fresh connections land on either worker: every one must be answered.
        for _ in range(20):
            assert requests.get(f"{server.url}/healthz", timeout=10).json() == {"status": "ok"}
        with grpc.insecure_channel(server.grpc_endpoint) as channel:
            export = channel.unary_unary(EXPORT)
            for n in range(10):
                export(request_body(7000 + n, spans=3), timeout=30)
        for n in range(10):
            assert server.trace(f"{7000 + n:032x}")["span_count"] == 3
    finally:
        assert server.stop(signal.SIGTERM) == 0
        cleanup()
    assert "Studio stopped." in (server.process.stdout.read() if server.process.stdout else "")


def test_sigterm_drains_every_workers_writer_and_loses_nothing_acknowledged(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    server, cleanup = start_studio(tmp_path / "data", {"REDIS_URL": redis_url}, ("--workers", "2"))
    acknowledged: list[int] = []
    stop = threading.Event()

    def sender(offset: int) -> None:
        trace_id = offset
        while not stop.is_set():
            trace_id += 1000
            try:
                # A connection each time, so that both workers take requests.
                response = requests.post(
                    f"{server.url}/v1/traces",
                    data=request_body(trace_id),
                    headers={"Content-Type": "application/x-protobuf", "Connection": "close"},
                    timeout=30,
                )
            except requests.RequestException:
                return
            if response.status_code == 200:
                acknowledged.append(trace_id)

    threads = [threading.Thread(target=sender, args=(n + 1,)) for n in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 60:
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


def test_socketio_sessions_hold_whichever_worker_takes_each_request(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    """The workers share one listening socket: a session's long-polls and its websocket upgrade
    may each reach either worker, busy ones less often. Every client must connect, and a run
    connected to one worker is answered from a run page whichever worker serves it."""
    import socketio

    from tests.test_agentscope import answer_from_the_run_page

    pytest.importorskip("agentscope", minversion="1.0")
    server, cleanup = start_studio(tmp_path / "data", {"REDIS_URL": redis_url}, ("--workers", "2"))
    stop = threading.Event()

    def load(offset: int) -> None:
        trace_id = offset
        while not stop.is_set():
            trace_id += 100
            with contextlib.suppress(requests.RequestException):
                requests.post(
                    f"{server.url}/v1/traces",
                    data=request_body(trace_id, spans=200),
                    headers={"Content-Type": "application/x-protobuf", "Connection": "close"},
                    timeout=30,
                )

    threads = [threading.Thread(target=load, args=(n + 1,)) for n in range(4)]
    for thread in threads:
        thread.start()
    user = App(server, "user")
    try:
        sessions = []
        for n in range(12):
            client = socketio.Client()
            client.connect(
                server.url, namespaces=["/python"], auth={"run_id": f"probe-{n}"}, wait_timeout=10
            )
            time.sleep(0.5)
            assert client.connected
            sessions.append(client.eio.sid)
            client.disconnect()
        assert {sid.partition(".")[0] for sid in sessions} <= {"0", "1"}

        run_id = user.json_line("run_id")["run_id"]
        request = wait_for(lambda: pending_request(server, run_id), "the input request")
        for _ in range(3):  # page requests land on either worker
            assert run_of(server, run_id)["connected"] is True
        answer_from_the_run_page(server, run_id, request["request_id"], text="Kyoto, please")
        assert user.json_line("answer") == {"answer": "Kyoto, please"}
        assert user.wait() == 0
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        user.kill()
        assert server.stop(signal.SIGTERM) == 0
        cleanup()


@pytest.fixture
def two_hosts(tmp_path: Path, redis_url: str) -> tuple[StudioServer, StudioServer]:  # noqa: F811
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        pytest.skip("several hosts share a PostgreSQL database (DATABASE_URL)")
    first, cleanup_first = start_studio(tmp_path / "a", {"REDIS_URL": redis_url})
    shared = {"REDIS_URL": redis_url, "DATABASE_URL": first.env["DATABASE_URL"]}
    try:
        second, cleanup_second = start_studio(tmp_path / "b", shared)
    except BaseException:
        first.stop()
        cleanup_first()
        raise
    yield first, second
    second.stop()
    cleanup_second()
    first.stop()
    cleanup_first()


def test_two_hosts_on_one_database_and_one_redis_behave_as_one_studio(
    two_hosts: tuple[StudioServer, StudioServer],
) -> None:
    pytest.importorskip("agentscope", minversion="1.0")
    first, second = two_hosts

    # A trace sent to one appears live on the other's overview page.
    with connect(f"ws://127.0.0.1:{second.port}/ws/traces/") as page:
        page.send(json.dumps({"type": "subscribe", "key": "k1", "query": "", "top": "1"}))
        response = requests.post(
            f"{first.url}/v1/traces",
            data=request_body(0x77, spans=2),
            headers={"Content-Type": "application/x-protobuf"},
            timeout=10,
        )
        assert response.status_code == 200
        deadline = time.monotonic() + 15
        while not row_ids([message := page.recv(timeout=max(0.1, deadline - time.monotonic()))]):
            pass
        assert row_ids([message]) == [f"{0x77:032x}"]

    # An agentscope run connected to one is answered from the other's run page.
    from tests.test_agentscope import answer_from_the_run_page

    user = App(first, "user")
    try:
        run_id = user.json_line("run_id")["run_id"]
        request = wait_for(lambda: pending_request(second, run_id), "the input request")
        assert run_of(second, run_id)["connected"] is True

        # A host that restarts leaves the runs the other holds running.
        second.stop()
        restarted, cleanup_restarted = start_studio(second.data_dir, second.env)
        try:
            assert run_of(restarted, run_id)["status"] == "running"
            assert run_of(restarted, run_id)["connected"] is True

            answer_from_the_run_page(restarted, run_id, request["request_id"], text="Kyoto, please")
            assert user.json_line("answer") == {"answer": "Kyoto, please"}
            assert user.wait() == 0
            run = wait_for(
                lambda: (r := run_of(restarted, run_id))["status"] == "finished" and r,
                "the run to finish",
            )
            assert run["input_requests"][0]["answer"] == "Kyoto, please"
        finally:
            restarted.stop()
            cleanup_restarted()
    finally:
        user.kill()


def test_a_grpc_port_another_program_holds_is_a_clear_error_with_workers(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "runstudio", "--workers", "2",
             "--port", str(free_port()), "--grpc-port", str(port)],
            cwd=ROOT, env={**os.environ, "STUDIO_DATA_DIR": str(tmp_path), "REDIS_URL": redis_url},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode != 0
    assert f"Port {port}" in result.stderr and "already in use" in result.stderr
