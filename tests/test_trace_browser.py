"""The trace page in Chromium: open it from the overview, expand and collapse, select spans, read
a tool call and the final answer, the deep link, the filter and the keyboard."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode, Tracer
from playwright.sync_api import expect

from tests.conftest import fixture_bytes
from tests.test_trace_finder import wait_until_found

pytestmark = [pytest.mark.browser, pytest.mark.server]

AS1_TRACE = "ad27a918a7ce11d08dc80c6ec77cd536"
AS1_AGENT = "fa0f6dfb4a6e6fe7"
AS1_CHAT_2 = "88ec42cb9eb37c08"
AS1_CHAT_3 = "401830cadf7e290c"
AS1_TOOL = "88f5645e5bd6a4ce"
AS1_TOOL_BAD = "be0a5d104806d29b"


@contextmanager
def tracer_to(studio_server: Any, processor: type = SimpleSpanProcessor) -> Iterator[Tracer]:
    """A tracer exporting over OTLP/HTTP to Studio; everything is sent when the block ends."""
    provider = TracerProvider(resource=Resource.create({"service.name": "browser-tests"}))
    provider.add_span_processor(
        processor(OTLPSpanExporter(endpoint=f"{studio_server.url}/v1/traces"))
    )
    try:
        yield provider.get_tracer("tests")
    finally:
        provider.shutdown()


@pytest.fixture(scope="module")
def agentscope_trace(studio_server: Any) -> str:
    """The real AgentScope 1.0.21 ReAct trace, stored in the session's Studio."""
    response = requests.post(
        f"{studio_server.url}/v1/traces",
        data=fixture_bytes("agentscope-1.0.21-react-agent.pb"),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    assert response.status_code == 200
    studio_server.wait_for_trace(AS1_TRACE, 9)
    return AS1_TRACE


@pytest.fixture(scope="module")
def nested_trace(studio_server: Any) -> dict[str, str]:
    """A three-level trace sent by the OpenTelemetry SDK: agent > (llm, tool > function)."""
    ids: dict[str, str] = {}
    with (
        tracer_to(studio_server) as tracer,
        tracer.start_as_current_span(
            "invoke_agent Planner",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Planner"},
        ) as root,
    ):
        with tracer.start_as_current_span(
            "chat gpt-test",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-test",
                "gen_ai.usage.input_tokens": 12,
                "gen_ai.usage.output_tokens": 3,
                "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "text", '
                '"content": "Plan ready."}], "finish_reason": "stop"}]',
            },
        ) as llm:
            pass
        with tracer.start_as_current_span(
            "execute_tool lookup",
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"},
        ) as tool:
            with tracer.start_as_current_span(
                "invoke_generic_function fetch_rows",
                attributes={
                    "gen_ai.operation.name": "invoke_generic_function",
                    "agentscope.function.name": "fetch_rows",
                },
            ) as function:
                function.set_status(Status(StatusCode.ERROR, "database timeout"))
    for name, item in (("root", root), ("llm", llm), ("tool", tool), ("function", function)):
        ids[name] = format(item.get_span_context().span_id, "016x")
    ids["trace"] = format(root.get_span_context().trace_id, "032x")
    studio_server.wait_for_trace(ids["trace"], 4)
    wait_until_found(studio_server, ids["trace"], "fetch_rows", 1)
    return ids


def row(page: Any, span_id: str) -> Any:
    return page.locator(f"#s-{span_id}")


def test_open_from_the_overview_and_read_a_tool_call_and_the_final_answer(
    watched: Any, studio_server: Any, agentscope_trace: str
) -> None:
    page = watched
    page.goto(f"{studio_server.url}/traces/")
    page.locator(f'a[href="/traces/{agentscope_trace}/"]').first.click()
    expect(page).to_have_url(f"{studio_server.url}/traces/{agentscope_trace}/")
    # Named as the overview and the tree name it; the span name on hover.
    expect(page.locator("h1")).to_have_text("Treasurer")
    expect(page.locator("h1")).to_have_attribute("title", "invoke_agent Treasurer")
    expect(page.locator("#tree .r")).to_have_count(9)
    # The root is selected by default: the agent's question and answer.
    panel = page.locator("#span-panel")
    expect(panel.locator(".io-input")).to_contain_text("How much is 120 EUR in JPY?")

    row(page, AS1_CHAT_2).locator("a").click()
    expect(page).to_have_url(re.compile(rf"\?span={AS1_CHAT_2}$"))
    expect(row(page, AS1_CHAT_2)).to_have_attribute("aria-selected", "true")
    call = panel.locator(".io-output .tool-call")
    expect(call).to_contain_text("Calls tool search_web")
    expect(call.locator("pre")).to_have_text('{\n  "query": "yen trend"\n}')

    row(page, AS1_TOOL).locator("a").click()
    expect(panel.locator(".io-output .part.text")).to_have_text("120 EUR = 19500 JPY")

    row(page, AS1_CHAT_3).locator("a").click()
    expect(panel.locator(".io-output .msg.role-assistant")).to_contain_text(
        "120 EUR is about 19,500 JPY."
    )
    expect(row(page, AS1_TOOL)).not_to_have_attribute("aria-selected", "true")


def test_deep_link_and_history(watched: Any, studio_server: Any, agentscope_trace: str) -> None:
    page = watched
    page.goto(f"{studio_server.url}/traces/{agentscope_trace}/?span={AS1_TOOL_BAD}")
    panel = page.locator("#span-panel")
    expect(row(page, AS1_TOOL_BAD)).to_have_attribute("aria-selected", "true")
    expect(panel.locator("h2")).to_contain_text("execute_tool search_web")
    expect(panel.locator(".io-output .part.text")).to_have_text("Error: search backend unreachable")

    row(page, AS1_CHAT_2).locator("a").click()
    expect(panel.locator("h2")).to_contain_text("chat qwen-max")
    page.go_back()
    expect(page).to_have_url(re.compile(rf"\?span={AS1_TOOL_BAD}$"))
    expect(panel.locator("h2")).to_contain_text("execute_tool search_web")
    expect(row(page, AS1_TOOL_BAD)).to_have_attribute("aria-selected", "true")


def test_expand_and_collapse(watched: Any, studio_server: Any, nested_trace: dict) -> None:
    page = watched
    page.goto(f"{studio_server.url}/traces/{nested_trace['trace']}/")
    root, tool, function = (row(page, nested_trace[k]) for k in ("root", "tool", "function"))
    expect(page.locator("#tree .r")).to_have_count(4)
    expect(function).to_be_visible()
    expect(function).to_have_attribute("aria-level", "3")
    expect(function.locator(".err")).to_be_visible()

    tool.locator(".tg").click()
    expect(tool).to_have_attribute("aria-expanded", "false")
    expect(function).to_be_hidden()
    root.locator(".tg").click()
    expect(row(page, nested_trace["llm"])).to_be_hidden()
    expect(tool).to_be_hidden()
    root.locator(".tg").click()
    # The tool stays collapsed inside its re-opened parent.
    expect(tool).to_be_visible()
    expect(function).to_be_hidden()

    page.get_by_role("button", name="Expand all").click()
    expect(function).to_be_visible()
    page.get_by_role("button", name="Collapse all").click()
    expect(root).to_be_visible()
    expect(tool).to_be_hidden()
    expect(page.locator("#tree .r:visible")).to_have_count(1)


def test_filter_highlights_matches_and_opens_their_ancestors(
    watched: Any, studio_server: Any, nested_trace: dict
) -> None:
    page = watched
    page.goto(f"{studio_server.url}/traces/{nested_trace['trace']}/")
    page.get_by_role("button", name="Collapse all").click()
    function = row(page, nested_trace["function"])
    expect(function).to_be_hidden()
    page.get_by_label("Filter spans").fill("fetch_rows")
    expect(function).to_be_visible()
    expect(function).to_have_class(re.compile(r"\bm\b"))
    expect(page.locator("#tree-filter-count")).to_have_text("1 of 1")
    expect(row(page, nested_trace["llm"])).not_to_have_class(re.compile(r"\bm\b"))
    page.get_by_label("Filter spans").press("Enter")
    expect(page).to_have_url(re.compile(rf"\?span={nested_trace['function']}$"))
    expect(page.locator("#span-panel .status-message")).to_have_text("database timeout")


def test_keyboard_navigation(watched: Any, studio_server: Any, nested_trace: dict) -> None:
    page = watched
    page.goto(f"{studio_server.url}/traces/{nested_trace['trace']}/")
    tree = page.locator("#tree")
    tree.focus()
    cursor = lambda key: f"s-{nested_trace[key]}"  # noqa: E731
    expect(tree).to_have_attribute("aria-activedescendant", cursor("root"))
    page.keyboard.press("ArrowDown")
    expect(tree).to_have_attribute("aria-activedescendant", cursor("llm"))
    # Moving the selection opens that span, as in Jaeger or devtools, without Enter.
    expect(page).to_have_url(re.compile(rf"\?span={nested_trace['llm']}$"))
    expect(row(page, nested_trace["llm"])).to_have_attribute("aria-selected", "true")
    expect(page.locator("#span-panel .io-output")).to_contain_text("Plan ready.")

    page.keyboard.press("ArrowDown")
    expect(tree).to_have_attribute("aria-activedescendant", cursor("tool"))
    page.keyboard.press("ArrowLeft")  # collapse
    expect(row(page, nested_trace["tool"])).to_have_attribute("aria-expanded", "false")
    expect(row(page, nested_trace["function"])).to_be_hidden()
    page.keyboard.press("ArrowDown")  # nothing below a collapsed last subtree
    expect(tree).to_have_attribute("aria-activedescendant", cursor("tool"))
    page.keyboard.press("ArrowRight")  # expand
    expect(row(page, nested_trace["function"])).to_be_visible()
    page.keyboard.press("ArrowRight")  # to the first child
    expect(tree).to_have_attribute("aria-activedescendant", cursor("function"))
    page.keyboard.press("ArrowLeft")  # a leaf: to its parent
    expect(tree).to_have_attribute("aria-activedescendant", cursor("tool"))
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    expect(tree).to_have_attribute("aria-activedescendant", cursor("root"))
    expect(page.locator("#span-panel h2")).to_contain_text("invoke_agent Planner")
    page.keyboard.press("End")
    expect(tree).to_have_attribute("aria-activedescendant", cursor("function"))
    expect(page.locator("#span-panel h2")).to_contain_text("invoke_generic_function fetch_rows")
    # Walking the tree replaced the history entry rather than adding one per row.
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"\?span="))


def test_attribute_filter_and_copy(watched: Any, studio_server: Any, agentscope_trace: str) -> None:
    page = watched
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(f"{studio_server.url}/traces/{agentscope_trace}/?span={AS1_CHAT_2}")
    table = page.locator("#span-panel details.attributes .attr-table")
    expect(table.locator("tr:visible")).to_have_count(13)
    page.get_by_label("Filter attributes").fill("gen_ai.response")
    expect(table.locator("tr:visible")).to_have_count(2)
    response_id = table.locator("tr:visible").filter(has_text="gen_ai.response.id")
    response_id.get_by_role("button", name="Copy").click()
    expect(response_id.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "2026-11-21 23:32:02.116_a788f6"


@pytest.fixture(scope="module")
def large_trace(studio_server: Any) -> dict[str, Any]:
    """1,500 spans (more than the page sends as HTML): the tree is drawn from its JSON only."""
    steps = []
    with (
        tracer_to(studio_server, BatchSpanProcessor) as tracer,
        tracer.start_as_current_span("invoke_agent Marathon") as root,
    ):
        for number in range(300):
            with tracer.start_as_current_span(f"step {number}") as step:
                for part in range(4):
                    with tracer.start_as_current_span(f"part {number}.{part}"):
                        pass
            steps.append(format(step.get_span_context().span_id, "016x"))
    trace_id = format(root.get_span_context().trace_id, "032x")
    studio_server.wait_for_trace(trace_id, 1501)
    wait_until_found(studio_server, trace_id, "part 299.3", 1)
    return {
        "trace": trace_id,
        "root": format(root.get_span_context().span_id, "016x"),
        "steps": steps,
    }


def test_a_large_trace_is_drawn_from_json_only_in_view(
    watched: Any, studio_server: Any, large_trace: dict
) -> None:
    page = watched
    last_step = large_trace["steps"][-1]
    page.goto(f"{studio_server.url}/traces/{large_trace['trace']}/?span={last_step}")
    selected = row(page, last_step)
    expect(selected).to_have_attribute("aria-selected", "true")
    expect(selected).to_be_in_viewport()
    expect(page.locator("#span-panel h2")).to_contain_text("step 299")
    drawn = page.locator("#tree .r").count()
    assert 0 < drawn < 200  # of 1,501

    tree = page.locator("#tree")
    tree.focus()
    page.keyboard.press("Home")
    expect(tree).to_have_attribute("aria-activedescendant", f"s-{large_trace['root']}")
    expect(row(page, large_trace["root"])).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("#span-panel h2")).to_contain_text("invoke_agent Marathon")

    page.get_by_role("button", name="Collapse all").click()
    page.get_by_label("Filter spans").fill("part 150.3")
    expect(page.locator("#tree-filter-count")).to_have_text("1 of 1")
    match = page.locator("#tree .r.m")
    expect(match).to_have_count(1)
    expect(match).to_be_in_viewport()
    expect(match.locator("a")).to_contain_text("part 150.3")
    # Its parent was opened; the other steps stay closed.
    expect(row(page, large_trace["steps"][150])).to_have_attribute("aria-expanded", "true")
    expect(row(page, large_trace["steps"][149])).to_have_attribute("aria-expanded", "false")
    expect(row(page, large_trace["steps"][151])).to_have_attribute("aria-expanded", "false")


def test_raw_json_loads_when_opened(
    watched: Any, studio_server: Any, agentscope_trace: str
) -> None:
    page = watched
    page.goto(f"{studio_server.url}/traces/{agentscope_trace}/?span={AS1_TOOL}")
    raw = page.locator(f"#raw-{AS1_TOOL}")
    expect(raw).to_be_hidden()
    page.locator("#span-panel details.raw summary").click()
    expect(raw).to_contain_text(f'"span_id": "{AS1_TOOL}"')
    expect(raw).to_contain_text('"gen_ai.tool.name": "convert"')


def test_at_phone_width_the_tree_shows_names_and_the_axis_labels_apart(
    watched: Any, studio_server: Any, agentscope_trace: str
) -> None:
    page = watched
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{studio_server.url}/traces/{agentscope_trace}/")
    expect(row(page, AS1_TOOL)).to_be_visible()
    for span_id in (AS1_AGENT, AS1_CHAT_2, AS1_TOOL):
        link = row(page, span_id).locator(".n a")
        assert link.bounding_box()["width"] > 60, span_id
    expect(row(page, AS1_TOOL).locator(".n a")).to_contain_text("convert")
    labels = [
        box
        for box in page.locator(".tree-head .axis > span").evaluate_all(
            "spans => spans.map(s => s.getBoundingClientRect().toJSON())"
        )
        if box["width"] > 0
    ]
    assert len(labels) >= 2
    for left, right in itertools.pairwise(labels):
        assert left["right"] <= right["left"], labels
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_the_start_is_in_the_readers_zone_with_utc_on_hover(
    chromium: Any, studio_server: Any, agentscope_trace: str
) -> None:
    context = chromium.new_context(timezone_id="Asia/Tokyo")
    try:
        page = context.new_page()
        page.goto(f"{studio_server.url}/traces/{agentscope_trace}/")  # learns the zone
        page.reload()
        start = page.locator(".trace-head .facts time")
        # The trace started at 23:32:02.107 UTC on 2026-11-21: 08:32 the next day in Tokyo.
        expect(start).to_have_text("2026-11-22 08:32:02.107 JST")
        expect(start).to_have_attribute("title", re.compile(r"^2026-11-21 23:32:02\.107\d* UTC$"))
    finally:
        context.close()


def test_attribute_names_wrap_only_at_dots_and_underscores(
    watched: Any, studio_server: Any, agentscope_trace: str
) -> None:
    page = watched
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{studio_server.url}/traces/{agentscope_trace}/?span={AS1_CHAT_2}")
    names = page.locator("#span-panel details.attributes .attr-table th code")
    expect(names.first).to_be_visible()
    # Each piece between two <wbr> is a text node of its own: none may span two lines.
    broken = names.evaluate_all(
        """codes => codes.flatMap(code => Array.from(code.childNodes)
            .filter(node => node.nodeType === Node.TEXT_NODE && node.data.length > 1)
            .filter(node => {
              const range = document.createRange();
              range.selectNodeContents(node);
              const lines = new Set(Array.from(range.getClientRects(), r => Math.round(r.top)));
              return lines.size > 1;
            })
            .map(node => node.data))"""
    )
    assert broken == []
    wrapped = names.evaluate_all(
        "codes => codes.filter(c => c.getClientRects().length && c.offsetHeight > 20).length"
    )
    assert wrapped > 0  # long names did wrap (at their dots and underscores)
