"""The writer: summaries recomputed from spans, group commit, a bounded queue."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Sequence

import grpc
import pytest
from asgiref.sync import async_to_sync
from django.db import DataError, InterfaceError, OperationalError, connection
from django.http import HttpRequest
from django.test import AsyncClient

from ingest import otlp, writer
from ingest.grpc import SERVICE, make_server
from ingest.otlp import SpanRecord
from tests.conftest import fixture_bytes
from tracing.models import Span, Trace

AGENTSCOPE_TRACE = "ad27a918a7ce11d08dc80c6ec77cd536"


def agentscope_records() -> list[SpanRecord]:
    return otlp.decode_protobuf(fixture_bytes("agentscope-1.0.21-react-agent.pb")).records


def summary(trace_id: str) -> dict:
    return Trace.objects.filter(trace_id=trace_id).values().get()


@pytest.mark.django_db
def test_the_summary_is_the_same_however_the_spans_arrive() -> None:
    records = agentscope_records()
    writer.write_batch(records)
    expected = summary(AGENTSCOPE_TRACE)
    assert expected["name"] == "invoke_agent Treasurer"
    assert expected["has_root"] is True
    assert expected["span_count"] == 9
    assert (expected["input_tokens"], expected["output_tokens"], expected["total_tokens"]) == (
        126,
        27,
        153,
    )
    assert expected["conversation_id"] == "FBR8Y7LSqV7pXo8fzTZ8TV"
    assert expected["input_preview"] == "How much is 120 EUR in JPY?"
    assert expected["span_type"] == "agent"
    assert expected["label"] == "Treasurer"
    assert expected["output_preview"] == "120 EUR is about 19,500 JPY."

    Span.objects.all().delete()
    Trace.objects.all().delete()
    # Children first, one span per batch, each sent twice.
    for record in reversed(records):
        writer.write_batch([record])
        writer.write_batch([record])
    assert summary(AGENTSCOPE_TRACE) == expected
    assert Span.objects.filter(trace_id=AGENTSCOPE_TRACE).count() == 9


@pytest.mark.django_db
def test_until_the_root_arrives_the_earliest_span_names_the_trace() -> None:
    records = agentscope_records()
    children = [r for r in records if r.parent_span_id]
    writer.write_batch(children)
    partial = summary(AGENTSCOPE_TRACE)
    assert partial["has_root"] is False
    assert partial["name"] == "format openai"
    assert partial["output_preview"] == ""  # no root, no final answer yet
    writer.write_batch([r for r in records if not r.parent_span_id])
    assert summary(AGENTSCOPE_TRACE)["name"] == "invoke_agent Treasurer"
    assert summary(AGENTSCOPE_TRACE)["output_preview"] == "120 EUR is about 19,500 JPY."
    # A late child batch recomputes the summary and keeps the root's answer.
    writer.write_batch(children[:1])
    assert summary(AGENTSCOPE_TRACE)["output_preview"] == "120 EUR is about 19,500 JPY."


@pytest.mark.django_db
def test_the_output_preview_is_the_roots_answer_on_one_line_and_cut() -> None:
    records = agentscope_records()
    root = next(r for r in records if not r.parent_span_id)
    attributes = json.loads(root.attributes_json)
    long_answer = "Line one.\n\n" + "word " * 200
    attributes["gen_ai.output.messages"] = json.dumps(
        [{"role": "assistant", "parts": [{"type": "text", "content": long_answer}]}]
    )
    root.attributes_json = json.dumps(attributes)
    writer.write_batch(records)
    preview = summary(AGENTSCOPE_TRACE)["output_preview"]
    assert preview.startswith("Line one. word word") and "\n" not in preview
    assert len(preview) == 200 and preview.endswith("…")
    # An answer no reader understands costs the preview, never the spans.
    Span.objects.all().delete()
    Trace.objects.all().delete()
    root.attributes_json = "not json"
    writer.write_batch(records)
    assert summary(AGENTSCOPE_TRACE)["output_preview"] == ""
    assert Span.objects.filter(trace_id=AGENTSCOPE_TRACE).count() == 9


@pytest.mark.django_db
def test_an_error_anywhere_marks_the_trace_failed() -> None:
    records = agentscope_records()
    records[2].status_code = 2
    writer.write_batch(records)
    trace = Trace.objects.get(trace_id=AGENTSCOPE_TRACE)
    assert (trace.error_count, trace.status) == (1, "ERROR")


@pytest.mark.django_db
def test_extreme_but_valid_spans_are_storable_on_every_database() -> None:
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": f"{n:016x}",
                                "name": "edge\x00",
                                "kind": 99999,
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": str(2**63 - 1),
                                "droppedAttributesCount": 2**32 - 1,
                                "flags": 2**32 - 1,
                                "attributes": [
                                    {"key": k, "value": v}
                                    for k, v in [
                                        ("gen_ai.operation.name", {"stringValue": "chat"}),
                                        ("gen_ai.usage.input_tokens", {"intValue": "2147483647"}),
                                        ("gen_ai.usage.output_tokens", {"intValue": "2147483647"}),
                                        ("gen_ai.conversation.id", {"stringValue": '"\\ud800"'}),
                                    ]
                                ],
                                "events": [{"name": "e", "timeUnixNano": str(2**64 - 1)}],
                            }
                            for n in (1, 2)
                        ]
                    }
                ]
            }
        ]
    }
    records = otlp.decode_json(json.dumps(body).encode()).records
    writer.write_batch(records)
    trace = summary("5b8efff798038103d269b633813fc60c")
    assert trace["span_count"] == 2
    assert trace["total_tokens"] == 4 * (2**31 - 1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("big", ["", "first", "second"])
def test_two_processes_summarising_one_trace_at_once_converge(
    monkeypatch: pytest.MonkeyPatch, big: str
) -> None:
    """`big`: which writer locks as a batch of many traces does (coarse buckets, exclusive)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's IMMEDIATE transactions serialise writers")
    first, second = agentscope_records()[:2]
    summarised, release = threading.Event(), threading.Event()
    original = writer.fold_summaries
    lock_traces = writer.lock_traces

    def lock_as_batch_size_says(cursor: object, trace_ids: set[str]) -> None:
        name = threading.current_thread().name
        limit = 0 if name == big else writer.FINE_LOCK_TRACES
        lock_traces(cursor, trace_ids, limit)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "lock_traces", lock_as_batch_size_says)

    def fold_then_hold(cursor: object, inserted: Sequence[SpanRecord]) -> None:
        original(cursor, inserted)
        if threading.current_thread().name == "first":
            summarised.set()  # summarised but not committed: the other process comes now
            release.wait(10)

    monkeypatch.setattr(writer, "fold_summaries", fold_then_hold)

    def write(record: SpanRecord) -> None:
        try:
            writer.write_batch([record])
        finally:
            connection.close()

    one = threading.Thread(target=write, args=(first,), name="first")
    two = threading.Thread(target=write, args=(second,), name="second")
    one.start()
    assert summarised.wait(10)
    two.start()
    two.join(0.5)  # without a lock it summarises now, seeing only its own span
    release.set()
    one.join()
    two.join()
    assert summary(AGENTSCOPE_TRACE)["span_count"] == 2


class BlockedWriter(writer.Writer):
    """A writer whose commits wait for the test to let them through."""

    def __init__(self, max_queue_spans: int, max_queue_bytes: int | None = None) -> None:
        super().__init__(max_queue_spans, max_queue_bytes)
        self.gate = threading.Event()
        self.written: list[int] = []

    def _write(self, records: Sequence[SpanRecord]) -> set[str]:
        self.gate.wait(10)
        self.written.append(len(records))
        return set()


def test_a_full_queue_refuses_more_spans_until_it_drains() -> None:
    records = agentscope_records()
    blocked = BlockedWriter(max_queue_spans=20)
    first = blocked.submit(records)  # 9 spans: taken by the writer thread, still uncommitted
    second = blocked.submit(records)  # 18
    with pytest.raises(writer.QueueFull):
        blocked.submit(records)  # 27 > 20
    blocked.gate.set()
    first.result(5)
    second.result(5)
    blocked.submit(records).result(5)
    assert blocked.close(5)
    # The queued requests were committed together (group commit) or one by one, never lost.
    assert sum(blocked.written) == 27


def test_the_queue_is_bounded_in_bytes_too() -> None:
    # Few spans can still be megabytes each: a span count alone does not bound memory.
    records = agentscope_records()
    blocked = BlockedWriter(max_queue_spans=1000, max_queue_bytes=writer.records_size(records) + 1)
    first = blocked.submit(records)
    with pytest.raises(writer.QueueFull):
        blocked.submit(records)
    blocked.gate.set()
    first.result(5)
    blocked.submit(records).result(5)
    assert blocked.close(5)


def test_a_single_request_bigger_than_the_queue_still_gets_in() -> None:
    blocked = BlockedWriter(max_queue_spans=5)
    blocked.gate.set()
    blocked.submit(agentscope_records()).result(5)
    assert blocked.close(5)


def test_closing_drains_the_queue_and_refuses_new_spans() -> None:
    blocked = BlockedWriter(max_queue_spans=100)
    futures = [blocked.submit(agentscope_records()) for _ in range(3)]
    closer = threading.Thread(target=blocked.close, args=(10,))
    closer.start()
    blocked.gate.set()
    closer.join()
    assert all(f.done() and f.exception() is None for f in futures)
    with pytest.raises(writer.WriterClosed):
        blocked.submit(agentscope_records())


@pytest.mark.django_db(transaction=True)
def test_a_full_queue_answers_503_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = BlockedWriter(max_queue_spans=10)
    monkeypatch.setattr("ingest.writer.get_writer", lambda: blocked)
    client = AsyncClient()
    body = fixture_bytes("agentscope-1.0.21-react-agent.pb")
    blocked.submit(agentscope_records())
    response = async_to_sync(client.post)("/v1/traces", body, content_type="application/x-protobuf")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    blocked.gate.set()
    assert blocked.close(5)
    assert not Trace.objects.filter(trace_id=AGENTSCOPE_TRACE).exists()


def test_a_body_over_the_limit_is_refused_without_being_read_whole(
    monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    settings.STUDIO_MAX_BODY_BYTES = 2048

    def whole_body(request: object) -> bytes:
        raise AssertionError("request.body reads a body of any size into memory")

    monkeypatch.setattr(HttpRequest, "body", property(whole_body))
    client = AsyncClient()
    response = async_to_sync(client.post)(
        "/v1/traces", b"\0" * 100_000, content_type="application/x-protobuf"
    )
    assert response.status_code == 413
    response = async_to_sync(client.post)("/v1/traces", b"{}", content_type="application/json")
    assert response.status_code == 200


def test_a_failed_group_commit_is_retried_request_by_request() -> None:
    calls: list[int] = []
    writing, gate = threading.Event(), threading.Event()

    class Flaky(writer.Writer):
        def _write(self, records: Sequence[SpanRecord]) -> set[str]:
            if not calls:
                writing.set()
                gate.wait(5)  # hold the first commit so the next two requests queue together
            calls.append(len(records))
            if any(r.name == "poison" for r in records):
                raise ValueError("cannot store this")
            return {r.trace_id for r in records}

    flaky = Flaky(max_queue_spans=1000)
    poison = agentscope_records()
    poison[0].name = "poison"
    first = flaky.submit(agentscope_records())
    assert writing.wait(5)
    second = flaky.submit(poison)
    third = flaky.submit(agentscope_records())
    gate.set()
    assert first.result(5) == []
    with pytest.raises(ValueError):
        second.result(5)
    assert third.result(5) == []
    assert flaky.close(5)
    # The second and third requests shared one commit, which failed; then each went alone.
    assert calls == [9, 18, 9, 9]


def test_the_decode_budget_admits_one_body_alone_and_bounds_several() -> None:
    budget = writer.DecodeBudget(limit=100)
    with budget.reserve(500):  # alone, even over the limit
        with pytest.raises(writer.Busy):
            with budget.reserve(1):
                pass
    with budget.reserve(60):
        with budget.reserve(40):
            with pytest.raises(writer.Busy):
                with budget.reserve(1):
                    pass
    with budget.reserve(100):
        pass


def test_span_records_carry_exactly_the_span_models_columns() -> None:
    # The writer INSERTs a record's fields as columns: a column added to the model (or a field to
    # the record) without the other would fail on every write, or silently store the default.
    python_types = {
        "BigIntegerField": "int",
        "IntegerField": "int",
        "SmallIntegerField": "int",
        "CharField": "str",
        "TextField": "str",
        "FloatField": "float | None",  # a model call's cost: None without a price
    }
    model_columns = {
        field.column: python_types[field.get_internal_type()]
        for field in Span._meta.concrete_fields
        if not field.primary_key
    }
    fields = SpanRecord.__dataclass_fields__
    # Besides its columns, a record carries only the ownership check's marks (ingest.ownership).
    assert set(fields) - set(otlp.SPAN_COLUMNS) == {"keyed", "refused"}
    record_columns = {name: field.type for name, field in fields.items() if name != "keyed"}
    del record_columns["refused"]
    assert record_columns == model_columns
    assert otlp.SPAN_COLUMNS == tuple(record_columns)


@pytest.mark.django_db
def test_traces_stored_before_labels_and_answers_get_them_from_the_migration() -> None:
    import importlib

    from django.apps import apps

    migration = importlib.import_module("tracing.migrations.0005_trace_label_output_preview")
    writer.write_batch(agentscope_records())
    Trace.objects.update(label="", output_preview="")
    with connection.cursor() as cursor:
        cursor.execute(migration.BACKFILL_LABELS)
    migration.backfill_output_previews(apps, None)
    trace = Trace.objects.get(trace_id=AGENTSCOPE_TRACE)
    assert (trace.label, trace.output_preview) == ("Treasurer", "120 EUR is about 19,500 JPY.")


class Outage:
    """write_batch failing with `error` for its first `failures` calls (None: for ever)."""

    def __init__(self, error: Exception, failures: int | None) -> None:
        self.error = error
        self.failures = failures
        self.calls: list[float] = []

    def __call__(self, records: Sequence[SpanRecord]) -> set[str]:
        self.calls.append(time.monotonic())
        if self.failures is None or len(self.calls) <= self.failures:
            raise self.error
        return {r.trace_id for r in records}


def test_a_database_failure_that_may_pass_is_retried_with_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outage = Outage(OperationalError("database is locked"), failures=3)
    monkeypatch.setattr(writer, "write_batch", outage)
    retrying = writer.Writer(max_queue_spans=1000)
    assert retrying.submit(agentscope_records()).result(10) == []
    assert retrying.close(5)
    assert len(outage.calls) == 4
    pauses = [later - earlier for earlier, later in itertools.pairwise(outage.calls)]
    # Back-to-back retries would be over before a restarting database is back.
    assert pauses[0] >= writer.RETRY_FIRST_DELAY
    assert pauses[2] >= 3 * writer.RETRY_FIRST_DELAY


def test_a_lasting_outage_fails_every_request_of_the_commit_as_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outage = Outage(InterfaceError("connection already closed"), failures=None)
    monkeypatch.setattr(writer, "write_batch", outage)
    monkeypatch.setattr(writer, "RETRY_FOR_SECONDS", 0.3)
    failing = writer.Writer(max_queue_spans=1000)
    futures = [failing.submit(agentscope_records()) for _ in range(3)]
    for future in futures:
        # Unavailable: the receivers' 503 / UNAVAILABLE, which exporters retry.
        assert isinstance(future.exception(10), writer.DatabaseUnavailable)
    assert failing.close(5)
    assert outage.calls[-1] - outage.calls[0] < 2


def test_a_fault_no_retry_can_mend_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    outage = Outage(DataError("value out of range"), failures=None)
    monkeypatch.setattr(writer, "write_batch", outage)
    failing = writer.Writer(max_queue_spans=1000)
    future = failing.submit(agentscope_records())
    assert isinstance(future.exception(10), DataError)
    assert failing.close(5)
    # Once in the group commit, once alone: no backoff loop.
    assert len(outage.calls) == 2


class UnavailableWriter(writer.Writer):
    def _write(self, records: Sequence[SpanRecord]) -> set[str]:
        raise writer.DatabaseUnavailable("the database is unavailable: connection refused")


@pytest.mark.django_db(transaction=True)
def test_a_database_outage_answers_503_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    unavailable = UnavailableWriter(max_queue_spans=1000)
    monkeypatch.setattr("ingest.writer.get_writer", lambda: unavailable)
    body = fixture_bytes("agentscope-1.0.21-react-agent.pb")
    response = async_to_sync(AsyncClient().post)(
        "/v1/traces", body, content_type="application/x-protobuf"
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert unavailable.close(5)


def test_a_database_outage_answers_grpc_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    unavailable = UnavailableWriter(max_queue_spans=1000)
    monkeypatch.setattr("ingest.writer.get_writer", lambda: unavailable)
    server, port = make_server("127.0.0.1", 0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            export = channel.unary_unary(f"/{SERVICE}/Export")
            with pytest.raises(grpc.RpcError) as failure:
                export(fixture_bytes("agentscope-1.0.21-react-agent.pb"), timeout=10)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)
        assert unavailable.close(5)


@pytest.mark.django_db
def test_a_root_sent_twice_in_one_batch_keeps_the_preview_of_the_span_stored() -> None:
    records = agentscope_records()
    root = next(r for r in records if not r.parent_span_id)
    attributes = json.loads(root.attributes_json)
    attributes["gen_ai.output.messages"] = json.dumps(
        [{"role": "assistant", "parts": [{"type": "text", "content": "the retry's answer"}]}]
    )
    retry = dataclasses.replace(root, attributes_json=json.dumps(attributes))
    writer.write_batch([*records, retry])
    stored = Span.objects.get(trace_id=AGENTSCOPE_TRACE, span_id=root.span_id)
    assert stored.attributes_json == root.attributes_json  # the first is stored
    assert summary(AGENTSCOPE_TRACE)["output_preview"] == "120 EUR is about 19,500 JPY."
