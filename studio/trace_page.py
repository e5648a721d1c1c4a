"""The call tree of the trace page, as the browser gets it: compact JSON for every row, HTML
for the first rows, and one blank row for trace.js to clone; for a trace of more than
INLINE_SPANS spans, no rows in the page but the JSON streamed a chunk at a time (`tree_chunks`).

trace.js draws the tree from the JSON, only the rows in view (a 50,000-span trace is 50,000 rows:
as HTML that is 20 MB for Chromium to parse, which takes it many seconds). The HTML rows are for
reading without JavaScript and for the first paint; they are built in Python, one string format
per row, because Django's template engine costs some 10-20 µs per tag. The markup of a row and
every text in it (durations, token counts, the bar's geometry) are made here only: the JSON
carries them formatted, and trace.js clones `blank_row()` and fills it in. Every value from a
span goes through `html.escape` (span content is untrusted); only the assembled markup is marked
safe. The JSON goes through Django's `json_script`, which escapes what could close the script
element.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from django.utils.safestring import SafeString, mark_safe

from studio.formatting import duration
from tracing import analysis, conventions, costs, selectors
from tracing.models import STATUS_ERROR, Trace
from tracing.selectors import TraceTree, TreeRow

# Indentation classes exist in trace.css up to this depth; deeper rows share the last one.
MAX_INDENT = 32
# Rows rendered as HTML; trace.js draws the rest (and these again) from the JSON.
HTML_ROWS = 1000
# A trace of more spans than this gets its tree data from `tree_chunks`, a chunk at a time,
# instead of all of it (and HTML_ROWS rows of HTML) in the page.
INLINE_SPANS = 5000
TOKEN_TYPES = frozenset({conventions.LLM, conventions.EMBEDDING})
# Bits of a row's flags in the JSON.
ERROR = 1
ORPHAN = 2

_ROW = (
    '<div class="r d{indent} k-{type}{classes}" id="s-{span_id}" role="treeitem" '
    'aria-level="{level}"{expanded}{selected}><span class="n">{toggle}'
    '<a href="?span={span_id}" tabindex="-1" title="{name}">'
    '<b class="badge badge-{type}">{type}</b> {label}</a>{marks}</span>'
    '<span class="du">{duration}</span><span class="tk">{tokens}</span>'
    '<svg class="bar" aria-hidden="true"><rect x="{x:.2f}%" width="{width:.2f}%" height="100%"/>'
    "</svg></div>"
)
_TOGGLE = '<button type="button" class="tg" tabindex="-1" aria-hidden="true"></button>'
_ORPHAN = (
    '<span class="orphan" title="Its parent span was never received">parent not received</span>'
)
_ERROR = '<span class="err" title="Status ERROR">error</span>'


def _bar(row: TreeRow, start: int, total: int) -> tuple[float, float]:
    """The row's bar on the shared time axis, in percent: (x, width), at least visible."""
    x = min((row.start_ns - start) * 100 / total, 99.85)
    width = max((row.end_ns - row.start_ns) * 100 / total, 0.15)
    return x, min(width, 100 - x)


def _tokens(row: TreeRow) -> str:
    if row.span_type in TOKEN_TYPES and (row.input_tokens or row.output_tokens):
        return f"{row.input_tokens:,} → {row.output_tokens:,}"
    return ""


def render_rows(
    tree: TraceTree,
    selected: str = "",
    critical: frozenset[str] = frozenset(),
    critical_only: bool = False,
) -> SafeString:
    """The first HTML_ROWS rows as HTML; the rows on the critical path marked (class `cp`), or,
    `critical_only`, only those."""
    start = tree.start_ns
    total = tree.duration_ns or 1
    parts = []
    rows = [row for row in tree.rows if row.span_id in critical] if critical_only else tree.rows
    for row in rows[:HTML_ROWS]:
        classes = ""
        marks = ""
        if row.orphan:
            classes += " o"
            marks += _ORPHAN
        if row.status_code == STATUS_ERROR:
            classes += " e"
            marks += _ERROR
        if row.span_id in critical:
            classes += " cp"
        x, width = _bar(row, start, total)
        parts.append(
            _ROW.format(
                indent=min(row.depth, MAX_INDENT),
                type=escape(row.span_type or conventions.OTHER),
                classes=classes,
                span_id=escape(row.span_id),
                level=row.depth + 1,
                expanded=' aria-expanded="true"' if row.has_children else "",
                selected=' aria-selected="true"' if row.span_id == selected else "",
                toggle=_TOGGLE if row.has_children else "",
                name=escape(row.name),
                label=escape(row.display_name),
                marks=marks,
                duration=duration(row.end_ns - row.start_ns),
                tokens=_tokens(row),
                x=x,
                width=width,
            )
        )
    return mark_safe("".join(parts))  # every span value above went through escape()


def blank_row() -> SafeString:
    """The row trace.js clones for every row it draws: with every optional part (toggle, marks),
    which it removes where a span has none, and empty texts, which it fills in."""
    return mark_safe(
        _ROW.format(
            indent=0,
            type=conventions.OTHER,
            classes=" o e",
            span_id="",
            level=1,
            expanded=' aria-expanded="true"',
            selected="",
            toggle=_TOGGLE,
            name="",
            label="",
            marks=_ORPHAN + _ERROR,
            duration="",
            tokens="",
            x=0,
            width=0,
        )
    )


def tree_data(tree: TraceTree) -> dict[str, Any]:
    """Every row, in tree order, as compact arrays for trace.js, its texts formatted here.

    A row is [span id, depth, type, flags, name, label, duration, tokens, bar x %, bar width %];
    type indexes `types`, and name, label, duration and tokens index `strings` (agent traces
    repeat the same few names and durations thousands of times).
    """
    return {"max_indent": MAX_INDENT, **_chunk(tree.rows, tree.start_ns, tree.duration_ns)}


def _chunk(rows: list[TreeRow], start: int, total: int) -> dict[str, Any]:
    strings: dict[str, int] = {}
    types: dict[str, int] = {}
    data = []
    total = total or 1
    for row in rows:
        span_type = row.span_type or conventions.OTHER
        label = row.display_name
        flags = (ERROR if row.status_code == STATUS_ERROR else 0) | (ORPHAN if row.orphan else 0)
        x, width = _bar(row, start, total)
        data.append(
            [
                row.span_id,
                row.depth,
                types.setdefault(span_type, len(types)),
                flags,
                strings.setdefault(row.name, len(strings)),
                strings.setdefault(label, len(strings)),
                strings.setdefault(duration(row.end_ns - row.start_ns), len(strings)),
                strings.setdefault(_tokens(row), len(strings)),
                round(x, 2),
                round(width, 2),
            ]
        )
    return {"types": list(types), "strings": list(strings), "rows": data}


def tree_chunks(trace: Trace) -> Iterator[bytes]:
    """The tree data of a trace of any size as lines of JSON (NDJSON), for trace.js to fetch:
    first {"count", "max_indent"}, then chunks of at most TREE_CHUNK rows shaped as `tree_data`
    (each with its own `types` and `strings`). What is held at once is the tree's order (a span
    id and a few integers per span) and one chunk of rows; never every span's row."""
    with selectors.read_once():
        tree = selectors.tree_order(trace.trace_id)
        yield tree_head(tree)
        for index in range(chunk_count(tree)):
            yield tree_chunk(trace, tree, index)


def tree_head(tree: selectors.TreeOrder) -> bytes:
    """The first line of the tree data."""
    return _line({"count": len(tree), "max_indent": MAX_INDENT})


def chunk_count(tree: selectors.TreeOrder) -> int:
    return -(-len(tree) // selectors.TREE_CHUNK)


def tree_chunk(trace: Trace, tree: selectors.TreeOrder, index: int) -> bytes:
    """The line of chunk `index` (rows index * TREE_CHUNK onwards) of the tree data."""
    start = index * selectors.TREE_CHUNK
    rows = selectors.tree_rows(trace.trace_id, tree, start, start + selectors.TREE_CHUNK)
    return _line(_chunk(rows, trace.start_ns, trace.end_ns - trace.start_ns))


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def axis_ticks(duration_ns: int, count: int = 4) -> list[str]:
    """Labels for the shared time axis: 0, then `count` evenly spaced offsets."""
    return ["0"] + [duration(duration_ns * i // count) for i in range(1, count + 1)]


# -- Where the time went: the view model of the trace page's time split and its tables, and the
# flame graph's data. Both come from one tracing.analysis.Analysis.

KIND_LABELS = {
    analysis.LLM: "LLM",
    analysis.TOOL: "Tool",
    analysis.AGENT: "Agent",
    analysis.FORMATTER: "Formatter",
    analysis.RETRIEVAL: "Retrieval",
    analysis.OTHER: "Other",
}


@dataclass(frozen=True, slots=True)
class Segment:
    """A kind's part of the time split bar, in percent of the bar."""

    kind: str
    label: str
    self_ns: int
    x: float
    width: float
    percent: float


@dataclass(frozen=True, slots=True)
class GroupRow:
    key: str
    label: str
    group: analysis.Group
    cost: costs.Total
    # Tokens and cost are counted on model calls: for a group without any, they show "—".
    has_usage: bool


@dataclass(frozen=True, slots=True)
class TimeSplit:
    wall_ns: int
    # The sum of every span's self time: more than the wall time when work ran concurrently.
    span_ns: int
    segments: list[Segment]
    kinds: list[GroupRow]
    models: list[GroupRow]
    tools: list[GroupRow]
    agents: list[GroupRow]
    critical_path: list[str]
    cost: costs.Total


def _rows(
    groups: dict[str, analysis.Group], labels: dict[str, str] | None = None
) -> list[GroupRow]:
    rows = []
    for key, group in groups.items():
        label = labels.get(key, key) if labels else key
        rows.append(
            GroupRow(
                key=key,
                label=label or "(unnamed)",
                group=group,
                cost=costs.total(group.costs),
                has_usage=bool(group.costs),
            )
        )
    # The most self time first: where the time went.
    rows.sort(key=lambda row: -row.group.self_ns)
    return rows


def time_split(result: analysis.Analysis) -> TimeSplit:
    """The bar splitting the trace's wall time by kind of work (self time) and the tables per
    kind, model, tool and agent, biggest self time first. Concurrent work makes the spans' self
    times add up to more than the wall time: the bar is then split in proportion to the sum."""
    span_ns = sum(group.self_ns for group in result.by_kind.values())
    whole = max(span_ns, result.wall_ns) or 1
    segments = []
    x = 0.0
    for kind, group in result.by_kind.items():
        if group.self_ns <= 0:
            continue
        width = group.self_ns * 100 / whole
        segments.append(
            Segment(kind, KIND_LABELS[kind], group.self_ns, round(x, 3), round(width, 3), width)
        )
        x += width
    return TimeSplit(
        wall_ns=result.wall_ns,
        span_ns=span_ns,
        segments=segments,
        kinds=_rows(result.by_kind, KIND_LABELS),
        models=_rows(result.by_model, {"": "(no model)"}),
        tools=_rows(result.by_tool),
        agents=_rows(result.by_agent),
        critical_path=result.critical_path,
        cost=result.cost,
    )


def _call_tree_order(tree: analysis.Tree) -> Iterator[int]:
    """Depth first, siblings by start (`tree.order` has parents before children, but not
    siblings in order, which the flame graph packs from the left)."""
    stack = list(reversed(tree.top))
    children = tree.children
    while stack:
        i = stack.pop()
        yield i
        stack.extend(reversed(children[i]))


def flame_data(spans: Sequence[analysis.SpanFacts]) -> dict[str, Any]:
    """The flame graph's data (static/studio/flame.js): every span in call-tree order, as
    columns. `depth`, `start` (ns after the trace's start), `dur` (ns), `kind` (index into
    `kinds`), `type` and `label` (indices into `strings`), `du` and `self` (the duration and the
    self time, formatted, indices into `strings`), `err` (1: status ERROR) and `critical`
    (positions, in this order, of the spans on the critical path). Costs are not needed: the
    spans come from `selectors.tree_facts`, and only the tree, the self times and the critical
    path of tracing.analysis are computed."""
    tree = analysis.build_tree(spans)
    self_ns = analysis.self_times(tree)
    critical_path = analysis.critical_path(tree)
    parent = tree.parent
    start_ns = min((span.start_ns for span in spans), default=0)
    wall_ns = max((span.end_ns for span in spans), default=0) - start_ns
    kinds = {kind: i for i, kind in enumerate(analysis.KINDS)}
    strings: dict[str, int] = {}
    formatted: dict[int, int] = {}  # ns -> index of its text: agent runs repeat durations
    depth_of = [0] * len(spans)
    ids, depths, starts, durations, kind_col, types, labels, du, selfs, errors = (
        [] for _ in range(10)
    )
    for i in _call_tree_order(tree):
        span = spans[i]
        d = depth_of[i] = depth_of[parent[i]] + 1 if parent[i] >= 0 else 0
        length = span.end_ns - span.start_ns if span.end_ns > span.start_ns else 0
        ids.append(span.span_id)
        depths.append(d)
        starts.append(span.start_ns - start_ns)
        durations.append(length)
        kind_col.append(kinds[analysis.kind_of(span.span_type)])
        types.append(strings.setdefault(span.span_type or conventions.OTHER, len(strings)))
        label = conventions.display_name(span.name, span.label)
        labels.append(strings.setdefault(label, len(strings)))
        text = formatted.get(length)
        if text is None:
            text = formatted[length] = strings.setdefault(duration(length), len(strings))
        du.append(text)
        text = formatted.get(self_ns[i])
        if text is None:
            text = formatted[self_ns[i]] = strings.setdefault(duration(self_ns[i]), len(strings))
        selfs.append(text)
        errors.append(1 if span.status_code == STATUS_ERROR else 0)
    position = {span_id: place for place, span_id in enumerate(ids)}
    return {
        "start_ns": start_ns,
        "wall_ns": wall_ns,
        "kinds": list(analysis.KINDS),
        "kind_labels": [KIND_LABELS[kind] for kind in analysis.KINDS],
        "strings": list(strings),
        "ids": ids,
        "depth": depths,
        "start": starts,
        "dur": durations,
        "kind": kind_col,
        "type": types,
        "label": labels,
        "du": du,
        "self": selfs,
        "err": errors,
        "critical": [position[span_id] for span_id in critical_path],
    }
