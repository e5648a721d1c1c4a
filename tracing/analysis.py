"""Where a trace's time and money went: self time per span, totals per kind of work and per model,
tool and agent, and the critical path. Plain Python, no Django; O(n log n) and no recursion, so a
50,000-span trace of any depth is fine.

Self time: a span's duration minus the union of its children's intervals, each clipped to the
span; children running at the same time are counted once.

Critical path: the chain of spans that determined when the trace ended. Walking back from the end
(the latest-ending top-level span, then inside it), at each cut-off the path goes into the child
that was running last before the cut-off: among the children that started before it, the one whose
end, clipped to the cut-off, is latest. After that child the cut-off moves to its start, and the
walk continues with the children before it. A sibling still running when the chosen one ends is
clipped rather than skipped, so concurrent siblings are handled: when the last-finishing one
started early (jaeger-ui #2371), it covers the whole stretch and the short ones inside it are not
on the path. Children that end after their parent (clock skew, fire-and-forget) are clipped to
it; orphans, several roots and loops of parent ids are top-level spans under a virtual root that
spans the whole trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracing import conventions
from tracing.costs import MODEL_SPAN_TYPES, Total, total

# Kinds of work: what each span type's time counts as.
LLM = "llm"
TOOL = "tool"
AGENT = "agent"
FORMATTER = "formatter"
RETRIEVAL = "retrieval"
OTHER = "other"
KINDS = (LLM, TOOL, AGENT, FORMATTER, RETRIEVAL, OTHER)
_KIND_OF_TYPE = {
    conventions.LLM: LLM,
    conventions.TOOL: TOOL,
    conventions.AGENT: AGENT,
    # A ReAct round's own time is its agent's bookkeeping.
    conventions.STEP: AGENT,
    conventions.FORMATTER: FORMATTER,
    conventions.EMBEDDING: RETRIEVAL,
    conventions.RETRIEVER: RETRIEVAL,
}


def kind_of(span_type: str) -> str:
    return _KIND_OF_TYPE.get(span_type, OTHER)


@dataclass(slots=True)
class SpanFacts:
    """What the analysis needs of a span (narrow columns, no JSON bodies)."""

    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    span_type: str = ""
    name: str = ""
    # The span's label: the agent's name for an agent span, the tool's for a tool span.
    label: str = ""
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    status_code: int = 0
    cost_usd: float | None = None

    @property
    def is_model_call(self) -> bool:
        return self.span_type in MODEL_SPAN_TYPES


@dataclass(slots=True)
class Group:
    count: int = 0
    total_ns: int = 0
    self_ns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    costs: list[float | None] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        cost = total(self.costs)
        return {
            "count": self.count,
            "total_ms": self.total_ns / 1e6,
            "self_ms": self.self_ns / 1e6,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": cost.cost_usd,
            "unpriced_spans": cost.unpriced_spans,
        }


@dataclass
class Analysis:
    start_ns: int
    end_ns: int
    self_ns: dict[str, int]
    by_kind: dict[str, Group]
    by_model: dict[str, Group]
    by_tool: dict[str, Group]
    by_agent: dict[str, Group]
    critical_path: list[str]
    cost: Total

    @property
    def wall_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(slots=True)
class Tree:
    """Spans by index: children of each (sorted by start), the top-level ones (roots, orphans,
    and one span of each loop of parent ids), each one's parent (-1 at the top level), and an
    order with every parent before its children."""

    spans: Sequence[SpanFacts]
    children: list[list[int]]
    top: list[int]
    parent: list[int]
    order: list[int]


def build_tree(spans: Sequence[SpanFacts]) -> Tree:
    n = len(spans)
    index = {span.span_id: i for i, span in enumerate(spans)}
    # Appending in start order leaves every list of children sorted by start.
    by_start = sorted(range(n), key=lambda k: (spans[k].start_ns, spans[k].span_id))
    children: list[list[int]] = [[] for _ in range(n)]
    parent = [-1] * n
    top = []
    for i in by_start:
        span = spans[i]
        p = index.get(span.parent_span_id, -1) if span.parent_span_id else -1
        if p < 0 or p == i:
            top.append(i)
        else:
            parent[i] = p
            children[p].append(i)
    order: list[int] = []
    seen = bytearray(n)
    _walk(children, top, seen, order)
    if len(order) < n:
        # Spans whose parents only point at each other: each loop enters at its earliest span,
        # which is no longer its parent's child (the loop is cut there, as the tree shows).
        for i in by_start:
            if not seen[i]:
                children[parent[i]].remove(i)
                parent[i] = -1
                top.append(i)
                _walk(children, [i], seen, order)
        top.sort(key=lambda k: (spans[k].start_ns, spans[k].span_id))
    return Tree(spans=spans, children=children, top=top, parent=parent, order=order)


def _walk(children: list[list[int]], starts: list[int], seen: bytearray, order: list[int]) -> None:
    stack = [i for i in reversed(starts) if not seen[i]]
    for i in stack:
        seen[i] = 1
    while stack:
        i = stack.pop()
        order.append(i)
        for kid in children[i]:
            if not seen[kid]:
                seen[kid] = 1
                stack.append(kid)


def self_times(tree: Tree) -> list[int]:
    """Each span's duration minus the union of its children's intervals clipped to it."""
    spans = tree.spans
    starts = [span.start_ns for span in spans]
    ends = [span.end_ns if span.end_ns > span.start_ns else span.start_ns for span in spans]
    result = [end - start for start, end in zip(starts, ends, strict=True)]
    for i, kids in enumerate(tree.children):
        if not kids:
            continue
        start, end = starts[i], ends[i]
        covered = 0
        run_start = run_end = start
        # Children are sorted by start, so their clipped intervals are too.
        for kid in kids:
            lo = starts[kid] if starts[kid] > start else start
            hi = ends[kid] if ends[kid] < end else end
            if hi <= lo:
                continue
            if lo > run_end:
                covered += run_end - run_start
                run_start, run_end = lo, hi
            elif hi > run_end:
                run_end = hi
        covered += run_end - run_start
        result[i] -= covered
    return result


def span_self_ns(start: int, end: int, children: Iterable[tuple[int, int]]) -> int:
    """One span's self time, from its children's (start, end) in any order: what `self_times`
    computes for every span of a tree, for the span panel, which reads one span's children."""
    end = max(end, start)
    covered = 0
    run_start = run_end = start
    for lo, hi in sorted(children):
        lo = max(lo, start)
        hi = min(hi, end)
        if hi <= lo:
            continue
        if lo > run_end:
            covered += run_end - run_start
            run_start, run_end = lo, hi
        elif hi > run_end:
            run_end = hi
    return end - start - (covered + run_end - run_start)


def critical_path(tree: Tree) -> list[str]:
    """The spans on the critical path, root first, then in the order the path reaches them."""
    spans = tree.spans
    if not spans:
        return []
    # By end, latest first: at each cut-off the first child that started before it is the one
    # whose clipped end is latest, and a child passed over (started at or after the cut-off)
    # can never qualify again, because the cut-off only moves back.
    latest_first = sorted(range(len(spans)), key=lambda k: (-spans[k].end_ns, -spans[k].start_ns))
    by_end: list[list[int]] = [[] for _ in spans]
    top: list[int] = []
    parent = tree.parent
    for i in latest_first:
        (top if parent[i] < 0 else by_end[parent[i]]).append(i)
    trace_start = min(span.start_ns for span in spans)
    trace_end = max(span.end_ns for span in spans)
    visited: set[int] = set()
    windows: list[tuple[int, int, int]] = []  # (window start, depth, index)
    # Frames: [children by end, next position, cut-off, frame start, depth, picked yet].
    stack: list[list[Any]] = [[top, 0, trace_end, trace_start, 0, False]]
    while stack:
        frame = stack[-1]
        kids, position, cutoff, frame_start, depth, picked = frame
        chosen = None
        if depth == 0 or cutoff > frame_start:
            while position < len(kids):
                kid = kids[position]
                position += 1
                if kid in visited:
                    continue
                child = spans[kid]
                if not picked and depth == 0:
                    chosen = kid  # the trace ends with the latest-ending top-level span
                    break
                if child.end_ns <= frame_start:
                    position = len(kids)  # this one and all after it ended before the frame
                    break
                if child.start_ns < cutoff:
                    chosen = kid
                    break
        frame[1] = position
        if chosen is None:
            stack.pop()
            continue
        visited.add(chosen)
        frame[5] = True
        child = spans[chosen]
        window_start = max(child.start_ns, frame_start) if depth > 0 else child.start_ns
        window_end = max(min(child.end_ns, cutoff), window_start)
        windows.append((window_start, depth, chosen))
        # Back in this frame, the walk continues before the chosen child.
        frame[2] = min(cutoff, child.start_ns)
        stack.append([by_end[chosen], 0, window_end, window_start, depth + 1, True])
    windows.sort()
    return [spans[i].span_id for _, _, i in windows]


def _agents(tree: Tree) -> list[str]:
    """For each span, the name of the agent it runs under (itself if an agent span)."""
    spans, parent = tree.spans, tree.parent
    agent = [""] * len(spans)
    for i in tree.order:
        span = spans[i]
        if span.span_type == conventions.AGENT:
            agent[i] = span.label or span.name
        elif parent[i] >= 0:
            agent[i] = agent[parent[i]]
    return agent


def _add(groups: dict[str, Group], key: str, span: SpanFacts, self_ns: int) -> Group:
    group = groups.get(key)
    if group is None:
        group = groups[key] = Group()
    group.count += 1
    if span.end_ns > span.start_ns:
        group.total_ns += span.end_ns - span.start_ns
    group.self_ns += self_ns
    return group


def _add_usage(group: Group, span: SpanFacts) -> None:
    group.input_tokens += span.input_tokens
    group.output_tokens += span.output_tokens
    group.costs.append(span.cost_usd)


def analyse(spans: Sequence[SpanFacts]) -> Analysis:
    """Self times, totals and the critical path of one trace's spans.

    Tokens and cost are counted on model calls only (an agent span repeating its calls' totals
    is not counted twice); an agent's are those of the model calls under it, down to the next
    agent.
    """
    tree = build_tree(spans)
    selfs = self_times(tree)
    agents = _agents(tree)
    by_kind: dict[str, Group] = {}
    by_model: dict[str, Group] = {}
    by_tool: dict[str, Group] = {}
    by_agent: dict[str, Group] = {}
    costs: list[float | None] = []
    for i, span in enumerate(spans):
        span_type = span.span_type
        kind_group = _add(by_kind, _KIND_OF_TYPE.get(span_type, OTHER), span, selfs[i])
        if span_type == conventions.TOOL:
            _add(by_tool, span.label or span.name, span, selfs[i])
        elif span_type == conventions.AGENT:
            _add(by_agent, agents[i], span, selfs[i])
        elif span_type in MODEL_SPAN_TYPES:
            costs.append(span.cost_usd)
            _add_usage(kind_group, span)
            _add_usage(_add(by_model, span.model, span, selfs[i]), span)
            if agents[i]:
                group = by_agent.get(agents[i])
                if group is None:
                    group = by_agent[agents[i]] = Group()
                _add_usage(group, span)
    return Analysis(
        start_ns=min((span.start_ns for span in spans), default=0),
        end_ns=max((span.end_ns for span in spans), default=0),
        self_ns={span.span_id: selfs[i] for i, span in enumerate(spans)},
        by_kind={kind: by_kind[kind] for kind in KINDS if kind in by_kind},
        by_model=dict(sorted(by_model.items())),
        by_tool=dict(sorted(by_tool.items())),
        by_agent=dict(sorted(by_agent.items())),
        critical_path=critical_path(tree),
        cost=total(costs),
    )


def as_dict(analysis: Analysis) -> dict[str, Any]:
    """The analysis as the API serves it."""
    return {
        "start_ns": analysis.start_ns,
        "end_ns": analysis.end_ns,
        "wall_ms": analysis.wall_ns / 1e6,
        "self_time_ms": {span_id: ns / 1e6 for span_id, ns in analysis.self_ns.items()},
        "by_kind": {key: group.as_dict() for key, group in analysis.by_kind.items()},
        "by_model": {key: group.as_dict() for key, group in analysis.by_model.items()},
        "by_tool": {key: group.as_dict() for key, group in analysis.by_tool.items()},
        "by_agent": {key: group.as_dict() for key, group in analysis.by_agent.items()},
        "critical_path": analysis.critical_path,
        "cost_usd": analysis.cost.cost_usd,
        "model_spans": analysis.cost.model_spans,
        "unpriced_spans": analysis.cost.unpriced_spans,
    }
