"""Where the time went: self time, totals per kind of work, model, tool and agent, the critical
path on hand-built traces whose answer is known, and `/api/traces/<id>/analysis/`."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from tests.test_trace_page import TRACE, payload, span, store
from tracing.analysis import SpanFacts, analyse, build_tree, critical_path, self_times

MS = 1_000_000


def s(span_id: str, parent: str, start: int, end: int, span_type: str = "other", **kw) -> SpanFacts:
    return SpanFacts(span_id, parent, start * MS, end * MS, span_type, name=span_id, **kw)


def path(spans: list[SpanFacts]) -> list[str]:
    return critical_path(build_tree(spans))


def selfs(spans: list[SpanFacts]) -> dict[str, float]:
    tree = build_tree(spans)
    return {span.span_id: ns / MS for span, ns in zip(spans, self_times(tree), strict=True)}


def test_self_time_counts_concurrent_children_once() -> None:
    spans = [
        s("root", "", 0, 100),
        s("a", "root", 10, 50),
        s("b", "root", 20, 60),  # overlaps a: the union is 10..60
        s("c", "root", 70, 80),
    ]
    assert selfs(spans) == {"root": 40, "a": 40, "b": 40, "c": 10}


def test_self_time_clips_children_to_the_parent() -> None:
    spans = [s("root", "", 10, 100), s("early", "root", 0, 20), s("late", "root", 90, 150)]
    assert selfs(spans)["root"] == 70


def test_critical_path_through_sequential_children() -> None:
    spans = [
        s("root", "", 0, 100),
        s("a", "root", 0, 30),
        s("b", "root", 30, 60),  # back to back with a
        s("c", "root", 65, 95),
        s("c1", "c", 70, 90),
    ]
    assert path(spans) == ["root", "a", "b", "c", "c1"]


def test_critical_path_when_the_last_finishing_sibling_started_early() -> None:
    # jaeger-ui #2371: foo1 and foo2 run concurrently, foo1 started first and finished last,
    # then foo3. foo2 finished long before foo3 started: it is not on the path.
    spans = [
        s("main", "", 0, 100),
        s("foo1", "main", 0, 62),
        s("foo2", "main", 10, 30),
        s("foo3", "main", 60, 100),
    ]
    assert path(spans) == ["main", "foo1", "foo3"]
    spans[1] = s("foo1", "main", 0, 60)
    assert path(spans) == ["main", "foo1", "foo3"]


def test_critical_path_of_concurrent_children_takes_the_one_that_ended_last() -> None:
    spans = [
        s("root", "", 0, 100),
        s("fast", "root", 5, 40),
        s("slow", "root", 5, 90),
        s("slow.llm", "slow", 50, 88),
        s("after", "root", 92, 99),
    ]
    assert path(spans) == ["root", "slow", "slow.llm", "after"]


def test_critical_path_with_children_outliving_their_parent_orphans_and_two_roots() -> None:
    spans = [
        s("r1", "", 0, 50),
        s("r1.child", "r1", 10, 70),  # ends after its parent (clock skew): clipped
        s("r2", "", 55, 120),
        s("orphan", "gone000000000000", 60, 130),  # parent never arrived: top level
        s("orphan.child", "orphan", 100, 125),
    ]
    # r2 ran alone from 55 to 60, before the orphan started.
    assert path(spans) == ["r1", "r1.child", "r2", "orphan", "orphan.child"]


def test_loops_of_parent_ids_do_not_hang() -> None:
    spans = [s("a", "b", 0, 10), s("b", "a", 2, 8), s("c", "c", 0, 5)]
    assert path(spans) == ["a", "b"]
    assert selfs(spans) == {"a": 4, "b": 6, "c": 5}


def test_totals_per_kind_model_tool_and_agent() -> None:
    spans = [
        s("agent", "", 0, 100, "agent", label="Planner"),
        s("step", "agent", 0, 100, "step"),
        s("llm1", "step", 0, 30, "llm", model="gpt-4o", input_tokens=10, output_tokens=5,
          cost_usd=0.5),
        s("tool", "step", 30, 60, "tool", label="search"),
        s("llm2", "step", 60, 90, "llm", model="mystery", input_tokens=1, output_tokens=1),
        s("fmt", "step", 90, 95, "formatter"),
    ]  # fmt: skip
    result = analyse(spans)
    assert result.by_kind["llm"].count == 2 and result.by_kind["llm"].self_ns == 60 * MS
    assert result.by_kind["agent"].self_ns == 5 * MS  # the step's 5 ms; the agent's own is 0
    assert result.by_kind["tool"].total_ns == 30 * MS
    assert result.by_kind["formatter"].count == 1
    assert result.by_model["gpt-4o"].as_dict()["cost_usd"] == 0.5
    assert result.by_model["mystery"].as_dict()["cost_usd"] is None
    assert result.by_tool["search"].count == 1
    planner = result.by_agent["Planner"].as_dict()
    assert planner["count"] == 1 and planner["input_tokens"] == 11
    assert planner["cost_usd"] == 0.5 and planner["unpriced_spans"] == 1
    assert result.cost.cost_usd == 0.5 and result.cost.unpriced_spans == 1
    assert result.critical_path == ["agent", "step", "llm1", "tool", "llm2", "fmt"]


def test_fifty_thousand_spans_deep_and_wide_are_fast() -> None:
    chain = [s("c0", "", 0, 50_000)] + [
        s(f"c{i}", f"c{i - 1}", i, 50_000 - i) for i in range(1, 25_000)
    ]
    wide = [s(f"w{i}", "c0", i, i + 3) for i in range(25_000)]
    started = time.perf_counter()
    result = analyse(chain + wide)
    elapsed = time.perf_counter() - started
    # w0 ran alone in c0's first millisecond, then the chain to the bottom.
    assert result.critical_path == ["c0", "w0"] + [f"c{i}" for i in range(1, 25_000)]
    assert elapsed < 10.0, elapsed  # no recursion, no quadratic step (the benchmark times it)


@pytest.mark.django_db
def test_the_analysis_api(client: Client, django_assert_num_queries) -> None:
    llm = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}
    store(
        payload(
            [
                span("b000000000000001", "invoke_agent Bot", end=100 * MS,
                     attributes={"gen_ai.operation.name": "invoke_agent",
                                 "gen_ai.agent.name": "Bot"}),
                span("b000000000000002", "chat", "b000000000000001", 0, 40 * MS,
                     attributes={**llm, "gen_ai.usage.input_tokens": 1000,
                                 "gen_ai.usage.cache_read.input_tokens": 500,
                                 "gen_ai.usage.output_tokens": 100}),
                span("b000000000000003", "execute_tool search", "b000000000000001", 10 * MS,
                     90 * MS, attributes={"gen_ai.operation.name": "execute_tool",
                                         "gen_ai.tool.name": "search"}),
            ]
        )
    )  # fmt: skip
    with django_assert_num_queries(2):
        body = client.get(f"/api/traces/{TRACE}/analysis/").json()
    assert body["self_time_ms"] == {
        "b000000000000001": 10.0,
        "b000000000000002": 40.0,
        "b000000000000003": 80.0,
    }
    # The chat ran alone for its first 10 ms, then the tool until 90 ms.
    assert body["critical_path"] == ["b000000000000001", "b000000000000002", "b000000000000003"]
    cost = (500 * 0.15 + 500 * 0.075 + 100 * 0.60) / 1e6
    assert body["cost_usd"] == pytest.approx(cost)
    assert body["by_kind"]["llm"]["input_tokens"] == 1000
    assert body["by_kind"]["tool"]["self_ms"] == 80.0
    assert body["by_model"]["gpt-4o-mini"]["cost_usd"] == pytest.approx(cost)
    assert body["by_tool"]["search"]["count"] == 1
    assert body["by_agent"]["Bot"]["output_tokens"] == 100
    assert client.get(f"/api/traces/{'ab' * 16}/analysis/").status_code == 404
    assert client.get("/api/traces/nope/analysis/").status_code == 400
