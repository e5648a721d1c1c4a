"""The read-only JSON API: traces (summary rows) and one trace with its spans."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.http import Http404
from django.utils.dateparse import parse_datetime
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tracing.models import (
    KIND_NAMES,
    STATUS_CODES,
    STATUS_NAMES,
    Span,
    Trace,
    datetime_to_ns,
    ns_to_datetime,
)

ORDERINGS = {
    "start_time": "start_ns",
    "duration_ms": "duration_ns",
    "span_count": "span_count",
    "error_count": "error_count",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "total_tokens": "total_tokens",
    "name": "name",
}


def iso(ns: int) -> str:
    moment = ns_to_datetime(ns)
    assert moment is not None
    return moment.isoformat().replace("+00:00", "Z")


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    return {
        "trace_id": trace.trace_id,
        "name": trace.name,
        "service_name": trace.service_name,
        "start_time": iso(trace.start_ns),
        "end_time": iso(trace.end_ns),
        "duration_ms": trace.duration_ns / 1e6,
        "span_count": trace.span_count,
        "error_count": trace.error_count,
        "status": STATUS_NAMES.get(trace.status_code, "UNSET"),
        "input_tokens": trace.input_tokens,
        "output_tokens": trace.output_tokens,
        "root_span_id": trace.root_span_id,
        "span_type": trace.span_type,
        "conversation_id": trace.conversation_id,
    }


def span_to_dict(span: Span) -> dict[str, Any]:
    resource = json.loads(span.resource_json)
    scope = json.loads(span.scope_json)
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
        for event in json.loads(span.events_json)
    ]
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id or None,
        "name": span.name,
        "kind": KIND_NAMES.get(span.kind, "UNSPECIFIED"),
        "start_time": iso(span.start_ns),
        "end_time": iso(span.end_ns),
        "start_time_unix_nano": span.start_ns,
        "end_time_unix_nano": span.end_ns,
        "duration_ms": (span.end_ns - span.start_ns) / 1e6,
        "status": {
            "code": STATUS_NAMES.get(span.status_code, "UNSET"),
            "message": span.status_message,
        },
        "operation": span.operation,
        "span_type": span.span_type,
        "trace_state": span.trace_state,
        "flags": span.flags,
        "attributes": json.loads(span.attributes_json),
        "events": events,
        "links": json.loads(span.links_json),
        "resource": resource,
        "scope": scope,
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


def _parse_time(value: str, name: str) -> int:
    moment: datetime | None = parse_datetime(value)
    if moment is None:
        raise ValidationError({name: f"{value!r} is not an ISO 8601 date-time"})
    return datetime_to_ns(moment)


class TraceList(ListAPIView):
    """`GET /api/traces/`: summaries, newest first, filtered by `q`, `service`, `status`,
    `since`, `until`, `min_duration_ms`, `conversation_id`, ordered by `ordering`."""

    serializer_class = TraceSerializer
    pagination_class = TracePagination

    def get_queryset(self) -> Any:
        params = self.request.query_params
        status = params.get("status", "")
        if status and status.upper() not in STATUS_CODES:
            raise ValidationError({"status": "must be OK, ERROR or UNSET"})
        min_duration = params.get("min_duration_ms")
        try:
            min_duration_ns = int(float(min_duration) * 1e6) if min_duration else None
        except ValueError:
            raise ValidationError({"min_duration_ms": "must be a number"}) from None
        qs = Trace.objects.matching(
            q=params.get("q", ""),
            service=params.get("service", ""),
            status=status,
            since_ns=_parse_time(params["since"], "since") if params.get("since") else None,
            until_ns=_parse_time(params["until"], "until") if params.get("until") else None,
            min_duration_ns=min_duration_ns,
            conversation_id=params.get("conversation_id", ""),
        )
        ordering = params.get("ordering", "-start_time")
        field = ORDERINGS.get(ordering.lstrip("-"))
        if field is None:
            raise ValidationError({"ordering": f"must be one of {', '.join(ORDERINGS)}"})
        prefix = "-" if ordering.startswith("-") else ""
        return qs.order_by(f"{prefix}{field}", f"{prefix}trace_id")


def _valid_trace_id(trace_id: str) -> str:
    lowered = trace_id.lower()
    if len(lowered) != 32 or any(c not in "0123456789abcdef" for c in lowered):
        raise ValidationError({"trace_id": "must be 32 hexadecimal characters"})
    return lowered


class TraceDetail(APIView):
    """`GET /api/traces/<trace_id>/`: the summary plus every span, ordered by start."""

    def get(self, request: Request, trace_id: str) -> Response:
        trace_id = _valid_trace_id(trace_id)
        trace = Trace.objects.filter(trace_id=trace_id).first()
        if trace is None:
            raise Http404("no such trace")
        data = trace_to_dict(trace)
        data["spans"] = [span_to_dict(span) for span in Span.objects.for_trace(trace_id)]
        return Response(data)
