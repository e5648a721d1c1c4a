"""The OTLP/HTTP receiver: speaks the protocol (status codes, protobuf or JSON bodies), not pages.

https://opentelemetry.io/docs/specs/otlp/#otlphttp
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from google.rpc import status_pb2

from accounts.keys import KeyDenied, aproject_for_key, key_from_headers
from ingest import otlp, workers, writer
from ingest.writer import (
    WORKER_DECODE_BYTES,
    Busy,
    DatabaseUnavailable,
    Reservation,
    Unavailable,
    decoded_size,
    get_decode_budget,
)

logger = logging.getLogger(__name__)


def _announced_length(request: HttpRequest) -> int:
    """The body's Content-Length, or 0 if it is not announced (chunked)."""
    value = request.META.get("CONTENT_LENGTH", "")
    return int(value) if value.isdigit() else 0


RETRY_AFTER_SECONDS = 2
# How long a body waits for room in the decode budget before it is answered 503.
BUDGET_WAIT_SECONDS = 1.0
BUDGET_POLL_SECONDS = 0.02
# Bodies above this are decoded off the event loop (in a worker process, waited for in a thread)
# so that they do not stall pages and health checks; smaller ones are cheaper decoded inline.
INLINE_DECODE_BYTES = WORKER_DECODE_BYTES


_decode_threads: ThreadPoolExecutor | None = None


def _decoders() -> ThreadPoolExecutor:
    """The threads that wait for a decoding process and make its rows into records: as many as
    asyncio.to_thread has, at ingest's lower priority (STUDIO_INGEST_NICENESS)."""
    global _decode_threads
    if _decode_threads is None:
        _decode_threads = ThreadPoolExecutor(
            min(32, (os.cpu_count() or 1) + 4),
            thread_name_prefix="otlp-decode",
            initializer=workers.lower_priority,
            initargs=(settings.STUDIO_INGEST_NICENESS,),
        )
    return _decode_threads


async def _reserve(size: int) -> Reservation:
    """A reservation of the decode budget, waiting a moment for one to come free: an exporter
    told 503 would send the whole body again."""
    budget = get_decode_budget()
    deadline = time.monotonic() + BUDGET_WAIT_SECONDS
    while True:
        try:
            return budget.reserve(size)
        except Busy:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(BUDGET_POLL_SECONDS)


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
    except (OperationalError, InterfaceError):
        # The key could not be looked up (the database restarting): a 503, which exporters retry.
        return _error(
            503,
            "the database is unavailable; retry",
            content_type,
            Retry_After=str(RETRY_AFTER_SECONDS),
        )
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
    try:
        # Charged before the body is read off the spool (to disk past a few MB), so that bodies
        # refused for want of memory never come into it.
        reservation = await _reserve(decoded_size(_announced_length(request)))
        with reservation:
            # Not `request.body`, which loads a body of any size into memory before we can refuse
            # it.
            body = request.read(limit + 1)
            if len(body) > limit:
                return _error(413, f"body is over the limit of {limit} bytes", content_type)
            body = otlp.decompress(body, request.headers.get("Content-Encoding", ""), limit)
            reservation.resize(decoded_size(len(body)))
            if len(body) > INLINE_DECODE_BYTES:
                batch = await asyncio.get_running_loop().run_in_executor(
                    _decoders(), writer.decode, body, content_type
                )
            else:
                batch = writer.decode(body, content_type)
            batch.set_project(await lookup)  # KeyDenied: a wrong key queues nothing
            # Queued before the reservation goes: from here the queue's bound holds the records.
            future = writer.get_writer().submit(batch.records)
            # ...and only the queue: the writer frees them as it commits, not once this request
            # gets its turn again (under load, new bodies are admitted in between).
            spans, batch.records = len(batch.records), []
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
        refused = await asyncio.wait_for(
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
        logger.exception("storing %d spans failed", spans)
        return _error(500, "storing the spans failed; see the Studio log", content_type)
    batch.count_refused(refused)
    return HttpResponse(otlp.encode_response(batch, content_type), content_type=content_type)
