"""The trace overview page: rows, cards, filters in the URL, keyset pages, empty state, deleting."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from html import unescape
from typing import Any

import pytest
from django.db import connection
from django.http import QueryDict
from django.test import Client

from ingest import otlp, writer
from studio.filters import TraceFilter, as_trace_id
from studio.runtime import runtime
from tests.conftest import fixture_bytes
from tracing.models import Span, Trace

AGENTSCOPE_1 = "ad27a918a7ce11d08dc80c6ec77cd536"
AGENTSCOPE_2 = "c2490a614c696dcdb7c4d12a509fc09e"
SECOND = 1_000_000_000
HTMX = {"HX-Request": "true", "HX-Target": "results"}


def make_trace(n: int, *, ago_s: float = 0, **fields: Any) -> Trace:
    start = fields.pop("start_ns", time.time_ns() - int(ago_s * SECOND))
    duration = fields.pop("duration_ns", (n + 1) * 1_000_000)
    values: dict[str, Any] = {
        "trace_id": f"{n:032x}",
        "name": f"invoke_agent Agent{n}",
        "root_span_id": f"{n:016x}",
        "has_root": True,
        "span_type": "agent",
        "service_name": "shop",
        "start_ns": start,
        "end_ns": start + duration,
        "duration_ns": duration,
        "span_count": 3,
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "input_preview": f"question {n}",
    }
    values.update(fields)
    return Trace.objects.create(**values)


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr class="trace-row[^"]*" id="trace-([0-9a-f]{32})"', html)


def link(html: str, link_id: str) -> str:
    match = re.search(rf'<a href="([^"]+)"[^>]*id="{link_id}"', html)
    assert match, f"no #{link_id}"
    return unescape(match[1])


@pytest.fixture
def agentscope(db: None) -> None:
    for name in ("agentscope-1.0.21-react-agent.pb", "agentscope-2.0.10-agent.pb"):
        writer.write_batch(otlp.decode_protobuf(fixture_bytes(name)).records)


# Rows and cards.


def test_it_shows_real_traces_named_after_their_root_with_their_summary(
    client: Client, agentscope: None
) -> None:
    html = client.get("/traces/").content.decode()
    assert row_ids(html) == [AGENTSCOPE_2, AGENTSCOPE_1]
    row = html[html.index(f'id="trace-{AGENTSCOPE_1}"') :]
    row = row[: row.index("</tr>")]
    # Named as the call tree names its root: the agent, with its kind beside it.
    assert f'href="/traces/{AGENTSCOPE_1}/" title="invoke_agent Treasurer">Treasurer</a>' in row
    assert 'class="badge badge-agent"' in row
    assert "How much is 120 EUR in JPY?" in row and "120 EUR is about 19,500 JPY." in row
    assert ">OK<" in row and "unknown_service:python" in row
    assert "126 / 27" in row  # tokens in / out
    assert f'href="/traces/{AGENTSCOPE_1}/"' in row
    # The info card: trace id with a copy button, root span, conversation, exact times.
    assert f'data-copy="{AGENTSCOPE_1}"' in row
    assert "fa0f6dfb4a6e6fe7" in row and "FBR8Y7LSqV7pXo8fzTZ8TV" in row
    assert "2026-11-21 23:32:02.107 UTC" in row and "2026-11-21 23:32:02.128 UTC" in row


def test_each_rendering_subscribes_to_live_rows_with_what_it_shows(
    client: Client, agentscope: None
) -> None:
    html = client.get("/traces/?service=library-app").content.decode()
    key = re.search(r'<div id="results"[^>]* data-live-key="(\w+)"', html)[1]
    form = html[html.index('<form id="live-subscription" ws-send hx-trigger="load"') :]
    form = form[: form.index("</form>")]
    assert f'name="key" value="{key}"' in form
    assert 'name="query" value="service=library-app"' in form
    assert 'name="top" value="1"' in form
    trace = Trace.objects.get(trace_id=AGENTSCOPE_2)
    assert re.findall(r'name="shown" value="([^"]+)"', form) == [f"{trace.start_ns}_{AGENTSCOPE_2}"]
    assert "{#" not in html and "#}" not in html
    # Another rendering, another key: pushes for the first land nowhere in it.
    assert f'data-live-key="{key}"' not in client.get("/traces/").content.decode()


def test_the_cards_total_the_whole_filter_with_exact_percentiles(client: Client, db: None) -> None:
    for n in range(100):
        failed = n % 10 == 0
        make_trace(
            n,
            duration_ns=(n + 1) * 1_000_000,
            span_count=2,
            ago_s=n,
            status_code=2 if failed else 1,
            error_count=1 if failed else 0,
        )
    stats = Trace.objects.stats()
    assert (stats.traces, stats.spans, stats.error_traces, stats.error_spans) == (100, 200, 10, 10)
    assert (stats.input_tokens, stats.output_tokens) == (1000, 500)
    assert (stats.duration_p50_ns, stats.duration_p95_ns) == (50_000_000, 95_000_000)
    # The filtered form of the statement agrees with the unfiltered one on the same rows.
    filtered = Trace.objects.filter(span_count=2).stats()
    assert filtered == stats
    # 90 traces of 2..100 ms without 11, 21, ... 91: ranks 45 and 86 by nearest rank.
    ok = Trace.objects.filter(status_code=1).stats()
    assert (ok.traces, ok.error_traces) == (90, 0)
    assert (ok.duration_p50_ns, ok.duration_p95_ns) == (50_000_000, 96_000_000)
    html = client.get("/traces/").content.decode()
    cards = html[html.index('id="cards"') : html.index("</dl>", html.index('id="cards"'))]
    assert ">100<" in cards and ">200<" in cards and "10%" in cards
    assert "50 ms" in cards and "95 ms" in cards


@pytest.mark.parametrize("walk_from", [0, 10_000])
def test_a_big_match_walks_the_duration_index_to_the_same_exact_cards(
    db: None, monkeypatch: pytest.MonkeyPatch, walk_from: int
) -> None:
    # walk_from=0: every match counts as big, and its percentiles walk the duration index.
    monkeypatch.setattr("tracing.models.WALK_PERCENTILES", walk_from)
    for n in range(100):
        failed = n % 10 == 0
        make_trace(
            n,
            duration_ns=(n + 1) * 1_000_000,
            span_count=2 + n % 3,
            ago_s=n * 3600,
            status_code=2 if failed else 1,
            error_count=1 if failed else 0,
            cost_usd=n / 1000,
        )
    for url, expected in [
        ("status=OK", (90, 50_000_000, 96_000_000)),
        ("min_cost=0.05", (50, 75_000_000, 98_000_000)),
        ("min_duration=20", (81, 60_000_000, 96_000_000)),
        ("range=24h&max_spans=2", (8, 10_000_000, 22_000_000)),
        ("min_cost=5", (0, None, None)),
        ("service=shop&status=OK", (90, 50_000_000, 96_000_000)),
        ("project=default&min_cost=0.05", (50, 75_000_000, 98_000_000)),
        ("service=elsewhere", (0, None, None)),
    ]:
        trace_filter = TraceFilter.from_query(QueryDict(url))
        assert trace_filter.walks_durations
        traces = trace_filter.traces()
        stats = trace_filter.stats(traces)
        assert (stats.traces, stats.duration_p50_ns, stats.duration_p95_ns) == expected, url
        # The same totals as the statement that sorts the whole match.
        sorted_stats = traces.stats()
        assert stats.cost_usd == pytest.approx(sorted_stats.cost_usd), url
        assert replace(stats, cost_usd=0) == replace(sorted_stats, cost_usd=0), url


def test_the_cards_of_nothing_are_zeros(db: None) -> None:
    stats = Trace.objects.filter(service_name="nobody").stats()
    assert stats.traces == 0 and stats.duration_p50_ns is None and stats.newest_start_ns is None
    assert Trace.objects.stats().duration_p95_ns is None


def test_the_page_is_three_queries_and_a_swap_two_reading_trace_rows_only(
    client: Client, agentscope: None, django_assert_num_queries: Any
) -> None:
    # PostgreSQL sets the cards' planner cost first (TraceQuerySet.stats): one more there.
    cards = 2 if connection.vendor == "postgresql" else 1
    with django_assert_num_queries(2 + cards) as page:  # rows, cards, the service list
        assert client.get("/traces/?status=OK&range=30d").status_code == 200
    with django_assert_num_queries(1 + cards) as swap:  # rows, cards
        assert client.get("/traces/?service=library-app", headers=HTMX).status_code == 200
    for query in page.captured_queries + swap.captured_queries:
        assert "tracing_span" not in query["sql"]


def test_a_filter_that_matches_nothing_checks_whether_there_is_anything_at_all(
    client: Client, agentscope: None, django_assert_num_queries: Any
) -> None:
    # First a bounded read of how broad the search is (tracing.search.is_broad); PostgreSQL
    # then collects a narrow search's trace ids once (tracing.search.Collected).
    # And the cards' planner cost there (TraceQuerySet.stats).
    with django_assert_num_queries(6 if connection.vendor == "postgresql" else 4):
        html = client.get("/traces/?q=no-such-name", headers=HTMX).content.decode()
    assert "No traces match these filters" in html and "No traces yet" not in html


def test_span_content_is_escaped(client: Client, db: None) -> None:
    make_trace(1, name="<script>alert(1)</script>", input_preview="<img src=x onerror=alert(2)>")
    html = client.get("/traces/").content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<img src=x" not in html


@pytest.mark.parametrize(
    "field",
    [
        "name",
        "label",
        "service_name",
        "conversation_id",
        "span_type",
        "root_span_id",
        "input_preview",
        "output_preview",
    ],
)
def test_each_text_of_a_row_is_escaped(field: str) -> None:
    # The row is built in Python (overview.trace_row), outside the template's autoescape: every
    # text a span sent must go through html.escape there.
    from django.template.loader import render_to_string

    trace = Trace(**{**ROW_FIELDS, "name": "plain", "label": "", field: '"><b x="1'})
    html = render_to_string("studio/trace_list.html#trace-row", {"trace": trace, "max_duration": 0})
    assert '"><b x="1' not in html and "&quot;&gt;&lt;b x=&quot;1" in html


ROW_FIELDS: dict[str, Any] = {
    "trace_id": "ab" * 16,
    "start_ns": 1_764_000_000 * SECOND,
    "end_ns": 1_764_000_001 * SECOND,
    "duration_ns": SECOND,
    "span_count": 2,
    "unpriced_spans": 1,
    "has_root": True,
}


# Filters.


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=treasurer", [AGENTSCOPE_1]),
        (f"q={AGENTSCOPE_2.upper()}", [AGENTSCOPE_2]),
        ("service=library-app", [AGENTSCOPE_2]),
        ("status=OK", [AGENTSCOPE_2, AGENTSCOPE_1]),
        ("status=error", []),
        ("range=custom&since=2026-11-21T23:32:10", [AGENTSCOPE_2]),
        ("until=2026-11-21T23:32:10Z", [AGENTSCOPE_1]),
        ("min_duration=20.5", [AGENTSCOPE_1]),
        ("min_duration=1000", []),
        ("sort=start", [AGENTSCOPE_1, AGENTSCOPE_2]),
        ("sort=-spans", [AGENTSCOPE_1, AGENTSCOPE_2]),
        ("sort=duration", [AGENTSCOPE_2, AGENTSCOPE_1]),
        ("sort=-tokens", [AGENTSCOPE_1, AGENTSCOPE_2]),
        ("sort=tokens&service=library-app", [AGENTSCOPE_2]),
    ],
)
def test_each_filter_narrows_the_list(
    client: Client, agentscope: None, query: str, expected: list[str]
) -> None:
    assert row_ids(client.get(f"/traces/?{query}").content.decode()) == expected


def test_time_presets_count_back_from_now(client: Client, db: None) -> None:
    make_trace(1, ago_s=60)
    make_trace(2, ago_s=3 * 3600)
    make_trace(3, ago_s=3 * 86400)
    assert row_ids(client.get("/traces/?range=15m").content.decode()) == [f"{1:032x}"]
    assert len(row_ids(client.get("/traces/?range=24h").content.decode())) == 2
    assert len(row_ids(client.get("/traces/?range=7d").content.decode())) == 3


def test_a_pasted_trace_id_finds_its_trace_whatever_the_other_filters(
    client: Client, db: None
) -> None:
    make_trace(1, ago_s=40 * 86400, service_name="old")
    make_trace(2, ago_s=1)
    pasted = "0x" + f"{1:032X}"
    html = client.get(f"/traces/?q={pasted}&range=1h&service=shop&status=ERROR").content.decode()
    assert row_ids(html) == [f"{1:032x}"]
    assert "wherever it is" in html
    # The other filters stay in the form and the URL, for when the search box is cleared.
    assert '<option value="ERROR" selected>' in html
    assert '<option value="1h" selected>' in html


def test_bad_filter_values_are_ignored_and_named(client: Client, agentscope: None) -> None:
    response = client.get(
        "/traces/?status=MAYBE&since=yesterday&min_duration=-5&sort=attributes&after=xyz"
        "&service=library-app"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert row_ids(html) == [AGENTSCOPE_2]  # the good filter still applies
    for label in ("status", "from", "minimum duration", "sort", "page"):
        assert f"Ignored the {label} “" in html
    until_first = client.get("/traces/?range=custom&since=2026-11-22T00:00&until=2026-11-21T00:00")
    assert "Ignored the to “2026-11-21T00:00”: must be later" in until_first.content.decode()


def test_the_filter_survives_a_round_trip_through_its_url(db: None) -> None:
    query = (
        "q=Friday&service=shop&status=ERROR&range=custom&since=2026-01-02T03:04"
        "&until=2026-01-03T00:00:30&min_duration=12.5&sort=-duration"
        f"&after=123_{'ab' * 16}"
    )
    parsed = TraceFilter.from_query(dict(part.split("=") for part in query.split("&")))
    again = TraceFilter.from_query(parsed.params())
    assert again == parsed and not parsed.problems
    assert parsed.url().startswith("/traces/?q=Friday&service=shop&status=ERROR&range=custom")
    assert TraceFilter().url() == "/traces/"


def test_trace_ids_are_recognised_in_the_forms_other_tools_print() -> None:
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert as_trace_id(tid.upper()) == tid
    assert as_trace_id(" 0x" + tid + " ") == tid
    assert as_trace_id("4bf92f35-77b3-4da6-a3ce-929d0e0e4736") == tid
    assert as_trace_id("invoke_agent") == "" and as_trace_id(tid[:-1]) == ""


def test_an_htmx_request_gets_the_results_only_and_a_clean_url_to_push(
    client: Client, agentscope: None
) -> None:
    response = client.get(
        "/traces/?q=&service=library-app&status=&range=all&since=&until=&min_duration=&sort=-start",
        headers=HTMX,
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="results"') and "<html" not in html
    assert response["HX-Push-Url"] == "/traces/?service=library-app"
    assert "HX-Request" in response["Vary"]
    refresh = client.get("/traces/?service=library-app", headers={**HTMX, "X-Studio-Refresh": "1"})
    assert "HX-Push-Url" not in refresh
    restore = client.get(
        "/traces/?service=library-app",
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    )
    assert "<html" in restore.content.decode()


def test_the_form_shows_the_filters_of_the_url(client: Client, agentscope: None) -> None:
    html = client.get("/traces/?q=Treasurer&service=library-app&range=7d&sort=-tokens").content
    html = html.decode()
    assert 'name="q" value="Treasurer"' in html
    assert '<option value="library-app" selected>' in html
    assert '<option value="7d" selected>' in html
    assert '<option value="-tokens" selected>' in html
    # The column header sorts by the database, keeping the filter.
    assert (
        'href="/traces/?q=Treasurer&amp;service=library-app&amp;range=7d&amp;sort=-duration"'
        in html
    )


# Keyset pages.


def test_pages_are_stable_while_new_traces_arrive(client: Client, db: None) -> None:
    for n in range(120):
        make_trace(n, ago_s=1000 - n)  # n = 119 is the newest
    first = client.get("/traces/").content.decode()
    assert row_ids(first) == [f"{n:032x}" for n in range(119, 69, -1)]
    older = link(first, "older-link")
    for n in range(200, 205):  # five new traces on top
        make_trace(n, ago_s=0)
    second = client.get(older).content.decode()
    assert row_ids(second) == [f"{n:032x}" for n in range(69, 19, -1)]
    third = client.get(link(second, "older-link")).content.decode()
    assert row_ids(third) == [f"{n:032x}" for n in range(19, -1, -1)]
    assert 'id="older-link"' not in third
    back = client.get(link(third, "newer-link")).content.decode()
    assert row_ids(back) == row_ids(second)
    # Newer from the second page: the page above it, which the five new traces now top up.
    top = client.get(link(second, "newer-link")).content.decode()
    assert row_ids(top) == [f"{n:032x}" for n in range(119, 69, -1)]
    assert 'id="newer-link"' in top  # the new ones are above


def test_sorting_pages_through_every_trace_in_database_order(client: Client, db: None) -> None:
    for n in range(75):
        make_trace(n, duration_ns=((n * 37) % 75 + 1) * 1_000_000, ago_s=n)
    seen: list[str] = []
    url = "/traces/?sort=-duration"
    while url:
        html = client.get(url).content.decode()
        seen += row_ids(html)
        url = link(html, "older-link") if 'id="older-link"' in html else ""
    expected = Trace.objects.order_by("-duration_ns", "-trace_id").values_list(
        "trace_id", flat=True
    )
    assert seen == list(expected)


# Empty state.


def test_an_empty_studio_shows_how_to_connect_with_its_own_addresses(
    client: Client, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "http_url", "http://localhost:3999")
    monkeypatch.setattr(runtime, "grpc_address", "http://localhost:4999")
    html = client.get("/traces/").content.decode()
    assert "No traces yet" in html
    assert 'studio_url="http://localhost:3999"' in html
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:3999" in html
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4999" in html
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in html
    # The test command sends a real trace.
    command = unescape(re.search(r'<code id="test-command">(.*?)</code>', html, re.S)[1])
    assert command.startswith("curl -sS http://localhost:3999/v1/traces ")
    body = re.search(r"-d '(.*)'$", command)[1]
    writer.write_batch(otlp.decode(body.encode(), otlp.JSON).records)
    html = client.get("/traces/").content.decode()
    assert len(row_ids(html)) == 1 and "hello from curl" in html


def test_without_runstudio_the_empty_state_uses_the_request_host(
    client: Client, db: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "http_url", "")
    monkeypatch.setattr(runtime, "grpc_address", "")
    settings.OTEL_GRPC_PORT = 4555
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "studio.example"]
    html = client.get("/traces/", HTTP_HOST="studio.example:8080").content.decode()
    assert 'studio_url="http://studio.example:8080"' in html
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://studio.example:4555" in html


# Deleting.


def test_deleting_asks_first_without_javascript(client: Client, agentscope: None) -> None:
    response = client.post(
        "/traces/delete/", {"trace_id": [AGENTSCOPE_1], "next": "/traces/?status=OK"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Delete 1 trace?" in html and "<strong>Treasurer</strong>" in html
    assert Trace.objects.filter(trace_id=AGENTSCOPE_1).exists()
    response = client.post(
        "/traces/delete/",
        {"trace_id": [AGENTSCOPE_1], "next": "/traces/?status=OK", "confirm": "1"},
    )
    assert response.status_code == 302 and response["Location"] == "/traces/?status=OK"
    assert not Trace.objects.filter(trace_id=AGENTSCOPE_1).exists()
    assert not Span.objects.filter(trace_id=AGENTSCOPE_1).exists()
    assert Span.objects.filter(trace_id=AGENTSCOPE_2).exists()


def test_deleting_with_htmx_returns_the_results_of_the_same_filter(
    client: Client, agentscope: None
) -> None:
    response = client.post(
        "/traces/delete/",
        {"trace_id": [AGENTSCOPE_2, "not-an-id"], "next": "/traces/?status=OK", "confirm": "1"},
        headers=HTMX,
    )
    html = response.content.decode()
    assert row_ids(html) == [AGENTSCOPE_1]
    assert "Deleted 1 trace." in html
    assert 'name="next" value="/traces/?status=OK"' in html


def test_deleting_needs_post_csrf_and_a_local_next(agentscope: None) -> None:
    strict = Client(enforce_csrf_checks=True)
    assert strict.get("/traces/delete/").status_code == 405
    forged = {"trace_id": [AGENTSCOPE_1], "confirm": "1"}
    assert strict.post("/traces/delete/", forged).status_code == 403
    assert Trace.objects.filter(trace_id=AGENTSCOPE_1).exists()
    response = Client().post("/traces/delete/", {**forged, "next": "https://evil.example/traces/"})
    assert response["Location"] == "/traces/"
    response = Client().post("/traces/delete/", {"trace_id": ["ab" * 16] * 2, "next": "//evil"})
    assert response.status_code == 200  # the confirmation page, for a trace that is gone


def test_the_page_form_posts_with_the_csrf_token(client: Client, agentscope: None) -> None:
    html = client.get("/traces/").content.decode()
    form = html[html.index('<form id="trace-table"') :]
    form = form[: form.index("</form>")]
    assert 'name="csrfmiddlewaretoken"' in form
    assert form.index('<form id="trace-table" class="trace-table-form" method="post"') == 0
    # Confirmed in the browser: the button says so, and only the button (links inside the
    # form must not inherit a confirmation).
    button = re.search(r'<button type="submit" class="danger" id="delete-selected"[^>]*>', form)[0]
    assert json.loads(unescape(re.search(r"hx-vals='([^']+)'", button)[1])) == {"confirm": "1"}
    assert "hx-confirm=" in button and form.count("hx-confirm") == 1


def test_a_conversation_filter_stays_with_the_form_until_removed(
    client: Client, agentscope: None
) -> None:
    html = client.get("/traces/?conversation=FBR8Y7LSqV7pXo8fzTZ8TV&status=OK").content.decode()
    assert row_ids(html) == [AGENTSCOPE_1]
    assert '<input type="hidden" name="conversation" value="FBR8Y7LSqV7pXo8fzTZ8TV">' in html
    assert '<a href="/traces/?status=OK" aria-label="Show every conversation">' in html


def test_times_are_shown_and_read_in_the_viewers_time_zone(
    client: Client, agentscope: None
) -> None:
    client.cookies["tz"] = "Europe/Berlin"  # set by overview.js from the browser
    html = client.get("/traces/?range=custom&since=2026-11-22T00:32:10").content.decode()
    assert row_ids(html) == [AGENTSCOPE_2]  # 00:32:10 in Berlin is 23:32:10 UTC
    assert 'value="2026-11-22T00:32:10"' in html
    client.cookies["tz"] = "Not/AZone"
    html = client.get("/traces/").content.decode()
    assert "2026-11-21 23:32:02.107 UTC" in html


# One display name, the answer, no tokens.


def function_trace_body(trace_id: str) -> bytes:
    """An AgentScope function call as the root of its trace, with no model call under it."""
    now = time.time_ns()
    answer = [{"role": "assistant", "parts": [{"type": "text", "content": "Ranked:\n a, b"}]}]
    attributes = {
        "gen_ai.operation.name": "invoke_generic_function",
        "agentscope.function.name": "rank",
        "gen_ai.output.messages": json.dumps(answer),
    }
    span = {
        "traceId": trace_id,
        "spanId": "1" * 16,
        "name": "invoke_generic_function rank",
        "kind": 1,
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 5_000_000),
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()],
    }
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


def test_a_trace_has_one_name_in_the_list_the_tree_the_header_and_the_api(
    client: Client, db: None
) -> None:
    trace_id = "f" * 32
    writer.write_batch(otlp.decode(function_trace_body(trace_id), otlp.JSON).records)
    html = client.get("/traces/").content.decode()
    row = html[html.index(f'id="trace-{trace_id}"') :]
    row = row[: row.index("</tr>")]
    assert 'title="invoke_generic_function rank">rank</a>' in row
    assert "Ranked: a, b" in row  # the answer, on one line
    # No model calls: a dash, not "0 / 0".
    assert "0 / 0" not in row and 'title="No model calls">—<' in row
    page = client.get(f"/traces/{trace_id}/").content.decode()
    assert '<h1 title="invoke_generic_function rank">rank</h1>' in page
    assert "</b> rank</a>" in page  # the tree row
    assert "<title>rank" in page
    api = client.get("/api/traces/").json()["results"][0]
    assert (api["name"], api["display_name"]) == ("invoke_generic_function rank", "rank")
    assert api["output_preview"] == "Ranked: a, b"
    assert row_ids(client.get("/traces/?q=rank").content.decode()) == [trace_id]


def test_live_rows_use_the_same_row_with_the_same_name(db: None) -> None:
    from django.template.loader import render_to_string

    trace = make_trace(1, name="invoke_agent Friday", label="Friday", output_preview="Done.")
    html = render_to_string("studio/trace_list.html#trace-row", {"trace": trace, "max_duration": 0})
    assert 'title="invoke_agent Friday">Friday</a>' in html and "Done." in html
    assert "10 / 5" in html


def test_the_old_names_work_on_the_page_and_the_pushed_url_has_the_shared_ones(
    client: Client, agentscope: None
) -> None:
    response = client.get(
        "/traces/?min_duration_ms=20.5&conversation_id=FBR8Y7LSqV7pXo8fzTZ8TV"
        "&ordering=-duration_ms",
        headers=HTMX,
    )
    assert row_ids(response.content.decode()) == [AGENTSCOPE_1]
    assert response["HX-Push-Url"] == (
        "/traces/?min_duration=20.5&conversation=FBR8Y7LSqV7pXo8fzTZ8TV&sort=-duration"
    )
    html = client.get("/traces/?ordering=start_time").content.decode()
    assert row_ids(html) == [AGENTSCOPE_2, AGENTSCOPE_1][::-1]
    assert '<option value="start" selected>' in html


def test_a_rows_link_is_the_trace_page_under_any_script_prefix() -> None:
    from django.urls import NoReverseMatch, reverse, set_script_prefix

    from studio.templatetags.overview import trace_url

    trace_id = "ab" * 16
    try:
        for prefix in ("/", "/studio/"):
            set_script_prefix(prefix)
            assert trace_url(trace_id) == reverse("trace_detail", args=[trace_id])
            assert trace_url(trace_id) == f"{prefix}traces/{trace_id}/"
    finally:
        set_script_prefix("/")
    with pytest.raises(NoReverseMatch):
        trace_url("not a trace id")
