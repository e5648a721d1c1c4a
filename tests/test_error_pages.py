"""404 and 500 are pages of the app: its header and navigation, a way back and a search box."""

from __future__ import annotations

import re
import secrets
import time
from html import unescape

import pytest
import requests
from django.test import Client, RequestFactory
from django.views.defaults import server_error

from ingest import otlp, writer
from studio import views
from tests.conftest import StudioServer, fixture_bytes

AGENTSCOPE_TRACE = "ad27a918a7ce11d08dc80c6ec77cd536"


def assert_in_the_layout(html: str) -> None:
    assert '<header class="topbar">' in html
    assert re.search(r'<a href="/traces/"[^>]*>Traces</a>', html)
    assert re.search(r'<a href="/runs/"[^>]*>Runs</a>', html)
    assert "studio/studio.css" in html
    # The search box searches the overview, as the overview's own does.
    form = re.search(
        r'<form class="trace-search" method="get" action="/traces/".*?</form>', html, re.S
    )
    assert form and 'name="q"' in form[0]


@pytest.mark.django_db
def test_a_deleted_traces_url_says_trace_not_found(client: Client) -> None:
    writer.write_batch(
        otlp.decode_protobuf(fixture_bytes("agentscope-1.0.21-react-agent.pb")).records
    )
    url = f"/traces/{AGENTSCOPE_TRACE}/"
    assert client.get(url).status_code == 200
    client.post("/traces/delete/", {"trace_id": [AGENTSCOPE_TRACE], "confirm": "1"})

    response = client.get(url)
    assert response.status_code == 404
    html = response.content.decode()
    assert_in_the_layout(html)
    assert "<title>Trace not found · Studio</title>" in html
    assert "<h1" in html and "Trace not found</h1>" in html
    assert AGENTSCOPE_TRACE in html
    assert '<a href="/traces/">' in html
    # Its span panel and downloads too.
    for path in (f"{url}otlp.json", f"{url}spans/fa0f6dfb4a6e6fe7/"):
        assert "Trace not found</h1>" in client.get(path).content.decode()


@pytest.mark.django_db
def test_an_unknown_page_says_page_not_found(client: Client) -> None:
    response = client.get("/no/such/<page>/")
    assert response.status_code == 404
    html = response.content.decode()
    assert_in_the_layout(html)
    assert "Page not found</h1>" in html
    assert "/no/such/&lt;page&gt;/" in html
    assert "Trace not found" not in html
    assert client.get("/runs/nope/").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("path", [f"/api/traces/{'ab' * 16}/", "/api/nothing/", "/api/runs/x/"])
def test_api_404s_stay_json(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"]


def test_the_500_page_needs_no_database_and_no_request_context(settings) -> None:
    # No `db` fixture: any query fails the test. Django's handler renders with an empty context.
    assert settings.DEBUG is False
    response = server_error(RequestFactory().get("/traces/"))
    assert response.status_code == 500
    html = response.content.decode()
    assert_in_the_layout(html)
    assert "Something went wrong</h1>" in html


@pytest.mark.django_db
def test_a_failing_page_answers_the_500_page(monkeypatch: pytest.MonkeyPatch) -> None:
    writer.write_batch(
        otlp.decode_protobuf(fixture_bytes("agentscope-1.0.21-react-agent.pb")).records
    )

    def broken(trace_id: str) -> None:
        raise RuntimeError("the tree broke")

    monkeypatch.setattr(views.selectors, "trace_tree", broken)
    response = Client(raise_request_exception=False).get(f"/traces/{AGENTSCOPE_TRACE}/")
    assert response.status_code == 500
    html = unescape(response.content.decode())
    assert_in_the_layout(html)
    assert "Something went wrong</h1>" in html
    assert "the tree broke" not in html


@pytest.mark.server
@pytest.mark.browser
def test_from_a_missing_trace_the_search_box_finds_traces(
    studio_server: StudioServer, page
) -> None:
    # Over runstudio's ASGI stack, with the page's own CSS and scripts.
    name = f"searchable-{secrets.token_hex(4)}"
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": secrets.token_hex(16),
                                "spanId": secrets.token_hex(8),
                                "name": name,
                                "startTimeUnixNano": str(time.time_ns()),
                                "endTimeUnixNano": str(time.time_ns() + 1000),
                            }
                        ]
                    }
                ]
            }
        ]
    }
    requests.post(f"{studio_server.url}/v1/traces", json=body, timeout=30).raise_for_status()
    response = page.goto(f"{studio_server.url}/traces/{secrets.token_hex(16)}/")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Trace not found"
    page.get_by_role("searchbox", name="Search traces").fill(name)
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"/traces/\?q="))
    assert page.locator("#trace-rows .trace-link").all_inner_texts() == [name]
    page.go_back()
    page.get_by_role("link", name="← Back to the traces").click()
    page.wait_for_url(f"{studio_server.url}/traces/")
