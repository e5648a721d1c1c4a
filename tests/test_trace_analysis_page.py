"""Where the time went on the trace page: the time split and its tables on a hand-built trace
whose answers are known, the trace's and the span's cost and self time, the critical path's
marks and its page without JavaScript, the lazily loaded fragment of a big trace, the flame
graph's data, and the sign-in gate in front of the new routes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from studio import formatting, trace_page
from tests.test_trace_page import TRACE, payload, span, store

pytestmark = pytest.mark.django_db

MS = 1_000_000
ROOT = "a000000000000001"
CHAT = "a000000000000002"  # gpt-4o, priced
FORMAT = "a000000000000003"  # off the critical path
TOOL_1 = "a000000000000004"
MYSTERY = "a000000000000005"  # a model without a price
TOOL_2 = "a000000000000006"  # runs beside TOOL_1, ends last


def known_spans(trace_id: str = TRACE) -> list[dict[str, Any]]:
    """Planner (agent, 0-100 ms) > chat gpt-4o (0-40), format (5-20), search (40-70) > chat
    mystery-model (45-55), search (50-90).

    Self times: Planner 10 ms (its children cover 0-90), chat 40, format 15, the first search 20,
    mystery 10, the second search 40: 135 ms of work in 100 ms of wall time. The critical path
    walks back from 100 ms: the second search (50-90), the first (running until 50), inside it
    the mystery call (45-50), then the gpt-4o chat (0-40); the format ran inside the chat."""
    chat = {"gen_ai.operation.name": "chat"}
    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}
    return [
        span(ROOT, "invoke_agent Planner", start=0, end=100 * MS, trace_id=trace_id,
             attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Planner"}),
        span(CHAT, "chat gpt-4o", ROOT, 0, 40 * MS, trace_id=trace_id,
             attributes={**chat, "gen_ai.request.model": "gpt-4o",
                         "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200}),
        span(FORMAT, "format", ROOT, 5 * MS, 20 * MS, trace_id=trace_id,
             attributes={"gen_ai.operation.name": "format"}),
        span(TOOL_1, "execute_tool search", ROOT, 40 * MS, 70 * MS, trace_id=trace_id,
             attributes=tool),
        span(MYSTERY, "chat mystery-model", TOOL_1, 45 * MS, 55 * MS, trace_id=trace_id,
             attributes={**chat, "gen_ai.request.model": "mystery-model",
                         "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5}),
        span(TOOL_2, "execute_tool search", ROOT, 50 * MS, 90 * MS, trace_id=trace_id,
             attributes=tool),
    ]  # fmt: skip


# gpt-4o: $2.50 per million input tokens, $10 per million output tokens (tracing/prices.json).
GPT_4O_COST = "$0.0045"  # 1000 * 2.5 / 1e6 + 200 * 10 / 1e6


@pytest.fixture
def known_trace() -> str:
    store(payload(known_spans()))
    return TRACE


@pytest.fixture
def big_known_trace(known_trace: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The known trace, shown as a big trace is: more spans than the page draws inline."""
    monkeypatch.setattr(trace_page, "INLINE_SPANS", 2)
    return known_trace


def table_row(html: str, by: str, key: str) -> list[str]:
    """The cells of one row of a time split table, as text."""
    table = re.search(rf'<table class="split-table" data-by="{by}">(.*?)</table>', html, re.S)
    assert table, by
    row = re.search(rf'<tr data-key="{re.escape(key)}">(.*?)</tr>', table.group(1), re.S)
    assert row, (by, key)
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row.group(1), re.S)
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in cells]


def test_the_time_split_on_a_trace_whose_answers_are_known(
    client: Client, known_trace: str
) -> None:
    html = client.get(f"/traces/{known_trace}/").content.decode()
    split = html[html.index('<section id="time-split"') : html.index('<div class="trace-body">')]
    assert "100 ms wall time, 135 ms of work (some of it concurrent)" in split
    assert "critical path: 5 spans" in split
    # The bar: each kind's self time out of the 135 ms, in the order of the kinds.
    rects = re.findall(r'<rect class="kind-(\w+)" x="([\d.]+)%" width="([\d.]+)%"', split)
    assert rects == [
        ("llm", "0.000", "37.037"),
        ("tool", "37.037", "44.444"),
        ("agent", "81.481", "7.407"),
        ("formatter", "88.889", "11.111"),
    ]
    legend = re.findall(
        r'<li data-kind="(\w+)">.*?<b>(\d+)%</b> <span class="muted">([^<]+)<', split
    )
    assert legend == [
        ("llm", "37", "50 ms"),
        ("tool", "44", "60 ms"),
        ("agent", "7", "10 ms"),
        ("formatter", "11", "15 ms"),
    ]
    # Count, total time, self time, tokens, cost; the most self time first.
    assert re.findall(r'<tr data-key="(\w+)">', split[: split.index('data-by="model"')]) == [
        "tool",
        "llm",
        "formatter",
        "agent",
    ]
    no_price = f"{GPT_4O_COST} + 1 without a price"
    assert table_row(split, "kind-of-work", "llm") == [
        "LLM", "2", "50 ms", "50 ms", "1,010 → 205", no_price
    ]  # fmt: skip
    assert table_row(split, "kind-of-work", "tool") == ["Tool", "2", "70 ms", "60 ms", "—", "—"]
    assert table_row(split, "kind-of-work", "agent") == ["Agent", "1", "100 ms", "10 ms", "—", "—"]
    assert table_row(split, "model", "gpt-4o") == [
        "gpt-4o", "1", "40 ms", "40 ms", "1,000 → 200", GPT_4O_COST
    ]  # fmt: skip
    # An unknown model is "no price", never $0.
    assert table_row(split, "model", "mystery-model")[-1] == "no price"
    assert table_row(split, "tool", "search") == ["search", "2", "70 ms", "60 ms", "—", "—"]
    assert table_row(split, "agent", "Planner") == [
        "Planner", "1", "100 ms", "10 ms", "1,010 → 205", no_price
    ]  # fmt: skip
    # The header's cost.
    cost = re.search(r'<dd id="trace-cost">(.*?)</dd>', html, re.S)
    assert cost and re.sub(r"<[^>]+>", "", cost.group(1)) == no_price


def test_the_critical_path_is_marked_in_the_tree(client: Client, known_trace: str) -> None:
    html = client.get(f"/traces/{known_trace}/").content.decode()
    path = json.loads(re.search(r'<script id="critical-path"[^>]*>(.*?)</script>', html).group(1))
    assert path == [ROOT, CHAT, TOOL_1, MYSTERY, TOOL_2]
    marked = re.findall(r'class="r [^"]*\bcp\b[^"]*" id="s-(\w+)"', html)
    assert marked == [ROOT, CHAT, TOOL_1, MYSTERY, TOOL_2]  # in tree order, the format not
    assert f'id="s-{FORMAT}"' in html
    toggle = re.search(r'<a id="critical-only"[^>]*>', html).group(0)
    assert 'href="?critical=1"' in toggle and 'aria-pressed="false"' in toggle


def test_without_javascript_the_toggle_asks_for_the_path_only(
    client: Client, known_trace: str
) -> None:
    html = client.get(f"/traces/{known_trace}/?critical=1").content.decode()
    assert re.findall(r'id="s-(\w+)" role="treeitem"', html) == [
        ROOT,
        CHAT,
        TOOL_1,
        MYSTERY,
        TOOL_2,
    ]
    toggle = re.search(r'<a id="critical-only"[^>]*>', html).group(0)
    assert 'href="?"' in toggle and 'aria-pressed="true"' in toggle


def panel(client: Client, span_id: str) -> str:
    response = client.get(f"/traces/{TRACE}/spans/{span_id}/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return response.content.decode()


def fact(html: str, name: str) -> str | None:
    found = re.search(rf"<dt>{name}</dt><dd[^>]*>(.*?)</dd>", html, re.S)
    return re.sub(r"<[^>]+>", "", found.group(1)) if found else None


def test_the_span_panel_shows_self_time_and_cost(client: Client, known_trace: str) -> None:
    html = panel(client, TOOL_1)
    assert fact(html, "Self time") == "20 ms"
    assert fact(html, "Cost") is None  # not a model call
    assert fact(panel(client, ROOT), "Self time") == "10 ms"
    chat = panel(client, CHAT)
    assert (fact(chat, "Self time"), fact(chat, "Cost")) == ("40 ms", GPT_4O_COST)
    assert fact(panel(client, MYSTERY), "Cost") == "no price"
    # The page's own panel takes the self time from the page's analysis.
    page = client.get(f"/traces/{TRACE}/?span={TOOL_2}").content.decode()
    assert fact(page, "Self time") == "40 ms"


def test_a_trace_without_model_calls_says_so(client: Client) -> None:
    store(payload([span("0000000000000001", "root", end=10 * MS)]))
    html = client.get(f"/traces/{TRACE}/").content.decode()
    cost = re.search(r'<dd id="trace-cost">(.*?)</dd>', html, re.S)
    assert cost and "no model calls" in cost.group(1)
    assert 'data-by="model"' not in html


def test_a_big_traces_page_loads_where_the_time_went_after_itself(
    client: Client, big_known_trace: str, django_assert_num_queries: Any
) -> None:
    html = client.get(f"/traces/{big_known_trace}/").content.decode()
    url = f"/traces/{big_known_trace}/analysis/"
    assert f'hx-get="{url}" hx-trigger="load"' in html
    assert 'href="?analysis=1"' in html  # the same without JavaScript
    assert 'id="critical-path"' not in html
    # The fragment, with the header's cost out of band: the trace and the analysis's query.
    with django_assert_num_queries(2):
        fragment = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert fragment.lstrip().startswith('<section id="time-split"')
    assert "<html" not in fragment
    assert f'<dd id="trace-cost" hx-swap-oob="true">{GPT_4O_COST}' in fragment
    assert 'id="critical-path"' in fragment
    # Anyone else gets the page with it inside.
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/traces/{big_known_trace}/?analysis=1"
    inline = client.get(response["Location"]).content.decode()
    assert "135 ms of work" in inline and 'id="critical-path"' in inline
    assert client.get(f"/traces/{'ab' * 16}/analysis/").status_code == 404


def test_the_flame_graph_data(
    client: Client, known_trace: str, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(2):
        response = client.get(f"/traces/{known_trace}/flame/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    data = response.json()
    # Call-tree order: siblings by start.
    assert data["ids"] == [ROOT, CHAT, FORMAT, TOOL_1, MYSTERY, TOOL_2]
    assert data["depth"] == [0, 1, 1, 1, 2, 1]
    assert data["start"] == [0, 0, 5 * MS, 40 * MS, 45 * MS, 50 * MS]
    assert data["dur"] == [100 * MS, 40 * MS, 15 * MS, 30 * MS, 10 * MS, 40 * MS]
    assert data["wall_ns"] == 100 * MS
    kinds = [data["kinds"][k] for k in data["kind"]]
    assert kinds == ["agent", "llm", "formatter", "tool", "llm", "tool"]
    strings = data["strings"]
    assert [strings[i] for i in data["label"]][:2] == ["Planner", "gpt-4o"]
    assert [strings[i] for i in data["self"]] == [
        "10 ms",
        "40 ms",
        "15 ms",
        "20 ms",
        "10 ms",
        "40 ms",
    ]
    assert strings[data["du"][0]] == "100 ms"
    assert data["critical"] == [0, 1, 3, 4, 5]
    assert client.get(f"/traces/{'ab' * 16}/flame/").status_code == 404


def test_an_outsider_gets_nothing_from_the_new_routes(settings: Any, known_trace: str) -> None:
    settings.STUDIO_AUTH = "login"
    client = Client()
    for path in (f"/traces/{known_trace}/flame/", f"/traces/{known_trace}/analysis/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/login/?next=")
        assert ROOT.encode() not in response.content
        htmx = client.get(path, HTTP_HX_REQUEST="true")
        assert htmx.status_code == 401 and ROOT.encode() not in htmx.content
    page = client.get(f"/traces/{known_trace}/?analysis=1&critical=1")
    assert page.status_code == 302 and ROOT.encode() not in page.content


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "no price"),
        (0, "$0.00"),
        (0.0045, "$0.0045"),
        (0.137, "$0.137"),
        (1234.5, "$1,234.50"),
    ],
)
def test_costs_read_as_dollars(value: float | None, text: str) -> None:
    assert formatting.usd(value) == text


def test_a_big_traces_page_costs_no_analysis_until_asked(
    client: Client, big_known_trace: str, django_assert_num_queries: Any
) -> None:
    # The trace, the first span's id, the span, its children's times (its self time), the
    # services: no analysis in the page; the fragment brings it.
    with django_assert_num_queries(5):
        client.get(f"/traces/{big_known_trace}/")
    # Asked for (no JavaScript): the analysis instead of the children's times.
    with django_assert_num_queries(5):
        html = client.get(f"/traces/{big_known_trace}/?analysis=1").content.decode()
    assert fact(html, "Self time") == "10 ms"
