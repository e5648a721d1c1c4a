"""PostgreSQL's search backlog (tracing.search, migration 0015_search_backlog): spans are indexed
after the commit, each once however many indexers run, and found meanwhile; deletes and
repricing keep the index true."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from django.db import connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client, override_settings

from tests.test_search import WEATHER, attr_rows, ids, span, store
from tracing import clauses, repricing, search
from tracing.models import Trace
from tracing.prices import Price, PriceTable

OTHER = "4" * 32

postgresql_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="SQLite has no backlog: its indexer follows ids"
)


@pytest.fixture(autouse=True)
def empty_search_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    """A flush (the transactional tests' cleanup) truncates the spans without firing the delete
    trigger, and leaves the search tables, which no model owns, as they were."""

    def empty() -> None:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"TRUNCATE {search.BACKLOG}, {search.TABLE}, {search.ATTRS}")

    marker = request.node.get_closest_marker("django_db")
    transactional = marker is not None and marker.kwargs.get("transaction", False)
    request.getfixturevalue("transactional_db" if transactional else "db")
    empty()
    yield
    if transactional:
        empty()


def counts(trace_id: str | None = None) -> tuple[int, int, int]:
    """Rows of (backlog, search text, attributes), of one trace or all."""
    where, params = ("WHERE trace_id = %s", [trace_id]) if trace_id else ("", [])
    found = []
    with connection.cursor() as cursor:
        for table in (search.BACKLOG, search.TABLE, search.ATTRS):
            cursor.execute(f"SELECT COUNT(*) FROM {table} {where}", params)
            found.append(cursor.fetchone()[0])
    return found[0], found[1], found[2]


def walked(q: str = "", clause: str = "") -> list[str]:
    """The trace ids the overview's walk (a check per trace) finds."""
    table = connection.ops.quote_name(Trace._meta.db_table)
    if q:
        condition = search.text_exists(q, table)
    else:
        condition = search.clauses_exist([clauses.parse(clause)], table)
    return sorted(Trace.objects.filter(condition).values_list("trace_id", flat=True))


@postgresql_only
def test_a_span_is_found_by_text_and_clause_before_the_indexer_ran_and_after(
    client: Client, db: None
) -> None:
    store([span(WEATHER, "a" * 16, "get_weather_forecast", attributes={"city": "Tokyo", "n": 7})])
    assert counts(WEATHER) == (1, 0, 0)  # the writer's transaction only noted it
    for indexed in (False, True):
        assert ids(client, q="Tokyo") == [WEATHER], indexed
        assert ids(client, q="weather_fore") == [WEATHER], indexed
        assert ids(client, attr="city = Tokyo") == [WEATHER], indexed
        assert ids(client, attr="n > 6") == [WEATHER], indexed
        assert ids(client, attr="n > 7") == [], indexed
        assert walked(q="tokyo") == [WEATHER], indexed
        assert walked(clause="city = Tokyo") == [WEATHER], indexed
        assert walked(clause="n < 7") == [], indexed
        # The snippet and the span finder read the text too.
        assert "<mark>Tokyo</mark>" in client.get("/traces/", {"q": "Tokyo"}).content.decode()
        found = client.get(f"/traces/{WEATHER}/find", {"q": "tokyo"}).json()
        assert found["matches"] == ["a" * 16], indexed
        if not indexed:
            assert search.index_pending() == 1
    assert counts(WEATHER) == (0, 1, 3)  # and the resource's service.name
    assert search.index_pending() == 0


def take_chunk_and_hold(limit: int, taken: list[int], hold: threading.Event) -> threading.Thread:
    """An indexer in another connection that takes a chunk and keeps its transaction open until
    `hold` is set."""
    ready = threading.Event()

    def run() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(search._PG_INDEX_CHUNK, [limit])
                taken.append(cursor.fetchone()[0])
                ready.set()
                assert hold.wait(30)
        finally:
            ready.set()
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    assert ready.wait(30)
    return thread


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_two_indexers_at_once_index_each_span_once(client: Client) -> None:
    store([span(WEATHER, f"{n:016x}", f"span {n}", attributes={"n": n}) for n in range(1, 301)])
    taken: list[int] = []
    hold = threading.Event()
    first = take_chunk_and_hold(100, taken, hold)
    try:
        # The second passes the first's chunk by, without waiting for it.
        started = time.monotonic()
        assert search.index_pending(limit=1000) == 200
        assert time.monotonic() - started < 10
        assert search.index_pending() == 0
    finally:
        hold.set()
        first.join(30)
    assert taken == [100]
    assert counts() == (0, 300, 600)
    assert search.index_pending() == 0
    assert ids(client, q="span 300") == [WEATHER]
    assert ids(client, attr="n = 1") == [WEATHER]


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_span_deleted_while_in_the_backlog_leaves_nothing_behind(client: Client) -> None:
    store([span(WEATHER, f"{n:016x}", f"span {n}", attributes={"n": n}) for n in range(1, 4)])
    store([span(OTHER, "f" * 16, "other", attributes={"n": 1})])
    Trace.objects.filter(trace_id=WEATHER).delete_with_spans()
    assert counts(WEATHER) == (0, 0, 0)
    assert search.index_pending() == 1
    assert counts() == (0, 1, 2)
    # Deleted while an indexer holds it: the delete waits for the indexer's commit, then takes
    # the rows the indexer wrote.
    store([span(WEATHER, "a" * 16, "again", attributes={"n": 1})])
    hold = threading.Event()
    taken: list[int] = []
    indexer = take_chunk_and_hold(10, taken, hold)
    deleter = threading.Thread(
        target=lambda: (
            Trace.objects.filter(trace_id=WEATHER).delete_with_spans(),
            connections.close_all(),
        )
    )
    deleter.start()
    time.sleep(0.5)
    assert deleter.is_alive()  # waiting for the indexer's chunk
    hold.set()
    indexer.join(30)
    deleter.join(30)
    assert taken == [1] and not deleter.is_alive()
    assert counts(WEATHER) == (0, 0, 0)
    assert counts() == (0, 1, 2)
    assert ids(client, q="again") == []


@postgresql_only
def test_repricing_keeps_the_index_rows(client: Client, db: None) -> None:
    chat = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "my-llama",
        "gen_ai.usage.input_tokens": 1_000_000,
    }
    with override_settings(STUDIO_PRICES={"my-llama": Price(2.0, 8.0)}):
        store([span(WEATHER, "a" * 16, "chat my-llama", attributes=chat, kind=3)])
        store([span(OTHER, "b" * 16, "chat my-llama", attributes=chat, kind=3)])
    search.index_pending(limit=1)  # one indexed, one in the backlog
    before = counts()
    assert before == (1, 1, 4)
    table = PriceTable({"my-llama": Price(3.0, 8.0)})
    assert repricing.reprice_traces([WEATHER, OTHER], table) == 2
    assert counts() == before
    assert search.index_pending() == 1
    assert counts() == (0, 2, 8)
    assert ids(client, q="my-llama") == [WEATHER, OTHER]
    assert ids(client, attr="gen_ai.usage.input_tokens = 1000000") == [WEATHER, OTHER]


def triggers() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'tracing_span'::regclass "
            "AND NOT tgisinternal"
        )
        return {name for (name,) in cursor.fetchall()}


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_the_migration_switches_a_database_holding_spans_and_back(client: Client) -> None:
    executor = MigrationExecutor(connection)
    before = [("tracing", "0014_overview_indexes")]
    after = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    try:
        # Indexed in the writer's transaction, as before the backlog.
        store([span(WEATHER, "a" * 16, "stored before", attributes={"n": 1})])
        assert triggers() == {f"{search.TABLE}_sync", f"{search.ATTRS}_sync"}
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        assert triggers() == {f"{search.BACKLOG}_enqueue", f"{search.TABLE}_forget"}
        assert counts() == (0, 1, 2)
        store([span(OTHER, "b" * 16, "stored after", attributes={"n": 2})])
        assert counts() == (1, 1, 2)
        assert ids(client, q="stored") == [WEATHER, OTHER]
        assert ids(client, attr="n >= 1") == [WEATHER, OTHER]
        # Back: the backlog is indexed, then the writer's triggers return.
        executor = MigrationExecutor(connection)
        executor.migrate(before)
        assert triggers() == {f"{search.TABLE}_sync", f"{search.ATTRS}_sync"}
        with connection.cursor() as cursor:
            assert search.BACKLOG not in connection.introspection.table_names(cursor)
            cursor.execute(f"SELECT COUNT(*), COUNT(DISTINCT trace_id) FROM {search.TABLE}")
            assert cursor.fetchone() == (2, 2)
            cursor.execute(f"SELECT COUNT(*) FROM {search.ATTRS}")
            assert cursor.fetchone()[0] == 4
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert ids(client, q="stored after") == [OTHER]
    assert attr_rows(OTHER)[("b" * 16, "n")] == ("n", None, 2)


def test_sqlite_needs_no_backlog(db: None) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL's backlog is tested above")
    with connection.cursor() as cursor:
        assert search.BACKLOG not in connection.introspection.table_names(cursor)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_the_indexer_thread_empties_the_backlog_after_a_commit(client: Client) -> None:
    indexer = search.Indexer()
    indexer.start()  # as runstudio does; nothing to index yet
    store([span(WEATHER, f"{n:016x}", f"span {n}") for n in range(1, 4)])
    indexer.wake()  # the writer's traces_changed
    deadline = time.monotonic() + 30
    while counts() != (0, 3, 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counts() == (0, 3, 3)
