"""The read-only JSON API: traces (summary rows) and one trace with its spans."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from django.http import Http404
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from studio.filters import TraceFilter
from tracing import conventions
from tracing.models import Cursor, Span, Trace, ns_to_datetime


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
    }


def span_to_dict(span: Span) -> dict[str, Any]:
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
        "attributes": span.attributes,
        "events": events,
        "links": span.links,
        "resource": span.resource,
        "scope": span.scope,
        "dropped_attributes_count": span.dropped_attributes_count,
        "dropped_events_count": span.dropped_events_count,
        "dropped_links_count": span.dropped_links_count,
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
        trace_filter = TraceFilter.from_query(request.query_params)
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
                "count": traces.count(),
                "next": link(page.next, None),
                "previous": link(None, page.previous),
                "results": [trace_to_dict(trace) for trace in page.rows],
            }
        )


class TraceDetail(APIView):
    """`GET /api/traces/<trace_id>/`: the summary plus every span, ordered by start."""

    def get(self, request: Request, trace_id: str) -> Response:
        trace_id = trace_id.lower()
        if not conventions.is_hex_id(trace_id, 32):
            raise ValidationError({"trace_id": "must be 32 hexadecimal characters"})
        trace = Trace.objects.filter(trace_id=trace_id).first()
        if trace is None:
            raise Http404("no such trace")
        data = trace_to_dict(trace)
        data["spans"] = [span_to_dict(span) for span in Span.objects.for_trace(trace_id)]
        return Response(data)
