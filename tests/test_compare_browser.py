"""Comparing two traces in a real browser against a real Studio: tick two rows on the overview,
Compare, read the differences; "Compare with…" on a trace page."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode
from playwright.sync_api import expect

from tests.conftest import StudioServer
from tests.test_overview_browser import open_overview, page, service  # noqa: F401

pytestmark = pytest.mark.browser


def send_runs(studio: StudioServer, service_name: str, name: str) -> list[str]:
    """Two runs of one agent: the second's model answers otherwise and its tool fails."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{studio.url}/v1/traces"))
    )
    tracer = provider.get_tracer("compare-tests")
    trace_ids = []
    for answer, fails in (("It is sunny in Paris.", False), ("It rains in Paris.", True)):
        agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name}
        with tracer.start_as_current_span(f"invoke_agent {name}", attributes=agent) as root:
            chat = {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.output_tokens": 30,
                "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]
                ),
            }
            with tracer.start_as_current_span("chat gpt-4o", attributes=chat):
                pass
            tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "weather"}
            with tracer.start_as_current_span("execute_tool weather", attributes=tool) as span:
                if fails:
                    span.set_status(Status(StatusCode.ERROR, "timeout"))
        trace_ids.append(f"{root.get_span_context().trace_id:032x}")
    provider.shutdown()
    return trace_ids


def test_tick_two_traces_compare_and_read_the_diff(
    studio_server: StudioServer,
    page: Any,  # noqa: F811
    service: str,  # noqa: F811
) -> None:
    first, second = send_runs(studio_server, service, "Weather")
    open_overview(page, studio_server, f"service={service}")
    compare = page.locator("#compare-selected")
    expect(compare).to_be_disabled()
    page.locator(f"#trace-{first} input[name=trace_id]").check()
    expect(compare).to_be_disabled()
    page.locator(f"#trace-{second} input[name=trace_id]").check()
    expect(compare).to_be_enabled()
    compare.click()
    expect(page).to_have_url(re.compile(rf"/traces/compare/\?a={first}&b={second}$"))
    errors = page.locator("table.summary tr", has_text="Errors")
    expect(errors).to_contain_text("+1")
    expect(page.locator("ol.biggest li").first).to_contain_text("status UNSET → ERROR")
    chat = page.locator("li.crow", has_text="chat gpt-4o")
    expect(chat).to_have_class(re.compile("state-changed"))
    chat.locator("summary").click()
    expect(chat.locator(".dl-del")).to_have_text("-[assistant] It is sunny in Paris.")
    expect(chat.locator(".dl-add")).to_have_text("+[assistant] It rains in Paris.")
    # Each side opens its span in its own trace.
    chat.locator(".side-b a").click()
    expect(page).to_have_url(re.compile(rf"/traces/{second}/\?span=[0-9a-f]{{16}}$"))


def test_compare_with_from_a_trace_page(
    studio_server: StudioServer,
    page: Any,  # noqa: F811
    service: str,  # noqa: F811
) -> None:
    first, second = send_runs(studio_server, service, f"Picker {service}")
    page.goto(f"{studio_server.url}/traces/{second}/")
    page.locator(".compare-with summary").click()
    suggestion = page.locator(f"#compare-with a[href*='b={first}']")
    expect(suggestion).to_be_visible()
    suggestion.click()
    expect(page).to_have_url(re.compile(rf"/traces/compare/\?a={second}&b={first}$"))
    expect(page.locator("li.crow")).to_have_count(3)
