"""A trace of any size through the API: `/api/traces/<id>/spans/` pages, and the detail streams
in bounded memory with the same document as before."""

from __future__ import annotations

import json
import random
import tracemalloc
from base64 import urlsafe_b64encode
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from rest_framework.renderers import JSONRenderer

from ingest import otlp, writer
from studio import api
from tests.conftest import FIXTURES
from tracing.models import Span, Trace
from tracing.otlp_json import key_values

TIES = "7ace0000000000000000000000000001"
BASE_NS = 1_780_000_000_000_000_000


def tied_spans(count: int, seed: int = 3) -> list[dict[str, Any]]:
    """`count` spans whose start times come in runs of up to four equal values, with random
    span ids, so that only the span id orders a run."""
    rng = random.Random(seed)
    spans = []
    start = BASE_NS
    for index in range(count):
        if rng.random() < 0.6:
            start += rng.randrange(1, 1000)
        span_id = f"{rng.getrandbits(64) | 1:016x}"
        spans.append(
            {
                "traceId": TIES,
                "spanId": span_id,
                **({"parentSpanId": spans[0]["spanId"]} if spans else {}),
                "name": f"step {index} ✓",
                "kind": 1 + index % 5,
                "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(start + 5000),
                "attributes": key_values(
                    {
                        "gen_ai.operation.name": "chat" if index % 2 else "execute_tool",
                        "index": index,
                        "ratio": index / 7,
                        "ok": index % 3 == 0,
                        "tags": ["a", "é", str(index)],
                        "text": "x" * 200,
                    }
                ),
                "events": [
                    {
                        "name": "exception",
                        "timeUnixNano": str(start + 10),
                        "attributes": key_values({"exception.message": "boom \u2028 line"}),
                    }
                ]
                if index % 10 == 0
                else [],
                "status": {"code": 2 if index % 11 == 0 else 1, "message": "bad" * (index % 2)},
            }
        )
    return spans


def store_spans(spans: list[dict[str, Any]]) -> None:
    body = json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": key_values({"service.name": "ties"})},
                    "scopeSpans": [{"scope": {"name": "tests", "version": "1"}, "spans": spans}],
                }
            ]
        }
    ).encode()
    batch = otlp.decode_json(body)
    assert not batch.rejected, batch.messages
    writer.write_batch(batch.records)


def expected_order(trace_id: str) -> list[str]:
    spans = Span.objects.filter(trace_id=trace_id).values_list("start_ns", "span_id")
    return [span_id for _, span_id in sorted(spans)]


def streamed(response: Any) -> Any:
    return json.loads(b"".join(response.streaming_content))


def old_detail(trace_id: str) -> Any:
    """The detail as the API rendered it before it streamed: one dict through DRF's renderer."""
    # Its cost_usd and unpriced_spans are the summary's, stored at ingest.
    data = api.trace_to_dict(Trace.objects.get(trace_id=trace_id))
    data["spans"] = [api.span_to_dict(span) for span in Span.objects.for_trace(trace_id)]
    return json.loads(JSONRenderer().render(data))


@pytest.fixture
def ties(db: None) -> list[str]:
    store_spans(tied_spans(60))
    order = expected_order(TIES)
    starts = Span.objects.filter(trace_id=TIES).values_list("start_ns", flat=True)
    assert len(set(starts)) < len(order) - 10  # plenty of ties
    return order


@pytest.fixture
def fixtures(db: None) -> list[str]:
    for path in sorted(FIXTURES.glob("*.pb")):
        writer.write_batch(otlp.decode_protobuf(path.read_bytes()).records)
    return list(Trace.objects.values_list("trace_id", flat=True))


def page_through(client: Client, url: str) -> tuple[list[str], int]:
    seen: list[str] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        response = client.get(next_url)
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/json"
        body = streamed(response)
        assert set(body) == {"next", "results"}
        seen += [span["span_id"] for span in body["results"]]
        pages += 1
        next_url = body["next"]
        assert pages <= 100
    return seen, pages


@pytest.mark.parametrize("limit", [1, 7, 30, 60, 61])
def test_paging_visits_every_span_once_in_start_order_with_ties(
    client: Client, ties: list[str], limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "PAGE_PART_SPANS", 4)
    seen, pages = page_through(client, f"/api/traces/{TIES}/spans/?limit={limit}")
    assert seen == ties
    assert pages == max(1, -(-len(ties) // limit))


def test_a_page_has_the_details_span_shape(client: Client, ties: list[str]) -> None:
    first = streamed(client.get(f"/api/traces/{TIES.upper()}/spans/", {"limit": 5}))
    detail = streamed(client.get(f"/api/traces/{TIES}/"))
    assert first["results"] == detail["spans"][:5]
    assert first["next"].startswith("http://testserver/api/traces/")
    assert "limit=5" in first["next"] and "cursor=" in first["next"]


def test_new_spans_after_a_cursor_are_still_reached(client: Client, ties: list[str]) -> None:
    first = streamed(client.get(f"/api/traces/{TIES}/spans/", {"limit": 10}))
    later = tied_spans(3, seed=99)
    for span in later:  # starting after everything stored so far
        span["startTimeUnixNano"] = str(BASE_NS + 10**12)
        span["endTimeUnixNano"] = str(BASE_NS + 10**12 + 1)
    store_spans(later)
    seen, _ = page_through(client, first["next"])
    assert [span["span_id"] for span in first["results"]] + seen == expected_order(TIES)


def test_the_limit_has_a_default_and_a_maximum(
    client: Client, ties: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (api.SPAN_PAGE_DEFAULT, api.SPAN_PAGE_MAX) == (1000, 10_000)
    assert len(streamed(client.get(f"/api/traces/{TIES}/spans/"))["results"]) == 60
    monkeypatch.setattr(api, "SPAN_PAGE_DEFAULT", 4)
    monkeypatch.setattr(api, "SPAN_PAGE_MAX", 9)
    assert len(streamed(client.get(f"/api/traces/{TIES}/spans/"))["results"]) == 4
    capped = streamed(client.get(f"/api/traces/{TIES}/spans/", {"limit": 500}))
    assert len(capped["results"]) == 9
    assert len(streamed(client.get(capped["next"]))["results"]) == 9


@pytest.mark.parametrize("limit", ["0", "-1", "x", "1.5", "²", "1e3", "9" * 40])
def test_a_bad_limit_is_400(client: Client, ties: list[str], limit: str) -> None:
    response = client.get(f"/api/traces/{TIES}/spans/", {"limit": limit})
    assert response.status_code == 400
    assert "whole number" in response.json()["limit"]


def token(text: str) -> str:
    return urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "nonsense!",
        "é",
        token("123"),
        token("123.zzzzzzzzzzzzzzzz"),
        token("123.0123456789ABCDEF"),
        token(f"{2**63}.0123456789abcdef"),
        token("1.5.0123456789abcdef"),
        token("\x00"),
        "AAAA",
    ],
)
def test_a_bad_cursor_is_400_with_a_clear_message(
    client: Client, ties: list[str], cursor: str
) -> None:
    response = client.get(f"/api/traces/{TIES}/spans/", {"cursor": cursor})
    assert response.status_code == 400
    assert "follow the `next` link" in response.json()["cursor"]


def test_cursors_round_trip() -> None:
    for cursor in [(0, "0" * 16), (-(2**63), "f" * 16), (2**63 - 1, "0123456789abcdef")]:
        assert api.decode_cursor(api.encode_cursor(cursor)) == cursor


def test_the_spans_of_an_unknown_trace_are_404_and_of_a_malformed_id_400(
    client: Client, ties: list[str]
) -> None:
    assert client.get(f"/api/traces/{'ab' * 16}/spans/").status_code == 404
    assert client.get(f"/api/traces/{'ab' * 16}/spans/").json() == {"detail": "no such trace"}
    assert client.get("/api/traces/not-a-trace/spans/").status_code == 400


@pytest.mark.parametrize("chunk", [1, 4, 9, 1000])
def test_the_streamed_detail_is_the_same_document_as_before(
    client: Client, fixtures: list[str], monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(api, "STREAM_CHUNK_SPANS", chunk)  # 9 divides agentscope-1's 9 spans
    assert len(fixtures) >= 3
    for trace_id in fixtures:
        response = client.get(f"/api/traces/{trace_id}/")
        assert response.status_code == 200 and response.streaming
        assert response["Content-Type"] == "application/json"
        assert streamed(response) == old_detail(trace_id)


def test_the_streamed_detail_keeps_ties_and_unicode(client: Client, ties: list[str]) -> None:
    body = streamed(client.get(f"/api/traces/{TIES}/"))
    assert body == old_detail(TIES)
    assert [span["span_id"] for span in body["spans"]] == ties


def test_under_asgi_the_detail_and_pages_stream_from_an_async_iterator(
    fixtures: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Django collects a synchronous iterator into a list before serving it under ASGI.
    monkeypatch.setattr(api, "STREAM_CHUNK_SPANS", 2)
    trace_id = fixtures[0]

    async def read() -> tuple[bool, bytes]:
        response = await AsyncClient().get(f"/api/traces/{trace_id}/")
        assert response.status_code == 200
        return response.is_async, b"".join([part async for part in response.streaming_content])

    is_async, body = async_to_sync(read)()
    assert is_async
    assert json.loads(body) == old_detail(trace_id)

    async def read_page() -> tuple[bool, bytes]:
        response = await AsyncClient().get(f"/api/traces/{trace_id}/spans/", {"limit": 3})
        assert response.status_code == 200
        return response.is_async, b"".join([part async for part in response.streaming_content])

    is_async, body = async_to_sync(read_page)()
    assert is_async
    assert json.loads(body)["results"] == old_detail(trace_id)["spans"][:3]


def test_the_detail_reads_a_bounded_chunk_per_query(
    client: Client, ties: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "STREAM_CHUNK_SPANS", 8)
    with CaptureQueriesContext(connection) as queries:
        assert streamed(client.get(f"/api/traces/{TIES}/"))["spans"]
    span_queries = [
        q["sql"] for q in queries.captured_queries if '"tracing_span"."attributes_json"' in q["sql"]
    ]
    # 60 spans in chunks of 8: 8 queries, each asking for 8 rows at most.
    assert len(span_queries) == 8
    assert all(sql.rstrip().endswith("LIMIT 8") for sql in span_queries), span_queries


def test_streaming_a_big_trace_holds_one_chunk_not_the_trace(
    client: Client, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans = tied_spans(3000, seed=5)
    for start in range(0, len(spans), 1000):
        store_spans(spans[start : start + 1000])
    monkeypatch.setattr(api, "STREAM_CHUNK_SPANS", 20)
    for _ in client.get(f"/api/traces/{TIES}/").streaming_content:
        pass  # imports and caches warmed
    size = 0
    tracemalloc.start()
    try:
        response = client.get(f"/api/traces/{TIES}/")
        for part in response.streaming_content:
            size += len(part)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > 2_000_000
    # Holding the whole document takes `size` for its bytes alone (the spans as Python objects
    # take about ten times that); a chunk of 20 spans takes about a tenth of it.
    assert peak < size / 2, (peak, size)


def test_integers_orjson_cannot_encode_still_come_back(client: Client, db: None) -> None:
    # Not through the writer (its decoders keep to 64 bits): stored JSON from elsewhere.
    trace_id = "b1600000000000000000000000000001"
    Trace.objects.create(trace_id=trace_id, start_ns=BASE_NS, end_ns=BASE_NS + 1, duration_ns=1)
    Span.objects.create(
        trace_id=trace_id,
        span_id="b160000000000001",
        start_ns=BASE_NS,
        end_ns=BASE_NS + 1,
        attributes_json='{"big": 123456789012345678901234567890}',
        events_json=f'[{{"name": "e", "time_ns": 5, "attributes": {{"big": {-(10**30)}}}}}]',
    )
    body = streamed(client.get(f"/api/traces/{trace_id}/"))
    assert body == old_detail(trace_id)
    assert body["spans"][0]["attributes"]["big"] == 123456789012345678901234567890
    assert body["spans"][0]["events"][0]["attributes"]["big"] == -(10**30)
    page = streamed(client.get(f"/api/traces/{trace_id}/spans/"))
    assert page["results"] == body["spans"]
