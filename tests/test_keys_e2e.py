"""Ingest keys against a real `runstudio` with STUDIO_AUTH=login: the three HTTP forms, the
official gRPC exporter's headers, and wrong or revoked keys (401 / UNAUTHENTICATED, nothing
stored). Keys and users come from the management commands, as an operator makes them."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.conftest import ROOT, StudioServer, export_one_span, start_studio

pytestmark = pytest.mark.server

PB = {"Content-Type": "application/x-protobuf"}


def manage(server: StudioServer, *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=server.env,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    server, cleanup = start_studio(tmp_path_factory.mktemp("login"), {"STUDIO_AUTH": "login"})
    try:
        manage(
            server,
            "adduser",
            "reader",
            "--role",
            "viewer",
            "--password-stdin",
            stdin="pw-9x!long\n",
        )
        yield {
            "server": server,
            "ingest": manage(server, "apikey", "create", "--project", "team-a", "--name", "ci"),
            "read": manage(server, "apikey", "create", "--user", "reader"),
        }
    finally:
        server.stop()
        cleanup()


def new_trace_id() -> str:
    return f"{random.getrandbits(128):032x}"


def body(trace_id: str) -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes.fromhex(trace_id)
    span.span_id = random.getrandbits(64).to_bytes(8, "big")
    span.name = "keyed"
    span.start_time_unix_nano = time.time_ns()
    span.end_time_unix_nano = span.start_time_unix_nano + 1000
    return request.SerializeToString()


def stored(secured: dict[str, Any], trace_id: str, wait: float = 0.0) -> bool:
    server: StudioServer = secured["server"]
    headers = {"Authorization": f"Bearer {secured['read']}"}
    deadline = time.monotonic() + wait
    while True:
        response = requests.get(f"{server.url}/api/traces/{trace_id}/", headers=headers, timeout=30)
        assert response.status_code in (200, 404), response.status_code
        if response.status_code == 200 or time.monotonic() >= deadline:
            return response.status_code == 200
        time.sleep(0.05)


def project_of(secured: dict[str, Any], trace_id: str) -> str:
    server: StudioServer = secured["server"]
    headers = {"Authorization": f"Bearer {secured['read']}"}
    response = requests.get(f"{server.url}/api/traces/{trace_id}/", headers=headers, timeout=30)
    return response.json()["project"]


@pytest.mark.parametrize("form", ["bearer", "x-api-key", "url-basic"])
def test_each_http_form_of_the_key_is_accepted(secured: dict[str, Any], form: str) -> None:
    server: StudioServer = secured["server"]
    key, trace_id = secured["ingest"], new_trace_id()
    url = f"{server.url}/v1/traces"
    headers = dict(PB)
    if form == "bearer":
        headers["Authorization"] = f"Bearer {key}"
    elif form == "x-api-key":
        headers["X-API-Key"] = key
    else:
        # What agentscope does with studio_url="http://studio:<key>@host:3000".
        url = f"http://studio:{key}@127.0.0.1:{server.port}/v1/traces"
    response = requests.post(url, data=body(trace_id), headers=headers, timeout=30)
    assert response.status_code == 200
    assert stored(secured, trace_id)
    assert project_of(secured, trace_id) == "team-a"  # the key's project


def test_the_official_http_exporter_sends_its_key_in_headers(secured: dict[str, Any]) -> None:
    server: StudioServer = secured["server"]
    exporter = HttpExporter(
        endpoint=f"{server.url}/v1/traces", headers={"Authorization": f"Bearer {secured['ingest']}"}
    )
    trace_id = export_one_span(exporter, "keyed", "http keyed")
    assert stored(secured, trace_id, wait=10)


def test_the_official_grpc_exporter_sends_its_key_as_metadata(secured: dict[str, Any]) -> None:
    server: StudioServer = secured["server"]
    exporter = GrpcExporter(
        endpoint=server.grpc_endpoint,
        insecure=True,
        headers={"authorization": f"Bearer {secured['ingest']}"},
    )
    trace_id = export_one_span(exporter, "keyed", "grpc keyed")
    assert stored(secured, trace_id, wait=10)
    assert project_of(secured, trace_id) == "team-a"


@pytest.mark.parametrize("key", [None, "studio_wrong", "read"])
def test_no_key_a_wrong_key_or_a_read_key_gets_401_and_nothing_stored(
    secured: dict[str, Any], key: str | None
) -> None:
    from google.rpc import status_pb2

    server: StudioServer = secured["server"]
    trace_id = new_trace_id()
    headers = dict(PB)
    if key:
        headers["X-API-Key"] = secured.get(key, key)
    response = requests.post(
        f"{server.url}/v1/traces", data=body(trace_id), headers=headers, timeout=30
    )
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/x-protobuf"
    assert status_pb2.Status.FromString(response.content).code == 401
    json_response = requests.post(
        f"{server.url}/",
        json={},
        headers={k: v for k, v in headers.items() if k != "Content-Type"},
        timeout=30,
    )
    assert json_response.status_code == 401 and json_response.json()["code"] == 401
    assert not stored(secured, trace_id, wait=0.3)


def test_grpc_without_a_good_key_is_unauthenticated(secured: dict[str, Any]) -> None:
    server: StudioServer = secured["server"]
    trace_id = new_trace_id()
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body(trace_id))
    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for metadata in ([], [("authorization", "Bearer studio_wrong")]):
            with pytest.raises(grpc.RpcError) as caught:
                stub.Export(request, metadata=metadata, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not stored(secured, trace_id, wait=0.3)


def test_a_revoked_key_stops_working_at_once(secured: dict[str, Any]) -> None:
    server: StudioServer = secured["server"]
    key = manage(server, "apikey", "create", "--project", "team-b")
    headers = {**PB, "Authorization": f"Bearer {key}"}
    first = new_trace_id()
    assert requests.post(
        f"{server.url}/v1/traces", data=body(first), headers=headers, timeout=30
    ).ok
    manage(server, "apikey", "revoke", key[:12])
    second = new_trace_id()
    response = requests.post(
        f"{server.url}/v1/traces", data=body(second), headers=headers, timeout=30
    )
    assert response.status_code == 401
    assert stored(secured, first) and not stored(secured, second, wait=0.3)


def test_pages_and_the_api_need_sign_in_on_the_server(secured: dict[str, Any]) -> None:
    server: StudioServer = secured["server"]
    assert requests.get(f"{server.url}/api/traces/", timeout=30).status_code == 401
    page = requests.get(f"{server.url}/traces/", timeout=30, allow_redirects=False)
    assert page.status_code == 302 and page.headers["Location"].startswith("/accounts/login/")
    assert requests.get(f"{server.url}/healthz", timeout=30).json() == {"status": "ok"}
    session = requests.Session()
    session.get(f"{server.url}/accounts/login/", timeout=30)
    signed = session.post(
        f"{server.url}/accounts/login/",
        data={
            "username": "reader",
            "password": "pw-9x!long",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=30,
    )
    assert signed.status_code == 200 and signed.url.endswith("/traces/")
    assert session.get(f"{server.url}/api/traces/", timeout=30).status_code == 200


def test_a_public_address_without_sign_in_needs_insecure(tmp_path: Path) -> None:
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path), "STUDIO_AUTH": "none"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "runstudio", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--insecure" in result.stderr


def test_a_bad_studio_auth_stops_studio_with_a_message(tmp_path: Path) -> None:
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path), "STUDIO_AUTH": "yes"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "STUDIO_AUTH must be one of none, login" in result.stderr
