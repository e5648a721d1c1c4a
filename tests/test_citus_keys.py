"""Distribution by trace id: every key of the span and trace tables and of the tables kept from
the spans holds `trace_id`, and every join between them is on it, so that Citus can distribute
them all by it (DESIGN.md "Distribution by trace id")."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from django.db import connection, models
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from ingest import writer
from tests.test_writer_fold import record
from tracing import search
from tracing.models import Span, Trace

ROOT = Path(__file__).resolve().parent.parent
# The tables distributed by trace_id; every other table is a reference table (DESIGN.md).
DISTRIBUTED = ("tracing_trace", "tracing_span", search.TABLE, search.ATTRS)
MIGRATION = importlib.import_module("tracing.migrations.0013_citus_keys")


def test_every_unique_key_of_the_models_holds_the_trace_id() -> None:
    assert Trace._meta.pk.name == "trace_id"
    for model in (Trace, Span):
        for constraint in model._meta.constraints:
            if isinstance(constraint, models.UniqueConstraint):
                assert "trace_id" in constraint.fields, constraint
        for fields in model._meta.unique_together:
            assert "trace_id" in fields
        for field in model._meta.fields:
            # The span's `id` is the ORM's key; on PostgreSQL the table's is (trace_id, id), as
            # the database test below checks. Any other unique column would be a problem.
            if field.unique and not (model is Span and field.name == "id"):
                assert field.name == "trace_id", field


@pytest.mark.django_db
def test_every_primary_key_and_unique_constraint_in_the_database_holds_the_trace_id() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("Citus is PostgreSQL's; SQLite keys the search rows by the span's rowid")
    with connection.cursor() as cursor:
        for table in DISTRIBUTED:
            constraints = connection.introspection.get_constraints(cursor, table)
            keys = {n: c for n, c in constraints.items() if c["primary_key"] or c["unique"]}
            assert any(c["primary_key"] for c in keys.values()), table
            for name, constraint in keys.items():
                assert "trace_id" in constraint["columns"], (table, name)
            if table == "tracing_span":
                assert MIGRATION.primary_key(cursor, table)[1] == ["trace_id", "id"]


# A join in the raw SQL: JOIN <table> [alias] ON <condition>, up to the next clause.
_JOIN = re.compile(
    r"JOIN\s+(?P<table>[\w{}.]+)(?:\s+(?P<alias>\w+))?(?:\s+NOT INDEXED)?\s+ON\s+"
    r"(?P<on>[^\"]+?)(?=\bWHERE\b|\bJOIN\b|\bORDER\b|\"|$)",
    re.S,
)
# A correlated probe of another row of the same table: `a1.span = a0.span`.
_PROBE = re.compile(r"(\w+\{n\}|\w+)\.span = (\w+)\.span")


def _sql_text(path: Path) -> str:
    """The module's source with f-string pieces glued, so one statement reads as one text."""
    return re.sub(r'"\s*\n\s*f?"', "", path.read_text())


def test_every_join_between_the_distributed_tables_is_on_the_trace_id() -> None:
    names = {"tracing_span", "tracing_trace", "{TABLE}", "{ATTRS}", "{table}", "{span_table}"}
    found = 0
    for path in [*sorted((ROOT / "tracing").glob("*.py")), ROOT / "ingest" / "writer.py"]:
        text = _sql_text(path)
        for match in _JOIN.finditer(text):
            table, on = match["table"], match["on"]
            if table not in names and not table.startswith("LATERAL"):
                continue
            found += 1
            if "rowid" in on:
                continue  # SQLite's search index (FTS5) by the span's rowid: never on Citus
            assert "trace_id" in on, f"{path.name}: JOIN {table} ON {on[:120]}"
        for match in _PROBE.finditer(text):
            context = text[match.start() - 80 : match.end()]
            assert "trace_id" in context, f"{path.name}: {context}"
    assert found >= 5  # the pattern still finds the joins it is meant to check


@pytest.mark.django_db(transaction=True)
def test_the_migration_rekeys_a_database_with_spans_and_keeps_them(client: Client) -> None:
    executor = MigrationExecutor(connection)
    before = [("tracing", "0012_project_retention")]  # the one before 0013_citus_keys
    executor.migrate(before)
    trace_id = "c" * 32
    try:
        writer.write_batch(
            [
                record(trace_id, f"{n:016x}", start_ns=n, attributes_json='{"city": "Kyoto"}')
                for n in range(1, 4)
            ]
        )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                assert MIGRATION.primary_key(cursor, "tracing_span")[1] == ["id"]
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for table, _, new in MIGRATION.KEYS:
                assert MIGRATION.primary_key(cursor, table)[1] == new
    assert Span.objects.filter(trace_id=trace_id).count() == 3
    assert Trace.objects.get(trace_id=trace_id).span_count == 3
    found = client.get("/api/traces/", {"attr": "city = Kyoto"}).json()["results"]
    assert [row["trace_id"] for row in found] == [trace_id]
    assert [
        r["trace_id"] for r in client.get("/api/traces/", {"q": "Kyoto"}).json()["results"]
    ] == [trace_id]
    # New spans and deletes keep the search rows in step under the new keys.
    writer.write_batch([record(trace_id, f"{n:016x}", start_ns=n) for n in range(4, 6)])
    Trace.objects.filter(trace_id=trace_id).delete_with_spans()
    with connection.cursor() as cursor:
        for table in (search.TABLE, search.ATTRS):
            cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE trace_id = %s", [trace_id])
            assert cursor.fetchone()[0] == 0
