"""The JSON API: fields, filters, ordering, paging and errors."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from ingest import otlp, writer
from tests.conftest import fixture_bytes

AGENTSCOPE_1 = "ad27a918a7ce11d08dc80c6ec77cd536"
AGENTSCOPE_2 = "c2490a614c696dcdb7c4d12a509fc09e"


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


def test_it_pages_with_limit(client: Client, stored: None) -> None:
    body = client.get("/api/traces/", {"limit": 1}).json()
    assert len(body["results"]) == 1 and body["count"] == 2
    assert "offset=1" in body["next"]
    assert client.get(body["next"]).json()["results"][0]["trace_id"] == AGENTSCOPE_1


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
