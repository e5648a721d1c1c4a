"""Overload: the decode budget charges what a body becomes, and decoding in worker processes.

(Memory and page latency under load are measured by benchmarks/bench_overload.py, not here.)
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from ingest import otlp, workers, writer
from tests.conftest import fixture_bytes
from tracing.models import Span

FIXTURES = [
    ("agentscope-1.0.21-react-agent.pb", otlp.PROTOBUF),
    ("agentscope-2.0.10-agent.pb", otlp.PROTOBUF),
    ("otel-sdk-grpc-0.pb", otlp.PROTOBUF),
    ("otel-sdk-http-1.pb", otlp.PROTOBUF),
    ("agentscope-1.0.21-react-agent.otlp.json", otlp.JSON),
    ("agentscope-2.0.10-agent.otlp.json", otlp.JSON),
]


def tiny_spans(count: int) -> bytes:
    """An ExportTraceServiceRequest of `count` minimal spans, in the wire format directly (fast),
    the input that inflates most when decoded."""
    from google.protobuf.internal.encoder import _VarintBytes

    start = 1_700_000_000_000_000_000
    spans = []
    for n in range(1, count + 1):
        span = (
            b"\x0a\x10" + (n // 100 + 1).to_bytes(16, "big")
            + b"\x12\x08" + n.to_bytes(8, "big")
            + b"\x2a\x04tiny"
            + b"\x39" + (start + n).to_bytes(8, "little")
            + b"\x41" + (start + n + 1000).to_bytes(8, "little")
        )  # fmt: skip
        spans.append(b"\x12" + _VarintBytes(len(span)) + span)
    scope_spans = b"".join(spans)
    resource_spans = b"\x12" + _VarintBytes(len(scope_spans)) + scope_spans
    return b"\x0a" + _VarintBytes(len(resource_spans)) + resource_spans


@pytest.fixture
def pool() -> workers.DecodePool:
    decode_pool = workers.DecodePool(1)
    yield decode_pool
    decode_pool.close()


def test_the_decode_budget_charges_decoded_size_not_body_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = fixture_bytes("agentscope-1.0.21-react-agent.pb")
    # Room for five bodies as bytes, but not for one as the objects it decodes into.
    budget = writer.DecodeBudget(limit=5 * len(body))
    monkeypatch.setattr("ingest.writer.get_decode_budget", lambda: budget)
    monkeypatch.setattr("ingest.writer.decode", _must_not_decode)
    with budget.reserve(1):
        with pytest.raises(writer.Busy):
            writer.accept(body, otlp.PROTOBUF)
        assert budget.in_flight == 1
    assert writer.decoded_size(len(body)) == len(body) * writer.DECODE_INFLATION
    assert writer.DECODE_INFLATION >= 10


def test_a_reservation_grows_only_within_the_budget() -> None:
    budget = writer.DecodeBudget(limit=100)
    with budget.reserve(10) as first:
        first.resize(500)  # alone: it may grow past the limit
        with budget.reserve(0) as second:
            with pytest.raises(writer.Busy):
                second.resize(1)
            assert second.size == 0
        first.resize(30)
        with budget.reserve(70):
            assert budget.in_flight == 100
    assert budget.in_flight == 0


def test_spans_waiting_for_the_writer_count_against_the_decode_budget() -> None:
    queued = [0]
    budget = writer.DecodeBudget(limit=100, queued=lambda: queued[0])
    queued[0] = 80
    with pytest.raises(writer.Busy):
        budget.reserve(30)
    with budget.reserve(20):
        pass
    queued[0] = 0
    with budget.reserve(500):  # alone: nothing decoding, nothing queued
        pass


def _must_not_decode(body: bytes, content_type: str) -> otlp.Batch:
    raise AssertionError("a body over the decode budget must not be decoded")


@pytest.mark.django_db(transaction=True)
def test_a_body_over_the_budget_gets_503_with_retry_after_before_it_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = fixture_bytes("agentscope-1.0.21-react-agent.pb")
    budget = writer.DecodeBudget(limit=writer.decoded_size(len(body)))
    monkeypatch.setattr("ingest.writer.get_decode_budget", lambda: budget)
    monkeypatch.setattr("ingest.views.get_decode_budget", lambda: budget)
    monkeypatch.setattr("ingest.writer.decode", _must_not_decode)
    with budget.reserve(1):  # another body being decoded
        response = async_to_sync(AsyncClient().post)(
            "/v1/traces", body, content_type="application/x-protobuf"
        )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert budget.in_flight == 0
    assert not Span.objects.exists()


@pytest.mark.parametrize(("name", "content_type"), FIXTURES)
def test_worker_processes_decode_exactly_what_the_server_would(
    pool: workers.DecodePool, name: str, content_type: str
) -> None:
    body = fixture_bytes(name)
    in_process = otlp.decode(body, content_type)
    assert in_process.records
    assert pool.decode(body, content_type) == in_process


def test_records_from_a_worker_share_the_strings_their_spans_repeat(
    pool: workers.DecodePool,
) -> None:
    records = pool.decode(tiny_spans(300), otlp.PROTOBUF).records
    # Spans 1-99 are trace 1's: one trace id string, not 99; and one `{}`, one name, ...
    assert records[0].trace_id == records[1].trace_id
    assert records[0].trace_id is records[1].trace_id
    for column in ("name", "attributes_json", "events_json", "resource_json", "service_name"):
        assert getattr(records[0], column) is getattr(records[250], column), column


def test_decoded_tiny_spans_take_under_450_bytes_each() -> None:
    # The worst input for memory: what the server holds per span of a body of tiny spans once
    # a worker's rows are records (measured with tracemalloc: 648 bytes before the strings were
    # shared, 411 after).
    import tracemalloc

    count = 20_000
    rows = workers.decode_rows(tiny_spans(count), otlp.PROTOBUF)
    tracemalloc.start()
    try:
        batch = workers.batch_from_rows(rows)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(batch.records) == count
    assert held / count < 450


def test_a_worker_passes_decoding_errors_back(pool: workers.DecodePool) -> None:
    with pytest.raises(otlp.DecodeError, match="not a valid"):
        pool.decode(b"\xff\xff\xff", otlp.PROTOBUF)
    body = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}'
    assert pool.decode(body, otlp.JSON) == otlp.decode(body, otlp.JSON)


def test_a_killed_worker_fails_its_request_with_503_and_the_next_one_works(
    monkeypatch: pytest.MonkeyPatch, pool: workers.DecodePool
) -> None:
    monkeypatch.setattr("ingest.writer.get_decode_pool", lambda: pool)
    small = fixture_bytes("agentscope-1.0.21-react-agent.pb")
    assert pool.decode(small, otlp.PROTOBUF).records  # the worker is up
    [worker] = pool.processes()
    body = tiny_spans(100_000)  # takes the worker a while
    assert len(body) > writer.WORKER_DECODE_BYTES
    outcome: list[BaseException | otlp.Batch] = []

    def decode() -> None:
        try:
            outcome.append(writer.decode(body, otlp.PROTOBUF))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=decode)
    thread.start()
    time.sleep(0.2)
    os.kill(worker, signal.SIGKILL)
    thread.join(60)
    [result] = outcome
    # Unavailable is what the receivers answer 503 + Retry-After / UNAVAILABLE.
    assert isinstance(result, writer.DecoderLost)
    assert isinstance(result, writer.Unavailable)
    assert len(writer.decode(body, otlp.PROTOBUF).records) == 100_000
    assert pool.processes() != [worker]


@pytest.mark.django_db(transaction=True)
def test_a_lost_decoder_is_answered_503(monkeypatch: pytest.MonkeyPatch) -> None:
    def lost(
        self: workers.DecodePool, body: bytes, content_type: str, overrides: object = None
    ) -> otlp.Batch:
        raise workers.WorkerLost("a decoding process died; retry")

    monkeypatch.setattr(workers.DecodePool, "decode", lost)
    monkeypatch.setattr("ingest.writer.get_decode_pool", lambda: workers.DecodePool(1))
    body = tiny_spans(5_000)
    response = async_to_sync(AsyncClient().post)(
        "/v1/traces", body, content_type="application/x-protobuf"
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert not Span.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_committed_spans_are_freed_before_their_request_wakes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Once the writer commits, the queue stops counting a request's records and new bodies are
    # admitted; the request itself may wake much later under load. So it must not be what
    # keeps its records alive, or memory holds twice what the budget counts.
    import tracemalloc

    monkeypatch.setattr("ingest.writer.get_decode_pool", lambda: None)
    body = tiny_spans(20_000)
    tracemalloc.start()
    try:
        batch, future = writer.accept(body, otlp.PROTOBUF)
        future.result(60)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert batch.rejected == 0
    assert Span.objects.count() == 20_000
    # The records of 20,000 spans take about 8 MB.
    assert held < 2_000_000


def test_decoding_processes_run_at_ingests_lower_priority() -> None:
    # Relative to ours: a niceness can be raised, not lowered, without privileges.
    niceness = min(19, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + 7)
    decode_pool = workers.DecodePool(1, niceness=niceness)
    try:
        assert decode_pool.decode(fixture_bytes("otel-sdk-http-1.pb"), otlp.PROTOBUF).records
        [worker] = decode_pool.processes()
        assert os.getpriority(os.PRIO_PROCESS, worker) == niceness
    finally:
        decode_pool.close()


@pytest.mark.django_db(transaction=True)
def test_the_writer_runs_at_ingests_lower_priority_and_the_pages_do_not(settings: Any) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    settings.STUDIO_INGEST_NICENESS = min(19, ours + 6)
    batch = otlp.decode(fixture_bytes("otel-sdk-http-1.pb"), otlp.PROTOBUF)
    one = writer.Writer(1000)
    try:
        one.submit(batch.records).result(30)
        assert one._thread is not None and one._thread.native_id is not None
        # On Linux niceness is per thread: the writer's, not the process's.
        writers = os.getpriority(os.PRIO_PROCESS, one._thread.native_id)
        assert writers == settings.STUDIO_INGEST_NICENESS
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == ours
    finally:
        assert one.close(30)


@pytest.mark.django_db(transaction=True)
def test_a_page_opens_its_connection_while_the_writer_holds_the_write_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db import connection
    from django.test import Client

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's write lock")
    # Each page opens a connection: none of its set-up statements may wait for the lock that
    # the writer (or the search indexer, or a purge) holds through each transaction.
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 1)
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE tracing_trace SET name = name")
    try:
        connection.close()
        started = time.monotonic()
        response = Client(HTTP_HOST="127.0.0.1").get("/traces/")
        assert response.status_code == 200
        assert time.monotonic() - started < 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
