"""Every request path has a body limit, enforced before Django spools a body to disk: OTLP's own
(see test_ingest), the tRPC calls' own, Django's default everywhere else."""

from __future__ import annotations

import json
import select
import socket

import pytest
import requests

from tests.conftest import StudioServer

pytestmark = pytest.mark.server

CHUNK = b"\0" * 65536


def stream_until_answered(server: StudioServer, path: str, most: int) -> tuple[bytes, int]:
    """POST a chunked body of zeros (no Content-Length, as `curl -T /dev/zero` sends) until the
    server answers, at most `most` bytes. Returns the raw response and the bytes sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n"
        while sent < most:
            readable, _, _ = select.select([conn], [], [], 0)
            if readable:
                break
            try:
                conn.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(CHUNK)
        conn.settimeout(30)
        response = b""
        while b"\r\n\r\n" not in response or len(response) < _expected_length(response):
            data = conn.recv(65536)
            if not data:
                break
            response += data
    return response, sent


def _expected_length(response: bytes) -> int:
    head, _, _ = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(response)


def parse(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def test_a_streamed_trpc_body_past_its_limit_gets_413_in_trpc_shape(fresh_studio) -> None:
    server = fresh_studio(STUDIO_MAX_TRPC_BODY_BYTES="1048576")
    response, sent = stream_until_answered(server, "/trpc/pushMessage", 256 * 1024 * 1024)
    status, headers, body = parse(response)
    assert status == 413, response[:300]
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE" and "1048576" in error["message"]
    # Refused as it came, not after the whole stream was spooled to disk.
    assert sent < 32 * 1024 * 1024
    # Studio is still up, and a body within the limit still works.
    ok = requests.post(
        f"{server.url}/trpc/registerRun",
        json={"id": "run-1", "project": "p", "name": "n", "timestamp": "t", "pid": 1},
        timeout=10,
    )
    assert ok.status_code == 200, ok.text


def test_an_announced_trpc_body_past_its_limit_is_refused_before_it_is_read(
    studio_server: StudioServer,
) -> None:
    with socket.create_connection(("127.0.0.1", studio_server.port), timeout=10) as conn:
        conn.sendall(
            b"POST /trpc/pushMessage HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: 10000000000\r\n\r\n"
        )
        # The headers and the body may come in separate segments: read until Studio closes.
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    status, _, body = parse(reply)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_the_default_trpc_limit_admits_a_large_message(studio_server: StudioServer) -> None:
    # Past Django's own 2.5 MB default: an AgentScope message may carry an image.
    content = "x" * (4 * 1024 * 1024)
    body = {
        "runId": "big-run",
        "replyId": "r",
        "replyName": "agent",
        "replyRole": "assistant",
        "msg": {"id": "m1", "name": "agent", "role": "assistant", "content": content},
    }
    requests.post(
        f"{studio_server.url}/trpc/registerRun",
        json={"id": "big-run", "project": "p", "name": "n", "timestamp": "t", "pid": 1},
        timeout=10,
    ).raise_for_status()
    response = requests.post(f"{studio_server.url}/trpc/pushMessage", json=body, timeout=30)
    assert response.status_code == 200, response.text[:300]


@pytest.mark.parametrize("path", ["/traces/delete/", "/api/traces/", "/no/such/page"])
def test_a_streamed_body_elsewhere_gets_413_past_djangos_default(
    studio_server: StudioServer, path: str
) -> None:
    response, sent = stream_until_answered(studio_server, path, 256 * 1024 * 1024)
    status, _, _ = parse(response)
    assert status == 413, response[:300]
    assert sent < 32 * 1024 * 1024
    assert requests.get(f"{studio_server.url}/healthz", timeout=5).status_code == 200
