"""Reads that span models, for the pages and the API. Lists read narrow columns only.

Conversations: a conversation is the traces sharing a `gen_ai.conversation.id`; a run (see the
runs app) is an AgentScope application whose spans carry its id as that conversation id.
"""

from __future__ import annotations

import gc
import json
from array import array
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, F, Q, QuerySet, Sum

from tracing import analysis, compare, conventions, costs, messages, search
from tracing.models import STATUS_ERROR, Span, SpanCursor, Trace
from tracing.prices import PriceTable

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
    "cost_usd",
    "unpriced_spans",
)
# A conversation page shows this many turns at most (the newest are cut, with a note).
MAX_TURNS = 500


def conversation_traces(conversation_id: str, project: str | None = None) -> QuerySet[Trace]:
    """The traces of a conversation (or of a run), oldest first; a run's are those of its
    project (`project`), so another project's key cannot put traces on its page by naming its
    id as their conversation."""
    traces = Trace.objects.filter(conversation_id=conversation_id)
    if project is not None:
        traces = traces.filter(project=project)
    return traces.order_by("start_ns", "trace_id").only(*TRACE_LIST_FIELDS)


@dataclass(frozen=True)
class ModelUsage:
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    duration_ns: int
    # USD of the model's priced calls (Span.cost_usd summed), and how many had no price.
    cost_usd: float = 0.0
    unpriced_spans: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost(self) -> float | None:
        """None when every call of the model was without a price, never a misleading 0."""
        return None if self.unpriced_spans == self.calls and self.calls else self.cost_usd

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6


def first_span_row_id(trace_id: str) -> int | None:
    """The row id of a trace's first span in start order: one seek of span_tree_idx. Rows are
    never renumbered and ids never reused, so it changes when the trace is deleted and stored
    again."""
    return (
        Span.objects.for_trace(trace_id).values_list("id", flat=True).first()  # type: ignore[return-value]
    )


def model_usage(conversation_id: str, project: str | None = None) -> list[ModelUsage]:
    """LLM calls of a conversation's traces, per model: one aggregate over narrow columns.

    Spans are found through their traces (the unique (trace_id, span_id) index), not through
    their own conversation id: many instrumentations put it on the root span only.
    """
    trace_ids = conversation_traces(conversation_id, project).order_by().values("trace_id")
    rows = (
        Span.objects.filter(trace_id__in=trace_ids, span_type=conventions.LLM)
        .values("model")
        .annotate(
            calls=Count("id"),
            input=Sum("input_tokens"),
            output=Sum("output_tokens"),
            duration=Sum(F("end_ns") - F("start_ns")),
            # Span.cost_usd is NULL for a model call without a price.
            cost=Sum("cost_usd"),
            unpriced=Count("id", filter=Q(cost_usd__isnull=True)),
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
            cost_usd=row["cost"] or 0.0,
            unpriced_spans=row["unpriced"],
        )
        for row in rows
    ]


@dataclass(frozen=True)
class TracesCost:
    """The cost of some traces: their priced model calls' USD, and how many had no price."""

    cost_usd: float
    unpriced_spans: int

    @property
    def cost(self) -> float | None:
        return None if self.unpriced_spans and not self.cost_usd else self.cost_usd


def traces_cost(traces: Iterable[Trace]) -> TracesCost:
    """Summed from the traces' stored totals (no query: the traces are already read)."""
    traces = list(traces)
    return TracesCost(
        cost_usd=sum((trace.cost_usd or 0.0 for trace in traces), 0.0),
        unpriced_spans=sum(trace.unpriced_spans or 0 for trace in traces),
    )


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
    """The spans of a trace in call-tree order (depth first, siblings by start), one query.

    Every row at once: for the pages of traces up to a few thousand spans; `tree_order` and
    `tree_rows` read a trace of any size a chunk at a time."""
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


def first_error(trace_id: str) -> str:
    """The id of the earliest error span of a trace, or "": one index seek, where its first
    error in call-tree order would need the whole tree."""
    errors = Span.objects.for_trace(trace_id).filter(status_code=STATUS_ERROR)
    return next(iter(errors.values_list("span_id", flat=True)[:1]), "")


def order_tree(rows: list[TreeRow]) -> list[TreeRow]:
    """Rows (sorted by start) in depth-first order with their depth set (see `depth_first`)."""
    order, depths, flags = depth_first(
        [row.span_id for row in rows], [row.parent_span_id for row in rows]
    )
    ordered = []
    for i, depth in zip(order, depths, strict=True):
        row = rows[i]
        row.depth = depth
        row.orphan = bool(flags[i] & ORPHAN_FLAG)
        row.has_children = bool(flags[i] & CHILDREN_FLAG)
        ordered.append(row)
    return ordered


ORPHAN_FLAG = 1
CHILDREN_FLAG = 2


def depth_first(span_ids: list[str], parent_ids: list[str]) -> tuple[array, array, bytearray]:
    """The call-tree order of spans given in start order: (the spans' indices depth first, their
    depths in that order, flags by index: ORPHAN_FLAG, CHILDREN_FLAG).

    Siblings keep their start order. A span whose parent never arrived is shown at the top
    level, marked orphan, and so is the earliest span of each loop of parents. O(n), no
    recursion, and only flat arrays per span (a trace can have hundreds of thousands)."""
    n = len(span_ids)
    index = {span_id: i for i, span_id in enumerate(span_ids)}
    parent = array("l", [-1]) * n
    flags = bytearray(n)
    counts = array("l", [0]) * (n + 1)
    for i, parent_id in enumerate(parent_ids):
        if not parent_id:
            continue
        p = index.get(parent_id, -1)
        if p < 0 or p == i:
            flags[i] |= ORPHAN_FLAG
            continue
        parent[i] = p
        counts[p + 1] += 1
        flags[p] |= CHILDREN_FLAG
    del index
    # Children of p, in start order: kids[first[p]:first[p + 1]].
    first = counts
    for p in range(n):
        first[p + 1] += first[p]
    kids = array("l", [0]) * n
    fill = array("l", first[:n])
    for i in range(n):
        p = parent[i]
        if p >= 0:
            kids[fill[p]] = i
            fill[p] += 1
    del fill
    order = array("l")
    depths = array("l")
    depth = array("l", [0]) * n
    visited = bytearray(n)

    def walk(start: int) -> None:
        # A span is pushed by its parent only (it has one), so each is pushed at most once, and
        # its parent's depth is set before it is popped. The start is at depth 0 even inside a
        # loop of parents.
        stack = [start]
        while stack:
            i = stack.pop()
            if visited[i]:
                continue
            visited[i] = 1
            d = depth[i] = 0 if i == start else depth[parent[i]] + 1
            order.append(i)
            depths.append(d)
            if first[i + 1] > first[i]:
                stack.extend(reversed(kids[first[i] : first[i + 1]]))

    for i in range(n):
        if parent[i] < 0:
            walk(i)
    if len(order) < n:
        # Spans whose parents only point at each other: break each loop at its earliest span.
        for i in range(n):
            if not visited[i]:
                flags[i] |= ORPHAN_FLAG
                walk(i)
    return order, depths, flags


# The trace page reads the tree of a big trace this many rows at a time: no query materialises
# more rows than this, whatever the trace's size.
TREE_CHUNK = 2000
# SQLite's page cache (KiB) of a connection while it reads a big trace's rows, each page once.
READ_ONCE_CACHE_KIB = 8192


@contextmanager
def read_once() -> Iterator[None]:
    """For a read passing once over many pages (a big trace's rows): this connection's SQLite
    page cache kept small meanwhile. The cache is per connection, and every reader of a big
    trace at once would fill (and keep resident) the connection's usual 64 MB."""
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        size = cursor.execute("PRAGMA cache_size").fetchone()[0]
        cursor.execute(f"PRAGMA cache_size=-{READ_ONCE_CACHE_KIB}")
    try:
        yield
    finally:
        with suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size={int(size)}")


@dataclass(slots=True)
class TreeOrder:
    """A trace's call-tree order, from its span ids and parent ids only (no other column)."""

    span_ids: list[str]  # in start order
    order: array  # indices into span_ids, depth first
    depths: array  # in that order
    flags: bytearray  # by index into span_ids
    # SQLite only: the spans' rowids (primary keys) by index into span_ids, which every SQLite
    # index holds, so the chunks seek rows by their key instead of through a second index.
    row_ids: array | None = None

    def __len__(self) -> int:
        return len(self.order)


def tree_order(trace_id: str) -> TreeOrder:
    """The call-tree order of a trace of any size: two narrow columns (and SQLite's rowid), read
    TREE_CHUNK rows at a time from the covering index."""
    span_ids: list[str] = []
    parent_ids: list[str] = []
    # A PostgreSQL index holds no row key: reading `id` there would visit every span's row.
    row_ids = array("q") if connection.vendor == "sqlite" else None
    fields = ("span_id", "parent_span_id") + (("id",) if row_ids is not None else ())
    reads = Span.objects.for_trace(trace_id).values_list(*fields)
    for values in reads.iterator(chunk_size=TREE_CHUNK):
        span_ids.append(values[0])
        parent_ids.append(values[1])
        if row_ids is not None:
            row_ids.append(values[2])
    order, depths, flags = depth_first(span_ids, parent_ids)
    return TreeOrder(span_ids=span_ids, order=order, depths=depths, flags=flags, row_ids=row_ids)


_TREE_COLUMNS = ", ".join(Span._meta.get_field(name).column for name in TREE_FIELDS)


def tree_rows(trace_id: str, tree: TreeOrder, start: int, stop: int) -> list[TreeRow]:
    """Rows start..stop (at most TREE_CHUNK) of the call tree, in tree order: one query (in SQL
    of its own: the ORM spends more preparing 2,000 parameters than SQLite finding the rows)."""
    stop = min(stop, start + TREE_CHUNK, len(tree))
    if start >= stop:
        return []
    wanted = {tree.span_ids[tree.order[place]]: place for place in range(start, stop)}
    marks = ", ".join(["%s"] * len(wanted))
    table = Span._meta.db_table
    if tree.row_ids is not None:
        keys = [tree.row_ids[tree.order[place]] for place in range(start, stop)]
        # `+trace_id`: SQLite would rather scan the trace's index entries than seek the keys.
        sql = f"SELECT {_TREE_COLUMNS} FROM {table} WHERE id IN ({marks}) AND +trace_id = %s"
        params: list[Any] = [*keys, trace_id]
    else:
        sql = f"SELECT {_TREE_COLUMNS} FROM {table} WHERE trace_id = %s AND span_id IN ({marks})"
        params = [trace_id, *wanted]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    rows: list[TreeRow | None] = [None] * (stop - start)
    for values in found:
        place = wanted[values[0]]
        i = tree.order[place]
        row = TreeRow(*values, depth=tree.depths[place])
        row.orphan = bool(tree.flags[i] & ORPHAN_FLAG)
        row.has_children = bool(tree.flags[i] & CHILDREN_FLAG)
        rows[place - start] = row
    # A span deleted since the order was read (retention) is left out.
    return [row for row in rows if row is not None]


def trace_services(trace_id: str) -> list[str]:
    """The services of a trace's spans, from the database (not from every span's row)."""
    services = (
        Span.objects.filter(trace_id=trace_id)
        .exclude(service_name="")
        .order_by("service_name")
        .values_list("service_name", flat=True)
        .distinct()
    )
    return list(services)


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
    # Set by `span_self_ns` (a query) or from the trace's analysis.
    self_ns: int | None = None
    # A model call's cost (None: no price); None for any other span.
    cost_usd: float | None = None
    is_model_call: bool = False

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


def trace_spans(trace_id: str, *, after: SpanCursor | None = None, limit: int) -> list[Span]:
    """At most `limit` spans of a trace in start order (ties by span id), those after `after`:
    one index seek, so a reader can walk a trace of any size a bounded chunk at a time."""
    # A walk through a big trace reads each page once: kept pages would only hold memory.
    with read_once():
        return list(Span.objects.for_trace(trace_id).after(after)[:limit])


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
        cost_usd=_span_cost(span, attributes),
        is_model_call=span.span_type in costs.MODEL_SPAN_TYPES,
    )


def _span_cost(span: Span, attributes: Any) -> float | None:
    if span.span_type not in costs.MODEL_SPAN_TYPES or not isinstance(attributes, dict):
        return None
    # The model column, as the analysis prices it.
    return costs.span_cost(attributes, price_table(), span.model)


def span_self_ns(span: Span) -> int:
    """A span's self time (tracing.analysis): one query of its children's times."""
    children = Span.objects.filter(trace_id=span.trace_id, parent_span_id=span.span_id)
    times = children.order_by().values_list("start_ns", "end_ns")
    return analysis.span_self_ns(span.start_ns, span.end_ns, list(times))


# ---------------------------------------------------------------------------------------------
# Cost, analysis and comparison: narrow columns, plus the few numbers they need from a model
# call's attributes, extracted by the database (SQLite's json_extract, PostgreSQL's jsonb) so
# the message bodies never travel. The writer stores attributes as JSON made by orjson.

# In the order of the first fields of analysis.SpanFacts and compare.CompareFacts.
_FACT_FIELDS = (
    "span_id",
    "parent_span_id",
    "start_ns",
    "end_ns",
    "span_type",
    "name",
    "label",
    "model",
    "input_tokens",
    "output_tokens",
    "status_code",
)
_USAGE_KEYS = costs.CACHE_READ_KEYS + costs.CACHE_WRITE_KEYS + costs.REASONING_KEYS
USAGE_KEYS = _USAGE_KEYS
# The request parameters a comparison shows (gen_ai.request.*, conventions.md).
PARAM_KEYS = (
    "gen_ai.request.temperature",
    "gen_ai.request.top_p",
    "gen_ai.request.top_k",
    "gen_ai.request.max_tokens",
    "gen_ai.request.seed",
    "gen_ai.request.stop_sequences",
    "gen_ai.request.frequency_penalty",
    "gen_ai.request.presence_penalty",
    "gen_ai.request.choice.count",
    "gen_ai.output.type",
)
_MODEL_TYPES_SQL = ", ".join(f"'{kind}'" for kind in sorted(costs.MODEL_SPAN_TYPES))
_price_cache: tuple[object, PriceTable] | None = None


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Building tens of thousands of small objects (a big trace's facts, tree and rows) sets off
    the cyclic garbage collector over and over, to find nothing: a fifth of the time. None of
    these objects form cycles; reference counting frees them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# For a view building a big structure of its own from a selector's rows (a page's view model
# and markup, the flame graph's columns).
collector_paused = _collector_paused


def price_table() -> PriceTable:
    """The shipped prices with `STUDIO_PRICES` on top (read once per settings value)."""
    global _price_cache
    overrides = settings.STUDIO_PRICES
    if _price_cache is None or _price_cache[0] is not overrides:
        _price_cache = (overrides, PriceTable(overrides))
    return _price_cache[1]


def _span_rows(
    where: str, params: list[Any], keys: tuple[str, ...]
) -> list[tuple[tuple[Any, ...], list[Any] | None]]:
    """For the spans `where` selects, by start: the row of `_FACT_FIELDS`, and for a model
    call the values of `keys` in its attributes (None elsewhere), in one JSON array."""
    for key in keys:
        assert all(c.isalnum() or c in "._" for c in key), key  # inlined in the SQL below
    table = Span._meta.db_table
    columns = ", ".join(f"s.{name}" for name in _FACT_FIELDS)
    if connection.vendor == "postgresql":
        values = ", ".join(f"x.j -> '{key}'" for key in keys)
        sql = (
            f"SELECT {columns}, CASE WHEN x.j IS NOT NULL THEN jsonb_build_array({values}) END "
            f"FROM {table} s LEFT JOIN LATERAL (SELECT CASE WHEN s.span_type IN "
            # OFFSET 0 keeps the planner from inlining the subquery, which would parse the
            # document once per key instead of once.
            f"({_MODEL_TYPES_SQL}) THEN s.attributes_json::jsonb END AS j OFFSET 0) x ON TRUE "
            f"WHERE {where} ORDER BY s.start_ns, s.span_id"
        )
    else:
        paths = ", ".join(f"'$.\"{key}\"'" for key in keys)
        sql = (
            f"SELECT {columns}, CASE WHEN s.span_type IN ({_MODEL_TYPES_SQL}) "
            f"THEN json_extract(s.attributes_json, {paths}) END "
            f"FROM {table} s WHERE {where} ORDER BY s.start_ns, s.span_id"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [(row[:-1], json_values(row[-1], len(keys))) for row in rows]


def json_values(extracted: Any, keys: int) -> list[Any] | None:
    """The values of `keys` attribute keys as the database extracted them (None: not asked)."""
    if isinstance(extracted, str):
        # SQLite: one path gives the value itself, several a JSON array of them.
        return orjson.loads(extracted) if keys > 1 else [extracted]
    if extracted is not None and not isinstance(extracted, list):
        return [extracted]
    return extracted


_READS = len(costs.CACHE_READ_KEYS)
_WRITES = _READS + len(costs.CACHE_WRITE_KEYS)


def _usage(row: tuple[Any, ...], values: list[Any]) -> costs.Usage:
    return costs.Usage(
        input_tokens=row[8],
        output_tokens=row[9],
        cache_read_tokens=costs.first_int(values, 0, _READS),
        cache_write_tokens=costs.first_int(values, _READS, _WRITES),
        reasoning_tokens=costs.first_int(values, _WRITES, len(_USAGE_KEYS)),
    )


def _row_cost(row: tuple[Any, ...], values: list[Any] | None, table: PriceTable) -> float | None:
    """A model call's cost (None: no price); None for any other span."""
    if values is None or row[4] not in costs.MODEL_SPAN_TYPES:
        return None
    return costs.cost(table.price(row[7]), _usage(row, values))


def analysis_facts(trace_id: str) -> list[analysis.SpanFacts]:
    """A trace's spans as tracing.analysis reads them, with their costs: one query."""
    table = price_table()
    return [
        analysis.SpanFacts(*row, cost_usd=_row_cost(row, values, table))
        for row, values in _span_rows("s.trace_id = %s", [trace_id], _USAGE_KEYS)
    ]


def tree_facts(trace_id: str) -> list[analysis.SpanFacts]:
    """A trace's spans as tracing.analysis reads them, without costs (no JSON is read): what
    the flame graph needs, at half the price of `analysis_facts`. One query."""
    columns = ", ".join(_FACT_FIELDS)
    sql = (
        f"SELECT {columns} FROM {Span._meta.db_table} WHERE trace_id = %s "
        "ORDER BY start_ns, span_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [trace_id])
        return [analysis.SpanFacts(*row) for row in cursor.fetchall()]


def trace_analysis(trace_id: str) -> analysis.Analysis:
    with _collector_paused():
        return analysis.analyse(analysis_facts(trace_id))


def _param(value: Any) -> str | None:
    # As text, so that 0.2 and "0.2" (attributes arrive typed or as strings) compare equal.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # as JSON writes it, and without json.dumps's cost per call
    return orjson.dumps(value).decode()


def compare_facts(trace_id: str) -> list[compare.CompareFacts]:
    """A trace's spans as tracing.compare reads them: one query."""
    table = price_table()
    keys = _USAGE_KEYS + PARAM_KEYS
    facts = []
    Facts = compare.CompareFacts
    first_param = len(_USAGE_KEYS)
    for row, values in _span_rows("s.trace_id = %s", [trace_id], keys):
        if values is None:
            facts.append(Facts(*row))
            continue
        params = {
            key: _param(value)
            for key, value in zip(PARAM_KEYS, values[first_param:], strict=True)
            if value is not None
        }
        facts.append(Facts(*row, _row_cost(row, values, table), params))
    return facts


# Pairs whose input and output texts are diffed, at most (their attributes are loaded).
MAX_TEXT_DIFFS = 200
_TEXT_TYPES = frozenset({conventions.LLM, conventions.AGENT})


def _message_text(conversation: messages.Conversation | None) -> str:
    if conversation is None:
        return ""
    lines = []
    for message in conversation.messages:
        text = "\n".join(part.text for part in message.parts if part.type == "text" and part.text)
        lines.append(f"[{message.role}] {text}")
    return "\n".join(lines)


def _text_pairs(trace_a: str, trace_b: str, rows: Iterable[compare.Row]) -> list[compare.Row]:
    return [
        row
        for row in rows
        if row.a is not None and row.b is not None and row.span_type in _TEXT_TYPES
    ]


def add_text_diffs(trace_a: str, trace_b: str, rows: Iterable[compare.Row]) -> None:
    """Line diffs of the input and output message texts of the aligned model calls and agents
    among `rows`: one query for both traces, none without such a pair. A pair whose stored
    attributes and events are the same text is not parsed at all; the others are parsed once."""
    pairs = _text_pairs(trace_a, trace_b, rows)
    if not pairs:
        return
    ids_a = [row.a.span_id for row in pairs if row.a]
    ids_b = [row.b.span_id for row in pairs if row.b]
    stored: dict[tuple[str, str], tuple[str, str]] = {}
    query = Span.objects.filter(
        Q(trace_id=trace_a, span_id__in=ids_a) | Q(trace_id=trace_b, span_id__in=ids_b)
    ).values_list("trace_id", "span_id", "attributes_json", "events_json")
    for trace_id, span_id, attributes_json, events_json in query:
        stored[(trace_id, span_id)] = (attributes_json, events_json)
    for row in pairs:
        assert row.a is not None and row.b is not None
        raw_a = stored.get((trace_a, row.a.span_id), ("", ""))
        raw_b = stored.get((trace_b, row.b.span_id), ("", ""))
        if raw_a == raw_b:
            continue
        in_a, out_a = _texts_of(raw_a)
        in_b, out_b = _texts_of(raw_b)
        diff = {"input": compare.text_diff(in_a, in_b), "output": compare.text_diff(out_a, out_b)}
        row.text_diff = {side: lines for side, lines in diff.items() if lines}


def _fast_loads(text: str, default: Any) -> Any:
    # orjson first (several times faster on a model call's kilobytes); json for what it refuses
    # and json takes (NaN), which the panel shows too.
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _loads(text, default)
    return value if isinstance(value, type(default)) else default


def _texts_of(stored: tuple[str, str]) -> tuple[str, str]:
    attributes = _fast_loads(stored[0], {})
    events = _fast_loads(stored[1], [])
    return (
        _message_text(messages.input_messages(attributes, events)),
        _message_text(messages.output_messages(attributes, events)),
    )


def trace_comparison(trace_a: str, trace_b: str, *, texts: bool = True) -> compare.Comparison:
    """Two traces aligned, with (`texts`) the text diffs of the first MAX_TEXT_DIFFS aligned
    model calls and agents in tree order: three queries (two without `texts`)."""
    with _collector_paused():
        comparison = compare.compare(compare_facts(trace_a), compare_facts(trace_b))
        if texts:
            pairs = _text_pairs(trace_a, trace_b, comparison.rows)[:MAX_TEXT_DIFFS]
            add_text_diffs(trace_a, trace_b, pairs)
        return comparison


def comparison_document(trace_a: str, trace_b: str) -> dict[str, Any]:
    """The comparison as `/api/traces/compare/` serves it (tracing.compare.as_dict), built with
    the collector paused too: at 10,000 spans a side that is tens of thousands of dicts."""
    with _collector_paused():
        return compare.as_dict(trace_comparison(trace_a, trace_b))


def cost_of_traces(trace_ids: Any) -> costs.Total:
    """The cost of the model calls of these traces (ids, or a query of them): one query."""
    if isinstance(trace_ids, QuerySet):
        inner, inner_params = trace_ids.values("trace_id").query.sql_with_params()
        where, params = f"s.trace_id IN ({inner})", list(inner_params)
    else:
        ids = list(trace_ids)
        if not ids:
            return costs.total([])
        where, params = f"s.trace_id IN ({', '.join(['%s'] * len(ids))})", ids
    where += f" AND s.span_type IN ({_MODEL_TYPES_SQL})"
    table = price_table()
    rows = _span_rows(where, params, _USAGE_KEYS)
    return costs.total([_row_cost(row, values, table) for row, values in rows])


def trace_cost(trace_id: str) -> costs.Total:
    return cost_of_traces([trace_id])


def conversation_cost(conversation_id: str) -> costs.Total:
    """A conversation's (or a run's: its id is the conversation id) cost, through its traces."""
    return cost_of_traces(Trace.objects.filter(conversation_id=conversation_id))


def conversations_cost(conversation_ids: Any) -> costs.Total:
    """Many conversations' cost: a project's runs are `conversations_cost(<its run ids>)`."""
    return cost_of_traces(Trace.objects.filter(conversation_id__in=conversation_ids))
