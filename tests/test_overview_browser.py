"""The overview in a real browser against a real Studio: traces sent with the OpenTelemetry SDK.

Each test sends traces under a service name of its own and filters by it, so tests sharing the
session's Studio do not see each other's traces.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags
from playwright.sync_api import expect

from tests.conftest import StudioServer

pytestmark = pytest.mark.browser


def send(studio: StudioServer, service: str, names: list[str], *, error: bool = False) -> list[str]:
    """One trace per name (an agent span with a chat span inside); returns their trace ids once
    Studio has acknowledged them, i.e. stored them."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{studio.url}/v1/traces"))
    )
    tracer = provider.get_tracer("overview-tests")
    trace_ids = []
    for name in names:
        agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name}
        with tracer.start_as_current_span(name, attributes=agent) as root:
            chat = {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.output_tokens": 30,
            }
            with tracer.start_as_current_span("chat gpt-4o", attributes=chat) as span:
                if error:
                    span.set_status(Status(StatusCode.ERROR, "the model refused"))
        trace_ids.append(f"{root.get_span_context().trace_id:032x}")
    provider.shutdown()
    return trace_ids


def send_late_error(studio: StudioServer, service: str, trace_id: str) -> None:
    """A span that arrives after its trace was shown: a failed tool call under its root."""
    root_span_id = studio.trace(trace_id)["spans"][0]["span_id"]
    parent = SpanContext(
        int(trace_id, 16), int(root_span_id, 16), is_remote=True, trace_flags=TraceFlags(1)
    )
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{studio.url}/v1/traces"))
    )
    context = otel_trace.set_span_in_context(NonRecordingSpan(parent))
    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}
    span = provider.get_tracer("overview-tests").start_span(
        "execute_tool search", context=context, attributes=tool
    )
    span.set_status(Status(StatusCode.ERROR, "timeout"))
    span.end()
    provider.shutdown()


@pytest.fixture
def service() -> str:
    return f"overview-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def page(page: Any) -> Iterator[Any]:
    """The conftest page, failing the test on any Content-Security-Policy violation."""
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    assert not violations


def rows(page: Any) -> Any:
    return page.locator("#trace-rows tr.trace-row")


def open_overview(page: Any, studio: StudioServer, query: str) -> None:
    page.goto(f"{studio.url}/traces/?{query}")
    expect(page.locator("#live-status")).to_have_text("Live")


def test_the_table_shows_traces_and_their_metadata_on_hover(
    studio_server: StudioServer, page: Any, service: str
) -> None:
    (trace_id,) = send(studio_server, service, ["invoke_agent Hover"])
    open_overview(page, studio_server, f"service={service}")
    row = page.locator(f"#trace-{trace_id}")
    expect(row.locator(".trace-link")).to_have_text("invoke_agent Hover")
    expect(row.locator(".badge")).to_have_text("agent")
    expect(row.locator(".col-spans")).to_have_text("2")
    expect(row.locator(".col-tokens")).to_have_text("120 / 30")
    expect(page.locator("#cards")).to_contain_text("Traces")

    card = row.locator(".info-card")
    expect(card).to_be_hidden()
    row.locator(".info-button").hover()
    expect(card).to_be_visible()
    expect(card).to_contain_text(trace_id)
    expect(card).to_contain_text(service)
    expect(card.locator(f'button[data-copy="{trace_id}"]')).to_be_visible()
    # Keyboard: focusing the button shows the card too.
    page.mouse.move(0, 0)
    expect(card).to_be_hidden()
    row.locator(".info-button").focus()
    expect(card).to_be_visible()

    row.locator(".col-start").click()
    expect(page).to_have_url(f"{studio_server.url}/traces/{trace_id}/")


def test_search_narrows_the_list_without_a_reload_and_clearing_it_keeps_the_filters(
    studio_server: StudioServer, page: Any, service: str
) -> None:
    alpha, beta = send(studio_server, service, ["invoke_agent Alpha", "invoke_agent Beta"])
    open_overview(page, studio_server, f"service={service}")
    expect(rows(page)).to_have_count(2)
    page.evaluate("window.stillTheSamePage = true")

    page.locator("#filter-q").fill("beta")
    expect(rows(page)).to_have_count(1)
    expect(page.locator(f"#trace-{beta}")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"\?q=beta&service={service}$"))
    expect(page.locator("#cards dd").first).to_have_text("1")

    page.locator("#filter-q").fill("")
    expect(rows(page)).to_have_count(2)
    expect(page).to_have_url(re.compile(rf"\?service={service}$"))
    assert page.evaluate("window.stillTheSamePage") is True

    # A pasted trace id finds that trace.
    page.locator("#filter-q").fill(alpha.upper())
    expect(rows(page)).to_have_count(1)
    expect(page.locator(f"#trace-{alpha}")).to_be_visible()


def test_a_filter_survives_back(studio_server: StudioServer, page: Any, service: str) -> None:
    send(studio_server, service, ["invoke_agent Fine"])
    (failed,) = send(studio_server, service, ["invoke_agent Broken"], error=True)
    open_overview(page, studio_server, f"service={service}")
    expect(rows(page)).to_have_count(2)

    page.locator("#filter-status").select_option("ERROR")
    expect(rows(page)).to_have_count(1)
    expect(page).to_have_url(re.compile(r"status=ERROR"))
    page.locator("#filter-range").select_option("24h")
    expect(page).to_have_url(re.compile(r"range=24h"))

    page.go_back()
    expect(page).to_have_url(re.compile(rf"\?service={service}&status=ERROR$"))
    expect(page.locator("#filter-status")).to_have_value("ERROR")
    expect(page.locator("#filter-range")).to_have_value("all")
    expect(rows(page)).to_have_count(1)

    # Into a trace and back again: still filtered.
    page.locator(f"#trace-{failed} .trace-link").click()
    expect(page).to_have_url(f"{studio_server.url}/traces/{failed}/")
    page.go_back()
    expect(page.locator("#filter-status")).to_have_value("ERROR")
    expect(rows(page)).to_have_count(1)
    expect(page.locator(f"#trace-{failed}")).to_have_class(re.compile("is-error"))


def test_a_trace_sent_while_the_page_is_open_appears_by_itself(
    studio_server: StudioServer, page: Any, service: str
) -> None:
    (first,) = send(studio_server, service, ["invoke_agent First"])
    open_overview(page, studio_server, f"service={service}")
    expect(rows(page)).to_have_count(1)

    (second,) = send(studio_server, service, ["invoke_agent Second"])
    expect(rows(page)).to_have_count(2)
    expect(rows(page).first).to_have_id(f"trace-{second}")
    expect(page.locator("#cards dd").first).to_have_text("2")

    # Late spans update the row in place.
    send_late_error(studio_server, service, first)
    row = page.locator(f"#trace-{first}")
    expect(row.locator(".status")).to_have_text("ERROR")
    expect(row.locator(".col-spans")).to_have_text("3")
    expect(rows(page)).to_have_count(2)


def test_live_updates_keep_a_checked_box_and_deletions_elsewhere_leave_the_page(
    studio_server: StudioServer, page: Any, service: str
) -> None:
    keep, drop = send(studio_server, service, ["invoke_agent Keep", "invoke_agent Drop"])
    open_overview(page, studio_server, f"service={service}")
    box = page.locator(f"#trace-{keep} input[name=trace_id]")
    box.check()
    send_late_error(studio_server, service, keep)
    expect(page.locator(f"#trace-{keep} .col-spans")).to_have_text("3")
    expect(box).to_be_checked()  # the row was replaced by the server's, the choice kept
    expect(box).to_be_focused()  # and the focus
    expect(page.locator("#selection-count")).to_have_text("1 selected")

    other = page.context.new_page()
    open_overview(other, studio_server, f"service={service}")
    other.locator(f"#trace-{drop} input[name=trace_id]").check()
    other.once("dialog", lambda dialog: dialog.accept())
    other.locator("#delete-selected").click()
    expect(other.locator(f"#trace-{drop}")).to_have_count(0)
    expect(page.locator(f"#trace-{drop}")).to_have_count(0)  # pushed to the first page
    expect(rows(page)).to_have_count(1)
    expect(page.locator("#cards dd").first).to_have_text("1")


SOCKET_SPY = """
(() => {
  const Real = window.WebSocket;
  window.openSockets = [];
  window.blockSockets = false;
  function Spy(url, protocols) {
    // Blocked: a socket to a closed port, which fails as a Studio that is down would.
    if (window.blockSockets) return new Real("ws://127.0.0.1:9/", protocols);
    const socket = new Real(url, protocols);
    window.openSockets.push(socket);
    return socket;
  }
  Spy.prototype = Real.prototype;
  Object.assign(Spy, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  window.WebSocket = Spy;
})();
"""


def test_after_the_socket_drops_the_page_reconnects_and_catches_up(
    studio_server: StudioServer, page: Any, service: str
) -> None:
    send(studio_server, service, ["invoke_agent Before"])
    page.add_init_script(SOCKET_SPY)
    open_overview(page, studio_server, f"service={service}")
    page.evaluate("window.blockSockets = true; window.openSockets[0].close()")
    expect(page.locator("#live-status")).to_have_text("Reconnecting…")
    (missed,) = send(studio_server, service, ["invoke_agent While away"])
    page.evaluate("window.blockSockets = false")
    expect(page.locator("#live-status")).to_have_text("Live", timeout=15_000)
    expect(page.locator(f"#trace-{missed}")).to_be_visible()
    expect(rows(page)).to_have_count(2)
    assert page.evaluate("window.openSockets.length") == 2
    # And it is live again.
    (after,) = send(studio_server, service, ["invoke_agent After"])
    expect(rows(page).first).to_have_id(f"trace-{after}")


def test_elsewhere_than_the_top_new_traces_are_counted_not_inserted(
    studio_server: StudioServer, page: Any, service: str
) -> None:
    send(studio_server, service, ["invoke_agent Old"])
    open_overview(page, studio_server, f"service={service}&sort=-duration")
    (new,) = send(studio_server, service, ["invoke_agent New"])
    notice = page.locator("#new-traces")
    expect(notice).to_have_text("1 new trace")
    expect(rows(page)).to_have_count(1)
    notice.click()
    expect(page.locator(f"#trace-{new}")).to_be_visible()
    expect(notice).to_be_hidden()


def test_deleting_selected_traces(studio_server: StudioServer, page: Any, service: str) -> None:
    keep, drop = send(studio_server, service, ["invoke_agent Keep", "invoke_agent Drop"])
    open_overview(page, studio_server, f"service={service}")
    expect(page.locator("#delete-selected")).to_be_disabled()
    page.locator(f"#trace-{drop} input[name=trace_id]").check()
    expect(page.locator("#selection-count")).to_have_text("1 selected")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#delete-selected").click()
    expect(page.locator(f"#trace-{drop}")).to_have_count(0)
    expect(page.locator(".notice")).to_have_text("Deleted 1 trace.")
    expect(page.locator(f"#trace-{keep}")).to_be_visible()
    assert requests.get(f"{studio_server.url}/api/traces/{drop}/", timeout=10).status_code == 404


def test_an_empty_studio_says_how_to_connect_and_shows_the_first_trace_live(
    fresh_studio: Any, page: Any
) -> None:
    studio = fresh_studio()
    open_overview(page, studio, "")
    empty = page.locator("#empty-state")
    expect(empty).to_contain_text("No traces yet")
    expect(empty).to_contain_text(f'studio_url="http://localhost:{studio.port}"')
    expect(empty).to_contain_text(
        f"OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:{studio.grpc_port}"
    )
    command = page.locator("#test-command").inner_text()
    body = re.search(r"-d '(.*)'$", command)[1]
    response = requests.post(
        f"{studio.url}/v1/traces", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("hello from curl")


def test_it_reads_on_a_phone_in_the_dark(
    studio_server: StudioServer, chromium: Any, service: str
) -> None:
    send(studio_server, service, ["invoke_agent A rather long agent name for a small screen"])
    context = chromium.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    page = context.new_page()
    try:
        page.goto(f"{studio_server.url}/traces/?service={service}")
        expect(rows(page)).to_have_count(1)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(15, 17, 21)"
        expect(rows(page).first.locator(".col-duration")).to_be_visible()
    finally:
        context.close()


def test_without_javascript_the_form_and_links_still_work(
    studio_server: StudioServer, chromium: Any, service: str
) -> None:
    _, slow = send(studio_server, service, ["invoke_agent Quick", "invoke_agent Slow"])
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{studio_server.url}/traces/?service={service}")
        expect(rows(page)).to_have_count(2)
        page.locator("#filter-q").fill("slow")
        page.locator("button.apply").click()
        expect(page).to_have_url(re.compile(r"q=slow"))
        expect(rows(page)).to_have_count(1)
        expect(page.locator(f"#trace-{slow}")).to_be_visible()
        page.locator("th.col-spans a").click()
        expect(page).to_have_url(re.compile(r"sort=-spans"))
        expect(page.locator("#filter-q")).to_have_value("slow")
        # Deleting asks on a page of its own.
        page.locator(f"#trace-{slow} input[name=trace_id]").check()
        page.locator("#delete-selected").click()
        expect(page.locator("h1")).to_have_text("Delete 1 trace?")
        page.get_by_role("button", name="Delete").click()
        expect(page).to_have_url(re.compile(rf"/traces/\?q=slow&service={service}&sort=-spans$"))
        expect(rows(page)).to_have_count(0)
    finally:
        context.close()
