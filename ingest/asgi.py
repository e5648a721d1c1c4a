"""ASGI-level guard: a body limit on every request path.

Django's ASGI handler spools a whole request body (to disk past a few MB) before any view runs,
so a view's own limit comes too late for a body of gigabytes. This refuses an over-long
Content-Length before reading anything, and bounds a streamed (chunked) body as it arrives:

- OTLP paths (STUDIO_MAX_BODY_BYTES): the body is cut off just past the limit, so the receiver
  sees an oversized body and answers 413 in the request's encoding.
- /trpc/* (STUDIO_MAX_TRPC_BODY_BYTES) and every other path (Django's default): past the limit
  Django is told the client went away, so it drops what it spooled and runs no view, and the guard
  answers 413 itself, in tRPC's error shape on /trpc/*. A cut body could still parse as JSON.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OTLP_PATHS = frozenset({"/", "/v1/traces", "/v1/traces/"})
TRPC_PREFIX = "/trpc/"
# After answering 413 to a body still arriving, the guard reads and drops this much more of it
# (for at most this long) before the connection closes: closing on unread data makes the kernel
# reset the connection, and a client still sending would then lose the 413 it was sent.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 2.0


def limit_request_bodies(app: ASGIApp) -> ASGIApp:
    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in OTLP_PATHS:
            limit = settings.STUDIO_MAX_BODY_BYTES
        elif path.startswith(TRPC_PREFIX):
            limit = settings.STUDIO_MAX_TRPC_BODY_BYTES
        else:
            limit = settings.STUDIO_MAX_OTHER_BODY_BYTES
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                message = f"body of {int(value)} bytes is over the limit of {limit}"
                await _refuse(send, path, message, drain=receive)
                return
        if path in OTLP_PATHS and scope["method"] == "POST":
            await app(scope, _cut_past(receive, limit), send)
        else:
            await _refuse_past(app, scope, receive, send, limit)

    return guarded


def _cut_past(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def bounded_receive() -> Message:
        nonlocal seen
        message = await receive()
        # Past the cut, the rest of the body is read off the wire and dropped: Django expects
        # nothing after the end of the body but a disconnect.
        while message["type"] == "http.request" and seen > limit:
            message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                message = {**message, "more_body": False}
        return message

    return bounded_receive


async def _refuse_past(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int
) -> None:
    seen = 0
    over = False
    started = False

    async def bounded_receive() -> Message:
        nonlocal seen, over
        if over:
            return {"type": "http.disconnect"}
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                over = True
                return {"type": "http.disconnect"}
        return message

    async def tracking_send(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    await app(scope, bounded_receive, tracking_send)
    if over and not started:
        await _refuse(
            send,
            scope["path"],
            f"body is over the limit of {limit} bytes",
            drain=receive,
        )


async def _refuse(send: Send, path: str, message: str, drain: Receive) -> None:
    if path in OTLP_PATHS:
        body = json.dumps({"code": 413, "message": message}).encode()
        content_type = b"application/json"
    elif path.startswith(TRPC_PREFIX):
        body = json.dumps({"error": {"message": message, "code": "PAYLOAD_TOO_LARGE"}}).encode()
        content_type = b"application/json"
    else:
        body = f"Request body too large: {message}\n".encode()
        content_type = b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    # The response goes out whole at once; it is only finished (and the connection closed) once
    # the client has had time to see it.
    await send({"type": "http.response.body", "body": body, "more_body": True})
    try:
        await asyncio.wait_for(_drain(drain), DRAIN_SECONDS)
    except TimeoutError:
        pass
    await send({"type": "http.response.body", "body": b""})


async def _drain(receive: Receive) -> None:
    drained = 0
    while drained < DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        drained += len(message.get("body", b""))
