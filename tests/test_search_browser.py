"""Full-text search in a real browser against a real Studio: a word from a message deep in a trace
finds the trace, shows where it matched, and opens the trace at that span."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from playwright.sync_api import expect

from tests.conftest import StudioServer

pytestmark = pytest.mark.browser


def test_a_message_word_finds_the_trace_and_opens_it_at_the_matching_span(
    studio_server: StudioServer, page: Any
) -> None:
    service = f"search-{uuid.uuid4().hex[:8]}"
    word = f"Zanzibar{uuid.uuid4().hex[:6]}"  # in no other trace of the session
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{studio_server.url}/v1/traces"))
    )
    tracer = provider.get_tracer("search-tests")
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Planner"}
    with tracer.start_as_current_span("invoke_agent Planner", attributes=agent) as root:
        with tracer.start_as_current_span(
            "chat gpt-4o", attributes={"gen_ai.operation.name": "chat"}
        ):
            pass
        question = [{"role": "user", "parts": [{"type": "text", "content": f"Ferries to {word}?"}]}]
        chat = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.input.messages": json.dumps(question),
        }
        with tracer.start_as_current_span("chat gpt-4o", attributes=chat) as matching:
            pass
    provider.shutdown()
    trace_id = f"{root.get_span_context().trace_id:032x}"
    span_id = f"{matching.get_span_context().span_id:016x}"

    page.goto(f"{studio_server.url}/traces/")
    page.locator("#filter-q").fill(word.lower())
    row = page.locator(f"#trace-{trace_id}")
    expect(row).to_be_visible()
    expect(page.locator("tr.trace-row")).to_have_count(1)
    snippet = row.locator(".match-snippet")
    expect(snippet.locator("mark")).to_have_text(word)
    expect(snippet).to_contain_text("Ferries to")

    # Attribute keys are suggested from what is stored.
    page.locator(".filter-more summary").click()
    page.locator("#filter-attr").focus()
    expect(page.locator('#attribute-keys option[value="gen_ai.input.messages"]')).to_have_count(1)
    # Then, once a key and an operator are typed, whole clauses with that key's stored values.
    page.locator("#filter-attr").fill("gen_ai.request.model = gp")
    suggested = page.locator('#attribute-keys option[value="gen_ai.request.model = gpt-4o"]')
    expect(suggested).to_have_count(1)
    expect(page.locator('#attribute-keys option[value="gen_ai.input.messages"]')).to_have_count(0)
    # And keys again without the operator.
    page.locator("#filter-attr").fill("gen_ai.")
    expect(page.locator('#attribute-keys option[value="gen_ai.input.messages"]')).to_have_count(1)
    expect(suggested).to_have_count(0)

    snippet.click()
    expect(page).to_have_url(re.compile(rf"/traces/{trace_id}/\?span={span_id}$"))
