"""What a trace is: the spans as they arrived, and one summary row per trace derived from them.

Span rows keep the whole OTLP span (ids as lowercase hex, times as integer nanoseconds, the
structured parts as JSON text) plus the few columns that lists and filters need. The narrow columns
come first and the JSON bodies last: SQLite stores a row in column order, so summaries and lists
that read only the narrow columns never touch the overflow pages holding the bodies.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.db import models

from tracing import conventions

STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2
STATUS_NAMES = {STATUS_UNSET: "UNSET", STATUS_OK: "OK", STATUS_ERROR: "ERROR"}
STATUS_CODES = {name: code for code, name in STATUS_NAMES.items()}

KIND_NAMES = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def ns_to_datetime(ns: int | None) -> datetime | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def datetime_to_ns(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000) * 1000


class TraceQuerySet(models.QuerySet["Trace"]):
    def matching(
        self,
        *,
        q: str = "",
        service: str = "",
        status: str = "",
        since_ns: int | None = None,
        until_ns: int | None = None,
        min_duration_ns: int | None = None,
        conversation_id: str = "",
    ) -> TraceQuerySet:
        """The overview's filters, shared by the page and the API."""
        qs = self
        q = q.strip()
        if q:
            lowered = q.lower()
            if len(lowered) == 32 and all(c in "0123456789abcdef" for c in lowered):
                qs = qs.filter(models.Q(trace_id=lowered) | models.Q(name__icontains=q))
            else:
                qs = qs.filter(name__icontains=q)
        if service:
            qs = qs.filter(service_name=service)
        if status:
            qs = qs.filter(status_code=STATUS_CODES[status.upper()])
        if since_ns is not None:
            qs = qs.filter(start_ns__gte=since_ns)
        if until_ns is not None:
            qs = qs.filter(start_ns__lt=until_ns)
        if min_duration_ns is not None:
            qs = qs.filter(duration_ns__gte=min_duration_ns)
        if conversation_id:
            qs = qs.filter(conversation_id=conversation_id)
        return qs

    def services(self) -> list[str]:
        return list(
            self.order_by("service_name").values_list("service_name", flat=True).distinct()
        )


class Trace(models.Model):
    """The summary of a trace, recomputed from its spans after every batch that touches it."""

    trace_id = models.CharField(max_length=32, primary_key=True)
    name = models.TextField(default="")
    root_span_id = models.CharField(max_length=16, default="")
    # False until the span without a parent arrives; until then `name` is the earliest span's.
    has_root = models.BooleanField(default=False)
    span_type = models.CharField(max_length=16, default="")
    service_name = models.TextField(default="")
    start_ns = models.BigIntegerField()
    end_ns = models.BigIntegerField()
    duration_ns = models.BigIntegerField()
    span_count = models.IntegerField(default=0)
    error_count = models.IntegerField(default=0)
    status_code = models.SmallIntegerField(default=STATUS_UNSET)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    conversation_id = models.TextField(default="")
    input_preview = models.TextField(default="")

    objects = TraceQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["-start_ns", "-trace_id"], name="trace_start_idx"),
            models.Index(fields=["service_name", "-start_ns"], name="trace_service_idx"),
            models.Index(fields=["status_code", "-start_ns"], name="trace_status_idx"),
            models.Index(fields=["-duration_ns", "-trace_id"], name="trace_duration_idx"),
            models.Index(fields=["-span_count", "-trace_id"], name="trace_span_count_idx"),
            models.Index(fields=["-total_tokens", "-trace_id"], name="trace_tokens_idx"),
            models.Index(fields=["conversation_id", "start_ns"], name="trace_conversation_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.trace_id})"

    @property
    def status(self) -> str:
        return STATUS_NAMES.get(self.status_code, "UNSET")

    @property
    def start_time(self) -> datetime | None:
        return ns_to_datetime(self.start_ns)

    @property
    def end_time(self) -> datetime | None:
        return ns_to_datetime(self.end_ns)

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6


class SpanQuerySet(models.QuerySet["Span"]):
    def for_trace(self, trace_id: str) -> SpanQuerySet:
        return self.filter(trace_id=trace_id).order_by("start_ns", "span_id")


class Span(models.Model):
    id = models.BigAutoField(primary_key=True)
    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, default="", blank=True)
    start_ns = models.BigIntegerField()
    end_ns = models.BigIntegerField()
    kind = models.SmallIntegerField(default=0)
    status_code = models.SmallIntegerField(default=STATUS_UNSET)
    span_type = models.CharField(max_length=16, default="")
    operation = models.CharField(max_length=64, default="")
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    flags = models.BigIntegerField(default=0)
    dropped_attributes_count = models.IntegerField(default=0)
    dropped_events_count = models.IntegerField(default=0)
    dropped_links_count = models.IntegerField(default=0)
    name = models.TextField(default="")
    service_name = models.TextField(default="")
    model = models.TextField(default="")
    label = models.TextField(default="")
    conversation_id = models.TextField(default="")
    input_preview = models.TextField(default="")
    status_message = models.TextField(default="")
    trace_state = models.TextField(default="")
    # JSON documents, kept as text: written once by the writer, parsed only when shown.
    attributes_json = models.TextField(default="{}")
    events_json = models.TextField(default="[]")
    links_json = models.TextField(default="[]")
    resource_json = models.TextField(default="{}")
    scope_json = models.TextField(default="{}")

    objects = SpanQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["trace_id", "span_id"], name="span_trace_span_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.trace_id}/{self.span_id})"

    @property
    def attributes(self) -> dict[str, Any]:
        return json.loads(self.attributes_json)

    @property
    def events(self) -> list[dict[str, Any]]:
        return json.loads(self.events_json)

    @property
    def links(self) -> list[dict[str, Any]]:
        return json.loads(self.links_json)

    @property
    def resource(self) -> dict[str, Any]:
        return json.loads(self.resource_json)

    @property
    def scope(self) -> dict[str, Any]:
        return json.loads(self.scope_json)

    @property
    def status(self) -> str:
        return STATUS_NAMES.get(self.status_code, "UNSET")

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, "UNSPECIFIED")

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def start_time(self) -> datetime | None:
        return ns_to_datetime(self.start_ns)

    @property
    def end_time(self) -> datetime | None:
        return ns_to_datetime(self.end_ns)

    @property
    def type_label(self) -> str:
        return self.span_type or conventions.OTHER
