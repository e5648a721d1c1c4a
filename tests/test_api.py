"""The JSON API: fields, filters, ordering, paging and errors."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from django.test import Client

from ingest import otlp, writer
from tests.conftest import fixture_bytes
from tests.test_overview import SECOND, make_trace

AGENTSCOPE_1 = "ad27a918a7ce11d08dc80c6ec77cd536"
AGENTSCOPE_2 = "c2490a614c696dcdb7c4d12a509fc09e"
START = 1_790_000_000 * SECOND


def tid(n: int) -> str:
    return f"{n:032x}"


@pytest.fixture
def stored(db: None) -> None:
    writer.write_batch(
        otlp.decode_protobuf(fixture_bytes("agentscope-1.0.21-react-agent.pb")).records
    )
    writer.write_batch(otlp.decode_protobuf(fixture_bytes("agentscope-2.0.10-agent.pb")).records)


def test_the_list_has_every_documented_field(client: Client, stored: None) -> None:
    body = client.get("/api/traces/").json()
    assert body["count"] == 2 and body["next"] is None and body["previous"] is None
    newest, oldest = body["results"]
    assert newest["trace_id"] == AGENTSCOPE_2 and oldest["trace_id"] == AGENTSCOPE_1
    assert oldest == {
        "trace_id": AGENTSCOPE_1,
        "name": "invoke_agent Treasurer",
        "display_name": "Treasurer",
        "service_name": "unknown_service:python",
        "start_time": "2026-11-21T23:32:02.107246Z",
        "end_time": "2026-11-21T23:32:02.128600Z",
        "duration_ms": pytest.approx(21.354729),
        "span_count": 9,
        "error_count": 0,
        "status": "OK",
        "input_tokens": 126,
        "output_tokens": 27,
        "root_span_id": "fa0f6dfb4a6e6fe7",
        "span_type": "agent",
        "conversation_id": "FBR8Y7LSqV7pXo8fzTZ8TV",
        "input_preview": "How much is 120 EUR in JPY?",
        "output_preview": "120 EUR is about 19,500 JPY.",
        "project": "default",
        # Priced at ingest, from its model calls' tokens.
        "cost_usd": pytest.approx(0.0003744),
        "unpriced_spans": 0,
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "treasurer"}, [AGENTSCOPE_1]),
        ({"q": AGENTSCOPE_2}, [AGENTSCOPE_2]),
        ({"q": AGENTSCOPE_2.upper()}, [AGENTSCOPE_2]),
        ({"service": "library-app"}, [AGENTSCOPE_2]),
        ({"status": "OK"}, [AGENTSCOPE_2, AGENTSCOPE_1]),
        ({"status": "error"}, []),
        ({"since": "2026-11-21T23:32:10Z"}, [AGENTSCOPE_2]),
        ({"until": "2026-11-21T23:32:10Z"}, [AGENTSCOPE_1]),
        ({"ordering": "start_time"}, [AGENTSCOPE_1, AGENTSCOPE_2]),
        ({"ordering": "-span_count"}, [AGENTSCOPE_1, AGENTSCOPE_2]),
        ({"ordering": "duration_ms"}, [AGENTSCOPE_2, AGENTSCOPE_1]),
        ({"conversation_id": "FBR8Y7LSqV7pXo8fzTZ8TV"}, [AGENTSCOPE_1]),
    ],
)
def test_it_filters_and_orders(client: Client, stored: None, params: dict, expected: list) -> None:
    response = client.get("/api/traces/", params)
    assert response.status_code == 200, response.content
    assert [t["trace_id"] for t in response.json()["results"]] == expected


def test_it_pages_with_limit_and_cursor_links(client: Client, stored: None) -> None:
    body = client.get("/api/traces/", {"limit": 1, "status": "ok"}).json()
    assert len(body["results"]) == 1 and body["count"] == 2 and body["previous"] is None
    assert body["next"].startswith("http://testserver/api/traces/?status=OK&after=")
    assert "offset" not in body["next"] and "limit=1" in body["next"]
    second = client.get(body["next"]).json()
    assert second["results"][0]["trace_id"] == AGENTSCOPE_1 and second["count"] == 2
    assert second["next"] is None
    back = client.get(second["previous"]).json()
    assert [t["trace_id"] for t in back["results"]] == [AGENTSCOPE_2]
    assert back["previous"] is None and back["next"] == body["next"]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "BROKEN"},
        {"since": "yesterday"},
        {"ordering": "attributes"},
        {"min_duration_ms": "x"},
        {"since": "2024-13-45T00:00:00"},
        {"min_duration_ms": "inf"},
        {"q": "a\x00b"},
    ],
)
def test_bad_query_parameters_are_400(client: Client, stored: None, params: dict) -> None:
    assert client.get("/api/traces/", params).status_code == 400


def test_a_trace_comes_with_its_spans_in_start_order(client: Client, stored: None) -> None:
    response = client.get(f"/api/traces/{AGENTSCOPE_1}/")
    body = json.loads(b"".join(response.streaming_content))  # streamed
    assert body["trace_id"] == AGENTSCOPE_1
    spans = body["spans"]
    assert len(spans) == 9
    assert [s["start_time"] for s in spans] == sorted(s["start_time"] for s in spans)
    root = next(s for s in spans if s["parent_span_id"] is None)
    assert root["name"] == "invoke_agent Treasurer"
    assert root["kind"] == "INTERNAL"
    assert root["status"] == {"code": "OK", "message": ""}
    assert root["operation"] == "invoke_agent"
    assert root["scope"] == {"name": "agentscope", "version": "1.0.21"}
    assert root["resource"]["attributes"]["telemetry.sdk.language"] == "python"
    assert root["attributes"]["gen_ai.agent.name"] == "Treasurer"
    formatter = next(s for s in spans if s["name"] == "format openai")
    assert formatter["attributes"]["agentscope.format.count"] == 2
    assert set(root) >= {
        "trace_id", "span_id", "parent_span_id", "name", "kind", "start_time", "end_time",
        "duration_ms", "status", "operation", "attributes", "events", "links", "resource", "scope",
    }  # fmt: skip


def test_an_unknown_trace_is_404_and_a_malformed_id_400(client: Client, stored: None) -> None:
    assert client.get(f"/api/traces/{'ab' * 16}/").status_code == 404
    assert client.get("/api/traces/not-a-trace-id/").status_code == 400
    assert client.get(f"/api/traces/{'zz' * 16}/").status_code == 400


def test_the_list_reads_one_query_for_rows_and_one_for_the_count(
    client: Client, stored: None, django_assert_num_queries
) -> None:
    with django_assert_num_queries(2):
        client.get("/api/traces/")


def test_the_list_pins_its_queries_however_it_is_filtered_or_paged(
    client: Client, stored: None, django_assert_num_queries
) -> None:
    cursor = client.get("/api/traces/", {"limit": 1}).json()["next"]
    for params in [
        {"status": "ok", "min_duration": "1", "sort": "-duration", "limit": "1"},
        {"ordering": "name", "conversation_id": "FBR8Y7LSqV7pXo8fzTZ8TV"},
        {"offset": "1"},
    ]:
        with django_assert_num_queries(2):  # the page's rows and the count
            assert client.get("/api/traces/", params).status_code == 200
    with django_assert_num_queries(2) as captured:
        client.get(cursor)
    assert not any("OFFSET" in query["sql"].upper() for query in captured.captured_queries)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"min_duration_ms": "20.5"}, {"min_duration": "20.5"}),
        ({"conversation_id": "FBR8Y7LSqV7pXo8fzTZ8TV"}, {"conversation": "FBR8Y7LSqV7pXo8fzTZ8TV"}),
        ({"ordering": "-span_count"}, {"sort": "-spans"}),
        ({"ordering": "duration_ms"}, {"sort": "duration"}),
        ({"ordering": "-start_time"}, {"sort": "-start"}),
        ({"ordering": "total_tokens"}, {"sort": "tokens"}),
        ({"ordering": "-error_count"}, {"sort": "-errors"}),
        ({"ordering": "-input_tokens"}, {"sort": "-input_tokens"}),
    ],
)
def test_the_old_parameter_names_are_aliases_of_the_shared_ones(
    client: Client, stored: None, old: dict, new: dict
) -> None:
    def ids(params: dict) -> list[str]:
        response = client.get("/api/traces/", params)
        assert response.status_code == 200, response.content
        return [t["trace_id"] for t in response.json()["results"]]

    assert ids(old) == ids(new)
    # The page takes both as well, and writes the shared names back into its links.
    assert ids(old) == page_ids(client, old) == page_ids(client, new)


def page_ids(client: Client, params: dict) -> list[str]:
    html = client.get("/traces/", params).content.decode()
    return re.findall(r'<tr class="trace-row[^"]*" id="trace-([0-9a-f]{32})"', html)


def test_an_alias_and_its_name_together_take_the_name(client: Client, stored: None) -> None:
    body = client.get("/api/traces/", {"min_duration": "1000", "min_duration_ms": "1"}).json()
    assert body["count"] == 0


def test_errors_name_the_parameter_as_it_was_sent(client: Client, stored: None) -> None:
    old_name = client.get("/api/traces/", {"min_duration_ms": "x"})
    assert old_name.status_code == 400 and old_name.json().keys() == {"min_duration_ms"}
    assert client.get("/api/traces/", {"min_duration": "x"}).json().keys() == {"min_duration"}
    assert "sort" in client.get("/api/traces/", {"sort": "attributes"}).json()
    bad_cursor = client.get("/api/traces/", {"after": f"soon_{'ab' * 16}"})
    assert bad_cursor.status_code == 400 and "after" in bad_cursor.json()


def test_offset_still_skips_rows_and_answers_with_cursors(client: Client, db: None) -> None:
    for n in range(5):
        make_trace(n, start_ns=START + n * SECOND)
    body = client.get("/api/traces/", {"offset": "2", "limit": "2"}).json()
    assert [t["trace_id"] for t in body["results"]] == [tid(2), tid(1)]
    assert body["count"] == 5
    assert [t["trace_id"] for t in client.get(body["previous"]).json()["results"]] == [
        tid(4),
        tid(3),
    ]
    assert [t["trace_id"] for t in client.get(body["next"]).json()["results"]] == [tid(0)]
    both = client.get("/api/traces/", {"offset": "2", "after": f"{START}_{tid(3)}"})
    assert both.status_code == 400 and "offset" in both.json()
    assert client.get("/api/traces/", {"offset": "-1"}).status_code == 400


@pytest.mark.parametrize("sort", ["-start", "start", "-duration", "name", "-name"])
def test_walking_next_then_previous_visits_every_trace_once_despite_ties(
    client: Client, db: None, sort: str
) -> None:
    # Runs of equal start times, durations and names, so pages end inside ties.
    for n in range(23):
        make_trace(
            n,
            start_ns=START + (n // 5) * SECOND,
            duration_ns=(n % 3 + 1) * 1_000_000,
            name=f"step {n % 4}",
        )
    expected = [
        t["trace_id"]
        for t in client.get("/api/traces/", {"sort": sort, "limit": 100}).json()["results"]
    ]
    assert sorted(expected) == [tid(n) for n in range(23)]
    forward: list[str] = []
    url: str | None = f"/api/traces/?sort={sort}&limit=4"
    last: dict = {}
    while url:
        last = client.get(url).json()
        assert last["count"] == 23
        forward += [t["trace_id"] for t in last["results"]]
        url = last["next"]
    assert forward == expected
    backward: list[str] = []
    url = last["previous"]
    while url:
        body = client.get(url).json()
        backward = [t["trace_id"] for t in body["results"]] + backward
        url = body["previous"]
    assert backward + [t["trace_id"] for t in last["results"]] == expected


def test_the_page_walks_ties_both_ways_too(client: Client, db: None) -> None:
    for n in range(120):
        make_trace(n, start_ns=START + (n // 40) * SECOND)  # three runs of 40 equal starts
    seen: list[str] = []
    html = client.get("/traces/").content.decode()
    pages = [html]
    while 'id="older-link"' in html:
        html = client.get(page_link(html, "older-link")).content.decode()
        pages.append(html)
    for html in pages:
        seen += page_ids_of(html)
    assert len(seen) == 120 and len(set(seen)) == 120
    back: list[str] = []
    html = pages[-1]
    while 'id="newer-link"' in html:
        html = client.get(page_link(html, "newer-link")).content.decode()
        back = page_ids_of(html) + back
    assert back + page_ids_of(pages[-1]) == seen


def page_ids_of(html: str) -> list[str]:
    return re.findall(r'<tr class="trace-row[^"]*" id="trace-([0-9a-f]{32})"', html)


def page_link(html: str, link_id: str) -> str:
    match = re.search(rf'<a href="([^"]+)"[^>]*id="{link_id}"', html)
    assert match, f"no #{link_id}"
    return unescape(match[1])


def test_names_for_people_come_with_the_raw_names(client: Client, stored: None) -> None:
    response = client.get(f"/api/traces/{AGENTSCOPE_1}/")
    trace = json.loads(b"".join(response.streaming_content))  # streamed
    assert (trace["name"], trace["display_name"]) == ("invoke_agent Treasurer", "Treasurer")
    model_call = next(s for s in trace["spans"] if s["operation"] == "chat")
    assert model_call["display_name"] != model_call["name"]
    assert client.get("/api/traces/", {"q": "Treasurer"}).json()["count"] == 1
