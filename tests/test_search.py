"""Finding anything: full text over every span of a trace, attribute clauses, trace-level filters,
on the overview and in the API, and the span finder of one trace."""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import replace
from html import unescape
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.otlp import decode_json, decode_protobuf
from ingest.writer import write_batch
from studio.filters import TraceFilter
from tests.conftest import fixture_bytes
from tracing import clauses, models, search
from tracing.clauses import Clause, ClauseError
from tracing.otlp_json import key_values

AS1 = "ad27a918a7ce11d08dc80c6ec77cd536"  # the money agent: EUR to JPY
AS2 = "c2490a614c696dcdb7c4d12a509fc09e"
WEATHER = "1" * 32
CJK = "2" * 32
ARABIC = "3" * 32
BASE = 1_700_000_000_000_000_000
XSS = '<script>alert("x")</script>'


def span(
    trace_id: str, span_id: str, name: str, parent: str = "", attributes: Any = None, **extra: Any
) -> dict[str, Any]:
    start = extra.pop("start", 0)
    document = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": extra.pop("kind", 1),
        "startTimeUnixNano": str(BASE + start),
        "endTimeUnixNano": str(BASE + start + 1_000_000),
        "attributes": key_values(attributes or {}),
        **extra,
    }
    if parent:
        document["parentSpanId"] = parent
    return document


def store(spans: list[dict[str, Any]], resource: dict[str, Any] | None = None) -> None:
    attributes = key_values({"service.name": "svc", **(resource or {})})
    scopes = [{"scope": {"name": "tests"}, "spans": spans}]
    body = json.dumps(
        {"resourceSpans": [{"resource": {"attributes": attributes}, "scopeSpans": scopes}]}
    ).encode()
    batch = decode_json(body)
    assert not batch.rejected, batch.messages
    write_batch(batch.records)


def messages(role: str, text: str, *, ascii_only: bool = False) -> str:
    parts = [{"role": role, "parts": [{"type": "text", "content": text}]}]
    return json.dumps(parts, ensure_ascii=ascii_only)


@pytest.fixture(params=["indexed", "not indexed yet"])
def stored(request: pytest.FixtureRequest, db: None) -> None:
    """The same spans, read through the search index, and (on SQLite, where the index is built
    after the commit) before the indexer has reached them."""
    for name in ("agentscope-1.0.21-react-agent.pb", "agentscope-2.0.10-agent.pb"):
        write_batch(decode_protobuf(fixture_bytes(name)).records)
    store(
        [
            span(
                WEATHER,
                "a" * 16,
                "invoke_agent Planner",
                attributes={
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": "Planner",
                    "gen_ai.input.messages": messages("user", "Will it rain in Tokyo tomorrow?"),
                },
            ),
            span(
                WEATHER,
                "b" * 16,
                "chat gpt-4o",
                "a" * 16,
                start=10,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 1200,
                    "gen_ai.usage.output_tokens": 80,
                    "llm.token_count.total": 1280,
                    "stream": True,
                    "note": "1000",
                    "gen_ai.output.messages": messages(
                        "assistant", "Light showers expected " + XSS
                    ),
                },
            ),
            span(
                WEATHER,
                "c" * 16,
                "get_weather_forecast",
                "a" * 16,
                start=20,
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "get_weather_forecast",
                    "error.type": "TimeoutError",
                },
                status={"code": 2, "message": "upstream weather service timed out"},
                events=[
                    {
                        "name": "exception",
                        "timeUnixNano": str(BASE + 25),
                        "attributes": key_values(
                            {
                                "exception.type": "TimeoutError",
                                "exception.message": "read took 30 s",
                            }
                        ),
                    }
                ],
            ),
        ],
        resource={"deployment.environment": "staging-eu"},
    )
    store(
        [
            span(
                CJK,
                "d" * 16,
                "invoke_agent 旅行助手",
                attributes={
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": "旅行助手",
                    # Escaped the way json.dumps writes it by default: still found as 東京.
                    "gen_ai.input.messages": messages(
                        "user", "東京タワーの高さは？ 🚀", ascii_only=True
                    ),
                },
            ),
        ]
    )
    store([
        span(ARABIC, "e" * 16, "chat", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "jais-30b",
            "llm.token_count.total": 900,
            "gen_ai.input.messages": messages("user", "مرحبا، كيف حالك؟"),
        }),
    ])  # fmt: skip
    if request.param == "indexed":
        while search.index_pending():
            pass


def ids(client: Client, **params: Any) -> list[str]:
    response = client.get("/api/traces/", params)
    assert response.status_code == 200, response.content
    return sorted(row["trace_id"] for row in response.json()["results"])


# Full text: every field.


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("get_weather_forecast", [WEATHER]),  # a child span's name
        ("Planner", [WEATHER]),  # an agent's label
        ("c" * 16, [WEATHER]),  # a span id
        (WEATHER[:12], [WEATHER]),  # part of a trace id
        ("timed out", [WEATHER]),  # a status message
        ("read took 30", [WEATHER]),  # an exception event's message
        ("TimeoutError", [WEATHER]),  # an attribute value (and the exception type)
        ("Tokyo", [WEATHER]),  # input message text
        ("showers", [WEATHER]),  # output message text
        ("staging-eu", [WEATHER]),  # a resource attribute
        ("gpt-4o", [WEATHER]),  # a model
        ("19500", [AS1]),  # a tool's result in a real AgentScope trace
        ("tokyo RAIN", [WEATHER]),  # every word, any case
        ("Tokyo Kyoto", []),
        ("東京タワー", [CJK]),  # Japanese, stored \\u-escaped inside the JSON message
        ("東京", [CJK]),  # two characters: below the trigram, found by LIKE
        ("旅", [CJK]),
        ("🚀", [CJK]),
        ("مرحبا", [ARABIC]),
        ("كيف", [ARABIC]),
    ],
)
@pytest.mark.parametrize("plan", ["collected", "walked", "walked by the page"])
def test_full_text_matches_any_field_of_any_span(
    client: Client,
    stored: None,
    q: str,
    expected: list[str],
    plan: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if plan == "walked":  # as if every word were in many spans: the traces walked, not collected
        monkeypatch.setattr(search, "BROAD_SPANS", 1)
        monkeypatch.setattr(search, "PG_BROAD_SPANS", 1)
    if plan == "walked by the page":  # as if in few spans of many traces: the API collects
        monkeypatch.setattr(search, "MID_MIN", 1)
        monkeypatch.setattr(search, "MID_TRACES", 1000)
    assert ids(client, q=q) == expected
    html = client.get("/traces/", {"q": q}).content.decode()
    assert sorted(re.findall(r'id="trace-([0-9a-f]{32})"', html)) == expected


FAILED = "4" * 32


def store_failed() -> None:
    """A trace whose one failed span says nothing of an error in its text."""
    store([
        span(FAILED, "f" * 16, "plan trip", attributes={"gen_ai.operation.name": "invoke_agent"}),
        span(FAILED, "0" * 15 + "1", "fetch quota", "f" * 16, start=5,
             status={"code": 2, "message": "quota exceeded"}),
    ])  # fmt: skip


@pytest.mark.parametrize("indexed", [True, False])
@pytest.mark.parametrize("plan", ["collected", "walked"])
def test_error_finds_the_failed_spans_though_no_text_says_it(
    client: Client, db: None, indexed: bool, plan: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_failed()
    store([span("5" * 32, "e" * 16, "all fine", status={"code": 1})])
    if indexed:
        while search.index_pending():
            pass
    if plan == "walked":
        monkeypatch.setattr(search, "BROAD_SPANS", 1)
        monkeypatch.setattr(search, "PG_BROAD_SPANS", 1)
    for q in ("error", "ERROR", "quota error", "Error fetch"):
        assert ids(client, q=q) == [FAILED], q
    assert ids(client, q="error plan") == []  # one span must hold every word
    html = client.get("/traces/", {"q": "error"}).content.decode()
    assert f"/traces/{FAILED}/?span={'0' * 15}1" in unescape(html)
    assert "<mark>ERROR</mark>" in html
    # The span finder inside the trace: the failed span only.
    assert client.get(f"/traces/{FAILED}/find", {"q": "error"}).json()["matches"] == [
        "0" * 15 + "1"
    ]


def test_a_row_shows_the_match_escaped_and_opens_the_trace_at_that_span(
    client: Client, stored: None
) -> None:
    html = client.get("/traces/", {"q": "showers"}).content.decode()
    snippet = re.search(r'<a class="match-snippet" href="([^"]+)"[^>]*>(.*?)</a>', html, re.S)
    assert snippet, html
    assert unescape(snippet[1]) == f"/traces/{WEATHER}/?span={'b' * 16}"
    assert "<mark>showers</mark>" in snippet[2]
    assert "<script>" not in snippet[2] and "&lt;script&gt;" in snippet[2]


def test_the_page_with_a_search_costs_one_query_more(
    client: Client, stored: None, django_assert_num_queries: Any
) -> None:
    # First a bounded read says how broad the search is, and one how broad the clauses are;
    # PostgreSQL then collects the trace ids of a narrow one once, for the rows and the cards.
    # Its cards' statement sets its planner cost first (TraceQuerySet.stats): one more there.
    collect = 1 if connection.vendor == "postgresql" else 0
    with django_assert_num_queries(5 + 2 * collect):  # how broad, rows, snippets, cards, services
        client.get("/traces/", {"q": "Tokyo"})
    with django_assert_num_queries(3 + 2 * collect):  # how broad, rows, cards
        client.get("/traces/", {"attr": "gen_ai.request.model = gpt-4o"}, headers={
            "HX-Request": "true", "HX-Target": "results"})  # fmt: skip
    with django_assert_num_queries(4 + 2 * collect):  # the API: how broad (both), rows, count
        client.get("/api/traces/", {"q": "Tokyo", "attr": "stream = true", "min_spans": 2})


def test_a_broad_search_walks_the_traces_and_counts_its_cards_up_to_a_bound(
    client: Client, stored: None, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    from studio import filters

    monkeypatch.setattr(filters, "STATS_BOUND", 2)
    monkeypatch.setattr(search, "BROAD_SPANS", 1)
    monkeypatch.setattr(search, "PG_BROAD_SPANS", 1)
    everywhere = [WEATHER, CJK, ARABIC]  # the resource's service.name=svc is in every span
    # How broad: read from the index, so not before the indexer has run (both databases index
    # after the commit).
    broad = request.node.callspec.params["stored"] == "indexed"
    assert TraceFilter.from_query({"q": "svc"}).broad_search == broad
    assert ids(client, q="svc") == everywhere  # the API still counts every match
    assert client.get("/api/traces/", {"q": "svc"}).json()["count"] == 3
    html = client.get("/traces/", {"q": "svc"}).content.decode()
    assert sorted(re.findall(r'id="trace-([0-9a-f]{32})"', html)) == everywhere
    cards = re.search(r"<dt>Traces</dt><dd[^>]*>([^<]*)</dd>", html)
    assert cards and cards[1] == ("2+" if broad else "3"), cards
    # A narrow search is counted whole.
    html = client.get("/traces/", {"q": "旅行助手"}).content.decode()
    assert re.search(r"<dt>Traces</dt><dd>1</dd>", html)


MIDDAY = [f"{n:032x}" for n in range(0xA0, 0xA6)]  # newest last


def store_mid_breadth() -> None:
    """Six traces of three spans; "Friday-3" is in the root span of three of them: a word in
    few spans (a sixth) of many traces (half)."""
    for n, trace_id in enumerate(MIDDAY):
        name = f"invoke_agent Friday-{3 if n % 2 else 1}"
        root, start = f"{n + 1:016x}", n * 10**9
        store([
            span(trace_id, root, name, start=start),
            span(trace_id, f"{n + 1:08x}{1:08x}", "chat step 1", root, start=start + 1),
            span(trace_id, f"{n + 1:08x}{2:08x}", "tool step 2", root, start=start + 2),
        ])  # fmt: skip
    while search.index_pending():
        pass


# The text check of a walk, per trace row (search.text_exists, either database).
WALK = re.compile(r'\.trace_id = "tracing_trace"\.trace_id')


def test_a_word_in_few_spans_of_many_traces_is_walked_by_the_page_and_collected_for_the_api(
    client: Client, db: None, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    from django.test.utils import CaptureQueriesContext

    from studio import filters, views

    store_mid_breadth()
    matched = [MIDDAY[5], MIDDAY[3], MIDDAY[1]]  # newest first
    monkeypatch.setattr(search, "MID_MIN", 2)  # the probe sees three: enough here
    monkeypatch.setattr(filters, "STATS_BOUND", 2)
    monkeypatch.setattr(views, "PAGE_SIZE", 1)
    trace_filter = TraceFilter.from_query({"q": "Friday-3"})
    # Three spans of eighteen: not broad; three traces of six: walked by a page.
    assert (trace_filter.broad_search, trace_filter.walked_search) == (False, True)
    assert not replace(trace_filter, every=True).walked_search
    # (PostgreSQL sets the cards' planner cost first: TraceQuerySet.stats.)
    cards = 2 if connection.vendor == "postgresql" else 1
    with django_assert_num_queries(4 + cards):  # how broad, rows, snippets, cards, services
        with CaptureQueriesContext(connection) as queries:
            html = client.get("/traces/", {"q": "Friday-3"}).content.decode()
    assert re.findall(r'id="trace-([0-9a-f]{32})"', html) == matched[:1]
    assert re.search(r"<dt>Traces</dt><dd[^>]*>2\+</dd>", html)  # at least: the bound
    # One walk, to the cards' bound: the cards count the rows it read, by id.
    walks = [n for n, query in enumerate(queries.captured_queries) if WALK.search(query["sql"])]
    assert walks == [1]
    older = re.search(r'href="(/traces/\?[^"]*after=[^"]*)"', html)
    assert older, html
    html = client.get(unescape(older[1])).content.decode()
    assert re.findall(r'id="trace-([0-9a-f]{32})"', html) == matched[1:2]
    # The API counts every match: collected, not walked.
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/traces/", {"q": "Friday-3"}).json()
    assert response["count"] == 3
    assert [row["trace_id"] for row in response["results"]] == matched
    assert not any(WALK.search(q["sql"]) for q in queries.captured_queries)
    # So do the charts.
    assert client.get("/api/traces/stats/", {"q": "Friday-3"}).json()["count"] == 3


def test_a_walked_pages_cards_are_the_cards_of_its_first_matches(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio import filters

    store_mid_breadth()
    monkeypatch.setattr(search, "MID_MIN", 2)
    monkeypatch.setattr(filters, "STATS_BOUND", 2)
    for query in ({"q": "Friday-3"}, {"q": "Friday-3", "sort": "duration"}, {"q": "Friday"}):
        read = TraceFilter.from_query(query)
        traces = read.traces()
        page = read.page(1, traces)
        assert len(page.rows) == 1 and page.next is not None and page.previous is None
        assert page.first is not None
        cards = read.stats(traces, page)  # counted by id, from the rows the page read
        walked = TraceFilter.from_query(query)
        assert cards == walked.stats(walked.traces())  # a walk of its own
        assert cards.capped and cards.traces == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's ILIKE collation")
def test_a_walk_folds_case_as_the_index_does_for_every_word(
    client: Client, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A walk's ILIKE under COLLATE "C" folds ASCII only: İ and the Kelvin sign fold to ASCII
    # letters in the database's collation, so a word with an i or a k keeps that ILIKE.
    store([span(WEATHER, "a" * 16, "İSTANBUL \u212aELVIN TOWN17 Ärger")])
    search.index_pending()
    for plan in ("collected", "walked"):
        if plan == "walked":
            monkeypatch.setattr(search, "PG_BROAD_SPANS", 1)
        for q in ("istanbul", "kelvin", "town17", "TOWN17", "ärger", "tanbul kel"):
            html = client.get("/traces/", {"q": q}).content.decode()
            assert re.findall(r'id="trace-([0-9a-f]{32})"', html) == [WEATHER], (plan, q)
    assert 'COLLATE "C"' in search._pg_holds("f.body", "town17")
    assert 'COLLATE "C"' not in search._pg_holds("f.body", "istanbul")
    assert 'COLLATE "C"' not in search._pg_holds("f.body", "Kelvin")
    assert 'COLLATE "C"' not in search._pg_holds("f.body", "ärger")


# Attribute clauses.


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("gen_ai.request.model = gpt-4o", [WEATHER]),
        ("gen_ai.request.model != gpt-4o", [AS1, AS2, ARABIC]),  # spans that have the key
        ("llm.token_count.total > 1000", [WEATHER]),
        ("llm.token_count.total >= 1280", [WEATHER]),
        ("llm.token_count.total < 1000", [ARABIC]),
        ("llm.token_count.total <= 900", [ARABIC]),
        ("llm.token_count.total = 1280.0", [WEATHER]),  # a number compares as a number
        ("llm.token_count.total > 999.5", [WEATHER]),
        ("note > 999", []),  # the text "1000" is not a number
        ("note = 1000", [WEATHER]),  # but equals it as text
        ('note = "1000"', [WEATHER]),
        ("stream = true", [WEATHER]),
        ("stream = false", []),
        ("gen_ai.request.model ~ GPT", [WEATHER]),  # contains, any case
        ("gen_ai.input.messages ~ Tokyo", [WEATHER]),
        ("error.type exists", [WEATHER]),
        ("no.such.key exists", []),
        ("deployment.environment = staging-eu", [WEATHER]),  # a resource attribute
        ("service.name = svc", [WEATHER, CJK, ARABIC]),
        ("gen_ai.tool.name = get_weather_forecast", [WEATHER]),
    ],
)
@pytest.mark.parametrize("plan", ["collected", "walked"])
def test_each_operator(
    client: Client,
    stored: None,
    clause: str,
    expected: list[str],
    plan: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if plan == "walked":  # as if the clause held on many spans: the traces walked
        monkeypatch.setattr(search, "BROAD_SPANS", 1)
        monkeypatch.setattr(search, "PG_BROAD_SPANS", 1)
    assert ids(client, attr=clause) == sorted(expected)


@pytest.mark.parametrize("plan", ["collected", "walked"])
def test_every_clause_must_hold_on_one_span(
    client: Client, stored: None, plan: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if plan == "walked":
        monkeypatch.setattr(search, "BROAD_SPANS", 1)
        monkeypatch.setattr(search, "PG_BROAD_SPANS", 1)
    same_span = ["gen_ai.request.model = gpt-4o", "llm.token_count.total > 1000"]
    assert ids(client, attr=same_span) == [WEATHER]
    different_spans = ["gen_ai.request.model = gpt-4o", "error.type exists"]
    assert ids(client, attr=different_spans) == []
    # Text and trace-level filters combine with clauses.
    assert ids(client, attr=same_span, q="Tokyo", min_spans=3) == [WEATHER]
    assert ids(client, attr=same_span, q="Kyoto") == []


@pytest.mark.parametrize("text_plan", ["collected", "walked"])
@pytest.mark.parametrize("clause_plan", ["collected", "walked"])
@pytest.mark.parametrize(
    ("q", "clause", "expected"),
    [
        ("Tokyo", "gen_ai.request.model = gpt-4o", [WEATHER]),
        ("svc", "llm.token_count.total < 1000", [ARABIC]),  # text everywhere, clause on one
        ("svc", "service.name = svc", [WEATHER, CJK, ARABIC]),  # both everywhere
        ("Tokyo", "llm.token_count.total < 1000", []),  # each holds, on different traces
        ("Kyoto", "gen_ai.request.model = gpt-4o", []),  # the text holds nowhere
        ("東京", "service.name = svc", [CJK]),  # a short term: no trigram to look up
        ("Tokyo", "gen_ai.request.model ~ GPT", [WEATHER]),  # a clause the table cannot answer
    ],
)
def test_text_and_clauses_combine_whichever_is_walked_or_collected(
    client: Client,
    stored: None,
    q: str,
    clause: str,
    expected: list[str],
    text_plan: str,
    clause_plan: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each part is walked (checked trace by trace in the page's order) or collected (its trace
    # ids read first), as its own breadth says; every mix must select the same traces.
    monkeypatch.setattr(search, "is_broad", lambda *args, **kwargs: text_plan == "walked")
    # A clause the attribute table cannot answer (`~`) is never walked.
    walk_clauses = clause_plan == "walked" and "~" not in clause
    monkeypatch.setattr(search, "clauses_broad", lambda *args, **kwargs: walk_clauses)
    assert TraceFilter.from_query({"q": q}).broad_search == (text_plan == "walked")
    assert ids(client, q=q, attr=clause) == expected
    response = client.get("/api/traces/", {"q": q, "attr": clause})
    assert response.json()["count"] == len(expected)
    html = client.get("/traces/", {"q": q, "attr": clause}).content.decode()
    assert sorted(re.findall(r'id="trace-([0-9a-f]{32})"', html)) == expected


def test_a_bad_clause_is_a_400_naming_it_on_the_api(client: Client, stored: None) -> None:
    response = client.get("/api/traces/", {"attr": ["stream = true", "tokens >> 5"]})
    assert response.status_code == 400
    (message,) = response.json()["attr"]
    assert "tokens >> 5" in message and "is not a number" in message
    response = client.get("/api/traces/", {"attr": "model gpt-4o"})
    assert "unknown operator" in response.json()["attr"][0]


def test_a_bad_clause_is_named_on_the_page_and_the_rest_still_filters(
    client: Client, stored: None
) -> None:
    html = client.get("/traces/", {"attr": ["stream = true", "llm.tokens > many"]}).content
    html = html.decode()
    assert "Ignored the attribute filter “llm.tokens &gt; many”: &gt; compares numbers" in html
    assert re.findall(r'id="trace-([0-9a-f]{32})"', html) == [WEATHER]
    assert 'value="stream = true"' in html  # kept in the form


def test_clauses_round_trip_through_urls_and_api_links(client: Client, stored: None) -> None:
    trace_filter = TraceFilter.from_query(
        __import__("django.http", fromlist=["QueryDict"]).QueryDict(
            "q=Tokyo&attr=a.b+%3D+x+y&attr=n+%3E%3D+5&error_type=tool&model=gpt-4o&min_spans=2"
        )
    )
    assert [str(c) for c in trace_filter.clauses] == ["a.b = x y", "n >= 5"]
    again = TraceFilter.from_query(
        __import__("django.http", fromlist=["QueryDict"]).QueryDict(trace_filter.query_string())
    )
    assert again == trace_filter
    response = client.get("/api/traces/", {"attr": "service.name = svc", "limit": 1})
    following = client.get(response.json()["next"]).json()
    assert following["count"] == 3 and len(following["results"]) == 1


# Trace-level filters.


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"min_spans": 3}, [AS1, AS2, WEATHER]),
        ({"min_spans": 2, "max_spans": 3}, [WEATHER]),
        ({"min_tokens": 1000}, [WEATHER]),
        ({"max_tokens": 0}, [CJK, ARABIC]),
        ({"error_type": "tool"}, [WEATHER]),
        ({"error_type": "llm"}, []),
        ({"model": "gpt-4o"}, [WEATHER]),
        ({"model": "qwen-max"}, [AS1]),
        ({"agent": "Planner"}, [WEATHER]),
        ({"agent": "旅行助手"}, [CJK]),
        ({"max_duration": 2}, [WEATHER, CJK, ARABIC]),
        ({"agent": "Planner", "model": "gpt-4o", "error_type": "tool"}, [WEATHER]),
        ({"agent": "Planner", "model": "qwen-max"}, []),
    ],
)
@pytest.mark.parametrize("plan", ["collected", "walked"])
def test_trace_level_filters(
    client: Client,
    stored: None,
    params: dict[str, Any],
    expected: list[str],
    plan: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if plan == "walked":  # as if each span-level filter held on many spans
        monkeypatch.setattr(models, "WALK_SPANS", 1)
    assert ids(client, **params) == sorted(expected)
    html = client.get("/traces/", params).content.decode()
    assert sorted(re.findall(r'id="trace-([0-9a-f]{32})"', html)) == sorted(expected)


def test_a_wide_span_level_filter_walks_the_traces_and_counts_its_cards_up_to_a_bound(
    client: Client, stored: None, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    from studio import filters

    monkeypatch.setattr(filters, "STATS_BOUND", 1)
    # AS1 has three qwen-max spans: at 2 it walks; WEATHER's one gpt-4o span is collected.
    monkeypatch.setattr(models, "WALK_SPANS", 2)
    assert TraceFilter.from_query({"model": "qwen-max"}).walked_spans == {"model"}
    assert TraceFilter.from_query({"model": "gpt-4o"}).walked_spans == set()
    cards = 2 if connection.vendor == "postgresql" else 1  # the planner cost, then the cards
    with django_assert_num_queries(3 + cards):  # how wide, rows, cards, services
        html = client.get("/traces/", {"model": "qwen-max"}).content.decode()
    assert re.findall(r'id="trace-([0-9a-f]{32})"', html) == [AS1]
    assert re.search(r"<dt>Traces</dt><dd[^>]*>1\+</dd>", html)
    # A narrow one beside it bounds the matches: counted whole.
    html = client.get("/traces/", {"model": "qwen-max", "agent": "Treasurer"}).content.decode()
    assert re.findall(r'id="trace-([0-9a-f]{32})"', html) == [AS1]
    assert re.search(r"<dt>Traces</dt><dd>1</dd>", html)


def test_a_bad_trace_level_value_is_a_400(client: Client, stored: None) -> None:
    response = client.get("/api/traces/", {"error_type": "nonsense", "min_spans": "-1"})
    assert response.status_code == 400
    assert set(response.json()) == {"error_type", "min_spans"}


# Inside a trace: the span finder's JSON.


def test_the_finder_returns_matching_spans_in_tree_order_and_the_errors(
    client: Client, stored: None
) -> None:
    found = client.get(f"/traces/{WEATHER}/find", {"q": "weather"}).json()
    # The tool span's name; the root's message does not say "weather".
    assert found["matches"] == ["c" * 16]
    assert found["errors"] == ["c" * 16]
    assert found["span_count"] == 3
    found = client.get(f"/traces/{WEATHER}/find", {"q": "gen_ai.operation.name="}).json()
    assert found["matches"] == ["a" * 16, "b" * 16, "c" * 16]
    for q, span_id in [("INTERNAL tool", "c" * 16), ("gpt-4o", "b" * 16), ("timed out", "c" * 16),
                       ("Tokyo", "a" * 16), ("b" * 16, "b" * 16)]:  # fmt: skip
        assert client.get(f"/traces/{WEATHER}/find", {"q": q}).json()["matches"] == [span_id]
    assert client.get(f"/traces/{WEATHER}/find").json()["matches"] == []
    assert client.get(f"/traces/{'9' * 32}/find", {"q": "x"}).status_code == 404


# Suggestions.


def test_key_and_value_suggestions_come_from_stored_spans(client: Client, stored: None) -> None:
    keys = client.get("/api/attributes/keys/", {"prefix": "gen_ai.re"}).json()["keys"]
    assert "gen_ai.request.model" in keys and all(key.startswith("gen_ai.re") for key in keys)
    assert "deployment.environment" in client.get("/api/attributes/keys/").json()["keys"]
    options = client.get("/api/attributes/keys/", {"prefix": "gen_ai.req"}, headers={
        "HX-Request": "true"}).content.decode()  # fmt: skip
    assert '<option value="gen_ai.request.model"></option>' in options
    values = client.get("/api/attributes/values/", {"key": "gen_ai.request.model"}).json()
    assert {"gpt-4o", "jais-30b", "qwen-max"} <= set(values["values"])
    assert client.get("/api/attributes/values/", {"key": "bad key"}).status_code == 400


# The index: kept by triggers, built for spans stored before it.


def test_deleting_traces_removes_their_spans_from_the_index(client: Client, stored: None) -> None:
    from tracing.models import Trace

    Trace.objects.filter(trace_id=WEATHER).delete_with_spans()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {search.TABLE} WHERE trace_id = %s", [WEATHER])
        assert cursor.fetchone()[0] == 0
    assert ids(client, q="Tokyo") == []


def test_the_indexer_indexes_new_spans_in_order_once(client: Client, db: None) -> None:
    store([span(WEATHER, f"{n:016x}", f"span {n}", attributes={"n": n}) for n in range(1, 8)])
    assert search.index_pending(limit=5) == 5
    assert ids(client, q="span 7") == [WEATHER]  # the last two from the unindexed tail
    assert search.index_pending(limit=5) == 2
    assert search.index_pending() == 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {search.TABLE}")
        assert cursor.fetchone()[0] == 7
    assert ids(client, q="span 7") == [WEATHER]
    assert ids(client, attr="n >= 7") == [WEATHER]


def test_a_broad_search_with_cased_letters_beyond_ascii_uses_the_index(
    client: Client, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The walk compares with LIKE, which folds ASCII only; the trigram index folds every case.
    monkeypatch.setattr(search, "BROAD_SPANS", 1)
    monkeypatch.setattr(search, "PG_BROAD_SPANS", 1)
    store([span(WEATHER, "a" * 16, "Élan vital", attributes={"city": "ЖЕНЕВА"})])
    search.index_pending()
    for q in ("élan", "женева"):
        # PostgreSQL walks with ILIKE, as it collects.
        assert search.is_broad(q) == (connection.vendor != "sqlite")
        assert ids(client, q=q) == [WEATHER]
    assert search.is_broad("vital")
    assert ids(client, q="VITAL") == [WEATHER]


def attr_rows(trace_id: str) -> dict[tuple[str, str], tuple[str, Any, Any]]:
    """The attribute table's rows of a trace: (span id, key) -> (type, str, num)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT s.span_id, a.key, a.t, a.str, a.num FROM {search.ATTRS} a "
            "JOIN tracing_span s ON s.id = a.span WHERE a.trace_id = %s",
            [trace_id],
        )
        return {(row[0], row[1]): (row[2], row[3], row[4]) for row in cursor.fetchall()}


def test_the_attribute_table_is_kept_in_step_with_ingest(client: Client, db: None) -> None:
    long = "x" * (search.SHORT + 1)
    store(
        [
            span(WEATHER, "a" * 16, "one", attributes={
                "n": 7, "f": 2.5, "s": "short", "long": long, "flag": True, "list": [1, 2],
                "deployment.environment": "from the span",
            }),
        ],
        resource={"deployment.environment": "from the resource"},
    )  # fmt: skip
    assert attr_rows(WEATHER) == {}  # after the commit, with the search text
    assert ids(client, attr="n = 7") == [WEATHER]  # meanwhile from the unindexed tail
    search.index_pending()
    rows = {key: value for (_, key), value in attr_rows(WEATHER).items()}
    assert {key: (t, value) for key, (t, value, _) in rows.items()} == {
        "n": ("n", None),
        "f": ("n", None),
        "s": ("s", "short"),
        "long": ("l", None),
        "flag": ("b", "true"),
        "list": ("o", None),
        # A span attribute wins over the resource's, as in the clauses.
        "deployment.environment": ("s", "from the span"),
        "service.name": ("s", "svc"),
    }
    assert float(rows["n"][2]) == 7 and float(rows["f"][2]) == 2.5
    assert ids(client, attr="deployment.environment = from the span") == [WEATHER]
    assert ids(client, attr="deployment.environment = from the resource") == []
    assert ids(client, attr=f"long = {long}") == [WEATHER]  # too long for the table: the JSON
    assert ids(client, attr=["long exists", "s != other", "f < 3", "flag = true"]) == [WEATHER]
    assert ids(client, attr=["long exists", "s ~ hor", "f > 3"]) == []


def test_deleting_and_purging_spans_removes_their_attribute_rows(db: None) -> None:
    from tracing import retention
    from tracing.models import Trace

    store([span(WEATHER, "a" * 16, "one", attributes={"n": 1})])
    store([span(CJK, "b" * 16, "two", attributes={"n": 2})])
    while search.index_pending():
        pass
    assert attr_rows(WEATHER) and attr_rows(CJK)
    Trace.objects.filter(trace_id=WEATHER).delete_with_spans()
    assert attr_rows(WEATHER) == {} and attr_rows(CJK)
    # Retention deletes with SQL of its own: the rows go with the spans all the same.
    retention.purge(retention.Policy(days=1, max_spans=0), pacer=retention.Pacer(duty=1))
    assert attr_rows(CJK) == {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {search.ATTRS}")
        assert cursor.fetchone()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_the_migration_indexes_spans_stored_before_it(client: Client) -> None:
    executor = MigrationExecutor(connection)
    before = [("tracing", "0005_trace_label_output_preview")]
    executor.migrate(before)
    try:
        # Stored as the code of that time did: today's writer names columns added since.
        old = executor.loader.project_state(before).apps
        body = json.dumps(
            {"resourceSpans": [{"resource": {"attributes": key_values({"service.name": "svc"})},
             "scopeSpans": [{"spans": [span(WEATHER, "a" * 16, "old span",
                                            attributes={"note": "stored before"})]}]}]}
        ).encode()  # fmt: skip
        (record,) = decode_json(body).records
        old_span = old.get_model("tracing", "Span")
        columns = [f.name for f in old_span._meta.concrete_fields if not f.primary_key]
        old_span.objects.create(**{name: getattr(record, name) for name in columns})
        old.get_model("tracing", "Trace").objects.create(
            trace_id=WEATHER, name="old span", root_span_id=record.span_id, has_root=True,
            service_name="svc", start_ns=record.start_ns, end_ns=record.end_ns,
            duration_ns=record.end_ns - record.start_ns, span_count=1,
        )  # fmt: skip
        with connection.cursor() as cursor:
            assert search.TABLE not in connection.introspection.table_names(cursor)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT trace_id, body FROM {search.TABLE}")
        ((trace_id, body),) = cursor.fetchall()
    assert trace_id == WEATHER and "note=stored before" in body
    assert ids(client, q="stored before") == [WEATHER]
    assert ids(client, attr="note ~ before") == [WEATHER]
    assert ids(client, attr="note = stored before") == [WEATHER]  # from the attribute table
    assert attr_rows(WEATHER)[("a" * 16, "note")] == ("s", "stored before", None)


@pytest.mark.django_db(transaction=True)
def test_the_migration_indexes_failed_spans_again_to_name_their_status(client: Client) -> None:
    # Not by migrating back to 0009: today's writer needs the columns later migrations add. The
    # migration's one operation runs on spans indexed as they were before it.
    migration = importlib.import_module("tracing.migrations.0010_search_failed_status")
    [operation] = migration.Migration.operations
    assert operation.code is search.reindex_failed
    store_failed()
    search.index_pending()
    # As the text was before it named the status.
    where = "rowid" if connection.vendor == "sqlite" else "id"
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {search.TABLE} SET body = replace(body, 'ERROR', '')")
        cursor.execute(f"SELECT {where} FROM {search.TABLE} WHERE body LIKE '%%ERROR%%'")
        assert cursor.fetchall() == []
    assert ids(client, q="error") == []
    with connection.schema_editor() as schema_editor:
        search.reindex_failed(apps, schema_editor)
    assert ids(client, q="error") == [FAILED]


# The clause parser: anything typed is a clause or a ClauseError, never another exception.


@given(st.text(max_size=600))
@settings(max_examples=400, deadline=None)
def test_the_parser_raises_only_its_own_error(text: str) -> None:
    try:
        clause = clauses.parse(text)
    except ClauseError as exc:
        assert str(exc)
    else:
        assert clause.op in clauses.OPERATORS
        assert clauses.parse(str(clause)) == clause


KEYS = st.from_regex(r"[A-Za-z0-9_.\-/:@]{1,40}", fullmatch=True)
VALUES = st.one_of(
    st.text(min_size=1, max_size=40).filter(lambda v: v.strip() and "\x00" not in v),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
)


@given(KEYS, st.sampled_from(["=", "!="]), VALUES)
@settings(max_examples=300, deadline=None)
def test_clauses_print_as_they_parse(key: str, op: str, value: Any) -> None:
    clause = Clause(key, op, float(value) if isinstance(value, float) else value)
    if isinstance(clause.value, str):
        clause = Clause(key, op, clause.value.strip())
        if not clause.value:
            return
    assert clauses.parse(str(clause)) == clause


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty clause"),
        ("= 5", "should start with an attribute key"),
        ("key", "no operator"),
        ("key >", "no value after >"),
        ("key > ten", "is not a number"),
        ("key exists now", "nothing may follow exists"),
        ('key = "open', "no closing quote"),
        ("key == 5", ""),  # reads as = "= 5": text
    ],
)
def test_bad_clauses_say_what_is_wrong(text: str, problem: str) -> None:
    if not problem:
        assert clauses.parse(text) == Clause("key", "=", "= 5")
        return
    with pytest.raises(ClauseError, match=re.escape(problem)):
        clauses.parse(text)


def test_values_are_typed() -> None:
    assert clauses.parse("a = 12").value == 12.0
    assert clauses.parse("a = -1.5e3").value == -1500.0
    assert clauses.parse('a = "12"').value == "12"
    assert clauses.parse("a = TRUE").value is True
    assert clauses.parse("a ~ 12").value == "12"  # contains is always text
    assert clauses.parse("a.b >= 3").op == ">="
    assert clauses.parse("a EXISTS") == Clause("a", "exists")


# A NUL a span carried, and the text `\u0000`, never fail the writer (review finding: on
# PostgreSQL the index trigger's cast to jsonb failed the insert, a permanent 500).


@pytest.mark.django_db
def test_nuls_and_their_escaped_text_are_stored_and_searchable(client: Client) -> None:
    nul = "6" * 32
    store(
        [
            span(
                nul,
                "6" * 16,
                "nul-span",
                attributes={
                    "prompt": "escape NUL in JSON as \\u0000 please",
                    "raw": "a\x00b shimmer",
                },
                events=[{"name": "note \\u0000", "timeUnixNano": str(BASE)}],
            )
        ],
        resource={"deploy": "x\x00y \\u0000 glimmer"},
    )
    assert ids(client, q="please") == [nul]
    assert ids(client, attr="prompt ~ please") == [nul]
    assert ids(client, attr="deploy exists") == [nul]
    keys = client.get("/api/attributes/keys/", {"prefix": "pro"}).json()["keys"]
    assert "prompt" in keys
