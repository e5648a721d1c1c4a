"""The read-only JSON API: traces (summary rows), one trace with its spans (streamed), a
trace's spans page by page, a trace's analysis (self times, totals, critical path, cost) and the
comparison of two traces."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import orjson
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpResponse, StreamingHttpResponse
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from studio import projects
from studio.filters import TraceFilter
from tracing import analysis, conventions, selectors
from tracing.models import Cursor, Span, SpanCursor, Trace, ns_to_datetime


def iso(ns: int) -> str:
    moment = ns_to_datetime(ns)
    assert moment is not None
    return moment.isoformat().replace("+00:00", "Z")


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    return {
        "trace_id": trace.trace_id,
        "name": trace.name,
        "display_name": trace.display_name,
        "service_name": trace.service_name,
        "start_time": iso(trace.start_ns),
        "end_time": iso(trace.end_ns),
        "duration_ms": trace.duration_ms,
        "span_count": trace.span_count,
        "error_count": trace.error_count,
        "status": trace.status,
        "input_tokens": trace.input_tokens,
        "output_tokens": trace.output_tokens,
        "root_span_id": trace.root_span_id,
        "span_type": trace.span_type,
        "conversation_id": trace.conversation_id,
        "input_preview": trace.input_preview,
        "output_preview": trace.output_preview,
        "project": trace.project,
        # Stored at ingest (`manage.py reprice` after the prices change); null when there were
        # model calls and none had a price.
        "cost_usd": trace.cost,
        "unpriced_spans": trace.unpriced_spans or 0,
    }


def span_to_dict(span: Span, *, raw: bool = False) -> dict[str, Any]:
    """A span as the API gives it. With `raw`, the stored attributes, links, resource and scope
    are orjson Fragments of their stored text, which orjson copies instead of parsing and
    encoding again (the writer wrote them with orjson: they are valid JSON)."""
    stored = orjson.Fragment if raw else json.loads
    events = [
        {
            "name": event["name"],
            "time": iso(event["time_ns"]) if event.get("time_ns") else None,
            "attributes": event.get("attributes", {}),
            **(
                {"dropped_attributes_count": event["dropped_attributes_count"]}
                if event.get("dropped_attributes_count")
                else {}
            ),
        }
        for event in span.events
    ]
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id or None,
        "name": span.name,
        "display_name": span.display_name,
        "kind": span.kind_name,
        "start_time": iso(span.start_ns),
        "end_time": iso(span.end_ns),
        "start_time_unix_nano": span.start_ns,
        "end_time_unix_nano": span.end_ns,
        "duration_ms": span.duration_ms,
        "status": {
            "code": span.status,
            "message": span.status_message,
        },
        "operation": span.operation,
        "span_type": span.span_type,
        "trace_state": span.trace_state,
        "flags": span.flags,
        "attributes": stored(span.attributes_json),
        "events": events,
        "links": stored(span.links_json),
        "resource": stored(span.resource_json),
        "scope": stored(span.scope_json),
        "dropped_attributes_count": span.dropped_attributes_count,
        "dropped_events_count": span.dropped_events_count,
        "dropped_links_count": span.dropped_links_count,
        # Stored at ingest; None: not a model call, or a model without a price.
        "cost_usd": span.cost_usd,
    }


class TraceSerializer(serializers.BaseSerializer):
    def to_representation(self, instance: Trace) -> dict[str, Any]:
        return trace_to_dict(instance)


class TracePagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 1000


def _limit(value: str | None) -> int:
    """`limit` as DRF's LimitOffsetPagination took it: a bad value means the default."""
    try:
        limit = int(value or "")
    except ValueError:
        return TracePagination.default_limit
    if limit <= 0:
        return TracePagination.default_limit
    return min(limit, TracePagination.max_limit)


class TraceList(APIView):
    """`GET /api/traces/`: summaries, newest first, with the overview's filters and keyset pages
    (studio.filters.TraceFilter: the same parameters, the same paging, the same errors, which
    are a 400 here). `next` and `previous` are cursor URLs; `count` counts every match.

    `offset` is still taken, for clients that count rows themselves: it skips rows before the
    page (an OFFSET scan, slower the deeper it goes), and the links it answers with are cursors.
    """

    def get(self, request: Request) -> Response:
        # `count` counts every match: only a broad search is walked (TraceFilter.every).
        trace_filter = replace(TraceFilter.from_query(request.query_params), every=True)
        if trace_filter.errors:
            raise ValidationError(trace_filter.errors)
        limit = _limit(request.query_params.get("limit"))
        traces = trace_filter.traces()
        page = trace_filter.page(limit, traces)

        def link(after: Cursor | None, before: Cursor | None) -> str | None:
            if after is None and before is None:
                return None
            target = replace(trace_filter, after=after, before=before, offset=0)
            query = urlencode([*target.items(), ("limit", limit)])
            return request.build_absolute_uri(f"{request.path}?{query}")

        return Response(
            {
                "count": trace_filter.count(traces),
                "next": link(page.next, None),
                "previous": link(None, page.previous),
                "results": [trace_to_dict(trace) for trace in page.rows],
            }
        )


class TraceTimeline(APIView):
    """`GET /api/traces/stats/`: the overview's charts for the same filters as `/api/traces/`
    (tracing.timeline): per time bucket the traces, error traces, p50 and p95 duration, tokens
    and cost, and the scatter's points (the slowest of each bucket, at most 2,000). Columns,
    times in Unix seconds, as chart libraries take them."""

    def get(self, request: Request) -> Response:
        trace_filter = replace(TraceFilter.from_query(request.query_params), every=True)
        if trace_filter.errors:
            raise ValidationError(trace_filter.errors)
        line = trace_filter.timeline(trace_filter.traces())
        size = len(line.traces)

        def ms(values: list[int | None]) -> list[float | None]:
            return [None if value is None else value / 1e6 for value in values]

        return Response(
            {
                "count": line.count,
                "start": iso(line.start_ns),
                "end": iso(line.end_ns),
                "bucket_seconds": line.bucket_ns / 1e9,
                "buckets": {
                    "time": [(line.start_ns + i * line.bucket_ns) / 1e9 for i in range(size)],
                    "traces": line.traces,
                    "errors": line.errors,
                    "p50_ms": ms(line.p50_ns),
                    "p95_ms": ms(line.p95_ns),
                    "tokens": line.tokens,
                    "cost_usd": line.cost_usd,
                },
                "points": {
                    "time": [point[0] / 1e9 for point in line.points],
                    "duration_ms": [point[1] / 1e6 for point in line.points],
                    "trace_id": [point[2] for point in line.points],
                    "error": [point[3] for point in line.points],
                },
                "sampled": line.sampled,
            }
        )


class ProjectList(APIView):
    """`GET /api/projects/`: every project, most recently active first, with how many traces
    (and, per app, runs) it has, its cost and when it was last active."""

    def get(self, request: Request) -> Response:
        return Response(
            {
                "results": [
                    {
                        "name": project.name,
                        "trace_count": project.trace_count,
                        # None when there were model calls and none had a price.
                        "cost_usd": project.cost,
                        "unpriced_spans": project.unpriced_spans,
                        **{f"{source}_count": n for source, n in project.counts.items()},
                        "last_activity": (
                            project.last_activity.isoformat().replace("+00:00", "Z")
                            if project.last_activity
                            else None
                        ),
                    }
                    for project in projects.summaries()
                ]
            }
        )


def _trace_or_404(trace_id: str) -> Trace:
    trace_id = trace_id.lower()
    if not conventions.is_hex_id(trace_id, 32):
        raise ValidationError({"trace_id": "must be 32 hexadecimal characters"})
    trace = Trace.objects.filter(trace_id=trace_id).first()
    if trace is None:
        raise Http404("no such trace")
    return trace


def encode_span(span: Span) -> bytes:
    try:
        return orjson.dumps(span_to_dict(span, raw=True))
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits, which an event's attributes may hold; in the
        # middle of a stream the status line is long gone, so an error would only cut the body.
        return json.dumps(span_to_dict(span), ensure_ascii=False).encode()


def encode_spans(spans: list[Span]) -> bytes:
    """Spans as the members of a JSON array (joined by commas, without the brackets)."""
    return b",".join(encode_span(span) for span in spans)


def encoded_chunk(
    trace_id: str, after: SpanCursor | None, limit: int
) -> tuple[bytes, int, SpanCursor | None]:
    """At most `limit` spans after `after`, encoded; how many, and the cursor of the last one.
    Reading and encoding happen together so that under ASGI both run in the request's thread,
    off the event loop."""
    spans = selectors.trace_spans(trace_id, after=after, limit=limit)
    last = (spans[-1].start_ns, spans[-1].span_id) if spans else None
    return encode_spans(spans), len(spans), last


# Spans per query while the detail streams: what the process holds for one reader at a time.
STREAM_CHUNK_SPANS = 1000
# Spans per part of a page's body.
PAGE_PART_SPANS = 100


async def _async_parts(parts: Iterator[bytes]) -> AsyncIterator[bytes]:
    # Each part is made in the request's thread (where its database connection lives), off the
    # event loop.
    step = sync_to_async(next)
    while (part := await step(parts, None)) is not None:
        yield part


def json_stream(request: Request, parts: Iterator[bytes]) -> StreamingHttpResponse:
    """A JSON body sent part by part as it is made, never held whole. Django serves a
    synchronous iterator under ASGI only after collecting it into a list, so under ASGI
    (runstudio) the parts come through an asynchronous one."""
    asgi = isinstance(request._request, ASGIRequest)
    content = _async_parts(parts) if asgi else parts
    return StreamingHttpResponse(content, content_type="application/json")


def _detail_parts(head: bytes, trace_id: str) -> Iterator[bytes]:
    yield head
    after: SpanCursor | None = None
    separator = b""
    while True:
        body, count, after = encoded_chunk(trace_id, after, STREAM_CHUNK_SPANS)
        if count:
            yield separator + body
            separator = b","
        if count < STREAM_CHUNK_SPANS:
            break
    yield b"]}"


def _page_parts(next_url: str | None, spans: list[Span]) -> Iterator[bytes]:
    yield b'{"next":%s,"results":[' % orjson.dumps(next_url)
    for start in range(0, len(spans), PAGE_PART_SPANS):
        part = encode_spans(spans[start : start + PAGE_PART_SPANS])
        yield b"," + part if start else part
    yield b"]}"


class TraceDetail(APIView):
    """`GET /api/traces/<trace_id>/`: the summary plus every span, ordered by start.

    Streamed a chunk of spans per query, so a trace of any size costs the process one chunk."""

    def get(self, request: Request, trace_id: str) -> StreamingHttpResponse:
        trace = _trace_or_404(trace_id)
        # Its cost and unpriced calls are the summary's, stored at ingest.
        data = trace_to_dict(trace)
        # The summary's fields, then the spans: the same document as one json.dumps would give.
        head = orjson.dumps(data)[:-1] + b',"spans":['
        return json_stream(request, _detail_parts(head, trace.trace_id))


SPAN_PAGE_DEFAULT = 1000
SPAN_PAGE_MAX = 10_000
_CURSOR = re.compile(r"(-?[0-9]{1,19})\.([0-9a-f]{16})")
_LIMIT = re.compile(r"[0-9]{1,12}")
_BAD_CURSOR = "not a cursor of this trace's pages: follow the `next` link of the previous page"


def _span_limit(text: str) -> int:
    """`limit`: a whole number from 1; above the maximum it gets the maximum."""
    if not text:
        return SPAN_PAGE_DEFAULT
    if not _LIMIT.fullmatch(text) or int(text) < 1:
        raise ValidationError({"limit": f"must be a whole number from 1 to {SPAN_PAGE_MAX}"})
    return min(int(text), SPAN_PAGE_MAX)


def encode_cursor(cursor: SpanCursor) -> str:
    start_ns, span_id = cursor
    return base64.urlsafe_b64encode(f"{start_ns}.{span_id}".encode()).decode().rstrip("=")


def decode_cursor(token: str) -> SpanCursor:
    """The (start_ns, span_id) a `next` link carries; ValidationError (400) for anything else,
    including a start the database's 64-bit column could not compare with."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise ValidationError({"cursor": _BAD_CURSOR}) from None
    match = _CURSOR.fullmatch(text)
    if match is None or not -(2**63) <= int(match[1]) < 2**63:
        raise ValidationError({"cursor": _BAD_CURSOR})
    return int(match[1]), match[2]


class TraceSpans(APIView):
    """`GET /api/traces/<trace_id>/spans/?cursor=&limit=`: a trace's spans in start order,
    `limit` (default 1000, at most 10,000) at a time, keyset-paged: `next` is the URL of the
    following page, or null after the last."""

    def get(self, request: Request, trace_id: str) -> StreamingHttpResponse:
        trace = _trace_or_404(trace_id)
        token = request.query_params.get("cursor", "")
        after = decode_cursor(token) if token else None
        limit = _span_limit(request.query_params.get("limit", ""))
        # One more than the page, to know whether another follows.
        spans = selectors.trace_spans(trace.trace_id, after=after, limit=limit + 1)
        next_url = None
        if len(spans) > limit:
            del spans[limit:]
            last = spans[-1]
            next_url = replace_query_param(
                request.build_absolute_uri(), "cursor", encode_cursor((last.start_ns, last.span_id))
            )
        # Streamed too: a body kept on the response lives on until the cyclic garbage collector
        # frees the request, which, page after page, costs more than the pages themselves.
        return json_stream(request, _page_parts(next_url, spans))


def _json(data: dict[str, Any]) -> HttpResponse:
    # orjson: these documents run to megabytes at 10,000 spans, and the standard encoder
    # takes longer than building them.
    return HttpResponse(orjson.dumps(data), content_type="application/json")


def _trace_id(value: str, name: str) -> str:
    trace_id = value.lower()
    if not conventions.is_hex_id(trace_id, 32):
        raise ValidationError({name: "must be 32 hexadecimal characters"})
    return trace_id


class TraceAnalysis(APIView):
    """`GET /api/traces/<trace_id>/analysis/`: self time per span, totals per kind of work,
    model, tool and agent, the critical path (root first) and the cost: two queries."""

    def get(self, request: Request, trace_id: str) -> HttpResponse:
        trace_id = _trace_id(trace_id, "trace_id")
        if not Trace.objects.filter(trace_id=trace_id).exists():
            raise Http404("no such trace")
        return _json(analysis.as_dict(selectors.trace_analysis(trace_id)))


class TraceCompare(APIView):
    """`GET /api/traces/compare/?a=<trace_id>&b=<trace_id>`: the two traces' spans aligned by
    path, with a summary and the biggest changes first."""

    def get(self, request: Request) -> HttpResponse:
        ids = {}
        for name in ("a", "b"):
            ids[name] = _trace_id(request.query_params.get(name, ""), name)
        found = set(
            Trace.objects.filter(trace_id__in=ids.values()).values_list("trace_id", flat=True)
        )
        if not set(ids.values()) <= found:
            raise Http404("no such trace")
        document = selectors.comparison_document(ids["a"], ids["b"])
        return _json({"a": ids["a"], "b": ids["b"], **document})
