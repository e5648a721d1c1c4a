"""Reads that span models, for the pages and the API. Lists read narrow columns only.

Conversations: a conversation is the traces sharing a `gen_ai.conversation.id`; a run (see the
runs app) is an AgentScope application whose spans carry its id as that conversation id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, F, QuerySet, Sum

from tracing import conventions, messages, search
from tracing.models import STATUS_ERROR, Span, Trace

# The columns a list of traces shows (never the root span's bodies).
TRACE_LIST_FIELDS = (
    "trace_id",
    "name",
    "service_name",
    "start_ns",
    "end_ns",
    "duration_ns",
    "span_count",
    "error_count",
    "status_code",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "input_preview",
    "output_preview",
    "label",
    "span_type",
    "root_span_id",
    "conversation_id",
)
# A conversation page shows this many turns at most (the newest are cut, with a note).
MAX_TURNS = 500


def conversation_traces(conversation_id: str) -> QuerySet[Trace]:
    """The traces of a conversation (or of a run), oldest first."""
    return (
        Trace.objects.filter(conversation_id=conversation_id)
        .order_by("start_ns", "trace_id")
        .only(*TRACE_LIST_FIELDS)
    )


@dataclass(frozen=True)
class ModelUsage:
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    duration_ns: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6


def model_usage(conversation_id: str) -> list[ModelUsage]:
    """LLM calls of a conversation's traces, per model: one aggregate over narrow columns.

    Spans are found through their traces (the unique (trace_id, span_id) index), not through
    their own conversation id: many instrumentations put it on the root span only.
    """
    trace_ids = Trace.objects.filter(conversation_id=conversation_id).values("trace_id")
    rows = (
        Span.objects.filter(trace_id__in=trace_ids, span_type=conventions.LLM)
        .values("model")
        .annotate(
            calls=Count("id"),
            input=Sum("input_tokens"),
            output=Sum("output_tokens"),
            duration=Sum(F("end_ns") - F("start_ns")),
        )
        .order_by("model")
    )
    return [
        ModelUsage(
            model=row["model"],
            calls=row["calls"],
            input_tokens=row["input"] or 0,
            output_tokens=row["output"] or 0,
            duration_ns=row["duration"] or 0,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class Turn:
    trace: Trace
    user_input: str
    answer: str


def _turn(trace: Trace, attributes: dict[str, Any]) -> Turn:
    user_input = messages.message_text(messages.input_messages(attributes), "user")
    user_input = user_input or trace.input_preview
    answer = messages.final_answer(attributes)
    return Turn(trace=trace, user_input=user_input, answer=answer)


def conversation_turns(traces: Iterable[Trace]) -> list[Turn]:
    """Each trace with its user input and final answer, read from the root spans' attributes
    only (one query; the other spans' bodies are never loaded)."""
    traces = list(traces)
    roots = {
        (span.trace_id, span.span_id): span.attributes_json
        for span in Span.objects.filter(
            trace_id__in=[trace.trace_id for trace in traces], parent_span_id=""
        ).only("trace_id", "span_id", "attributes_json")
    }
    turns = []
    for trace in traces:
        raw = roots.get((trace.trace_id, trace.root_span_id), "{}")
        try:
            attributes = json.loads(raw)
        except ValueError:
            attributes = {}
        turns.append(_turn(trace, attributes if isinstance(attributes, dict) else {}))
    return turns


# ---------------------------------------------------------------------------------------------
# The trace page: the call tree from narrow columns, and one span's details.

# What a row of the call tree needs; never the JSON bodies.
TREE_FIELDS = (
    "span_id",
    "parent_span_id",
    "start_ns",
    "end_ns",
    "status_code",
    "span_type",
    "input_tokens",
    "output_tokens",
    "name",
    "label",
    "service_name",
)


@dataclass(slots=True)
class TreeRow:
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    status_code: int
    span_type: str
    input_tokens: int
    output_tokens: int
    name: str
    label: str
    service_name: str
    depth: int = 0
    # Its parent never arrived (or the parents form a loop): shown at the top level, marked.
    orphan: bool = False
    has_children: bool = False

    @property
    def display_name(self) -> str:
        return conventions.display_name(self.name, self.label)


@dataclass(slots=True)
class TraceTree:
    rows: list[TreeRow]
    services: list[str]
    start_ns: int
    end_ns: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


def trace_tree(trace_id: str) -> TraceTree:
    """The spans of a trace in call-tree order (depth first, siblings by start), one query."""
    rows = [
        TreeRow(*values) for values in Span.objects.for_trace(trace_id).values_list(*TREE_FIELDS)
    ]
    return TraceTree(
        rows=order_tree(rows),
        services=sorted({row.service_name for row in rows if row.service_name}),
        start_ns=min((row.start_ns for row in rows), default=0),
        end_ns=max((row.end_ns for row in rows), default=0),
    )


@dataclass(frozen=True)
class TraceFind:
    """What the span finder of a trace page jumps between, in call-tree order."""

    matches: list[str]
    errors: list[str]
    span_count: int


def find_in_trace(trace_id: str, q: str) -> TraceFind:
    """The spans of a trace whose search text (tracing.search: names, ids, kind, type, model,
    status message, attribute values, message text) holds every word of `q`, and its error
    spans: two queries, the tree's narrow columns and the matching span ids."""
    rows = trace_tree(trace_id).rows
    found = search.spans_matching(trace_id, q) if q.strip() else set()
    return TraceFind(
        matches=[row.span_id for row in rows if row.span_id in found],
        errors=[row.span_id for row in rows if row.status_code == STATUS_ERROR],
        span_count=len(rows),
    )


def order_tree(rows: list[TreeRow]) -> list[TreeRow]:
    """Rows (sorted by start) in depth-first order with their depth set: O(n), no recursion,
    so a trace of any depth or size is fine and a loop of parents cannot hang it."""
    ids = {row.span_id for row in rows}
    children: dict[str, list[TreeRow]] = {}
    roots = []
    for row in rows:
        parent = row.parent_span_id
        if parent and parent in ids and parent != row.span_id:
            children.setdefault(parent, []).append(row)
        else:
            row.orphan = bool(parent)
            roots.append(row)
    ordered: list[TreeRow] = []
    visited: set[str] = set()

    def walk(start: TreeRow) -> None:
        stack = [(start, 0)]
        while stack:
            row, depth = stack.pop()
            if row.span_id in visited:
                continue
            visited.add(row.span_id)
            row.depth = depth
            kids = children.get(row.span_id, ())
            row.has_children = bool(kids)
            ordered.append(row)
            stack.extend((kid, depth + 1) for kid in reversed(kids))

    for root in roots:
        walk(root)
    if len(ordered) < len(rows):
        # Spans whose parents only point at each other: break each loop at its earliest span.
        for row in rows:
            if row.span_id not in visited:
                row.orphan = True
                walk(row)
    return ordered


@dataclass(slots=True)
class Attribute:
    key: str
    type: str
    text: str


@dataclass(slots=True)
class Event:
    name: str
    offset_ns: int
    attributes: list[Attribute]
    exception_type: str = ""
    exception_message: str = ""
    stacktrace: str = ""

    @property
    def is_exception(self) -> bool:
        return self.name == "exception"


@dataclass(slots=True)
class Link:
    trace_id: str
    span_id: str
    trace_state: str
    attributes: list[Attribute]
    same_trace: bool


@dataclass(slots=True)
class SpanDetail:
    """One span as its panel shows it; the JSON bodies are parsed here, once."""

    span: Span
    offset_ns: int
    attributes: list[Attribute]
    resource: list[Attribute]
    scope_name: str
    scope_version: str
    scope_attributes: list[Attribute]
    input: messages.Section | None
    output: messages.Section | None
    exceptions: list[Event]
    events: list[Event]
    links: list[Link]
    provider: str
    finish_reasons: list[str]
    tool_name: str
    tool_call_id: str
    tool_description: str
    agent_name: str

    @property
    def event_count(self) -> int:
        return len(self.exceptions) + len(self.events)


def attribute_list(attributes: Any) -> list[Attribute]:
    if not isinstance(attributes, dict):
        return []
    return [
        Attribute(key=str(key), type=messages.value_type(value), text=messages.display(value))
        for key, value in sorted(attributes.items())
    ]


def _loads(text: str, default: Any) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def _event(event: Any, span_start_ns: int) -> Event:
    if not isinstance(event, dict):
        event = {}
    attributes = event.get("attributes") if isinstance(event.get("attributes"), dict) else {}
    time_ns = event.get("time_ns") if isinstance(event.get("time_ns"), int) else 0
    result = Event(
        name=str(event.get("name", "")),
        offset_ns=time_ns - span_start_ns if time_ns else 0,
        attributes=attribute_list(attributes),
    )
    if result.is_exception:
        result.exception_type = messages.display(attributes.get("exception.type"))
        result.exception_message = messages.display(attributes.get("exception.message"))
        result.stacktrace = messages.display(attributes.get("exception.stacktrace"))
        shown = {"exception.type", "exception.message", "exception.stacktrace"}
        result.attributes = [a for a in result.attributes if a.key not in shown]
    return result


def find_span(trace_id: str, span_id: str) -> Span | None:
    return Span.objects.filter(trace_id=trace_id, span_id=span_id).first()


def span_detail(span: Span, trace_start_ns: int) -> SpanDetail:
    """Everything the span panel shows, its JSON bodies parsed once."""
    attributes = _loads(span.attributes_json, {})
    events = _loads(span.events_json, [])
    resource = _loads(span.resource_json, {})
    scope = _loads(span.scope_json, {})
    section_in, section_out = messages.span_sections(span.span_type, attributes, events)
    all_events = [_event(event, span.start_ns) for event in events]
    links = []
    for link in _loads(span.links_json, []):
        if not isinstance(link, dict):
            continue
        trace_id, span_id = str(link.get("trace_id", "")), str(link.get("span_id", ""))
        links.append(
            Link(
                trace_id=trace_id if conventions.is_hex_id(trace_id, 32) else "",
                span_id=span_id if conventions.is_hex_id(span_id, 16) else "",
                trace_state=str(link.get("trace_state", "")),
                attributes=attribute_list(link.get("attributes")),
                same_trace=trace_id == span.trace_id,
            )
        )
    return SpanDetail(
        span=span,
        offset_ns=span.start_ns - trace_start_ns,
        attributes=attribute_list(attributes),
        resource=attribute_list(resource.get("attributes")),
        scope_name=str(scope.get("name", "")),
        scope_version=str(scope.get("version", "")),
        scope_attributes=attribute_list(scope.get("attributes")),
        input=section_in,
        output=section_out,
        exceptions=[event for event in all_events if event.is_exception],
        events=[event for event in all_events if not event.is_exception],
        links=links,
        provider=conventions.provider(attributes),
        finish_reasons=messages.finish_reasons(attributes),
        tool_name=conventions.first_str(attributes, conventions.TOOL_NAME_KEYS),
        tool_call_id=conventions.first_str(attributes, ("gen_ai.tool.call.id",)),
        tool_description=conventions.first_str(
            attributes, ("gen_ai.tool.description", "tool.description")
        ),
        agent_name=conventions.first_str(attributes, conventions.AGENT_NAME_KEYS),
    )
