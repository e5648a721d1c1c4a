"""The compare page (`/traces/compare/?a=&b=`): what it shows of two traces aligned by
tracing.compare, every text formatted here so the template only places it.

The alignment needs every span of both traces, but the page shows a window of rows (ROWS_SHOWN,
then "show more"), and only those rows' message texts are read and diffed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse

from studio.formatting import duration
from tracing import compare, selectors
from tracing.models import Trace

ROWS_SHOWN = 150
BIGGEST_SHOWN = 10
# Deeper rows are indented as this depth (compare.css has a class per depth up to it).
MAX_INDENT = 16


def usd(value: float | None) -> str:
    if value is None:
        return "no price"
    if value == 0:
        return "$0"
    return f"${value:.4f}" if abs(value) < 1 else f"${value:,.2f}"


def _signed(value: float, text: str) -> str:
    return text if value < 0 or text.startswith("-") else f"+{text}"


def _percent(a: float, b: float) -> str:
    if not a:
        return ""
    return f" ({(b - a) / a * 100:+.0f}%)"


def _trend(delta: float) -> str:
    # More time, tokens, cost or errors is worse.
    return "worse" if delta > 0 else "better" if delta < 0 else ""


@dataclass(slots=True)
class Line:
    """One fact of both sides and the difference, as text; `trend` is worse, better or ""."""

    label: str
    a: str
    b: str
    delta: str = ""
    trend: str = ""


def _number_line(label: str, a: float, b: float, fmt: Any) -> Line:
    delta = b - a
    text = "" if not delta else _signed(delta, fmt(delta)) + _percent(a, b)
    return Line(label, fmt(a), fmt(b), text, _trend(delta))


def _cost_line(label: str, a: float | None, b: float | None) -> Line:
    if a is None or b is None:
        return Line(label, usd(a), usd(b), "" if a == b else "n/a")
    return _number_line(label, a, b, usd)


def _int(value: float) -> str:
    return f"{int(value):,}"


@dataclass(slots=True)
class Side:
    """One side of a row: the span in its trace."""

    span_id: str
    url: str
    duration: str
    tokens: str
    cost: str
    status: str
    model: str


@dataclass(slots=True)
class DiffLine:
    kind: str  # add, del, hunk, head or ctx
    text: str


@dataclass(slots=True)
class RowView:
    index: int
    state: str
    depth: int
    indent: int
    name: str
    span_type: str
    a: Side | None
    b: Side | None
    changes: list[Line] = field(default_factory=list)
    # Short words for the row's line: "+120 ms", "OK → ERROR", "model".
    chips: list[Line] = field(default_factory=list)
    diffs: list[tuple[str, list[DiffLine]]] = field(default_factory=list)


@dataclass(slots=True)
class Change:
    """One of the biggest changes: which row, and what changed most."""

    index: int
    state: str
    name: str
    span_type: str
    what: str
    url: str
    a_url: str
    b_url: str


@dataclass
class ComparePage:
    a: Trace
    b: Trace
    summary: list[Line]
    counts: dict[str, int]
    biggest: list[Change]
    rows: list[RowView]
    start: int
    end: int
    total: int
    changes_only: bool
    more_url: str
    previous_url: str
    all_url: str
    changes_url: str


def _span_url(trace_id: str, span_id: str) -> str:
    return f"{reverse('trace_detail', args=[trace_id])}?{urlencode({'span': span_id})}"


def page_url(a: str, b: str, **params: Any) -> str:
    query = {"a": a, "b": b, **{k: v for k, v in params.items() if v}}
    return f"{reverse('trace_compare')}?{urlencode(query)}"


def _side(trace_id: str, span: compare.CompareFacts | None) -> Side | None:
    if span is None:
        return None
    return Side(
        span_id=span.span_id,
        url=_span_url(trace_id, span.span_id),
        duration=duration(span.duration_ns),
        tokens=f"{span.input_tokens:,} → {span.output_tokens:,}" if span.tokens else "",
        cost=usd(span.cost_usd) if span.is_model_call else "",
        status=compare.STATUS_NAMES.get(span.status_code, "UNSET"),
        model=span.model,
    )


def _ms(value: float) -> str:
    return duration(round(value * 1e6))


def _change_lines(changes: dict[str, Any]) -> list[Line]:
    lines = []
    if change := changes.get("duration_ms"):
        lines.append(_number_line("Duration", change["a"], change["b"], _ms))
    for key, label in (("input_tokens", "Input tokens"), ("output_tokens", "Output tokens")):
        if change := changes.get(key):
            lines.append(_number_line(label, change["a"], change["b"], _int))
    if change := changes.get("cost_usd"):
        lines.append(_cost_line("Cost", change["a"], change["b"]))
    if change := changes.get("status"):
        trend = "worse" if change["b"] == "ERROR" else "better" if change["a"] == "ERROR" else ""
        lines.append(Line("Status", change["a"], change["b"], "changed", trend))
    if change := changes.get("model"):
        lines.append(Line("Model", change["a"] or "none", change["b"] or "none", "changed"))
    for key, change in changes.get("params", {}).items():
        label = key.removeprefix("gen_ai.request.")
        lines.append(Line(label, _param(change["a"]), _param(change["b"]), "changed"))
    return lines


def _param(value: str | None) -> str:
    return "unset" if value is None else value


def _chips(row: compare.Row, lines: list[Line]) -> list[Line]:
    if row.a is None or row.b is None:
        return []
    chips = []
    for line in lines:
        if line.label == "Duration":
            chips.append(Line("Duration", "", "", line.delta.split(" (")[0], line.trend))
        elif line.label == "Status":
            chips.append(Line("Status", "", "", f"{line.a} → {line.b}", line.trend))
        elif line.label in ("Model", "Cost"):
            chips.append(Line(line.label, "", "", line.label.lower(), line.trend))
    if any(line.label in ("Input tokens", "Output tokens") for line in lines):
        chips.append(Line("Tokens", "", "", "tokens"))
    if row.changes.get("params"):
        chips.append(Line("Parameters", "", "", "parameters"))
    if row.text_diff:
        chips.append(Line("Messages", "", "", "messages"))
    return chips


def _diff_lines(lines: list[str]) -> list[DiffLine]:
    out = []
    for line in lines:
        if line.startswith(("+++", "---")):
            kind = "head"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append(DiffLine(kind, line))
    return out


def _row_view(index: int, row: compare.Row, a: str, b: str) -> RowView:
    lines = _change_lines(row.changes)
    return RowView(
        index=index,
        state=row.state,
        depth=row.depth,
        indent=min(row.depth, MAX_INDENT),
        name=row.name,
        span_type=row.span_type or "other",
        a=_side(a, row.a),
        b=_side(b, row.b),
        changes=lines,
        chips=_chips(row, lines),
        diffs=[
            (label, _diff_lines(row.text_diff[key]))
            for key, label in (("input", "Input messages"), ("output", "Output messages"))
            if key in row.text_diff
        ],
    )


def _what(row: compare.Row) -> str:
    """The one line a biggest change is listed by."""
    span = row.a or row.b
    assert span is not None
    if row.a is None or row.b is None:
        facts = [duration(span.duration_ns)]
        if span.tokens:
            facts.append(f"{span.tokens:,} tokens")
        if span.status_code == compare.STATUS_ERROR:
            facts.append("ERROR")
        return f"{'added' if row.a is None else 'removed'} ({', '.join(facts)})"
    parts = []
    changes = row.changes
    if status := changes.get("status"):
        parts.append(f"status {status['a']} → {status['b']}")
    if model := changes.get("model"):
        parts.append(f"model {model['a'] or 'none'} → {model['b'] or 'none'}")
    if change := changes.get("duration_ms"):
        parts.append(f"{_signed(change['delta'], _ms(change['delta']))} duration")
    tokens = row.b.tokens - row.a.tokens
    if tokens:
        parts.append(f"{tokens:+,} tokens")
    if (change := changes.get("cost_usd")) and change["delta"] is not None:
        parts.append(f"{_signed(change['delta'], usd(change['delta']))} cost")
    if "params" in changes:
        parts.append("parameters")
    return ", ".join(parts) or "changed"


def build(
    trace_a: Trace, trace_b: Trace, *, start: int = 0, changes_only: bool = False
) -> ComparePage:
    """The page's view model: the two traces' facts (two queries) and, for the rows shown, the
    message texts (one more query when a shown row pairs model calls or agents)."""
    a, b = trace_a.trace_id, trace_b.trace_id
    comparison = selectors.trace_comparison(a, b, texts=False)
    rows = comparison.rows
    counts = {"added": 0, "removed": 0, "changed": 0, "aligned": 0}
    changed_rows = []
    for i, row in enumerate(rows):
        if row.a is None:
            counts["added"] += 1
        elif row.b is None:
            counts["removed"] += 1
        else:
            counts["aligned"] += 1
            if not row.changes:
                continue
            counts["changed"] += 1
        changed_rows.append(i)
    indexed = [(i, rows[i]) for i in changed_rows] if changes_only else list(enumerate(rows))
    total = len(indexed)
    start = max(0, min(start, max(total - 1, 0)))
    window = indexed[start : start + ROWS_SHOWN]
    selectors.add_text_diffs(a, b, [row for _, row in window])
    side_a, side_b = comparison.a, comparison.b
    summary = [
        _number_line("Duration", side_a.duration_ns, side_b.duration_ns, duration),
        _number_line("Spans", side_a.spans, side_b.spans, _int),
        _number_line("Errors", side_a.errors, side_b.errors, _int),
        _number_line("Input tokens", side_a.input_tokens, side_b.input_tokens, _int),
        _number_line("Output tokens", side_a.output_tokens, side_b.output_tokens, _int),
        _cost_line("Cost", side_a.cost_usd, side_b.cost_usd),
    ]
    position = {id(row): i for i, row in enumerate(rows)}
    biggest = []
    for row in comparison.biggest(BIGGEST_SHOWN):
        index = position[id(row)]
        biggest.append(
            Change(
                index=index,
                state=row.state,
                name=row.name,
                span_type=row.span_type or "other",
                what=_what(row),
                url=page_url(a, b, start=index - index % ROWS_SHOWN) + f"#row-{index}",
                a_url=_span_url(a, row.a.span_id) if row.a else "",
                b_url=_span_url(b, row.b.span_id) if row.b else "",
            )
        )
    flag = "1" if changes_only else ""
    end = start + len(window)
    return ComparePage(
        a=trace_a,
        b=trace_b,
        summary=summary,
        counts=counts,
        biggest=biggest,
        rows=[_row_view(i, row, a, b) for i, row in window],
        start=start,
        end=end,
        total=total,
        changes_only=changes_only,
        more_url=page_url(a, b, start=end, changes=flag) if end < total else "",
        previous_url=page_url(a, b, start=max(0, start - ROWS_SHOWN), changes=flag)
        if start
        else "",
        all_url=page_url(a, b),
        changes_url=page_url(a, b, changes="1"),
    )


SUGGESTIONS = 10


def suggestions(trace: Trace) -> list[Trace]:
    """The most recent other traces with the same root name: what "compare with" offers."""
    return list(
        Trace.objects.filter(name=trace.name)
        .exclude(trace_id=trace.trace_id)
        .order_by("-start_ns")[:SUGGESTIONS]
    )
