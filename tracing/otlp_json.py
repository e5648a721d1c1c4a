"""Stored spans back into an OTLP/JSON `ExportTraceServiceRequest`, the format Studio ingests.

Plain Python, no Django: it reads the columns of stored spans (anything with the Span model's
attribute names). Spans are grouped by resource and scope as an exporter would send them; ids are
hex, field names camelCase, 64-bit integers strings, and attribute values typed AnyValues.

What the stored JSON cannot tell apart comes back as its closest type: bytes values were stored
as base64 strings and return as strings, and non-finite doubles were stored as "nan"/"inf"
strings and return as strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol


class StoredSpan(Protocol):
    trace_id: str
    span_id: str
    parent_span_id: str
    trace_state: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    flags: int
    dropped_attributes_count: int
    dropped_events_count: int
    dropped_links_count: int
    attributes_json: str
    events_json: str
    links_json: str
    resource_json: str
    scope_json: str


def any_value(value: Any) -> dict[str, Any]:
    """A stored JSON value as an OTLP/JSON AnyValue. JSON keeps ints and floats apart (1 vs 1.0),
    so int and double attributes keep their type."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value(item) for item in value]}}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": key_values(value)}}
    return {}


def key_values(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": any_value(value)} for key, value in attributes.items()]


def _with_dropped(document: dict[str, Any], count: Any) -> dict[str, Any]:
    if count:
        document["droppedAttributesCount"] = count
    return document


def span_document(span: StoredSpan) -> dict[str, Any]:
    """One stored span as an OTLP/JSON Span."""
    document: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
    }
    if span.trace_state:
        document["traceState"] = span.trace_state
    if span.parent_span_id:
        document["parentSpanId"] = span.parent_span_id
    if span.flags:
        document["flags"] = span.flags
    document.update(
        {
            "name": span.name,
            "kind": span.kind,
            "startTimeUnixNano": str(span.start_ns),
            "endTimeUnixNano": str(span.end_ns),
            "attributes": key_values(json.loads(span.attributes_json)),
        }
    )
    if span.dropped_attributes_count:
        document["droppedAttributesCount"] = span.dropped_attributes_count
    events = [
        _with_dropped(
            {
                "timeUnixNano": str(event.get("time_ns") or 0),
                "name": event.get("name", ""),
                "attributes": key_values(event.get("attributes") or {}),
            },
            event.get("dropped_attributes_count"),
        )
        for event in json.loads(span.events_json)
    ]
    if events:
        document["events"] = events
    if span.dropped_events_count:
        document["droppedEventsCount"] = span.dropped_events_count
    links = [_link(link) for link in json.loads(span.links_json)]
    if links:
        document["links"] = links
    if span.dropped_links_count:
        document["droppedLinksCount"] = span.dropped_links_count
    status: dict[str, Any] = {}
    if span.status_code:
        status["code"] = span.status_code
    if span.status_message:
        status["message"] = span.status_message
    document["status"] = status
    return document


def _link(link: Mapping[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "traceId": link.get("trace_id", ""),
        "spanId": link.get("span_id", ""),
    }
    if link.get("trace_state"):
        document["traceState"] = link["trace_state"]
    document["attributes"] = key_values(link.get("attributes") or {})
    _with_dropped(document, link.get("dropped_attributes_count"))
    if link.get("flags"):
        document["flags"] = link["flags"]
    return document


def _resource_document(resource: Mapping[str, Any]) -> dict[str, Any]:
    return _with_dropped(
        {"attributes": key_values(resource.get("attributes") or {})},
        resource.get("dropped_attributes_count"),
    )


def _scope_document(scope: Mapping[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {"name": scope.get("name", "")}
    if scope.get("version"):
        document["version"] = scope["version"]
    if scope.get("attributes"):
        document["attributes"] = key_values(scope["attributes"])
    return _with_dropped(document, scope.get("dropped_attributes_count"))


def export_request(spans: Iterable[StoredSpan]) -> dict[str, Any]:
    """Spans as one ExportTraceServiceRequest, grouped by resource, then by scope."""
    # Spans of one process share the same resource and scope text, so the stored JSON strings
    # are the grouping keys; each is parsed once.
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for span in spans:
        scopes = groups.setdefault(span.resource_json, {})
        scopes.setdefault(span.scope_json, []).append(span_document(span))
    resource_spans = []
    for resource_json, scopes in groups.items():
        resource = json.loads(resource_json)
        document: dict[str, Any] = {"resource": _resource_document(resource), "scopeSpans": []}
        for scope_json, span_documents in scopes.items():
            scope = json.loads(scope_json)
            scope_spans: dict[str, Any] = {"scope": _scope_document(scope), "spans": span_documents}
            if scope.get("schema_url"):
                scope_spans["schemaUrl"] = scope["schema_url"]
            document["scopeSpans"].append(scope_spans)
        if resource.get("schema_url"):
            document["schemaUrl"] = resource["schema_url"]
        resource_spans.append(document)
    return {"resourceSpans": resource_spans}
