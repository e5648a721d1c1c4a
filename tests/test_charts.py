"""Cost stored at ingest (each convention's token attributes, cached tokens counted once, an
unknown model, `manage.py reprice`), the overview's cost column, card, sort and filters, and its
charts over time (`/api/traces/stats/`), in Django and in Chromium."""

from __future__ import annotations

import uuid
from io import StringIO
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.test import Client, override_settings

from studio.filters import TraceFilter
from tests.conftest import StudioServer
from tests.races import Threads, hold_the_fold, postgresql_only
from tests.test_overview import HTMX, make_trace, row_ids
from tests.test_trace_page import payload, span, store
from tracing import timeline
from tracing.models import Span, Trace
from tracing.prices import Price

TRACE = "5b8efff798038103d269b633813fc60c"  # test_trace_page's payload
SECOND = 1_000_000_000
MS = 1_000_000

CHAT = {"gen_ai.operation.name": "chat"}
# One model call per convention, each with cached (and some reasoning) tokens: (attributes, USD).
CONVENTIONS = {
    # GenAI: cached reads are inside the input tokens. gpt-4o: 2.50 in, 1.25 cached, 10 out.
    "genai": (
        {
            **CHAT,
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.cache_read.input_tokens": 400,
            "gen_ai.usage.output_tokens": 200,
        },
        (600 * 2.50 + 400 * 1.25 + 200 * 10.0) / 1e6,
    ),
    # OpenInference: o3-mini, 1.10 in, 0.55 cached, 4.40 out; reasoning at the output price.
    "openinference": (
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "o3-mini",
            "llm.token_count.prompt": 2000,
            "llm.token_count.prompt_details.cache_read": 1000,
            "llm.token_count.completion": 500,
            "llm.token_count.completion_details.reasoning": 300,
        },
        (1000 * 1.10 + 1000 * 0.55 + 200 * 4.40 + 300 * 4.40) / 1e6,
    ),
    # OpenLLMetry: Anthropic's cache reads and writes inside the prompt tokens.
    "openllmetry": (
        {
            **CHAT,
            "gen_ai.system": "Anthropic",
            "gen_ai.request.model": "claude-3-5-sonnet-20241022",
            "gen_ai.usage.prompt_tokens": 10_000,
            "gen_ai.usage.cache_read_input_tokens": 8000,
            "gen_ai.usage.cache_creation_input_tokens": 1000,
            "gen_ai.usage.completion_tokens": 100,
        },
        (1000 * 3.0 + 8000 * 0.30 + 1000 * 3.75 + 100 * 15.0) / 1e6,
    ),
}


def agent_with(calls: list[dict[str, Any]], trace_id: str = TRACE) -> list[dict[str, Any]]:
    root = span("c000000000000001", "agent", trace_id=trace_id)
    root["attributes"] = [{"key": "gen_ai.operation.name", "value": {"stringValue": "agent"}}]
    return [
        root,
        *(
            span(f"c00000000000010{i}", f"call {i}", "c000000000000001", trace_id=trace_id,
                 attributes=attributes)
            for i, attributes in enumerate(calls)
        ),
    ]  # fmt: skip


# Cost stored at ingest.


@pytest.mark.django_db
@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_each_conventions_tokens_with_cached_ones_are_priced_once_at_ingest(
    convention: str,
) -> None:
    attributes, expected = CONVENTIONS[convention]
    store(payload(agent_with([attributes])))
    call = Span.objects.get(span_id="c000000000000100")
    assert call.cost_usd == pytest.approx(expected)
    assert Span.objects.get(span_id="c000000000000001").cost_usd is None  # not a model call
    trace = Trace.objects.get(trace_id=TRACE)
    assert trace.cost_usd == pytest.approx(expected) and trace.unpriced_spans == 0


@pytest.mark.django_db
def test_a_traces_cost_sums_its_calls_and_counts_the_unknown_model_without_a_price(
    client: Client,
) -> None:
    unknown = {**CHAT, "gen_ai.request.model": "my-llama", "gen_ai.usage.input_tokens": 50}
    calls = [CONVENTIONS["genai"][0], CONVENTIONS["openinference"][0], unknown]
    store(payload(agent_with(calls)))
    assert Span.objects.get(span_id="c000000000000102").cost_usd is None
    trace = Trace.objects.get(trace_id=TRACE)
    total = CONVENTIONS["genai"][1] + CONVENTIONS["openinference"][1]
    assert trace.cost_usd == pytest.approx(total) and trace.unpriced_spans == 1
    row = client.get("/api/traces/").json()["results"][0]
    assert row["cost_usd"] == pytest.approx(total) and row["unpriced_spans"] == 1


@pytest.mark.django_db
def test_a_trace_whose_only_model_has_no_price_has_no_cost_not_zero(client: Client) -> None:
    unknown = {**CHAT, "gen_ai.request.model": "my-llama", "gen_ai.usage.input_tokens": 50}
    store(payload(agent_with([unknown])))
    trace = Trace.objects.get(trace_id=TRACE)
    assert (trace.cost_usd, trace.unpriced_spans, trace.cost) == (0, 1, None)
    assert client.get("/api/traces/").json()["results"][0]["cost_usd"] is None
    html = client.get("/traces/").content.decode()
    assert ">no price</span>" in html and "1 unpriced" in html


@pytest.mark.django_db
def test_spans_are_priced_with_the_users_prices_and_reprice_applies_new_ones() -> None:
    unknown = {**CHAT, "gen_ai.request.model": "my-llama", "gen_ai.usage.input_tokens": 1_000_000}
    with override_settings(STUDIO_PRICES={"my-llama": Price(2.0, 8.0)}):
        store(payload(agent_with([unknown])))
    assert Trace.objects.get(trace_id=TRACE).cost_usd == pytest.approx(2.0)
    # The price changed: stored costs stay as they were until `reprice`.
    with override_settings(STUDIO_PRICES={"my-llama": Price(3.0, 8.0)}):
        assert Trace.objects.get(trace_id=TRACE).cost_usd == pytest.approx(2.0)
        out = StringIO()
        call_command("reprice", stdout=out)
    assert "Repriced 1 trace: 1 model call changed cost." in out.getvalue()
    assert Span.objects.get(span_id="c000000000000100").cost_usd == pytest.approx(3.0)
    trace = Trace.objects.get(trace_id=TRACE)
    assert trace.cost_usd == pytest.approx(3.0) and trace.unpriced_spans == 0
    # The price is gone: no price, and counted.
    call_command("reprice", stdout=StringIO())
    trace = Trace.objects.get(trace_id=TRACE)
    assert (trace.cost_usd, trace.unpriced_spans) == (0, 1)
    assert Span.objects.get(span_id="c000000000000100").cost_usd is None


@postgresql_only("SQLite's IMMEDIATE transactions serialise reprice and the writer")
@pytest.mark.django_db(transaction=True)
def test_a_reprice_while_the_writer_folds_a_trace_leaves_the_new_prices_total(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # PostgreSQL: the writer reads a trace's summary row and writes it back with its batch
    # added. A reprice committed in between was overwritten with the old prices' total.

    call = {**CHAT, "gen_ai.request.model": "my-llama", "gen_ai.usage.input_tokens": 1_000_000}
    with override_settings(STUDIO_PRICES={"my-llama": Price(2.0, 8.0)}):
        store(payload(agent_with([call])))
    folding, go = hold_the_fold(monkeypatch)
    threads = Threads()

    def reprice() -> None:
        with override_settings(STUDIO_PRICES={"my-llama": Price(3.0, 8.0)}):
            call_command("reprice", stdout=StringIO())

    adding = threads.start(store, payload([span("c000000000000200", "late", "c000000000000001")]))
    assert folding.wait(10)
    repricing = threads.start(reprice)
    repricing.join(1)  # with the fix it waits for the writer's locks
    go.set()
    adding.join(10)
    repricing.join(10)
    assert not threads.failures
    trace = Trace.objects.get(trace_id=TRACE)
    assert trace.span_count == 3
    assert trace.cost_usd == pytest.approx(3.0)


@pytest.mark.django_db(transaction=True)
def test_a_worker_process_prices_with_the_servers_overrides() -> None:
    from ingest import otlp, workers

    body = payload(agent_with([{**CHAT, "gen_ai.request.model": "my-llama",
                                "gen_ai.usage.input_tokens": 1_000_000}]))  # fmt: skip
    pool = workers.DecodePool(1)
    try:
        batch = pool.decode(body, otlp.JSON, {"my-llama": Price(2.0, 8.0)})
        shipped = pool.decode(body, otlp.JSON)
    finally:
        pool.close()
    costs = {record.span_id: record.cost_usd for record in batch.records}
    assert costs["c000000000000100"] == pytest.approx(2.0)
    assert {record.cost_usd for record in shipped.records} == {None}


# The overview: column, card, sort and filters, on the page and in the API.


def priced(n: int, cost: float | None, unpriced: int = 0, **fields: Any) -> Trace:
    return make_trace(n, cost_usd=cost, unpriced_spans=unpriced, **fields)


@pytest.fixture
def costly(db: None) -> list[str]:
    costs = [0.5, 0.0, 2.25, 0.001, 0.5, 1.0]
    for n, cost in enumerate(costs):
        priced(n, cost, unpriced=1 if n == 1 else 0, ago_s=n)
    return [f"{n:032x}" for n in sorted(range(len(costs)), key=lambda n: (-costs[n], -n))]


def test_the_overview_sorts_by_cost_across_pages(client: Client, costly: list[str]) -> None:
    html = client.get("/traces/?sort=-cost").content.decode()
    assert row_ids(html) == costly
    assert 'aria-sort="descending"><a href="/traces/?sort=cost"' in html
    seen: list[str] = []
    url: str | None = "/api/traces/?sort=-cost&limit=4"
    while url:
        body = client.get(url).json()
        seen += [row["trace_id"] for row in body["results"]]
        url = body["next"]
    assert seen == costly
    cheapest = client.get("/api/traces/?ordering=cost&limit=2").json()
    assert [row["trace_id"] for row in cheapest["results"]] == costly[::-1][:2]
    assert client.get(cheapest["next"]).json()["results"][0]["trace_id"] == costly[::-1][2]


def test_min_and_max_cost_filter_the_page_the_cards_and_the_api(
    client: Client, costly: list[str]
) -> None:
    html = client.get("/traces/?min_cost=0.5&max_cost=1.5", headers=HTMX).content.decode()
    assert sorted(row_ids(html)) == sorted([f"{0:032x}", f"{4:032x}", f"{5:032x}"])
    assert "$2.00" in html  # the cost card: 0.5 + 0.5 + 1.0
    body = client.get("/api/traces/?min_cost=1").json()
    assert body["count"] == 2 and {row["cost_usd"] for row in body["results"]} == {2.25, 1.0}
    assert client.get("/api/traces/?min_cost=-1").status_code == 400
    assert client.get("/api/traces/?max_cost=cheap").json() == {"max_cost": ["Enter a number."]}
    trace_filter = TraceFilter.from_query({"min_cost": "0.25", "max_cost": "3"})
    assert trace_filter.url() == "/traces/?min_cost=0.25&max_cost=3"


def test_the_cost_card_totals_the_match_and_counts_the_unpriced(
    client: Client, costly: list[str]
) -> None:
    html = client.get("/traces/").content.decode()
    assert "<dt>Cost</dt>" in html and "$4.25" in html and "1 unpriced" in html
    assert '<td class="col-cost num">$2.25</td>' in html
    assert 'title="1 model call without a price">no price</span>' in html  # its cost is 0
    Trace.objects.filter(trace_id=costly[0]).update(unpriced_spans=2)
    html = client.get("/traces/").content.decode()
    assert '$2.25<span class="muted" title="2 more model calls without a price">+?' in html
    # The filtered cards and the unfiltered ones (read from the cards index) agree.
    stats = Trace.objects.filter(span_count=3).stats()
    assert stats.cost_usd == pytest.approx(4.251) and stats.unpriced_spans == 3
    all_stats = Trace.objects.all().stats()
    assert all_stats.cost_usd == pytest.approx(4.251) and all_stats.unpriced_spans == 3


# Charts over time.


def test_buckets_cut_any_range_into_at_most_120_readable_steps() -> None:
    assert timeline.bucket_for(60 * SECOND) == SECOND
    assert timeline.bucket_for(3600 * SECOND) == 30 * SECOND
    assert timeline.bucket_for(24 * 3600 * SECOND) == 900 * SECOND
    assert timeline.bucket_for(30 * 86400 * SECOND) == 6 * 3600 * SECOND
    for span_ns in (1, 10**9, 7 * 86400 * SECOND, 400 * 86400 * SECOND):
        assert span_ns / timeline.bucket_for(span_ns) <= timeline.MAX_BUCKETS or span_ns > (
            timeline.INTERVALS[-1] * SECOND * timeline.MAX_BUCKETS
        )


def test_the_stats_endpoint_aggregates_per_bucket_from_the_trace_rows(
    client: Client, db: None, django_assert_num_queries: Any
) -> None:
    base = 1_700_000_040 * SECOND  # on a minute boundary
    # Minute 0: durations 1..5 ms, one error; minute 2: 10 and 20 ms; minute 1 empty.
    for n in range(5):
        status = 2 if n == 4 else 1
        priced(n, 0.25, start_ns=base + n * SECOND, duration_ns=(n + 1) * MS,
               status_code=status, input_tokens=80, output_tokens=20)  # fmt: skip
    priced(
        5, 1.0, start_ns=base + 125 * SECOND, duration_ns=10 * MS, input_tokens=5, output_tokens=2
    )
    priced(6, None, start_ns=base + 130 * SECOND, duration_ns=20 * MS, input_tokens=0,
           output_tokens=0)  # fmt: skip
    query = {
        "range": "custom",
        "since": "2023-11-14T22:14:00Z",  # base
        "until": "2023-11-14T22:17:00Z",  # base + 3 min
    }
    with django_assert_num_queries(3):  # sums, durations, scatter: a closed range has bounds
        body = client.get("/api/traces/stats/", query).json()
    assert body["bucket_seconds"] == 2 and body["count"] == 7
    assert body["start"] == "2023-11-14T22:14:00Z"
    with django_assert_num_queries(4):  # the open range's bounds first
        body = client.get("/api/traces/stats/").json()
    assert body["bucket_seconds"] == 2  # 130 s of traces
    minute = client.get("/api/traces/stats/", {**query, "until": "2023-11-15T00:14:00Z"}).json()
    assert minute["bucket_seconds"] == 60
    buckets = minute["buckets"]
    assert buckets["time"][:3] == [1_700_000_040, 1_700_000_100, 1_700_000_160]
    assert buckets["traces"][:3] == [5, 0, 2] and buckets["errors"][:3] == [1, 0, 0]
    assert buckets["p50_ms"][:3] == [3.0, None, 10.0]  # nearest rank, exact
    assert buckets["p95_ms"][:3] == [5.0, None, 20.0]
    assert buckets["tokens"][:3] == [500, 0, 7]
    assert buckets["cost_usd"][:3] == [pytest.approx(1.25), 0, 1.0]
    points = minute["points"]
    assert points["duration_ms"] == [1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0]  # by start
    assert points["error"] == [False, False, False, False, True, False, False]
    assert points["trace_id"][0] == f"{0:032x}" and minute["sampled"] is False
    # The same filters as the list: a status narrows the charts too.
    errors = client.get("/api/traces/stats/", {**query, "status": "ERROR"}).json()
    assert errors["count"] == 1 and errors["points"]["trace_id"] == [f"{4:032x}"]
    assert client.get("/api/traces/stats/?min_cost=x").status_code == 400


def test_the_scatter_samples_the_traces_and_keeps_the_slowest(
    db: None, monkeypatch: Any, django_assert_num_queries: Any
) -> None:
    monkeypatch.setattr(timeline, "SAMPLE", 4)
    monkeypatch.setattr(timeline, "SLOWEST", 2)
    base = 1_700_000_000 * SECOND
    for n in range(10):  # ids 000…, 111…, …, 999…; 1 to 5 ms
        priced(n, 0.0, start_ns=base + n * SECOND // 5, duration_ns=(n % 5 + 1) * MS,
               trace_id=f"{n:x}" * 32)  # fmt: skip
    with django_assert_num_queries(3):
        line = timeline.timeline(Trace.objects.all(), base, base + 2 * SECOND)
    assert line.bucket_ns == SECOND and line.traces == [5, 5]
    assert line.count == 10 and line.sampled
    # Ids below 4/10 of the id space (0 to 5), and the two slowest (4 and 9, 5 ms).
    assert [point[2][0] for point in line.points] == list("0123459")
    assert [point[1] // MS for point in line.points] == [1, 2, 3, 4, 5, 1, 5]
    # More than four times the sample: read by trace id and duration index, not row by row.
    monkeypatch.setattr(timeline, "SAMPLE", 2)
    with django_assert_num_queries(3):
        line = timeline.timeline(Trace.objects.all(), base, base + 2 * SECOND)
    assert [point[2][0] for point in line.points] == list("01249")
    open_ended = timeline.timeline(Trace.objects.filter(start_ns__lt=base + SECOND), None, None)
    assert open_ended.count == 5 and open_ended.start_ns == base
    assert not open_ended.sampled and len(open_ended.points) == 5


def test_a_broad_searchs_charts_count_its_first_matches(db: None) -> None:
    base = 1_700_000_000 * SECOND
    for n in range(5):
        priced(n, 0.5, start_ns=base + n * SECOND, duration_ns=(n + 1) * MS, status_code=n % 2 * 2)
    first = Trace.objects.order_by("-start_ns")[:3]  # what a broad search charts
    line = timeline.timeline(first, base, base + 5 * SECOND)
    assert line.traces == [0, 0, 1, 1, 1] and line.errors == [0, 0, 0, 1, 0]
    assert line.p50_ns == [None, None, 3 * MS, 4 * MS, 5 * MS]
    assert line.cost_usd == [0, 0, 0.5, 0.5, 0.5] and len(line.points) == 3


def test_the_overview_links_its_charts_to_the_same_filter(
    client: Client, costly: list[str]
) -> None:
    html = client.get("/traces/?status=OK&sort=-cost").content.decode()
    assert 'data-stats-url="/api/traces/stats/?status=OK"' in html
    assert 'id="charts" class="charts" aria-label="Over time" hidden' in html
    assert "charts.js" in html and "<script>" not in html and "style=" not in html


# In Chromium.


@pytest.mark.browser
def test_the_charts_draw_a_click_opens_a_trace_and_a_drag_filters(
    page: Any, studio_server: StudioServer
) -> None:
    service = f"charts-{uuid.uuid4().hex[:8]}"
    prefix = uuid.uuid4().hex[:24]
    traces = [f"{prefix}{n:08x}" for n in range(30)]
    spans = []
    for n, trace_id in enumerate(traces):
        root = span("c000000000000001", f"job {n}", start=n * 60 * SECOND,
                    end=n * 60 * SECOND + (n % 7 + 1) * 10 * MS, trace_id=trace_id)  # fmt: skip
        if n % 9 == 0:
            root["status"] = {"code": 2}
        spans.append(root)
    response = requests.post(
        f"{studio_server.url}/v1/traces",
        data=payload(spans, resource={"service.name": service}),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.goto(f"{studio_server.url}/traces/?service={service}")
    page.wait_for_selector('#charts[data-state="ready"]', timeout=15000)
    assert page.locator("#charts canvas").count() == 4
    assert "30 traces" in page.locator(".charts-note").inner_text()
    # The scatter's newest point, where uPlot draws it.
    x, y = page.evaluate(
        """() => {
            const u = document.getElementById("charts").scatter;
            const i = u.data[0].length - 1;
            const y = u.data[1][i] ?? u.data[2][i];
            const box = u.over.getBoundingClientRect();
            return [box.left + u.valToPos(u.data[0][i], "x"), box.top + u.valToPos(y, "y")];
        }"""
    )
    page.mouse.click(x, y)
    page.wait_for_url(f"**/traces/{traces[-1]}/")
    page.go_back()
    page.wait_for_selector('#charts[data-state="ready"]', timeout=15000)
    box = page.locator('[data-chart="scatter"] .u-over').bounding_box()
    assert box is not None
    middle = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.5, middle)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.75, middle, steps=5)
    page.mouse.up()
    page.wait_for_url("**range=custom**")
    assert "since=" in page.url and "until=" in page.url and f"service={service}" in page.url
    page.wait_for_selector('#charts[data-state="ready"]', timeout=15000)
    shown = page.locator("#trace-rows tr.trace-row").count()
    assert 0 < shown < 30
    assert violations == []
