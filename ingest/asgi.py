"""ASGI-level guard for the OTLP/HTTP receiver.

Django's ASGI handler spools a whole request body (to disk past a few MB) before any view runs,
so the view's own limit comes too late for a body of gigabytes. This refuses an over-long
Content-Length before reading anything, and cuts a chunked body off just past the limit, so the
view sees an oversized body and answers 413.
"""

from __future__ import annotations

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


def limit_otlp_bodies(app: ASGIApp) -> ASGIApp:
    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in OTLP_PATHS:
            await app(scope, receive, send)
            return
        limit = settings.STUDIO_MAX_BODY_BYTES
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _refuse(send, f"body of {int(value)} bytes is over the limit of {limit}")
                return
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

        await app(scope, bounded_receive, send)

    return guarded


async def _refuse(send: Send, message: str) -> None:
    body = json.dumps({"code": 413, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
