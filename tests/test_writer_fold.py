"""The writer folds only the spans a batch inserted into its traces' summaries: whatever the
batches (split, reordered, repeated, a child before its root), the row equals the one recomputed
from all the spans (`writer.refresh_summaries`), and a batch's cost does not grow with its trace."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import writer
from ingest.otlp import SpanRecord
from tests.races import Threads, hold_the_fold, postgresql_only
from tracing.models import Span, Trace

TRACES = ("a" * 32, "b" * 32)


def record(trace_id: str, span_id: str, **fields: object) -> SpanRecord:
    values: dict[str, object] = {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": "",
        "start_ns": 0,
        "end_ns": 0,
        "kind": 1,
        "status_code": 0,
        "span_type": "",
        "operation": "",
        "input_tokens": 0,
        "output_tokens": 0,
        "flags": 0,
        "dropped_attributes_count": 0,
        "dropped_events_count": 0,
        "dropped_links_count": 0,
        "name": "",
        "service_name": "",
        "model": "",
        "label": "",
        "conversation_id": "",
        "input_preview": "",
        "status_message": "",
        "trace_state": "",
        "attributes_json": "{}",
        "events_json": "[]",
        "links_json": "[]",
        "resource_json": "{}",
        "scope_json": "{}",
        "project": "default",
    }
    values.update(fields)
    return SpanRecord(**values)  # type: ignore[arg-type]


@st.composite
def spans(draw: st.DrawFn) -> list[SpanRecord]:
    """A few spans of two traces, with ties in start times, zero, one or two roots, errors,
    tokens, previews and conversations: every rule of the summary gets a say."""
    count = draw(st.integers(1, 9))
    span_ids = draw(st.lists(st.integers(1, 60), min_size=count, max_size=count, unique=True))
    records = []
    for n in span_ids:
        start = draw(st.integers(0, 6))
        records.append(
            record(
                draw(st.sampled_from(TRACES)),
                f"{n:016x}",
                parent_span_id=draw(st.sampled_from(["", "00000000000000ff", "00000000000000fe"])),
                start_ns=start,
                end_ns=start + draw(st.integers(0, 6)),
                status_code=draw(st.sampled_from([0, 1, 2])),
                span_type=draw(st.sampled_from(["", "llm", "agent", "embedding", "tool"])),
                input_tokens=draw(st.integers(0, 5)),
                output_tokens=draw(st.integers(0, 5)),
                name=f"span {n}",
                service_name=draw(st.sampled_from(["api", "worker"])),
                label=draw(st.sampled_from(["", "Friday"])),
                conversation_id=draw(st.sampled_from(["", "c1", "c2"])),
                input_preview=draw(st.sampled_from(["", "", "hello", "hi"])),
                project=draw(st.sampled_from(["default", "shop"])),
            )
        )
    return records


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[SpanRecord], list[list[SpanRecord]]]:
    """Spans, and batches that carry each of them at least once, in any order and grouping,
    some of them twice (in one batch or in two)."""
    records = draw(spans())
    sent = records + draw(st.lists(st.sampled_from(records), max_size=4))
    sent = draw(st.permutations(sent))
    cuts = sorted(draw(st.lists(st.integers(0, len(sent)), max_size=4)))
    edges = [0, *cuts, len(sent)]
    return records, [sent[a:b] for a, b in itertools.pairwise(edges) if a < b]


def summaries(*, project: bool = True) -> dict[str, dict]:
    rows = Trace.objects.values()
    return {row["trace_id"]: row if project else {**row, "project": None} for row in rows}


def reset() -> None:
    Span.objects.all().delete()
    Trace.objects.all().delete()


@pytest.mark.django_db
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_any_split_order_or_repetition_of_batches_gives_the_one_batch_summary(
    delivery: tuple[list[SpanRecord], list[list[SpanRecord]]],
) -> None:
    records, batches = delivery
    reset()
    writer.write_batch(records)
    one_batch = summaries()
    reset()
    for batch in batches:
        writer.write_batch([dataclasses.replace(r) for r in batch])
    # All but the project, which the spans that created a trace choose (tracing.projects).
    assert summaries(project=False) == {t: {**row, "project": None} for t, row in one_batch.items()}
    # And both are what the spans alone give.
    folded = summaries()
    with connection.cursor() as cursor:
        writer.refresh_summaries(cursor, TRACES)
    assert summaries() == folded


@pytest.mark.django_db
def test_a_repeated_batch_folds_nothing() -> None:
    batch = [
        record(TRACES[0], f"{n:016x}", start_ns=n, end_ns=n + 1, status_code=2) for n in (1, 2)
    ]
    writer.write_batch(batch)
    before = summaries()
    assert before[TRACES[0]]["span_count"] == 2
    assert before[TRACES[0]]["error_count"] == 2
    writer.write_batch(batch)
    writer.write_batch([*batch, batch[0]])
    assert summaries() == before


@pytest.mark.django_db
def test_a_batch_reads_only_its_own_spans_however_long_its_trace() -> None:
    """The fold's statements never aggregate over the trace's spans: a batch appended to a long
    trace costs what it costs for a short one."""
    writer.write_batch(
        [record(TRACES[0], "f" * 16, start_ns=0, end_ns=10**6, input_preview="question")]
        + [record(TRACES[0], f"{n:016x}", parent_span_id="f" * 16, start_ns=n) for n in range(2000)]
    )
    later = [
        record(TRACES[0], f"{n:016x}", parent_span_id="f" * 16, start_ns=n, input_preview="x")
        for n in range(10_000, 10_010)
    ]
    with CaptureQueriesContext(connection) as queries:
        writer.write_batch(later)
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "GROUP BY" not in sql and "ROW_NUMBER" not in sql
    trace = Trace.objects.get(trace_id=TRACES[0])
    assert (trace.span_count, trace.input_preview, trace.name) == (2011, "question", "")


@pytest.mark.django_db(transaction=True)
def test_two_processes_storing_one_span_at_once_count_it_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's IMMEDIATE transactions serialise writers")
    span = record(TRACES[0], "1" * 16, start_ns=1, end_ns=2)
    folded, release = threading.Event(), threading.Event()
    original = writer.fold_summaries

    def fold_then_hold(cursor: object, inserted: list[SpanRecord]) -> None:
        original(cursor, inserted)
        if threading.current_thread().name == "first":
            folded.set()  # folded but not committed: the other process stores the same span now
            release.wait(10)

    monkeypatch.setattr(writer, "fold_summaries", fold_then_hold)

    def write() -> None:
        try:
            writer.write_batch([dataclasses.replace(span)])
        finally:
            connection.close()

    one = threading.Thread(target=write, name="first")
    two = threading.Thread(target=write, name="second")
    one.start()
    assert folded.wait(10)
    two.start()
    two.join(0.5)  # its insert waits for the first commit, then inserts nothing
    release.set()
    one.join()
    two.join()
    assert Trace.objects.get(trace_id=TRACES[0]).span_count == 1


def _delete_trace(trace_id: str) -> None:
    Trace.objects.filter(trace_id=trace_id).delete_with_spans()


def _delete_project(trace_id: str) -> None:
    from studio import projects

    projects.delete(Trace.objects.get(trace_id=trace_id).project)


@postgresql_only("SQLite's IMMEDIATE transactions serialise the delete and the writer")
@pytest.mark.parametrize("delete", [_delete_trace, _delete_project])
@pytest.mark.django_db(transaction=True)
def test_a_trace_deleted_while_the_writer_folds_a_late_span_does_not_come_back_counting_its_gone_spans(  # noqa: E501
    monkeypatch: pytest.MonkeyPatch, delete: Callable[[str], None]
) -> None:
    # PostgreSQL: the writer reads the summary row, then writes it back with its batch added; a
    # delete committed in between brought the row back, counting the deleted spans.
    trace_id = TRACES[0]
    writer.write_batch([record(trace_id, f"{n:016x}", start_ns=n) for n in range(1, 4)])
    folding, go = hold_the_fold(monkeypatch)
    threads = Threads()
    adding = threads.start(writer.write_batch, [record(trace_id, "f" * 16, start_ns=9)])
    assert folding.wait(10)
    deleting = threads.start(delete, trace_id)
    deleting.join(1)  # fixed: it waits for the writer's locks
    go.set()
    adding.join(10)
    deleting.join(10)
    assert not threads.failures
    stored = Span.objects.filter(trace_id=trace_id).count()
    summary = Trace.objects.filter(trace_id=trace_id).values_list("span_count", flat=True)
    assert list(summary) == ([stored] if stored else [])
