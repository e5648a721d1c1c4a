"""Requests passed on between workers (runs/affinity.py) are bounded like Engine.IO's own."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync

from runs import affinity
from runs.sockets import sio


def test_a_forwarded_body_past_engineios_limit_is_refused_before_it_is_held() -> None:
    chunk = b"x" * 65536
    chunks = sio.eio.max_http_buffer_size // len(chunk) + 2
    received = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/socket.io/", "headers": []}
    # Port 9 (discard): nothing may be sent there, the body is refused first.
    async_to_sync(affinity.forward_http)(scope, receive, send, 9)
    assert sent[0]["status"] == 413
    assert received <= chunks
