"""The overview's cards over all time, kept as the traces change instead of read from every trace.

A project's totals (traces, spans, errors, tokens, cost) live in `tracing_tracetotal`, split by
a bucket of the traces' duration: the sum of a project's rows is its cards, and the counts by
bucket say where a rank falls, so an exact percentile is one short walk of the duration index
inside one bucket (about 1/100 of a project's traces) instead of a walk over half of them.

Triggers on `tracing_trace` keep the rows, so every statement that changes a trace's card
columns (the writer's fold, `refresh_summaries`, deletes, purges, reprices, whatever comes next)
keeps them right in its own transaction:

- SQLite has one writer at a time: row triggers add each change to the (project, bucket) row in
  place.
- PostgreSQL has many: statement triggers append one row per (project, bucket) a statement
  changed (from its transition tables), so no two writers ever wait on the same row, and a purge
  of 100,000 traces appends a handful. The serving processes fold the appended rows together now
  and then (`compact`, after the indexer's turn); a reader sums whatever is there.

The buckets are ordered like the durations they hold: the number of decimal digits, then the
first two (bucket 1234 holds 34e10 to 35e10 - 1 ns, 340 to 350 s); 100 to 109 hold 0 to 9 ns,
and 0 every negative duration (a span whose clock went backwards). Both databases compute it
with the same text functions (SQLite has no log()).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db import connection, connections, transaction

from tracing.models import NO_TRACES, WALK_PERCENTILES, Trace, TraceStats, TraceTotal

TABLE = TraceTotal._meta.db_table
TRACES = Trace._meta.db_table

# The bucket of duration `{d}`, as SQL both databases run.
BUCKET_SQL = (
    "CASE WHEN {d} < 0 THEN 0 WHEN {d} < 10 THEN 100 + {d} "
    "ELSE LENGTH(CAST({d} AS TEXT)) * 100 + CAST(SUBSTR(CAST({d} AS TEXT), 1, 2) AS INTEGER) END"
)

# What one trace adds to each column (`{r}` is the row: NEW, OLD or a transition table's).
ADDS = {
    "traces": "1",
    "spans": "{r}.span_count",
    "error_traces": "CASE WHEN {r}.status_code = 2 THEN 1 ELSE 0 END",
    "error_spans": "{r}.error_count",
    "input_tokens": "{r}.input_tokens",
    "output_tokens": "{r}.output_tokens",
    "cost_usd": "COALESCE({r}.cost_usd, 0)",
    "unpriced_spans": "COALESCE({r}.unpriced_spans, 0)",
}
# The trace columns the totals read: a change to any other (an output preview) changes nothing.
READS = ("project", "duration_ns", "span_count", "status_code", "error_count", "input_tokens")
READS += ("output_tokens", "cost_usd", "unpriced_spans")

_COLUMNS = ", ".join(["project", "bucket", *ADDS])


def _exprs(row: str, sign: str) -> list[str]:
    """What `row` adds (`sign` "+") or takes away ("-"), in _COLUMNS order."""
    return [
        f"{row}.project",
        BUCKET_SQL.format(d=f"{row}.duration_ns"),
        *(f"{sign}({expr.format(r=row)})" for expr in ADDS.values()),
    ]


def _values(row: str, sign: str) -> str:
    return ", ".join(_exprs(row, sign))


# SQLite: one (project, bucket) row, added to in place.
_SQLITE_ADD = f"""
INSERT INTO {TABLE} ({_COLUMNS}) VALUES ({{values}})
ON CONFLICT (project, bucket) DO UPDATE SET
{", ".join(f"{column} = {column} + excluded.{column}" for column in ADDS)};
"""
_CHANGED = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in READS)
SQLITE_CREATE = [
    f"CREATE UNIQUE INDEX tracing_tracetotal_key ON {TABLE} (project, bucket)",
    f"""CREATE TRIGGER tracing_trace_totals_insert AFTER INSERT ON {TRACES} BEGIN
    {_SQLITE_ADD.format(values=_values("NEW", "+"))}
    END""",
    f"""CREATE TRIGGER tracing_trace_totals_delete AFTER DELETE ON {TRACES} BEGIN
    {_SQLITE_ADD.format(values=_values("OLD", "-"))}
    END""",
    f"""CREATE TRIGGER tracing_trace_totals_update AFTER UPDATE ON {TRACES} WHEN {_CHANGED} BEGIN
    {_SQLITE_ADD.format(values=_values("OLD", "-"))}
    {_SQLITE_ADD.format(values=_values("NEW", "+"))}
    END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS tracing_trace_totals_insert",
    "DROP TRIGGER IF EXISTS tracing_trace_totals_delete",
    "DROP TRIGGER IF EXISTS tracing_trace_totals_update",
    "DROP INDEX IF EXISTS tracing_tracetotal_key",
]

# PostgreSQL: each statement appends its changes summed by (project, bucket). An update's rows
# that changed nothing the totals read cancel out, and are not appended.
_SUMS = ", ".join(f"SUM({column})" for column in ADDS)
_NONZERO = " OR ".join(f"SUM({column}) <> 0" for column in ADDS)


def _pg_function(name: str, rows: str) -> str:
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {TABLE} ({_COLUMNS})
    SELECT project, bucket, {_SUMS} FROM ({rows}) AS d
    GROUP BY project, bucket HAVING {_NONZERO};
    RETURN NULL;
END $$"""


def _pg_rows(table: str, sign: str) -> str:
    names = ["project", "bucket", *ADDS]
    exprs = _exprs(table, sign)
    columns = ", ".join(f"{expr} AS {name}" for expr, name in zip(exprs, names, strict=True))
    return f"SELECT {columns} FROM {table}"


PG_CREATE = [
    _pg_function("tracing_trace_totals_added", _pg_rows("new_rows", "+")),
    _pg_function("tracing_trace_totals_removed", _pg_rows("old_rows", "-")),
    _pg_function(
        "tracing_trace_totals_changed",
        _pg_rows("old_rows", "-") + " UNION ALL " + _pg_rows("new_rows", "+"),
    ),
    f"""CREATE TRIGGER tracing_trace_totals_insert AFTER INSERT ON {TRACES}
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tracing_trace_totals_added()""",
    f"""CREATE TRIGGER tracing_trace_totals_delete AFTER DELETE ON {TRACES}
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tracing_trace_totals_removed()""",
    f"""CREATE TRIGGER tracing_trace_totals_update AFTER UPDATE ON {TRACES}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tracing_trace_totals_changed()""",
]
PG_DROP = [
    f"DROP TRIGGER IF EXISTS tracing_trace_totals_insert ON {TRACES}",
    f"DROP TRIGGER IF EXISTS tracing_trace_totals_delete ON {TRACES}",
    f"DROP TRIGGER IF EXISTS tracing_trace_totals_update ON {TRACES}",
    "DROP FUNCTION IF EXISTS tracing_trace_totals_added()",
    "DROP FUNCTION IF EXISTS tracing_trace_totals_removed()",
    "DROP FUNCTION IF EXISTS tracing_trace_totals_changed()",
]

# The traces stored before the triggers, in the same transaction as the triggers' creation.
_FILL_SQL = f"""
INSERT INTO {TABLE} ({_COLUMNS})
SELECT project, bucket, {_SUMS} FROM ({_pg_rows(TRACES, "+")}) AS d GROUP BY project, bucket
"""


def _made(vendor: str) -> list[str]:
    """The triggers (and index) that keep the totals, then the totals of the traces stored."""
    return [*(SQLITE_CREATE if vendor == "sqlite" else PG_CREATE), _FILL_SQL]


def _dropped(vendor: str) -> list[str]:
    return SQLITE_DROP if vendor == "sqlite" else PG_DROP


def create(apps: Any, schema_editor: Any) -> None:
    for statement in _made(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


def drop(apps: Any, schema_editor: Any) -> None:
    for statement in _dropped(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


_SQLITE_KEPT_BY = (
    "tracing_trace_totals_insert",
    "tracing_trace_totals_delete",
    "tracing_trace_totals_update",
    "tracing_tracetotal_key",
)
_PG_KEPT_BY = _SQLITE_KEPT_BY[:3]


def _kept(cursor: Any, vendor: str) -> bool:
    """Whether every trigger (and SQLite's unique index) that keeps the totals is there."""
    if vendor == "sqlite":
        names = _SQLITE_KEPT_BY
        cursor.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type IN ('trigger', 'index') "
            f"AND name IN ({', '.join(['%s'] * len(names))})",
            names,
        )
    else:
        names = _PG_KEPT_BY
        cursor.execute(
            f"SELECT COUNT(*) FROM pg_trigger WHERE tgrelid = '{TRACES}'::regclass "
            f"AND tgname IN ({', '.join(['%s'] * len(names))})",
            names,
        )
    return cursor.fetchone()[0] == len(names)


def keep(using: str = "default", **kwargs: Any) -> None:
    """The post_migrate receiver (after every `migrate` and `flush`), which makes the totals
    right again where something outside the triggers' sight changed them:

    - SQLite alters a column by copying the table into a new one, which has no triggers (and a
      rebuilt totals table loses its unique index): a later migration that does so leaves the
      totals unkept. Missing, they are made again, and the totals counted again.
    - `flush` (the tests' TransactionTestCase) empties the tables in any order: emptied first,
      the totals get the traces' negative rows. With no trace stored, there are no totals.
    """
    connection = connections[using]
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        if TABLE not in tables or TRACES not in tables:
            return  # migrated back before 0016_trace_totals, or not yet there
        if _kept(cursor, connection.vendor):
            cursor.execute(f"DELETE FROM {TABLE} WHERE NOT EXISTS (SELECT 1 FROM {TRACES})")
            return
    vendor = connection.vendor
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(f"LOCK TABLE {TRACES} IN SHARE ROW EXCLUSIVE MODE")
        for statement in [*_dropped(vendor), f"DELETE FROM {TABLE}", *_made(vendor)]:
            cursor.execute(statement)


# ---------------------------------------------------------------------------------------------
# Reading.


def bucket_floor(bucket: int) -> int | None:
    """The smallest duration bucket `bucket` holds (None: every negative one)."""
    if bucket <= 0:
        return None
    if bucket < 200:
        return bucket - 100
    digits, leading = divmod(bucket, 100)
    return leading * 10 ** (digits - 2)


_READ_SQL = f"""
SELECT bucket, {_SUMS} FROM {TABLE} {{where}} GROUP BY bucket ORDER BY bucket
"""


def _of(project: str) -> tuple[list[str], list[str]]:
    """The conditions "of `project`" (none: of every project) and their parameters."""
    return (["project = %s"], [project]) if project else ([], [])


def _where(conditions: list[str]) -> str:
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""


def count(project: str = "") -> int:
    """How many traces there are (of `project`, if given): one short read."""
    conditions, params = _of(project)
    with connection.cursor() as cursor:
        sql = f"SELECT COALESCE(SUM(traces), 0) FROM {TABLE} {_where(conditions)}"
        cursor.execute(sql, params)
        return int(cursor.fetchone()[0])


def stats(project: str = "") -> TraceStats:
    """The cards of every trace (of `project`, if given), as the overview shows them: two short
    statements whatever the number of traces. (A commit between them can move a percentile by
    a rank or two, as it would a moment later.)"""
    conditions, params = _of(project)
    with connection.cursor() as cursor:
        cursor.execute(_READ_SQL.format(where=_where(conditions)), params)
        rows = cursor.fetchall()
    sums = [sum(row[column] for row in rows) for column in range(1, len(ADDS) + 1)]
    count = int(sums[0])
    if count <= 0:
        return NO_TRACES
    if project and count <= WALK_PERCENTILES:
        # Few traces: sorting the project's own (through its index) costs less than walking the
        # duration index past every other project's traces in the bucket.
        places: list[tuple[int | None, int]] = [(None, rank - 1) for rank in _ranks(count)]
        walk = False
    else:
        places, walk = [_locate(rows, rank) for rank in _ranks(count)], True
    p50, p95, newest = _picks(project, places, walk)
    if p50 is None or p95 is None:
        # A purge or delete between the two statements took the rank's trace: read them all.
        traces = Trace.objects.filter(project=project) if project else Trace.objects.all()
        return traces.stats()
    return TraceStats(
        *(int(value) for value in sums[:6]),
        duration_p50_ns=p50,
        duration_p95_ns=p95,
        newest_start_ns=newest,
        # Added and taken away in any order, a float sum keeps crumbs of 1e-11 USD.
        cost_usd=round(float(sums[6]), 9),
        unpriced_spans=int(sums[7]),
    )


def _ranks(count: int) -> tuple[int, int]:
    """The nearest ranks (from 1, shortest first) of p50 and p95, as TraceQuerySet.stats picks."""
    return (count + 1) // 2, (count * 95 + 99) // 100


def _locate(rows: list[tuple[Any, ...]], rank: int) -> tuple[int | None, int]:
    """Where the `rank`th shortest trace is: its bucket's floor, and how many traces from there
    come before it."""
    before = 0
    for bucket, traces, *_ in rows:
        if before + traces >= rank:
            return bucket_floor(bucket), rank - before - 1
        before += int(traces)
    raise AssertionError("the rank is beyond the count")


def _picks(project: str, places: list[tuple[int | None, int]], walk: bool) -> list[int | None]:
    """The durations at `places`, then the newest start. `walk`: along the duration index."""
    # SQLite's planner would rather read the project's index and sort the project's traces.
    indexed = (
        "INDEXED BY trace_duration_cards_idx" if walk and connection.vendor == "sqlite" else ""
    )
    of_project, of_params = _of(project)
    selects, params = [], []
    for floor, offset in places:
        conditions = list(of_project)
        params += of_params
        if floor is not None:
            conditions.append("duration_ns >= %s")
            params.append(floor)
        selects.append(
            f"(SELECT duration_ns FROM {TRACES} {indexed} {_where(conditions)} "
            "ORDER BY duration_ns LIMIT 1 OFFSET %s)"
        )
        params.append(offset)
    selects.append(f"(SELECT MAX(start_ns) FROM {TRACES} {_where(of_project)})")
    params += of_params
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(selects), params)
        return [None if value is None else int(value) for value in cursor.fetchone()]


# ---------------------------------------------------------------------------------------------
# Folding PostgreSQL's appended rows together.

COMPACT_EVERY = 5.0  # seconds
_COMPACT_SQL = f"""
WITH gone AS (DELETE FROM {TABLE} RETURNING {_COLUMNS})
INSERT INTO {TABLE} ({_COLUMNS})
SELECT project, bucket, {_SUMS} FROM gone GROUP BY project, bucket HAVING {_NONZERO}
"""
_compacted = 0.0
_compact_lock = threading.Lock()


def compact(force: bool = False) -> bool:
    """On PostgreSQL, fold the rows the triggers appended into one per (project, bucket), at most
    once every COMPACT_EVERY seconds per process; True if it ran. Two processes at once are
    safe (a row the other deleted is skipped, a row it inserted is not seen), but one waits
    for the other: the second skips instead."""
    global _compacted
    if connection.vendor != "postgresql":
        return False
    with _compact_lock:
        now = time.monotonic()
        if not force and now - _compacted < COMPACT_EVERY:
            return False
        _compacted = now
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(7372)")
        if not cursor.fetchone()[0]:
            return False
        cursor.execute(_COMPACT_SQL)
    return True
