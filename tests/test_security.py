"""Closed to other sites in every mode: the Host check (DNS rebinding), Origin checks on
websockets and Socket.IO, JSON-only `/trpc`, one socket per run, security headers, and a secret
key of Studio's own."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from asgiref.sync import async_to_sync
from django.test import Client

from runs.models import Run
from studio import security
from tests.agentscope_support import run_of, wait_for
from tests.conftest import ROOT, StudioServer
from tests.test_live import WebsocketCommunicator
from tracing.models import Span, Trace

socketio = pytest.importorskip("socketio")

EVIL = "evil.example"
OTLP_JSON = {
    "resourceSpans": [
        {"scopeSpans": [{"spans": [{
            "traceId": "7" * 32, "spanId": "8" * 16, "name": "injected",
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000000001000",
        }]}]}
    ]
}  # fmt: skip
REGISTER = {"id": "run-from-elsewhere", "project": "p", "name": "n", "pid": 1}


def settings_of(tmp_path: Path, **env: str) -> dict[str, Any]:
    """Settings as a fresh `manage.py` process reads them from the environment."""
    full_env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path), **env}
    for name in ("SECRET_KEY", "STUDIO_ALLOWED_HOSTS", "ALLOWED_HOSTS", "STUDIO_HOST"):
        if name not in env:
            full_env.pop(name, None)
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k) "
        "for k in ('SECRET_KEY', 'ALLOWED_HOSTS', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE')}))"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# The Host check.


@pytest.mark.django_db
def test_a_rebinding_request_is_refused_on_pages_the_api_and_ingest(client: Client) -> None:
    assert client.get("/traces/", HTTP_HOST=EVIL).status_code == 400
    assert client.get("/api/traces/", HTTP_HOST=f"{EVIL}:3000").status_code == 400
    response = client.post(
        "/v1/traces", json.dumps(OTLP_JSON), content_type="application/json", HTTP_HOST=EVIL
    )
    assert response.status_code == 400
    response = client.post(
        "/trpc/registerRun", json.dumps(REGISTER), content_type="application/json", HTTP_HOST=EVIL
    )
    assert response.status_code == 400
    assert not Span.objects.exists() and not Trace.objects.exists() and not Run.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("host", ["localhost:3000", "127.0.0.1:3000", "[::1]:3000", "localhost"])
def test_loopback_names_are_served(client: Client, host: str) -> None:
    assert client.get("/api/traces/", HTTP_HOST=host).status_code == 200
    # An empty export: the Host check is what is under test, not the writer.
    response = client.post("/v1/traces", "{}", content_type="application/json", HTTP_HOST=host)
    assert response.status_code == 200


def test_the_allowed_hosts_follow_the_bound_address_and_the_setting() -> None:
    assert security.allowed_hosts("127.0.0.1", []) == ["localhost", "127.0.0.1", "[::1]"]
    assert security.allowed_hosts("10.1.2.3", ["studio.example", "::1", "Team.Example"]) == [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "10.1.2.3",
        "studio.example",
        "team.example",
    ]
    assert "[fd00::5]" in security.allowed_hosts("fd00::5", [])
    everywhere = security.allowed_hosts("0.0.0.0", [])
    assert socket.gethostname().lower() in everywhere
    assert "*" not in everywhere and "0.0.0.0" not in everywhere


def test_studio_allowed_hosts_and_the_old_allowed_hosts_are_read(tmp_path: Path) -> None:
    default = settings_of(tmp_path)
    assert default["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]
    configured = settings_of(
        tmp_path,
        STUDIO_HOST="10.1.2.3",
        STUDIO_ALLOWED_HOSTS="studio.example, .team.example",
        ALLOWED_HOSTS="old.example",
    )
    assert configured["ALLOWED_HOSTS"] == [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "10.1.2.3",
        "studio.example",
        ".team.example",
        "old.example",
    ]


# Websockets and Socket.IO: Origin against the allowed hosts.


def ws_attempt(host: str, origin: str | None) -> str:
    async def attempt() -> str:
        headers = [(b"host", host.encode())]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        outcome = await WebsocketCommunicator("/ws/traces/", headers).connect()
        return outcome.removeprefix("websocket.")

    return async_to_sync(attempt)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("host", "origin", "outcome"),
    [
        ("localhost:3000", "http://localhost:3000", "accept"),
        # Another allowed name of the same Studio: the Host header is not the measure.
        ("127.0.0.1:3000", "http://localhost:3000", "accept"),
        ("localhost:3000", None, "accept"),  # not a browser
        # A rebinding page: its Origin matches its Host, but neither is Studio's.
        (f"{EVIL}:3000", f"http://{EVIL}:3000", "close"),
        (f"{EVIL}:3000", None, "close"),
        ("localhost:3000", f"https://{EVIL}", "close"),
        # Another server's page on this machine.
        ("localhost:3000", "http://localhost:8080", "close"),
        ("localhost:3000", "null", "close"),
    ],
)
def test_the_websocket_checks_origin_against_the_allowed_hosts(
    host: str, origin: str | None, outcome: str
) -> None:
    assert ws_attempt(host, origin) == outcome


@pytest.mark.django_db(transaction=True)
def test_a_trusted_origin_may_open_the_websocket(settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://studio.example"]
    assert ws_attempt("localhost:3000", "https://studio.example") == "accept"


# /trpc takes JSON only.


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_cross_site_trpc_post_is_refused_and_stores_nothing(
    client: Client, content_type: str
) -> None:
    # What `fetch(url, {method: "POST", mode: "no-cors", body: JSON.stringify(...)})` sends.
    response = client.post(
        "/trpc/registerRun",
        json.dumps(REGISTER),
        content_type=content_type,
        HTTP_ORIGIN=f"https://{EVIL}",
        HTTP_SEC_FETCH_SITE="cross-site",
    )
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "UNSUPPORTED_MEDIA_TYPE" and "application/json" in error["message"]
    assert not any(name.lower().startswith("access-control-") for name in response.headers)
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_trpc_grants_no_preflight(client: Client) -> None:
    response = client.options(
        "/trpc/registerRun",
        HTTP_ORIGIN=f"https://{EVIL}",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type",
    )
    assert response.status_code == 405
    assert not any(name.lower().startswith("access-control-") for name in response.headers)


@pytest.mark.django_db
def test_json_with_a_charset_is_json(client: Client) -> None:
    response = client.post(
        "/trpc/registerRun", json.dumps(REGISTER), content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 200
    assert Run.objects.get().id == REGISTER["id"]


# Security headers.


def assert_security_headers(headers: Any) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
def test_pages_the_api_and_ingest_send_the_security_headers(client: Client) -> None:
    responses = [
        client.get("/traces/"),
        client.get("/api/traces/"),
        client.post("/v1/traces", "{}", content_type="application/json"),
        client.post("/trpc/registerRun", "{}", content_type="text/plain"),
    ]
    for response in responses:
        assert_security_headers(response.headers)
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp


@pytest.mark.django_db
def test_cookies_are_secure_when_asked(client: Client, settings: Any) -> None:
    assert not client.get("/traces/").cookies["csrftoken"]["secure"]
    settings.CSRF_COOKIE_SECURE = True
    assert client.get("/traces/").cookies["csrftoken"]["secure"]


def test_studio_secure_cookies_sets_both_cookies_secure(tmp_path: Path) -> None:
    on = settings_of(tmp_path, STUDIO_SECURE_COOKIES="on")
    assert on["SESSION_COOKIE_SECURE"] is True and on["CSRF_COOKIE_SECURE"] is True
    off = settings_of(tmp_path)
    assert off["SESSION_COOKIE_SECURE"] is False and off["CSRF_COOKIE_SECURE"] is False


# The secret key.


def test_the_secret_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    key = security.stored_secret_key(tmp_path)
    assert len(key) >= 50
    assert security.stored_secret_key(tmp_path) == key
    path = tmp_path / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no candidates left behind
    assert security.stored_secret_key(tmp_path / "other") != key


def test_processes_starting_together_agree_on_the_key(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from studio.security import "
        "stored_secret_key; time.sleep(max(0, float(sys.argv[1]) - time.time())); "
        "print(stored_secret_key(Path(sys.argv[2])))"
    )
    start = str(time.time() + 1.5)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": ""}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, start, str(tmp_path / "data")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    keys = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert len(keys) == 1 and "" not in keys
    assert keys == {(tmp_path / "data" / "secret_key").read_text().strip()}


def test_settings_use_the_stored_key_unless_secret_key_is_set(tmp_path: Path) -> None:
    first = settings_of(tmp_path)["SECRET_KEY"]
    assert first == (tmp_path / "secret_key").read_text().strip()
    assert settings_of(tmp_path)["SECRET_KEY"] == first
    elsewhere = tmp_path / "elsewhere"
    assert settings_of(elsewhere, SECRET_KEY="k" * 50)["SECRET_KEY"] == "k" * 50
    assert not (elsewhere / "secret_key").exists()


# A real runstudio.


def polling(server: StudioServer, **headers: str) -> requests.Response:
    return requests.get(
        f"{server.url}/socket.io/?EIO=4&transport=polling", headers=headers, timeout=10
    )


@pytest.mark.server
def test_runstudio_refuses_other_hosts_everywhere(studio_server: StudioServer) -> None:
    from websocket import WebSocketBadStatusException, create_connection

    url = studio_server.url
    port = studio_server.port
    for path in ("/traces/", "/api/traces/", "/healthz"):
        response = requests.get(f"{url}{path}", headers={"Host": EVIL}, timeout=10)
        assert response.status_code == 400, path
        assert_security_headers(response.headers)
    trace_id = "9" * 32
    body = json.loads(json.dumps(OTLP_JSON).replace("7" * 32, trace_id))
    for path, payload in (("/v1/traces", body), ("/trpc/registerRun", REGISTER)):
        response = requests.post(f"{url}{path}", json=payload, headers={"Host": EVIL}, timeout=10)
        assert response.status_code == 400, path
    # Socket.IO and the websocket bypass Django: the same check stands in front of them.
    assert polling(studio_server, Host=f"{EVIL}:{port}").status_code == 400
    with pytest.raises(WebSocketBadStatusException):
        create_connection(f"ws://127.0.0.1:{port}/ws/traces/", host=f"{EVIL}:{port}", timeout=10)
    with pytest.raises(WebSocketBadStatusException):
        create_connection(
            f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket",
            host=f"{EVIL}:{port}",
            timeout=10,
        )
    assert requests.get(f"{url}/api/traces/{trace_id}/", timeout=10).status_code == 404
    assert requests.get(f"{url}/api/runs/{REGISTER['id']}/", timeout=10).status_code == 404

    # What the exporters and agentscope send: the name or address they connect to.
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        page = requests.get(f"{url}/traces/", headers={"Host": host}, timeout=10)
        assert page.ok
        assert_security_headers(page.headers)  # once each, not also added by the ASGI guard
    ws = create_connection(f"ws://127.0.0.1:{port}/ws/traces/", host=f"localhost:{port}")
    ws.close()


@pytest.mark.server
def test_an_otlp_exporter_sending_to_localhost_is_served(studio_server: StudioServer) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "via-localhost"}))
    exporter = OTLPSpanExporter(endpoint=f"http://localhost:{studio_server.port}/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("to localhost") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    assert studio_server.wait_for_trace(trace_id, 1)["service_name"] == "via-localhost"


@pytest.mark.server
def test_runstudio_bound_everywhere_answers_to_the_machine_and_the_setting(
    fresh_studio: Any,
) -> None:
    server = fresh_studio(STUDIO_HOST="0.0.0.0", STUDIO_ALLOWED_HOSTS="studio.example")
    port = server.port
    for host in (f"studio.example:{port}", f"{socket.gethostname()}:{port}", f"localhost:{port}"):
        response = requests.get(f"{server.url}/api/traces/", headers={"Host": host}, timeout=10)
        # Bound to every interface, Studio signs in by default: an anonymous API call gets 401,
        # past the Host check (which answers 400).
        assert response.status_code == 401, host
    response = requests.get(f"{server.url}/api/traces/", headers={"Host": EVIL}, timeout=10)
    assert response.status_code == 400


@pytest.mark.server
def test_socketio_checks_a_browsers_origin_against_the_allowed_hosts(
    studio_server: StudioServer,
) -> None:
    port = studio_server.port
    # A rebinding page: Origin and Host agree, and name another site.
    rebound = polling(studio_server, Host=f"{EVIL}:{port}", Origin=f"http://{EVIL}:{port}")
    assert rebound.status_code == 400
    foreign = polling(studio_server, Origin=f"https://{EVIL}")
    assert foreign.status_code == 400
    assert not any(name.lower().startswith("access-control-") for name in foreign.headers)
    # Studio's own page under another of its names.
    own = polling(studio_server, Origin=f"http://localhost:{port}")
    assert own.status_code == 200
    assert_security_headers(own.headers)
    # The agentscope application sends no Origin.
    assert polling(studio_server).status_code == 200

    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(
            studio_server.url,
            namespaces=["/python"],
            auth={"run_id": "from-a-page"},
            headers={"Origin": f"https://{EVIL}"},
            wait_timeout=5,
        )
    client.disconnect()


@pytest.mark.server
def test_a_second_socket_cannot_take_a_run_over(studio_server: StudioServer) -> None:
    run_id = f"owned-{time.monotonic_ns()}"
    registered = requests.post(
        f"{studio_server.url}/trpc/registerRun",
        json={"id": run_id, "project": "studio-tests", "name": "owned", "pid": 1},
        timeout=10,
    )
    assert registered.status_code == 200
    owner = socketio.Client(reconnection=False)
    owner.connect(studio_server.url, namespaces=["/python"], auth={"run_id": run_id})
    intruder = socketio.Client(reconnection=False)
    try:
        wait_for(lambda: run_of(studio_server, run_id)["connected"], "the connection")
        with pytest.raises(socketio.exceptions.ConnectionError):
            intruder.connect(
                studio_server.url, namespaces=["/python"], auth={"run_id": run_id}, wait_timeout=5
            )
        intruder.disconnect()
        # The owner keeps the run, and the refusal did not finish it.
        assert owner.connected and owner.get_sid("/python")
        assert run_of(studio_server, run_id)["status"] == "running"
    finally:
        owner.disconnect()
    wait_for(lambda: run_of(studio_server, run_id)["status"] == "finished", "the run to finish")
    # Once the owner has gone, the run may connect again (an application that reconnects).
    again = socketio.Client(reconnection=False)
    again.connect(studio_server.url, namespaces=["/python"], auth={"run_id": run_id})
    try:
        wait_for(lambda: run_of(studio_server, run_id)["status"] == "running", "the reconnection")
    finally:
        again.disconnect()
