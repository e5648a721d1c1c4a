"""Traces too big to put in the page: the server reads and sends their call tree a chunk at a
time (never a row object per span at once, never the JSON bodies), and Chromium draws it as a
virtual list as it arrives, with selection, deep links, the keyboard and the filter."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from playwright.sync_api import expect

from studio import trace_page
from tests.conftest import page_problems
from tests.test_trace_finder import wait_until_found
from tests.test_trace_page import TRACE, payload, span, store
from tracing import selectors
from tracing.models import Trace

BIG_TRACE = "b16b16b16b16b16b16b16b16b16b1600"
STEPS = 400
PARTS = 49
CHAIN = 30  # under step CHAIN_STEP, a chain of spans this deep
CHAIN_STEP = 300


def tricky_spans(count: int) -> list[dict[str, Any]]:
    """Nested spans, an orphan, a loop of parents and an error, starting in no tree order."""
    spans = [span("00000000000000a0", "root", start=0, end=10_000_000)]
    for i in range(1, count):
        parent = f"{(i - 1) // 3:016x}" if i > 3 else "00000000000000a0"
        spans.append(
            span(f"{i:016x}", f"step {i}", parent=parent, start=(count - i) * 1000, end=9_000_000)
        )
    spans.append(span("00000000000000c1", "orphan", parent="00000000000000ff", start=5))
    spans.append(span("00000000000000b1", "loop one", parent="00000000000000b2", start=30))
    spans.append(span("00000000000000b2", "loop two", parent="00000000000000b1", start=40))
    spans.append(span("00000000000000e1", "bad", start=50, status={"code": 2}))
    return spans


def streamed(trace_id: str) -> list[dict[str, Any]]:
    trace = Trace.objects.get(trace_id=trace_id)
    return [json.loads(line) for line in trace_page.tree_chunks(trace)]


def joined(chunks: list[dict[str, Any]]) -> list[list[Any]]:
    """The rows of tree_data chunks with their indices replaced by the texts."""
    rows = []
    for chunk in chunks:
        for row in chunk["rows"]:
            row = list(row)
            row[2] = chunk["types"][row[2]]
            for k in range(4, 8):
                row[k] = chunk["strings"][row[k]]
            rows.append(row)
    return rows


@pytest.mark.django_db
def test_the_streamed_tree_is_the_tree_of_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    store(payload(tricky_spans(60)))
    monkeypatch.setattr(selectors, "TREE_CHUNK", 7)
    chunks = streamed(TRACE)
    assert chunks[0] == {"count": 64, "max_indent": trace_page.MAX_INDENT}
    assert all(len(chunk["rows"]) <= 7 for chunk in chunks[1:])
    inline = trace_page.tree_data(selectors.trace_tree(TRACE))
    assert joined(chunks[1:]) == joined([inline])
    # Orphans (a parent never received, a loop broken at its earliest span) and errors are
    # flagged as in the page.
    flags = {row[0]: row[3] for row in joined(chunks[1:])}
    assert flags["00000000000000c1"] == trace_page.ORPHAN
    assert flags["00000000000000b1"] == trace_page.ORPHAN
    assert flags["00000000000000b2"] == 0
    assert flags["00000000000000e1"] == trace_page.ERROR


@pytest.mark.django_db
def test_the_tree_data_reads_a_chunk_of_narrow_rows_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spans = [span("00000000000000a0", "root", start=0, end=10**9)]
    spans += [
        span(f"1{i:015x}", f"s{i}", parent="00000000000000a0", start=i, attributes={"x": "y" * 900})
        for i in range(1, 500)
    ]
    store(payload(spans))
    monkeypatch.setattr(selectors, "TREE_CHUNK", 50)
    made: list[int] = []
    chunk = trace_page._chunk
    monkeypatch.setattr(
        trace_page, "_chunk", lambda rows, *a: made.append(len(rows)) or chunk(rows, *a)
    )
    with CaptureQueriesContext(connection) as queries:
        chunks = streamed(TRACE)
    assert sum(len(chunk["rows"]) for chunk in chunks[1:]) == 500
    # Row objects are made a chunk at a time, each chunk from one query of at most 50 span ids.
    assert made == [50] * 10
    reads = [query["sql"] for query in queries.captured_queries if "tracing_span" in query["sql"]]
    assert len(reads) == 11
    order, *chunk_reads = reads
    columns = set(re.findall(r'"tracing_span"\."(\w+)"', order.split(" FROM ")[0]))
    # SQLite's rowid (`id`) is in every index: the order is still read from the index alone.
    assert columns - {"id"} == {"span_id", "parent_span_id"}
    for sql in chunk_reads:
        assert " IN (" in sql and sql.split(" IN (")[1].split(")")[0].count(",") < 50
    # The JSON bodies are never read.
    assert not any("_json" in sql for sql in reads)


@pytest.mark.django_db
def test_a_big_trace_page_holds_no_rows_and_points_trace_js_at_the_tree_data(
    monkeypatch: pytest.MonkeyPatch, client: Client
) -> None:
    store(payload(tricky_spans(60)))
    monkeypatch.setattr(trace_page, "INLINE_SPANS", 10)

    def every_row(trace_id: str) -> None:
        raise AssertionError("the page of a big trace read every row")

    monkeypatch.setattr(selectors, "trace_tree", every_row)
    html = client.get(f"/traces/{TRACE}/").content.decode()
    assert f'data-tree-url="/traces/{TRACE}/tree/"' in html
    assert 'id="tree-data"' not in html
    assert 'class="r ' not in html.split('id="tree-row"')[0]
    assert 'id="tree-row"' in html  # the row trace.js clones
    # The earliest span's panel, or the one asked for.
    assert 'data-selected="00000000000000a0"' in html
    deep = client.get(f"/traces/{TRACE}/?span=000000000000003b").content.decode()
    assert 'data-span-id="000000000000003b"' in deep
    assert "svc" in html  # the services, from the database


# -- Through a real runstudio and Chromium -------------------------------------------------------


def big_trace_spans() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """A root, STEPS steps of PARTS parts each, and under step CHAIN_STEP a chain CHAIN deep."""
    spans = [span("b000000000000000", "invoke_agent Big", start=0, end=10**10, trace_id=BIG_TRACE)]
    clock = 1
    chain_parent = ""
    for step in range(STEPS):
        step_id = f"c{step:015x}"
        spans.append(
            span(
                step_id,
                f"step {step}",
                "b000000000000000",
                clock,
                clock + 10 * PARTS + 10,
                trace_id=BIG_TRACE,
            )
        )
        clock += 10
        for part in range(PARTS):
            spans.append(
                span(
                    f"d{step:07x}{part:08x}",
                    f"part {step}.{part}",
                    step_id,
                    clock,
                    clock + 1000,
                    trace_id=BIG_TRACE,
                )
            )
            clock += 10
        if step == CHAIN_STEP:
            chain_parent = step_id
            for level in range(CHAIN):
                chain_id = f"e{level:015x}"
                spans.append(
                    span(
                        chain_id,
                        f"deep {level}",
                        chain_parent,
                        clock,
                        clock + 5,
                        trace_id=BIG_TRACE,
                    )
                )
                chain_parent = chain_id
                clock += 10
    spans[0]["endTimeUnixNano"] = str(int(spans[0]["startTimeUnixNano"]) + clock)
    last = spans[-1] if STEPS - 1 != CHAIN_STEP else spans[-CHAIN - 1]
    return spans, {"root": spans[0]["spanId"], "last": last["spanId"], "deep": chain_parent}


@pytest.fixture(scope="module")
def big_trace(studio_server: Any) -> dict[str, str]:
    spans, ids = big_trace_spans()
    for start in range(0, len(spans), 5000):
        response = requests.post(
            f"{studio_server.url}/v1/traces",
            data=payload(spans[start : start + 5000]),
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        assert response.status_code == 200
    studio_server.wait_for_trace(BIG_TRACE, len(spans), timeout=120)
    wait_until_found(studio_server, BIG_TRACE, f"deep {CHAIN - 1}", 1, timeout=120)
    return {**ids, "count": str(len(spans))}


@pytest.mark.server
def test_the_tree_data_is_streamed_as_lines_of_json(studio_server: Any, big_trace: dict) -> None:
    with requests.get(
        f"{studio_server.url}/traces/{BIG_TRACE}/tree/", stream=True, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/x-ndjson"
        assert "Content-Length" not in response.headers  # sent as it is read
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[0]["count"] == int(big_trace["count"])
    assert sum(len(line["rows"]) for line in lines[1:]) == int(big_trace["count"])
    missing = requests.get(f"{studio_server.url}/traces/{'0' * 31}1/tree/", timeout=30)
    assert missing.status_code == 404


@pytest.mark.server
def test_readers_at_once_each_get_the_whole_tree(studio_server: Any, big_trace: dict) -> None:
    """They share one computation (studio.tree_cache): each request's thread waits for the one
    making a line, which only works because requests never share a thread."""

    def read() -> bytes:
        url = f"{studio_server.url}/traces/{BIG_TRACE}/tree/"
        with requests.get(url, stream=True, timeout=120) as response:
            assert response.status_code == 200
            return b"".join(response.iter_content(None))

    with ThreadPoolExecutor(3) as pool:
        bodies = list(pool.map(lambda _: read(), range(3)))
    assert bodies[0] == bodies[1] == bodies[2]
    lines = [json.loads(line) for line in bodies[0].splitlines()]
    assert sum(len(line["rows"]) for line in lines[1:]) == int(big_trace["count"])


def pane_scroll(page: Any, where: str) -> None:
    page.evaluate(f"document.querySelector('.tree-pane').scrollTop = {where}")


@pytest.mark.browser
@pytest.mark.server
def test_a_20000_span_trace_is_a_virtual_tree(
    studio_server: Any, big_trace: dict, page: Any
) -> None:
    problems = page_problems(page)
    url = f"{studio_server.url}/traces/{BIG_TRACE}/"
    page.goto(url)
    tree = page.locator("#tree")
    expect(page.locator(f"#s-{big_trace['root']}")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#span-panel h2")).to_contain_text("invoke_agent Big")
    expect(tree).not_to_have_attribute("aria-busy", "true", timeout=60_000)
    assert 0 < page.locator("#tree .r").count() < 200
    expect(page.locator(".tree-cut")).to_be_hidden()

    # Scrolling to the end shows the last span, with its bar.
    pane_scroll(page, "1e9")
    last = page.locator(f"#s-{big_trace['last']}")
    expect(last).to_be_in_viewport()
    assert float(last.locator(".bar rect").get_attribute("x").rstrip("%")) > 90
    assert page.locator("#tree .r").count() < 200

    # End selects the last span and opens its panel; Home goes back.
    pane_scroll(page, "0")
    tree.focus()
    page.keyboard.press("End")
    expect(tree).to_have_attribute("aria-activedescendant", f"s-{big_trace['last']}")
    expect(last).to_be_in_viewport()
    expect(page.locator("#span-panel h2")).to_contain_text(f"part {STEPS - 1}.{PARTS - 1}")
    page.keyboard.press("Home")
    expect(page.locator(f"#s-{big_trace['root']}")).to_be_in_viewport()

    # Collapse and filter over the whole tree.
    page.get_by_role("button", name="Collapse all").click()
    assert page.locator("#tree .r").count() == 1
    page.get_by_label("Filter spans").fill("part 398.17")
    expect(page.locator("#tree-filter-count")).to_have_text("1 of 1")
    expect(page.locator("#tree .r.m")).to_be_in_viewport()

    # A deep link to a deep span far down the tree scrolls it into view, selected.
    page.goto(f"{url}?span={big_trace['deep']}")
    deep = page.locator(f"#s-{big_trace['deep']}")
    expect(deep).to_have_attribute("aria-selected", "true")
    expect(deep).to_be_in_viewport()
    expect(deep).to_have_attribute("aria-level", str(CHAIN + 2))
    expect(page.locator("#span-panel h2")).to_contain_text(f"deep {CHAIN - 1}")
    expect(tree).not_to_have_attribute("aria-busy", "true", timeout=60_000)
    expect(deep).to_be_in_viewport()
    assert page.locator("#tree .r").count() < 200
    assert problems == []


@pytest.mark.browser
@pytest.mark.server
def test_the_finder_goes_to_a_match_whose_row_has_not_arrived_yet(
    studio_server: Any, big_trace: dict, page: Any
) -> None:
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.goto(f"{studio_server.url}/traces/{BIG_TRACE}/")
    # Asked while the tree streams in: the deep span's row comes late in the stream.
    page.get_by_label("Filter spans").fill(f"deep {CHAIN - 1}")
    expect(page.locator("#tree-filter-count")).to_have_text("1 of 1")
    deep = page.locator(f"#s-{big_trace['deep']}")
    expect(deep).to_have_attribute("aria-selected", "true", timeout=60_000)
    expect(deep).to_have_class(re.compile(r"\bm\b"))
    expect(deep).to_be_in_viewport()
    expect(page.locator("#span-panel h2")).to_contain_text(f"deep {CHAIN - 1}")
    expect(page).to_have_url(re.compile(rf"\?span={big_trace['deep']}$"))
    expect(page.locator("#tree")).not_to_have_attribute("aria-busy", "true", timeout=60_000)
    expect(deep).to_be_in_viewport()
    assert problems == []
