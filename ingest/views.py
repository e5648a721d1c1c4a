"""The OTLP/HTTP receiver: speaks the protocol (status codes, protobuf or JSON bodies), not pages.

https://opentelemetry.io/docs/specs/otlp/#otlphttp
"""

from __future__ import annotations

import asyncio
import json
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from google.rpc import status_pb2

from accounts.keys import KeyDenied, aproject_for_key, key_from_headers
from ingest import otlp, writer
from ingest.writer import DatabaseUnavailable, Unavailable

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
# Bodies above this are decoded in a thread so that one huge request does not stall the event
# loop (pages, health checks) for its whole decode; smaller ones are cheaper decoded inline.
INLINE_DECODE_BYTES = 1_000_000


def _error(status: int, message: str, content_type: str, **headers: str) -> HttpResponse:
    # OTLP asks for a google.rpc.Status body in the request's encoding.
    if content_type == otlp.PROTOBUF:
        body = status_pb2.Status(code=status, message=message).SerializeToString()
    else:
        content_type = otlp.JSON
        body = json.dumps({"code": status, "message": message}).encode()
    response = HttpResponse(body, status=status, content_type=content_type)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@csrf_exempt
@require_POST
async def export_traces(request: HttpRequest) -> HttpResponse:
    content_type = request.content_type or ""
    raw_key = key_from_headers(request.headers)
    lookup: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    if raw_key is None:
        if settings.STUDIO_AUTH == "login":
            # No key at all: refused before the body is read or decoded.
            return _unauthenticated(
                "an ingest key is required: send Authorization: Bearer <key>", content_type
            )
        lookup.set_result(None)
    else:
        # Looked up while the body decodes (it costs a thread hop); nothing is queued before
        # the key is known good.
        lookup = asyncio.ensure_future(aproject_for_key(raw_key))
    try:
        response = await _export(request, content_type, lookup)
        if response.status_code in (400, 413, 415):
            await lookup  # a bad key outranks a bad body
        return response
    except KeyDenied as exc:
        return _unauthenticated(str(exc), content_type)
    finally:
        if not lookup.done():
            lookup.cancel()


def _unauthenticated(message: str, content_type: str) -> HttpResponse:
    return _error(401, message, content_type, WWW_Authenticate='Bearer realm="studio"')


async def _export(
    request: HttpRequest, content_type: str, lookup: asyncio.Future[str | None]
) -> HttpResponse:
    if content_type not in (otlp.PROTOBUF, otlp.JSON):
        return _error(
            415,
            f"unsupported content type {content_type!r}: send {otlp.PROTOBUF} or {otlp.JSON}",
            otlp.JSON,
        )
    limit = settings.STUDIO_MAX_BODY_BYTES
    # Not `request.body`, which loads a body of any size into memory before we can refuse it.
    body = request.read(limit + 1)
    if len(body) > limit:
        return _error(413, f"body is over the limit of {limit} bytes", content_type)
    try:
        body = otlp.decompress(body, request.headers.get("Content-Encoding", ""), limit)
        if len(body) > INLINE_DECODE_BYTES:
            batch = await asyncio.to_thread(writer.decode, body, content_type)
        else:
            batch = writer.decode(body, content_type)
        batch.set_project(await lookup)  # KeyDenied: a wrong key queues nothing
        future = writer.get_writer().submit(batch.records)
    except Unavailable as exc:
        return _error(503, str(exc), content_type, Retry_After=str(RETRY_AFTER_SECONDS))
    except otlp.BodyTooLarge as exc:
        return _error(413, str(exc), content_type)
    except otlp.UnsupportedEncoding as exc:
        return _error(415, str(exc), content_type)
    except otlp.DecodeError as exc:
        return _error(400, str(exc), content_type)
    # Only the records wait for the writer, not the body they came from.
    del body

    try:
        # Shielded: a timeout must not cancel the write, only stop waiting for it.
        await asyncio.wait_for(
            asyncio.shield(asyncio.wrap_future(future)), settings.STUDIO_WRITE_TIMEOUT
        )
    except TimeoutError:
        # Still queued: it will be committed, and a retried duplicate is ignored.
        return _error(503, "the database is busy; retry", content_type, Retry_After="5")
    except DatabaseUnavailable:
        # Nothing was stored, and the failure may pass: exporters retry 503, never 500.
        return _error(
            503,
            "the database is unavailable; retry",
            content_type,
            Retry_After=str(RETRY_AFTER_SECONDS),
        )
    except Exception:
        logger.exception("storing %d spans failed", len(batch.records))
        return _error(500, "storing the spans failed; see the Studio log", content_type)
    return HttpResponse(otlp.encode_response(batch, content_type), content_type=content_type)
