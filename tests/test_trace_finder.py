"""The trace page's span finder and its errors: the server matches (full text), the page shows
"n of m", steps through the matches and opens the way to each; "Errors only", the header's error
link and the n / p keys. In Chromium on a 2,000-span trace whose one failing span is deep down."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import requests
from django.test import Client
from playwright.sync_api import expect

from studio import trace_page
from tests.test_trace_page import payload, span, store

DEEP_TRACE = "dee9dee9dee9dee9dee9dee9dee9dee9"
ROOT = "a000000000000000"
STEPS = 40
PARTS = 48
HOPS = 38  # under step FAILING_STEP, a chain this deep, the failing span at its end
FAILING_STEP = 37
FAILING = "f000000000000001"
STATUS_MESSAGE = "quota exhausted for tenant umbra"
CHECKPOINTS = (10, 20, 30)  # the steps whose part 7 is a checkpoint


def step_id(step: int) -> str:
    return f"b{step:015x}"


def hop_id(hop: int) -> str:
    return f"e{hop:015x}"


def part_id(step: int, part: int) -> str:
    return f"c{step:07x}{part:08x}"


def deep_spans() -> list[dict[str, Any]]:
    """2,000 spans: a root, STEPS steps of PARTS parts, and under step FAILING_STEP a chain of
    HOPS spans ending in the one failing span."""
    spans = [span(ROOT, "invoke_agent Deep", start=0, end=10**9, trace_id=DEEP_TRACE)]
    clock = 1
    for step in range(STEPS):
        spans.append(
            span(step_id(step), f"step {step}", ROOT, clock, clock + 10**6, trace_id=DEEP_TRACE)
        )
        for part in range(PARTS):
            clock += 10
            name = f"part {step}.{part}" + (
                " checkpoint" if step in CHECKPOINTS and part == 7 else ""
            )
            spans.append(
                span(
                    part_id(step, part), name, step_id(step), clock, clock + 5, trace_id=DEEP_TRACE
                )
            )
        if step == FAILING_STEP:
            parent = step_id(step)
            for hop in range(HOPS):
                clock += 10
                spans.append(
                    span(hop_id(hop), f"hop {hop}", parent, clock, clock + 5, trace_id=DEEP_TRACE)
                )
                parent = hop_id(hop)
            spans.append(
                span(
                    FAILING,
                    "call_quota_service",
                    parent,
                    clock + 1,
                    clock + 4,
                    attributes={"error.type": "QuotaExceeded"},
                    status={"code": 2, "message": STATUS_MESSAGE},
                    trace_id=DEEP_TRACE,
                )
            )
        clock += 10
    assert len(spans) == 2000
    return spans


def wait_until_found(server: Any, trace_id: str, q: str, count: int, timeout: float = 60) -> None:
    """Poll the finder until the search index holds the trace (on SQLite it is built just after
    the commit, by a thread of the server)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = requests.get(f"{server.url}/traces/{trace_id}/find", {"q": q}, timeout=30)
        if found.status_code == 200 and len(found.json()["matches"]) == count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{q!r} did not find {count} spans of {trace_id}")


# The server side: the page's error link and the finder's queries.


@pytest.mark.django_db
def test_the_header_error_count_links_to_the_first_error_without_javascript(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    store(payload(deep_spans()))
    html = client.get(f"/traces/{DEEP_TRACE}/").content.decode()
    assert f'<a id="first-error" href="?span={FAILING}#s-{FAILING}"' in html
    assert 'id="errors-only"' in html
    assert f'data-find-url="/traces/{DEEP_TRACE}/find"' in html
    # A big trace's page (no rows in it) links to its earliest error.
    monkeypatch.setattr(trace_page, "INLINE_SPANS", 10)
    html = client.get(f"/traces/{DEEP_TRACE}/").content.decode()
    assert f'<a id="first-error" href="?span={FAILING}#s-{FAILING}"' in html
    # No error, no link and no toggle.
    store(payload([span("1" * 16, "fine", trace_id="1" * 32)]))
    html = client.get(f"/traces/{'1' * 32}/").content.decode()
    assert 'id="first-error"' not in html and 'id="errors-only"' not in html


@pytest.mark.django_db
def test_the_finder_answers_in_three_queries(
    client: Client, django_assert_num_queries: Any
) -> None:
    store(payload(deep_spans()))
    # The trace, the tree's narrow columns, the matching span ids.
    with django_assert_num_queries(3):
        found = client.get(f"/traces/{DEEP_TRACE}/find", {"q": "umbra"}).json()
    assert found["matches"] == [FAILING] and found["errors"] == [FAILING]
    with django_assert_num_queries(2):  # no query: no search
        assert client.get(f"/traces/{DEEP_TRACE}/find").json()["errors"] == [FAILING]


# In Chromium.


@pytest.fixture(scope="module")
def deep_trace(studio_server: Any) -> str:
    response = requests.post(
        f"{studio_server.url}/v1/traces",
        data=payload(deep_spans()),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200
    studio_server.wait_for_trace(DEEP_TRACE, 2000, timeout=60)
    wait_until_found(studio_server, DEEP_TRACE, "umbra", 1)
    return DEEP_TRACE


def row(page: Any, span_id: str) -> Any:
    return page.locator(f"#s-{span_id}")


def tree_height(page: Any) -> int:
    return int(page.evaluate("document.getElementById('tree').style.height").removesuffix("px"))


def expect_failing_span_shown(page: Any) -> None:
    failing = row(page, FAILING)
    expect(failing).to_have_attribute("aria-selected", "true")
    expect(failing).to_be_in_viewport()
    expect(page.locator("#tree")).to_have_attribute("aria-activedescendant", f"s-{FAILING}")
    expect(page).to_have_url(re.compile(rf"\?span={FAILING}$"))
    expect(page.locator("#span-panel h2")).to_contain_text("call_quota_service")
    expect(page.locator("#span-panel .status-message")).to_have_text(STATUS_MESSAGE)


@pytest.mark.browser
@pytest.mark.server
def test_the_finder_finds_the_deep_error_by_word_and_by_status_message(
    watched: Any, studio_server: Any, deep_trace: str
) -> None:
    page = watched
    page.goto(f"{studio_server.url}/traces/{deep_trace}/")
    page.get_by_role("button", name="Collapse all").click()
    expect(page.locator("#tree .r")).to_have_count(1)
    finder = page.get_by_label("Filter spans")
    count = page.locator("#tree-filter-count")
    for q in ("error", "tenant umbra"):
        finder.fill(q)
        expect(count).to_have_text("1 of 1")
        expect(row(page, FAILING)).to_have_class(re.compile(r"\bm\b"))
        expect_failing_span_shown(page)
        # Every collapsed ancestor on its way was opened, and only those: the tree lists the
        # root, the steps, the failing step's parts and the chain down to the failing span.
        expect(row(page, hop_id(HOPS - 1))).to_have_attribute("aria-expanded", "true")
        assert tree_height(page) == (1 + STEPS + PARTS + HOPS + 1) * 24
        finder.fill("")
        expect(count).to_have_text("")
        page.get_by_role("button", name="Collapse all").click()
        expect(page.locator("#tree .r")).to_have_count(1)


@pytest.mark.browser
@pytest.mark.server
def test_next_and_previous_go_round_the_matches(
    watched: Any, studio_server: Any, deep_trace: str
) -> None:
    page = watched
    page.goto(f"{studio_server.url}/traces/{deep_trace}/")
    finder = page.get_by_label("Filter spans")
    count = page.locator("#tree-filter-count")
    checkpoints = [part_id(step, 7) for step in CHECKPOINTS]

    def at(k: int) -> None:
        expect(count).to_have_text(f"{k} of 3")
        current = row(page, checkpoints[k - 1])
        expect(current).to_have_attribute("aria-selected", "true")
        expect(current).to_have_class(re.compile(r"\bm\b"))
        expect(current).to_be_in_viewport()
        expect(page.locator("#span-panel h2")).to_contain_text(f"part {CHECKPOINTS[k - 1]}.7")

    finder.fill("checkpoint")
    at(1)
    finder.press("Enter")
    at(2)
    page.get_by_role("button", name="Next match").click()
    at(3)
    finder.press("Enter")
    at(1)
    finder.press("Shift+Enter")
    at(3)
    page.get_by_role("button", name="Previous match").click()
    at(2)
    finder.fill("nothing says this")
    expect(count).to_have_text("No matches")
    expect(page.get_by_role("button", name="Next match")).to_be_disabled()
    expect(page.locator("#tree .r.m")).to_have_count(0)


@pytest.mark.browser
@pytest.mark.server
def test_the_error_link_and_the_n_and_p_keys_go_to_the_error(
    watched: Any, studio_server: Any, deep_trace: str
) -> None:
    page = watched
    page.goto(f"{studio_server.url}/traces/{deep_trace}/")
    expect(row(page, ROOT)).to_have_attribute("aria-selected", "true")
    page.get_by_role("button", name="Collapse all").click()
    link = page.locator("#first-error")
    expect(link).to_have_text("1")
    link.click()
    expect_failing_span_shown(page)

    page.goto(f"{studio_server.url}/traces/{deep_trace}/?span={part_id(0, 3)}")
    expect(page.locator("#span-panel h2")).to_contain_text("part 0.3")
    # Typed into an input, n is a letter.
    page.get_by_label("Filter attributes").press("n")
    page.wait_for_timeout(300)
    expect(row(page, part_id(0, 3))).to_have_attribute("aria-selected", "true")
    page.locator("#tree").focus()
    page.keyboard.press("n")
    expect_failing_span_shown(page)
    page.keyboard.press("ArrowDown")  # past the last error: p goes back to it
    expect(row(page, step_id(FAILING_STEP + 1))).to_have_attribute("aria-selected", "true")
    page.keyboard.press("p")
    expect_failing_span_shown(page)
    page.keyboard.press("n")  # round: the one error again
    expect_failing_span_shown(page)


@pytest.mark.browser
@pytest.mark.server
def test_errors_only_shows_the_error_spans_and_their_ancestors(
    watched: Any, studio_server: Any, deep_trace: str
) -> None:
    page = watched
    page.goto(f"{studio_server.url}/traces/{deep_trace}/")
    toggle = page.get_by_role("button", name="Errors only")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    page.get_by_role("button", name="Collapse all").click()
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    # The root, the failing step, the chain and the failing span.
    assert tree_height(page) == (1 + 1 + HOPS + 1) * 24
    expect(row(page, FAILING)).to_have_class(re.compile(r"\be\b"))
    expect(row(page, step_id(0))).to_have_count(0)
    # The keyboard walks what is shown.
    tree = page.locator("#tree")
    tree.focus()
    page.keyboard.press("End")
    expect_failing_span_shown(page)
    page.keyboard.press("Home")
    page.keyboard.press("ArrowDown")
    expect(tree).to_have_attribute("aria-activedescendant", f"s-{step_id(FAILING_STEP)}")
    # A span it hides, asked for, turns it off.
    page.get_by_label("Filter spans").fill("part 2.5")
    expect(row(page, part_id(2, 5))).to_have_attribute("aria-selected", "true")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    assert tree_height(page) > (1 + STEPS) * 24
    toggle.click()
    assert tree_height(page) == (1 + 1 + HOPS + 1) * 24
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    assert tree_height(page) > (1 + STEPS) * 24


@pytest.mark.browser
@pytest.mark.server
def test_the_finder_at_phone_width(watched: Any, studio_server: Any, deep_trace: str) -> None:
    page = watched
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{studio_server.url}/traces/{deep_trace}/")
    page.get_by_label("Filter spans").fill("umbra")
    expect(page.locator("#tree-filter-count")).to_have_text("1 of 1")
    expect_failing_span_shown(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The tools stay one line: the axis below them is sticky at their height.
    tools = page.locator(".tree-tools").bounding_box()
    assert tools["height"] < 50
