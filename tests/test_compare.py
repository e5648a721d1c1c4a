"""Comparing two traces: alignment by path with inserted, removed and repeated spans, the
differences of aligned pairs, the summary, and `/api/traces/compare/`."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.test_trace_page import payload, span, store
from tracing.compare import CompareFacts, compare, text_diff

MS = 1_000_000
TRACE_A = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
TRACE_B = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"


def f(span_id: str, parent: str, name: str, start: int, end: int, span_type: str = "tool", **kw):
    return CompareFacts(span_id, parent, start * MS, end * MS, span_type, name, **kw)


def pairs(comparison) -> list[tuple[str | None, str | None, str]]:
    return [
        (row.a.span_id if row.a else None, row.b.span_id if row.b else None, row.state)
        for row in comparison.rows
    ]


def test_identical_traces_align_one_to_one_with_no_changes() -> None:
    a = [f("r", "", "agent", 0, 10, "agent"), f("t", "r", "search", 1, 5)]
    b = [f("R", "", "agent", 100, 110, "agent"), f("T", "R", "search", 101, 105)]
    assert pairs(compare(a, b)) == [("r", "R", "same"), ("t", "T", "same")]


def test_an_inserted_span_is_added_and_the_rest_stay_aligned() -> None:
    a = [
        f("r", "", "agent", 0, 100, "agent"),
        f("s1", "r", "search", 10, 20),
        f("w1", "r", "write", 30, 40),
    ]
    b = [
        f("R", "", "agent", 0, 100, "agent"),
        f("S1", "R", "search", 10, 20),
        f("F1", "R", "fetch", 22, 28),
        f("F1c", "F1", "parse", 23, 24, "function"),
        f("W1", "R", "write", 30, 40),
    ]
    assert pairs(compare(a, b)) == [
        ("r", "R", "same"),
        ("s1", "S1", "same"),
        (None, "F1", "added"),
        (None, "F1c", "added"),
        ("w1", "W1", "same"),
    ]


def test_a_removed_span_takes_its_subtree_with_it() -> None:
    a = [
        f("r", "", "agent", 0, 100, "agent"),
        f("x", "r", "fetch", 10, 20),
        f("xc", "x", "parse", 11, 12, "function"),
        f("w", "r", "write", 30, 40),
    ]
    b = [f("R", "", "agent", 0, 100, "agent"), f("W", "R", "write", 30, 40)]
    comparison = compare(a, b)
    assert pairs(comparison) == [
        ("r", "R", "same"),
        ("x", None, "removed"),
        ("xc", None, "removed"),
        ("w", "W", "same"),
    ]
    assert [row.a.span_id for row in comparison.removed if row.a] == ["x", "xc"]


def test_repeated_spans_align_by_occurrence_and_extra_ones_are_added() -> None:
    a = [
        f("r", "", "agent", 0, 100, "agent"),
        f("c1", "r", "chat", 0, 10, "llm"),
        f("t1", "r", "search", 10, 20),
        f("c2", "r", "chat", 20, 30, "llm"),
    ]
    b = [
        f("R", "", "agent", 0, 100, "agent"),
        f("C1", "R", "chat", 0, 10, "llm"),
        f("T1", "R", "search", 10, 20),
        f("C2", "R", "chat", 20, 35, "llm"),
        f("T2", "R", "search", 35, 40),
        f("C3", "R", "chat", 40, 50, "llm"),
    ]
    comparison = compare(a, b)
    assert pairs(comparison) == [
        ("r", "R", "same"),
        ("c1", "C1", "same"),
        ("t1", "T1", "same"),
        ("c2", "C2", "changed"),
        (None, "T2", "added"),
        (None, "C3", "added"),
    ]
    assert comparison.rows[3].changes["duration_ms"] == {"a": 10.0, "b": 15.0, "delta": 5.0}


def test_pair_differences_and_the_biggest_changes_first() -> None:
    a = [
        f("r", "", "agent", 0, 100, "agent"),
        f(
            "c",
            "r",
            "chat",
            0,
            50,
            "llm",
            model="gpt-4o",
            input_tokens=100,
            output_tokens=10,
            cost_usd=0.01,
            params={"gen_ai.request.temperature": "0.2"},
        ),
        f("t", "r", "search", 50, 60),
        f("u", "r", "upload", 60, 61),
    ]
    b = [
        f("R", "", "agent", 0, 120, "agent"),
        f("C", "R", "chat", 0, 52, "llm", model="gpt-4o-mini", input_tokens=100,
          output_tokens=30, cost_usd=0.001, params={"gen_ai.request.temperature": "0.7"}),
        f("T", "R", "search", 52, 110, status_code=2),
        f("U", "R", "upload", 110, 111),
    ]  # fmt: skip
    comparison = compare(a, b)
    chat = comparison.rows[1].changes
    assert chat["model"] == {"a": "gpt-4o", "b": "gpt-4o-mini"}
    assert chat["output_tokens"] == {"a": 10, "b": 30, "delta": 20}
    assert chat["cost_usd"]["delta"] == pytest.approx(-0.009)
    assert chat["params"] == {"gen_ai.request.temperature": {"a": "0.2", "b": "0.7"}}
    assert comparison.rows[2].changes["status"] == {"a": "UNSET", "b": "ERROR"}
    assert comparison.rows[3].state == "same"
    biggest = [row.name for row in comparison.biggest()]
    assert biggest[:2] == ["chat", "search"] or biggest[:2] == ["search", "chat"]
    assert "upload" not in biggest
    assert (comparison.a.errors, comparison.b.errors) == (0, 1)
    assert comparison.a.cost_usd == 0.01 and comparison.b.duration_ns == 120 * MS


def test_text_diff_is_by_line() -> None:
    assert text_diff("same", "same") == []
    diff = text_diff("[user] hello\n[assistant] 4", "[user] hello\n[assistant] 5")
    assert "-[assistant] 4" in diff and "+[assistant] 5" in diff


def _trace(trace_id: str, answer: str, extra_tool: bool) -> list[dict]:
    llm = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.temperature": 0.5 if extra_tool else 0.2,
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 20,
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": "2+2?"}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]
        ),
    }
    spans = [
        span("c000000000000001", "invoke_agent", end=100 * MS, trace_id=trace_id,
             attributes={"gen_ai.operation.name": "invoke_agent"}),
        span("c000000000000002", "chat gpt-4o", "c000000000000001", 0, 40 * MS,
             trace_id=trace_id, attributes=llm),
    ]  # fmt: skip
    if extra_tool:
        spans.append(
            span("c000000000000003", "execute_tool calc", "c000000000000001", 50 * MS, 60 * MS,
                 trace_id=trace_id, attributes={"gen_ai.operation.name": "execute_tool"})
        )  # fmt: skip
    return spans


@pytest.mark.django_db
def test_the_compare_api(client: Client, django_assert_num_queries) -> None:
    store(payload(_trace(TRACE_A, "4", False) + _trace(TRACE_B, "5", True)))
    # The traces, the facts of each, and the message texts of both.
    with django_assert_num_queries(4):
        response = client.get(f"/api/traces/compare/?a={TRACE_A}&b={TRACE_B.upper()}")
    body = response.json()
    assert response.status_code == 200 and (body["a"], body["b"]) == (TRACE_A, TRACE_B)
    summary = body["summary"]
    assert (summary["added"], summary["removed"], summary["aligned"]) == (1, 0, 2)
    assert summary["a"]["span_count"] == 2 and summary["b"]["span_count"] == 3
    assert summary["a"]["cost_usd"] == pytest.approx((100 * 2.5 + 20 * 10) / 1e6)
    states = [(row["name"], row["state"]) for row in body["rows"]]
    assert states == [
        ("invoke_agent", "same"),
        ("chat gpt-4o", "changed"),
        ("execute_tool calc", "added"),
    ]
    chat = body["rows"][1]
    assert chat["changes"]["params"] == {"gen_ai.request.temperature": {"a": "0.2", "b": "0.5"}}
    assert "-[assistant] 4" in chat["text_diff"]["output"]
    assert "input" not in chat["text_diff"]
    assert body["summary"]["biggest_changes"][0] in (1, 2)


@pytest.mark.django_db
def test_the_compare_api_refuses_bad_and_missing_ids(client: Client) -> None:
    store(payload(_trace(TRACE_A, "4", False)))
    assert client.get(f"/api/traces/compare/?a={TRACE_A}").status_code == 400
    assert client.get(f"/api/traces/compare/?a={TRACE_A}&b=xyz").status_code == 400
    missing = client.get(f"/api/traces/compare/?a={TRACE_A}&b={TRACE_B}")
    assert missing.status_code == 404 and missing.json() == {"detail": "no such trace"}
