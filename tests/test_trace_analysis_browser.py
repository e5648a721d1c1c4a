"""Where the time went, in Chromium: the flame graph (a click selects a span and opens its panel,
the tree's selection shows in it, hover, zoom), the critical-path toggle, the time split's
tables, and a big trace whose analysis arrives after the page."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from tests.conftest import page_problems
from tests.test_trace_analysis_page import (
    CHAT,
    FORMAT,
    GPT_4O_COST,
    ROOT,
    TOOL_2,
    known_spans,
)
from tests.test_trace_page import payload, span

pytestmark = [pytest.mark.browser, pytest.mark.server]

KNOWN_TRACE = "f1a3e000000000000000000000000a01"
BIG_TRACE = "f1a3e000000000000000000000000b02"
BIG_CHILDREN = 5100  # over trace_page.INLINE_SPANS: the tree streams, the analysis comes later
ROW = 18  # px per level of the flame graph, as flame.js


@pytest.fixture(autouse=True)
def patient() -> Any:
    """Longer waits: these run last in the whole suite, beside other helpers' suites, on a
    machine whose load can reach ten times its cores."""
    expect.set_options(timeout=30_000)
    yield
    expect.set_options(timeout=5_000)


def post(studio_server: Any, spans: list[dict[str, Any]]) -> None:
    response = requests.post(
        f"{studio_server.url}/v1/traces",
        data=payload(spans),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200


@pytest.fixture(scope="module")
def known_trace(studio_server: Any) -> str:
    post(studio_server, known_spans(KNOWN_TRACE))
    studio_server.wait_for_trace(KNOWN_TRACE, 6)
    return KNOWN_TRACE


@pytest.fixture(scope="module")
def big_trace(studio_server: Any) -> str:
    """A root and BIG_CHILDREN children all starting with it, each ending a microsecond after
    the one before: the critical path is the root and its last child."""
    spans = [span("b100000000000000", "invoke_agent Big", end=10**10, trace_id=BIG_TRACE)]
    spans += [
        span(f"c{k:015x}", f"part {k}", "b100000000000000", 0, (k + 1) * 1000, trace_id=BIG_TRACE)
        for k in range(BIG_CHILDREN)
    ]
    post(studio_server, spans)
    studio_server.wait_for_trace(BIG_TRACE, len(spans), timeout=120)
    return BIG_TRACE


def open_watched(page: Any, url: str) -> list[str]:
    """The page at `url`, and its problems from now on (page errors, CSP reports), which every
    test here expects none of."""
    page.set_default_timeout(30_000)
    problems = page_problems(page)
    page.goto(url)
    return problems


def flame_point(page: Any, fraction: float, level: int) -> tuple[float, float]:
    box = page.locator("#flame canvas").bounding_box()
    return box["x"] + box["width"] * fraction, box["y"] + level * ROW + ROW / 2


def test_a_click_in_the_flame_graph_selects_the_span_and_opens_its_panel(
    studio_server: Any, known_trace: str, page: Any
) -> None:
    problems = open_watched(page, f"{studio_server.url}/traces/{known_trace}/")
    canvas = page.locator("#flame canvas")
    expect(canvas).to_be_hidden()
    page.click("#tab-flame")
    expect(page.locator("#tab-flame")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#tree")).to_be_hidden()
    # The first span is selected, as in the tree.
    expect(canvas).to_have_attribute("data-selected", ROOT)
    # Widths are durations: the root's children take 40, 15, 30 and 40 ms of its 100, shrunk by
    # 100/125 to fit side by side: the chat 0-32 %, the format 32-44, the searches 44-68, 68-100.
    page.mouse.move(*flame_point(page, 0.16, 1))
    tip = page.locator(".flame-tip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("gpt-4o")
    expect(tip).to_contain_text("40 ms (self 40 ms)")
    expect(tip).to_contain_text("on the critical path")

    page.mouse.click(*flame_point(page, 0.84, 1))
    expect(page.locator("#span-panel article")).to_have_attribute("data-span-id", TOOL_2)
    expect(page.locator("#span-panel h2")).to_contain_text("execute_tool search")
    expect(page.locator("#span-panel")).to_contain_text("Self time")
    expect(canvas).to_have_attribute("data-selected", TOOL_2)
    expect(page).to_have_url(re.compile(f"span={TOOL_2}"))
    # Zoomed to the box: it now spans the width.
    expect(page.locator("#flame-reset")).to_be_enabled()
    start, end = map(float, page.locator("#flame").get_attribute("data-zoom").split())
    assert (start, end) == (pytest.approx(0.68), pytest.approx(1.0))
    page.mouse.move(*flame_point(page, 0.1, 1))
    expect(tip).to_contain_text("search")
    page.click("#flame-reset")
    expect(page.locator("#flame")).to_have_attribute("data-zoom", "0 1")

    # The tree has the same selection; selecting in the tree shows in the flame graph.
    page.click("#tab-tree")
    expect(canvas).to_be_hidden()
    expect(page.locator(f"#s-{TOOL_2}")).to_have_attribute("aria-selected", "true")
    page.click(f"#s-{CHAT} a")
    expect(page.locator("#span-panel article")).to_have_attribute("data-span-id", CHAT)
    page.click("#tab-flame")
    expect(canvas).to_have_attribute("data-selected", CHAT)
    assert problems == []


def test_the_critical_path_toggle_shows_only_the_path(
    studio_server: Any, known_trace: str, page: Any
) -> None:
    problems = open_watched(page, f"{studio_server.url}/traces/{known_trace}/")
    rows = page.locator("#tree .r")
    expect(rows).to_have_count(6)
    cp = re.compile(r"\bcp\b")
    expect(page.locator(f"#s-{TOOL_2}")).to_have_class(cp)
    expect(page.locator(f"#s-{FORMAT}")).not_to_have_class(cp)
    toggle = page.locator("#critical-only")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(rows).to_have_count(5)
    expect(page.locator(f"#s-{FORMAT}")).to_have_count(0)
    assert "critical=1" in page.url
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(rows).to_have_count(6)
    assert "critical" not in page.url
    # The URL the toggle leaves opens with it on.
    page.goto(f"{studio_server.url}/traces/{known_trace}/?critical=1")
    expect(page.locator("#critical-only")).to_have_attribute("aria-pressed", "true")
    expect(rows).to_have_count(5)
    assert problems == []


def test_the_time_split_and_its_tables(studio_server: Any, known_trace: str, page: Any) -> None:
    page.goto(f"{studio_server.url}/traces/{known_trace}/")
    split = page.locator("#time-split")
    expect(split.locator(".split-legend li")).to_have_count(4)
    expect(split.locator(".split-legend li").first).to_contain_text("LLM 37%")
    expect(page.locator("#trace-cost")).to_have_text(f"{GPT_4O_COST} + 1 without a price")
    table = split.locator('table[data-by="model"]')
    expect(table).to_be_hidden()
    split.locator("summary").click()
    expect(table.locator('tr[data-key="mystery-model"] td').last).to_have_text("no price")
    expect(split.locator('table[data-by="kind-of-work"] tr[data-key="tool"]')).to_contain_text(
        "60 ms"
    )


def test_a_big_traces_analysis_arrives_after_the_page(
    studio_server: Any, big_trace: str, page: Any
) -> None:
    problems = open_watched(page, f"{studio_server.url}/traces/{big_trace}/")
    expect(page.locator("#critical-path")).to_be_attached(timeout=30_000)
    expect(page.locator("#trace-cost")).to_have_text("no model calls")
    expect(page.locator("#time-split")).to_contain_text("critical path: 2 spans")
    expect(page.locator("#tree")).not_to_have_attribute("aria-busy", "true", timeout=60_000)
    last = f"c{BIG_CHILDREN - 1:015x}"
    page.locator("#critical-only").click()
    expect(page.locator("#tree .r")).to_have_count(2)
    expect(page.locator(f"#s-{last}")).to_have_class(re.compile(r"\bcp\b"))
    page.click(f"#s-{last} a")
    expect(page.locator("#span-panel h2")).to_contain_text(f"part {BIG_CHILDREN - 1}")
    page.locator("#critical-only").click()
    expect(page.locator("#tree .r").first).to_be_visible()
    # The flame graph of its 5,101 spans shares the selection; a click on the root opens it.
    page.click("#tab-flame")
    expect(page.locator("#flame canvas")).to_have_attribute("data-selected", last)
    page.mouse.click(*flame_point(page, 0.5, 0))
    expect(page.locator("#span-panel h2")).to_contain_text("invoke_agent Big")
    expect(page.locator("#flame canvas")).to_have_attribute("data-selected", "b100000000000000")
    assert problems == []
