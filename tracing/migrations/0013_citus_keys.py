from typing import Any

from django.db import migrations

from tracing import search

# PostgreSQL: the span table and the two tables kept from it (search text, attributes) are keyed
# by trace first, so that Citus can distribute all three by trace_id (see DESIGN.md "Distribution
# by trace id"). SQLite keeps its keys: its search index and attribute rows follow the span's
# integer rowid (`id`, which VACUUM keeps because it is the INTEGER PRIMARY KEY), and Citus is
# PostgreSQL's.
#
# Each new key is built as a unique index while the table is locked against writes (a few seconds
# per million spans); the old key goes in the same transaction, so nothing is ever unkeyed.
KEYS = [
    # (table, old key, new key)
    ("tracing_span", ["id"], ["trace_id", "id"]),
    (search.TABLE, ["id"], ["trace_id", "id"]),
    (search.ATTRS, ["span", "key"], ["trace_id", "span", "key"]),
]


def primary_key(cursor: Any, table: str) -> tuple[str, list[str]] | None:
    cursor.execute(
        "SELECT c.conname, array_agg(a.attname ORDER BY k.n) FROM pg_constraint c "
        "CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
        "WHERE c.conrelid = %s::regclass AND c.contype = 'p' GROUP BY c.conname",
        [table],
    )
    row = cursor.fetchone()
    return None if row is None else (row[0], list(row[1]))


def set_primary_key(cursor: Any, table: str, columns: list[str]) -> None:
    current = primary_key(cursor, table)
    if current is not None and current[1] == columns:
        return  # created with this key (a database made after this migration's code)
    drop = f"DROP CONSTRAINT {current[0]}, " if current is not None else ""
    cursor.execute(
        f"ALTER TABLE {table} {drop}ADD CONSTRAINT {table}_pkey PRIMARY KEY ({', '.join(columns)})"
    )


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, _, new in KEYS:
            set_primary_key(cursor, table, new)
        # The new key starts with trace_id: this index only cost writes.
        cursor.execute(f"DROP INDEX IF EXISTS {search.TABLE}_trace")
        # Find rows by (trace_id, id), which the new keys serve.
        cursor.execute(search.PG_SEARCH_SYNC)
        cursor.execute(search.PG_ATTRS_SYNC)


def backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, old, _ in KEYS:
            set_primary_key(cursor, table, old)
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {search.TABLE}_trace ON {search.TABLE} (trace_id)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("tracing", "0012_project_retention"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
