"""Two traces side by side: their spans aligned, what was added and removed, what changed in each
aligned pair, and a summary with the biggest changes first. Plain Python, no Django; O(n log n).

Alignment is by path: a span's names and kinds from the root down to it, and at each level its
place among the siblings with the same name and kind (the nth `search` tool call of its parent,
by start). Spans with a path only in A are removed, only in B added; the subtree of a removed span
is removed with it. Roots and orphans are all at the top level.

The biggest changes rank every difference by its share of the traces' totals: a pair's change in
duration over the longer trace's duration, in tokens over the larger token count, in cost over
the larger cost (an added or removed span counts its whole duration, tokens and cost); a change of
status or model adds a full point, so errors and model swaps come first.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from tracing.analysis import SpanFacts
from tracing.costs import total

# As tracing.models has them (this module imports no Django).
STATUS_ERROR = 2
STATUS_NAMES = {0: "UNSET", 1: "OK", STATUS_ERROR: "ERROR"}
# Text longer than this is cut before diffing (difflib is quadratic in the worst case).
MAX_DIFF_CHARS = 20_000
BIGGEST = 20


@dataclass(slots=True)
class CompareFacts(SpanFacts):
    """The analysis's facts of a span, plus its request parameters (`gen_ai.request.*`)."""

    params: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns if self.end_ns > self.start_ns else 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class Row:
    """One line of the side-by-side view: a path, its span in A and/or B."""

    depth: int
    name: str
    span_type: str
    a: CompareFacts | None
    b: CompareFacts | None
    changes: dict[str, Any] = field(default_factory=dict)
    text_diff: dict[str, list[str]] = field(default_factory=dict)
    score: float = 0.0

    @property
    def state(self) -> str:
        if self.a is None:
            return "added"
        if self.b is None:
            return "removed"
        return "changed" if self.changes or self.text_diff else "same"


@dataclass(slots=True)
class Side:
    duration_ns: int
    spans: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    unpriced_spans: int


@dataclass
class Comparison:
    a: Side
    b: Side
    rows: list[Row]

    @property
    def added(self) -> list[Row]:
        return [row for row in self.rows if row.a is None]

    @property
    def removed(self) -> list[Row]:
        return [row for row in self.rows if row.b is None]

    def biggest(self, limit: int = BIGGEST) -> list[Row]:
        ranked = [row for row in self.rows if row.score > 0]
        ranked.sort(key=lambda row: -row.score)
        return ranked[:limit]


def _side(spans: Sequence[CompareFacts]) -> Side:
    model_calls = [span for span in spans if span.is_model_call]
    cost = total([span.cost_usd for span in model_calls])
    start = min((span.start_ns for span in spans), default=0)
    end = max((span.end_ns for span in spans), default=0)
    return Side(
        duration_ns=end - start,
        spans=len(spans),
        errors=sum(1 for span in spans if span.status_code == STATUS_ERROR),
        input_tokens=sum(span.input_tokens for span in model_calls),
        output_tokens=sum(span.output_tokens for span in model_calls),
        cost_usd=cost.cost_usd,
        unpriced_spans=cost.unpriced_spans,
    )


_by_start = attrgetter("start_ns", "span_id")


def _paths(
    spans: Sequence[CompareFacts], keys: dict[tuple[int, str, str, int], int]
) -> tuple[dict[int, CompareFacts], dict[int, int], dict[int, int]]:
    """Each span's path id (interned in `keys`, shared by both traces), and each path's parent
    and depth. Iterative, and a loop of parent ids is cut where it is entered."""
    index = {span.span_id: span for span in spans}
    children: dict[str, list[CompareFacts]] = {}
    top: list[CompareFacts] = []
    # Appending in start order leaves every list of siblings sorted by start.
    for span in sorted(spans, key=_by_start):
        parent = span.parent_span_id
        if parent and parent in index and parent != span.span_id:
            children.setdefault(parent, []).append(span)
        else:
            top.append(span)
    by_path: dict[int, CompareFacts] = {}
    parents: dict[int, int] = {}
    depths: dict[int, int] = {}
    seen: set[str] = set()

    def place(siblings: list[CompareFacts], parent_key: int, depth: int) -> list[tuple]:
        counts: dict[tuple[str, str], int] = {}
        placed = []
        for span in siblings:
            span_id = span.span_id
            if span_id in seen:
                continue
            seen.add(span_id)
            kind = (span.name, span.span_type)
            nth = counts.get(kind, 0)
            counts[kind] = nth + 1
            key = keys.setdefault((parent_key, *kind, nth), len(keys))
            by_path[key] = span
            parents[key] = parent_key
            depths[key] = depth
            placed.append((span, key, depth))
        return placed

    stack = place(top, -1, 0)
    while stack:
        span, key, depth = stack.pop()
        kids = children.get(span.span_id)
        if kids:
            stack.extend(place(kids, key, depth + 1))
    rest = [span for span in spans if span.span_id not in seen] if len(seen) < len(spans) else []
    while rest:
        # Spans whose parents only point at each other: the earliest enters at the top level.
        stack = place([min(rest, key=lambda s: (s.start_ns, s.span_id))], -1, 0)
        while stack:
            span, key, depth = stack.pop()
            stack.extend(place(children.get(span.span_id, []), key, depth + 1))
        rest = [span for span in rest if span.span_id not in seen]
    return by_path, parents, depths


def _changes(a: CompareFacts, b: CompareFacts) -> dict[str, Any]:
    duration_a, duration_b = a.duration_ns, b.duration_ns
    if (
        # Most pairs of a rerun differ in nothing but time: answer those first.
        duration_a == duration_b
        and a.input_tokens == b.input_tokens
        and a.output_tokens == b.output_tokens
        and a.cost_usd == b.cost_usd
        and a.status_code == b.status_code
        and a.model == b.model
        and a.params == b.params
    ):
        return {}
    changes: dict[str, Any] = {}
    if duration_a != duration_b:
        changes["duration_ms"] = {
            "a": duration_a / 1e6,
            "b": duration_b / 1e6,
            "delta": (duration_b - duration_a) / 1e6,
        }
    for name in ("input_tokens", "output_tokens"):
        va, vb = getattr(a, name), getattr(b, name)
        if va != vb:
            changes[name] = {"a": va, "b": vb, "delta": vb - va}
    if a.cost_usd != b.cost_usd:
        delta = None if a.cost_usd is None or b.cost_usd is None else b.cost_usd - a.cost_usd
        changes["cost_usd"] = {"a": a.cost_usd, "b": b.cost_usd, "delta": delta}
    if a.status_code != b.status_code:
        changes["status"] = {
            "a": STATUS_NAMES.get(a.status_code, "UNSET"),
            "b": STATUS_NAMES.get(b.status_code, "UNSET"),
        }
    if a.model != b.model:
        changes["model"] = {"a": a.model, "b": b.model}
    if a.params != b.params:
        changes["params"] = {
            key: {"a": a.params.get(key), "b": b.params.get(key)}
            for key in sorted(set(a.params) | set(b.params))
            if a.params.get(key) != b.params.get(key)
        }
    return changes


def _share(value: float, whole: float) -> float:
    return abs(value) / whole if whole > 0 else 0.0


def _score(row: Row, whole: tuple[float, float, float]) -> float:
    duration, tokens, cost = whole
    if row.a is None or row.b is None:
        span = row.a or row.b
        assert span is not None
        return (
            _share(span.duration_ns, duration)
            + _share(span.tokens, tokens)
            + _share(span.cost_usd or 0.0, cost)
            + (1.0 if span.status_code == STATUS_ERROR else 0.0)
        )
    if not row.changes:
        return 0.0
    a, b = row.a, row.b
    score = _share(b.duration_ns - a.duration_ns, duration) + _share(b.tokens - a.tokens, tokens)
    if a.cost_usd is not None and b.cost_usd is not None:
        score += _share(b.cost_usd - a.cost_usd, cost)
    if a.status_code != b.status_code:
        score += 1.0
    if a.model != b.model:
        score += 1.0
    if "params" in row.changes:
        score += 0.5
    return score


def compare(spans_a: Sequence[CompareFacts], spans_b: Sequence[CompareFacts]) -> Comparison:
    keys: dict[tuple[int, str, str, int], int] = {}
    path_a, parents_a, depth_a = _paths(spans_a, keys)
    path_b, parents_b, depth_b = _paths(spans_b, keys)
    side_a, side_b = _side(spans_a), _side(spans_b)
    tokens_a = side_a.input_tokens + side_a.output_tokens
    tokens_b = side_b.input_tokens + side_b.output_tokens
    whole = (
        float(max(side_a.duration_ns, side_b.duration_ns)),
        float(max(tokens_a, tokens_b)),
        float(max(side_a.cost_usd or 0.0, side_b.cost_usd or 0.0)),
    )
    start_a = min((span.start_ns for span in spans_a), default=0)
    start_b = min((span.start_ns for span in spans_b), default=0)
    # The merged tree of paths, siblings by their start offset in A (B for added ones).
    children: dict[int, list[tuple[int, str, int]]] = {}
    for key, span in path_a.items():
        children.setdefault(parents_a[key], []).append((span.start_ns - start_a, span.span_id, key))
    for key, span in path_b.items():
        if key not in path_a:
            offset = span.start_ns - start_b
            children.setdefault(parents_b[key], []).append((offset, span.span_id, key))
    rows: list[Row] = []
    stack = sorted(children.get(-1, []), reverse=True)
    while stack:
        key = stack.pop()[2]
        a = path_a.get(key)
        b = path_b.get(key)
        span = a or b
        assert span is not None
        row = Row(
            depth_a[key] if a is not None else depth_b[key],
            span.name,
            span.span_type,
            a,
            b,
            _changes(a, b) if a and b else {},
        )
        if row.changes or a is None or b is None:
            row.score = _score(row, whole)
        rows.append(row)
        kids = children.get(key)
        if kids:
            stack.extend(sorted(kids, reverse=True))
    return Comparison(a=side_a, b=side_b, rows=rows)


def text_diff(before: str, after: str) -> list[str]:
    """A unified diff of two texts, by line; empty when they are equal."""
    if before == after:
        return []
    lines_a = before[:MAX_DIFF_CHARS].splitlines()
    lines_b = after[:MAX_DIFF_CHARS].splitlines()
    return list(difflib.unified_diff(lines_a, lines_b, "a", "b", n=2, lineterm=""))


def _facts(span: CompareFacts | None) -> dict[str, Any] | None:
    if span is None:
        return None
    duration = span.end_ns - span.start_ns
    return {
        "span_id": span.span_id,
        "duration_ms": (duration if duration > 0 else 0) / 1e6,
        "status": STATUS_NAMES.get(span.status_code, "UNSET"),
        "model": span.model,
        "input_tokens": span.input_tokens,
        "output_tokens": span.output_tokens,
        "cost_usd": span.cost_usd,
    }


def _side_dict(side: Side) -> dict[str, Any]:
    return {
        "duration_ms": side.duration_ns / 1e6,
        "span_count": side.spans,
        "error_count": side.errors,
        "input_tokens": side.input_tokens,
        "output_tokens": side.output_tokens,
        "cost_usd": side.cost_usd,
        "unpriced_spans": side.unpriced_spans,
    }


def row_dict(row: Row) -> dict[str, Any]:
    return {
        "state": row.state,
        "depth": row.depth,
        "name": row.name,
        "span_type": row.span_type,
        "a": _facts(row.a),
        "b": _facts(row.b),
        "changes": row.changes,
        **({"text_diff": row.text_diff} if row.text_diff else {}),
    }


def as_dict(comparison: Comparison) -> dict[str, Any]:
    """The comparison as the API serves it."""
    rows = comparison.rows
    position = {id(row): i for i, row in enumerate(rows)}
    return {
        "summary": {
            "a": _side_dict(comparison.a),
            "b": _side_dict(comparison.b),
            "added": sum(1 for row in rows if row.a is None),
            "removed": sum(1 for row in rows if row.b is None),
            "changed": sum(1 for row in rows if row.a and row.b and row.state == "changed"),
            "aligned": sum(1 for row in rows if row.a and row.b),
            # Indexes into "rows", biggest change first.
            "biggest_changes": [position[id(row)] for row in comparison.biggest()],
        },
        "rows": [row_dict(row) for row in rows],
    }
