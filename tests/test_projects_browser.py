"""The project switcher in a real browser against a real Studio."""

from __future__ import annotations

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


def send(studio: StudioServer, project: str, name: str) -> None:
    resource = Resource.create({"service.name": "switcher", "studio.project": project})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{studio.url}/v1/traces"))
    )
    with provider.get_tracer("t").start_as_current_span(name):
        pass
    provider.shutdown()


def test_the_switcher_takes_the_reader_to_another_project_and_stays_there(
    studio_server: StudioServer, page: Any
) -> None:
    first, second = f"p-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    send(studio_server, first, "in the first")
    send(studio_server, second, "in the second")

    page.goto(f"{studio_server.url}/projects/{first}/")
    expect(page.locator("#current-project")).to_have_text(first)
    expect(page.locator(".trace-row")).to_have_count(1)
    page.locator(".project-switcher summary").click()
    page.locator("#project-menu").get_by_role("link", name=second).click()
    expect(page).to_have_url(re.compile(f"/projects/{second}/$"))
    expect(page.locator(".trace-row")).to_contain_text("in the second")
    # The brand link (home) comes back to the last project.
    page.locator(".brand").click()
    expect(page).to_have_url(re.compile(f"/projects/{second}/$"))
