"""The read-only JSON API: traces (summary rows), one trace with its spans, a trace's analysis
(self times, totals, critical path, cost) and the comparison of two traces."""

from __future__ import annotations

from typing import Any

import orjson
from django import forms
from django.http import Http404, HttpResponse
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tracing import analysis, compare, conventions, costs, selectors
from tracing.models import STATUS_CODES, Span, Trace, datetime_to_ns, ns_to_datetime

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
        "duration_ms": trace.duration_ms,
        "span_count": trace.span_count,
        "error_count": trace.error_count,
        "status": trace.status,
        "input_tokens": trace.input_tokens,
        "output_tokens": trace.output_tokens,
        "root_span_id": trace.root_span_id,
        "span_type": trace.span_type,
        "conversation_id": trace.conversation_id,
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
    attributes = span.attributes
    # None: not a model call, or a model without a price.
    cost_usd = None
    if span.span_type in costs.MODEL_SPAN_TYPES:
        cost_usd = costs.span_cost(attributes, selectors.price_table(), span.model)
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id or None,
        "name": span.name,
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
        "attributes": attributes,
        "events": events,
        "links": span.links,
        "resource": span.resource,
        "scope": span.scope,
        "dropped_attributes_count": span.dropped_attributes_count,
        "dropped_events_count": span.dropped_events_count,
        "dropped_links_count": span.dropped_links_count,
        "cost_usd": cost_usd,
    }


class TraceSerializer(serializers.BaseSerializer):
    def to_representation(self, instance: Trace) -> dict[str, Any]:
        return trace_to_dict(instance)


class TracePagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 1000


class TraceQuery(forms.Form):
    """`/api/traces/` parameters. Django's fields already refuse NUL characters, infinities and
    impossible dates, which the database could not take."""

    q = forms.CharField(required=False)
    service = forms.CharField(required=False)
    status = forms.ChoiceField(required=False, choices=[(name, name) for name in STATUS_CODES])
    since = forms.DateTimeField(required=False)
    until = forms.DateTimeField(required=False)
    min_duration_ms = forms.FloatField(required=False, min_value=0)
    conversation_id = forms.CharField(required=False)
    ordering = forms.ChoiceField(
        required=False,
        choices=[(f"{sign}{key}", "") for key in ORDERINGS for sign in ("", "-")],
    )


class TraceList(ListAPIView):
    """`GET /api/traces/`: summaries, newest first, filtered by `q`, `service`, `status`,
    `since`, `until`, `min_duration_ms`, `conversation_id`, ordered by `ordering`."""

    serializer_class = TraceSerializer
    pagination_class = TracePagination

    def get_queryset(self) -> Any:
        params = self.request.query_params.copy()
        params["status"] = params.get("status", "").upper()  # ok, OK and Ok alike
        query = TraceQuery(params)
        if not query.is_valid():
            raise ValidationError(query.errors)
        data = query.cleaned_data
        min_duration = data["min_duration_ms"]
        qs = Trace.objects.matching(
            q=data["q"],
            service=data["service"],
            status=data["status"],
            since_ns=datetime_to_ns(data["since"]) if data["since"] else None,
            until_ns=datetime_to_ns(data["until"]) if data["until"] else None,
            min_duration_ns=int(min_duration * 1e6) if min_duration is not None else None,
            conversation_id=data["conversation_id"],
        )
        ordering = data["ordering"] or "-start_time"
        prefix = "-" if ordering.startswith("-") else ""
        field = ORDERINGS[ordering.lstrip("-")]
        return qs.order_by(f"{prefix}{field}", f"{prefix}trace_id")


class TraceDetail(APIView):
    """`GET /api/traces/<trace_id>/`: the summary plus every span, ordered by start."""

    def get(self, request: Request, trace_id: str) -> Response:
        trace_id = _trace_id(trace_id, "trace_id")
        trace = Trace.objects.filter(trace_id=trace_id).first()
        if trace is None:
            raise Http404("no such trace")
        data = trace_to_dict(trace)
        spans = [span_to_dict(span) for span in Span.objects.for_trace(trace_id)]
        model_calls = [row for row in spans if row["span_type"] in costs.MODEL_SPAN_TYPES]
        cost = costs.total([row["cost_usd"] for row in model_calls])
        data["cost_usd"] = cost.cost_usd
        data["unpriced_spans"] = cost.unpriced_spans
        data["spans"] = spans
        return Response(data)


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
        comparison = selectors.trace_comparison(ids["a"], ids["b"])
        return _json({"a": ids["a"], "b": ids["b"], **compare.as_dict(comparison)})
