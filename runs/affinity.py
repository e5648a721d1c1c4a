"""Engine.IO sessions stay with the worker that made them, under `runstudio --workers N`.

The workers accept on one shared socket, so a client's next request (a long-poll, the websocket
upgrade that follows the handshake) can reach another worker than the one holding its session,
which does not know it: AgentScope's client then fails to connect. So each worker names its
sessions (`<worker>.<id>`), and a worker that receives a request for another worker's session
passes it on, over that worker's private loopback listener (runstudio binds one per worker). With
one process, or several hosts (a load balancer keeps a client on one host), nothing is passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import parse_qs

import httpx
from websockets.asyncio.client import connect

from studio import security
from studio.runtime import runtime

# Headers that describe one connection, not the request: never passed on.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-accept",
    }
)

_client: httpx.AsyncClient | None = None


def session_id(generate: Any) -> Any:
    """Wraps engine.io's id generator: ids name this worker when there are several."""

    def generate_id() -> str:
        sid = generate()
        return f"{runtime.worker}.{sid}" if runtime.worker_ports else sid

    return generate_id


def owner_port(scope: dict[str, Any]) -> int | None:
    """The private port of the worker holding the session this request names, if another's."""
    if not runtime.worker_ports or scope["type"] not in ("http", "websocket"):
        return None
    if not scope["path"].startswith("/socket.io/"):
        return None
    sid = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("sid", [""])[0]
    worker, dot, _ = sid.partition(".")
    if not dot or not worker.isdigit():
        return None
    index = int(worker)
    if index == runtime.worker or index >= len(runtime.worker_ports):
        return None
    return runtime.worker_ports[index]


def _target(scope: dict[str, Any], port: int, scheme: str) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scheme}://127.0.0.1:{port}{scope['path']}?{query}"


async def forward_http(scope: dict[str, Any], receive: Any, send: Any, port: int) -> None:
    global _client
    from runs.sockets import sio

    # Held in memory before it is passed on: no more than Engine.IO itself would take.
    limit = sio.eio.max_http_buffer_size
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if len(body) > limit:
            await send({"type": "http.response.start", "status": 413, "headers": []})
            await send({"type": "http.response.body", "body": b"payload too large"})
            return
        if not message.get("more_body"):
            break
    if _client is None:
        # Long-polls wait for the session's next packet: no timeout of ours.
        _client = httpx.AsyncClient(timeout=None)
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
    try:
        response = await _client.request(
            scope["method"], _target(scope, port, "http"), headers=headers, content=bytes(body)
        )
    except httpx.HTTPError:
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"worker unavailable"})
        return
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP],
        }
    )
    await send({"type": "http.response.body", "body": response.content})


async def forward_websocket(scope: dict[str, Any], receive: Any, send: Any, port: int) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    received = {k.lower(): v.decode("latin-1") for k, v in scope["headers"]}
    # The next hop sees its own address as Host, so a browser's Origin is checked here, against
    # the Host this request came with (as the Socket.IO server would), and not passed on.
    origin = received.get(b"origin", "")
    if origin and not security.origin_allowed(origin, received.get(b"host", "")):
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in scope["headers"]
        if k.lower() not in HOP_BY_HOP and k.lower() not in (b"host", b"origin")
    ]
    try:
        upstream = await connect(
            _target(scope, port, "ws"), additional_headers=headers, max_size=None
        )
    except Exception:
        await send({"type": "websocket.close", "code": 1011})
        return
    await send({"type": "websocket.accept"})

    async def down() -> None:
        with contextlib.suppress(Exception):
            async for message in upstream:
                key = "bytes" if isinstance(message, bytes) else "text"
                await send({"type": "websocket.send", key: message})
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close"})

    async def up() -> None:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                break
            data = message.get("bytes")
            await upstream.send(data if data is not None else message.get("text", ""))
        await upstream.close()

    tasks = [asyncio.ensure_future(down()), asyncio.ensure_future(up())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await upstream.close()


def route(app: Any) -> Any:
    """`app`, except that requests for another worker's session go to that worker."""

    async def routed(scope: dict[str, Any], receive: Any, send: Any) -> None:
        port = owner_port(scope)
        if port is None:
            await app(scope, receive, send)
        elif scope["type"] == "http":
            await forward_http(scope, receive, send, port)
        else:
            await forward_websocket(scope, receive, send, port)

    return routed
