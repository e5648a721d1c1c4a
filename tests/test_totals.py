"""The overview's cards over all time come from totals that triggers keep (tracing.totals): they
must equal the cards computed from every trace, whatever changed the traces, and the percentiles
found through the duration buckets must be the exact nearest-rank ones."""

from __future__ import annotations

import dataclasses
import math
import threading
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import writer
from tests.races import postgresql_only
from tests.test_writer_fold import record
from tracing import repricing, retention, totals
from tracing.models import Span, Trace, TraceStats, TraceTotal
from tracing.prices import Price, PriceTable

PROJECTS = ("default", "shop", "边缘")


def computed(project: str = "") -> TraceStats:
    """The cards as read from every trace (the filtered statement, not the totals)."""
    traces = Trace.objects.filter(project=project) if project else Trace.objects.all()
    return traces.stats()


def assert_totals_right() -> None:
    for project in ("", *PROJECTS):
        kept, read = totals.stats(project), computed(project)
        assert kept.cost_usd == pytest.approx(read.cost_usd, abs=1e-9)
        assert dataclasses.replace(kept, cost_usd=0.0) == dataclasses.replace(read, cost_usd=0.0)


def nearest_rank(durations: list[int], p: float) -> int:
    ordered = sorted(durations)
    return ordered[math.ceil(p * len(ordered)) - 1]


# Durations at every kind of bucket edge: negative, one digit, 10**k - 1 and 10**k, two leading
# digits apart, and near the largest a BigIntegerField holds.
EDGES = [-(10**12), -7, -1, 0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 3_499_999, 3_500_000]
EDGES += [10**9 - 1, 10**9, 2 * 10**9 + 7, 34 * 10**10, 35 * 10**10 - 1, 10**18, 9 * 10**18]
durations = st.one_of(st.sampled_from(EDGES), st.integers(-(10**6), 10**15))


def trace_row(n: int, duration: int, project: str, **fields: Any) -> Trace:
    return Trace(
        trace_id=f"{n:032x}",
        start_ns=n * 1000,
        end_ns=n * 1000 + duration,
        duration_ns=duration,
        project=project,
        **fields,
    )


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(durations, st.sampled_from(PROJECTS), st.integers(0, 5), st.sampled_from([0, 2])),
        max_size=60,
    )
)
def test_the_kept_totals_and_percentiles_equal_the_ones_read_from_every_trace(
    rows: list[tuple[int, str, int, int]],
) -> None:
    Trace.objects.all().delete()
    Trace.objects.bulk_create(
        trace_row(
            n,
            duration,
            project,
            span_count=spans,
            error_count=spans if status == 2 else 0,
            status_code=status,
            input_tokens=spans * 3,
            output_tokens=spans,
            cost_usd=spans / 7,
            unpriced_spans=spans % 2,
        )
        for n, (duration, project, spans, status) in enumerate(rows)
    )
    assert_totals_right()
    if rows:
        every = [duration for duration, *_ in rows]
        kept = totals.stats()
        assert kept.duration_p50_ns == nearest_rank(every, 0.5)
        assert kept.duration_p95_ns == nearest_rank(every, 0.95)
    # Taken away again, by whichever statement.
    Trace.objects.filter(project="shop").delete()
    Trace.objects.filter(project="default").update(duration_ns=5, cost_usd=1.5)
    assert_totals_right()
    totals.compact(force=True)
    assert_totals_right()


@pytest.mark.django_db
@pytest.mark.parametrize("duration", EDGES)
def test_a_bucket_starts_at_its_floor_and_orders_like_the_durations(duration: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {totals.BUCKET_SQL.format(d='%s')}", [duration] * 5)
        bucket = cursor.fetchone()[0]
        cursor.execute(f"SELECT {totals.BUCKET_SQL.format(d='%s')}", [duration + 1] * 5)
        above = cursor.fetchone()[0]
    floor = totals.bucket_floor(bucket)
    assert floor is None if duration < 0 else floor <= duration
    assert above >= bucket
    if floor is not None:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {totals.BUCKET_SQL.format(d='%s')}", [floor] * 5)
            assert cursor.fetchone()[0] == bucket
            if floor > 0:
                cursor.execute(f"SELECT {totals.BUCKET_SQL.format(d='%s')}", [floor - 1] * 5)
                assert cursor.fetchone()[0] < bucket


@pytest.mark.django_db
def test_every_way_a_trace_changes_keeps_the_totals() -> None:
    def spans(trace: str, count: int, *, start: int = 0, **fields: Any) -> list[Any]:
        return [
            record(
                trace,
                f"{trace[:8]}{i:08x}",
                parent_span_id="" if i == 0 else f"{trace[:8]}{0:08x}",
                start_ns=start + i * 1000,
                end_ns=start + i * 1000 + 500,
                span_type="llm",
                model="gpt-4o",
                input_tokens=100,
                output_tokens=10,
                **fields,
            )
            for i in range(count)
        ]

    a, b, c = "a" * 32, "b" * 32, "c" * 32
    # The writer: new traces, then a late span that makes one longer and failed.
    writer.write_batch(spans(a, 3) + spans(b, 2, project="shop"))
    assert_totals_right()
    writer.write_batch([record(a, "f" * 16, parent_span_id="", start_ns=0, end_ns=10**10)])
    writer.write_batch([record(b, "e" * 16, start_ns=5, end_ns=6, status_code=2, project="shop")])
    writer.write_batch(spans(c, 4, start=10**9))
    assert totals.stats().error_traces == 1
    assert_totals_right()
    # Recomputed from the spans, repriced, purged, deleted.
    with connection.cursor() as cursor:
        writer.refresh_summaries(cursor, [a, b, c])
    assert_totals_right()
    table = PriceTable({"gpt-4o": Price(input=250.0, output=1000.0)})
    assert repricing.reprice(table).spans > 0
    assert totals.stats().cost_usd > 0
    assert_totals_right()
    retention.purge(retention.Policy(days=0, max_spans=5))
    assert Trace.objects.count() < 3
    assert_totals_right()
    Trace.objects.all().delete_with_spans()
    assert totals.stats() == TraceStats(0, 0, 0, 0, 0, 0, None, None, None)
    assert_totals_right()


@pytest.mark.django_db
def test_the_overview_cards_over_all_time_read_the_totals_not_the_traces(
    client: Client, django_assert_num_queries: Any
) -> None:
    Trace.objects.bulk_create(trace_row(n, n * 10**6, PROJECTS[n % 2]) for n in range(40))
    # Rows, the totals by bucket, the percentiles and the newest, the services.
    with django_assert_num_queries(4) as page:
        response = client.get("/traces/")
    cards = [q["sql"] for q in page.captured_queries if totals.TABLE in q["sql"]]
    assert len(cards) == 1
    stats = response.context["stats"]
    assert stats == computed() and stats.traces == 40
    # A project's home: its own totals (and its retention policy).
    with django_assert_num_queries(5):
        response = client.get("/projects/shop/")
    assert response.context["stats"] == computed("shop")
    assert response.context["stats"].traces == 20


@postgresql_only("appended rows and their compaction are PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_writers_append_without_waiting_on_each_other_and_compaction_folds_them() -> None:
    # Two writers of one project each hold their transaction open: neither waits for the other.
    started = threading.Barrier(2, timeout=10)

    def write(trace: str) -> None:
        try:
            with transaction.atomic():
                writer.write_batch([record(trace, "1" * 16, start_ns=0, end_ns=10)])
                started.wait()
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(t * 32,)) for t in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not started.broken
    assert totals.stats().traces == 2
    Trace.objects.filter(trace_id="a" * 32).delete()
    assert TraceTotal.objects.count() == 3
    assert totals.compact(force=True)
    assert TraceTotal.objects.count() == 1  # the one bucket of "b"; "a"'s went to zero
    assert_totals_right()


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_totals_of_the_traces_stored_before_it() -> None:
    executor = MigrationExecutor(connection)
    before = [("tracing", "0015_search_backlog")]
    executor.migrate(before)
    try:
        writer.write_batch([record("a" * 32, "1" * 16, start_ns=0, end_ns=10, project="shop")])
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        assert totals.stats("shop").traces == 1
        writer.write_batch([record("b" * 32, "2" * 16, start_ns=0, end_ns=99)])
        assert_totals_right()
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        Span.objects.all().delete()
        Trace.objects.all().delete()


@pytest.mark.django_db
def test_the_apis_count_of_every_trace_reads_the_totals(
    client: Client, django_assert_num_queries: Any
) -> None:
    Trace.objects.bulk_create(trace_row(n, n, PROJECTS[n % 3]) for n in range(30))
    for params, expected in [({}, 30), ({"project": "shop"}, 10), ({"status": "OK"}, 0)]:
        with django_assert_num_queries(2) as queries:  # the page's rows and the count
            body = client.get("/api/traces/", params).json()
        assert body["count"] == expected
        kept = any(totals.TABLE in query["sql"] for query in queries.captured_queries)
        assert kept == ("status" not in params)


@pytest.mark.django_db(transaction=True)
def test_the_totals_are_cleared_after_a_flush_that_emptied_them_before_the_traces() -> None:
    # `flush` (the tests' TransactionTestCase) deletes the tables in any order: emptied first,
    # the totals would get the traces' negative rows.
    Trace.objects.bulk_create(trace_row(n, n, "default") for n in range(3))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {totals.TABLE}")
        cursor.execute(f"DELETE FROM {totals.TRACES}")
    assert totals.count() == -3
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    assert not TraceTotal.objects.exists()


@pytest.mark.django_db
def test_a_big_projects_percentiles_walk_the_duration_index_from_the_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Below WALK_PERCENTILES a project's own traces are sorted; above, the walk, as for all.
    Trace.objects.bulk_create(
        trace_row(n, EDGES[n % len(EDGES)] + n, PROJECTS[n % 3]) for n in range(90)
    )
    sorted_stats = {p: totals.stats(p) for p in PROJECTS}
    monkeypatch.setattr(totals, "WALK_PERCENTILES", 0)
    assert {p: totals.stats(p) for p in PROJECTS} == sorted_stats
    assert_totals_right()


@pytest.mark.django_db(transaction=True)
def test_migrating_back_and_forth_with_the_command_keeps_the_totals() -> None:
    Trace.objects.bulk_create(trace_row(n, n, "default") for n in range(3))
    call_command("migrate", "tracing", "0015_search_backlog", verbosity=0)
    try:
        Trace.objects.bulk_create(trace_row(n, n, "shop") for n in range(3, 5))
    finally:
        call_command("migrate", verbosity=0)
    assert totals.stats("shop").traces == 2
    assert_totals_right()
    Trace.objects.all().delete()


@pytest.mark.django_db(transaction=True)
def test_triggers_lost_to_a_table_rebuild_are_made_again_after_a_migrate() -> None:
    # SQLite alters a column by copying the table, without its triggers.
    Trace.objects.bulk_create(trace_row(n, n * 10**6, "default") for n in range(4))
    with connection.cursor() as cursor:
        for statement in totals.SQLITE_DROP if connection.vendor == "sqlite" else totals.PG_DROP:
            cursor.execute(statement)
    Trace.objects.bulk_create(trace_row(n, n, "shop") for n in range(4, 9))
    Trace.objects.filter(project="default").update(duration_ns=7)
    assert totals.count() == 4
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    assert_totals_right()
    Trace.objects.bulk_create([trace_row(9, 9, "shop")])  # kept again
    assert_totals_right()
    Trace.objects.all().delete()
