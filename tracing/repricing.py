"""Stored costs again, at the prices in force now: after `STUDIO_PRICES` changed (a new model
added, a price corrected), `manage.py reprice` walks every trace in small transactions, prices its
model calls again from their stored token counts and updates the trace's totals.

Raw SQL over the two tables, so the migration that added the cost columns runs it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, transaction

from tracing import costs, retention, selectors
from tracing.prices import PriceTable

# Traces per transaction: each holds SQLite's one write lock only briefly.
CHUNK_TRACES = 200

_MODEL_TYPES = ", ".join(f"'{kind}'" for kind in sorted(costs.MODEL_SPAN_TYPES))
_KEYS = selectors.USAGE_KEYS
_READS = len(costs.CACHE_READ_KEYS)
_WRITES = _READS + len(costs.CACHE_WRITE_KEYS)

# What the writer's summary stores (ingest.writer): the priced calls' sum (rounded the same
# way), and the model calls that had no price.
_TRACE_SQL = f"""
UPDATE tracing_trace SET
    cost_usd = (SELECT ROUND(CAST(COALESCE(SUM(s.cost_usd), 0) AS NUMERIC), 12)
                FROM tracing_span s WHERE s.trace_id = tracing_trace.trace_id),
    unpriced_spans = (SELECT COALESCE(SUM(CASE WHEN s.cost_usd IS NULL
                          AND s.span_type IN ({_MODEL_TYPES}) THEN 1 ELSE 0 END), 0)
                      FROM tracing_span s WHERE s.trace_id = tracing_trace.trace_id)
WHERE trace_id IN ({{ids}})
"""


@dataclass
class Repriced:
    traces: int = 0
    spans: int = 0  # model calls whose cost changed


def _usages(ids: list[str]) -> list[tuple[int, str, float | None, costs.Usage]]:
    """(row id, model, stored cost, usage) of the model calls of these traces: narrow columns
    and the few usage numbers, extracted by the database."""
    placeholders = ", ".join(["%s"] * len(ids))
    where = f"s.trace_id IN ({placeholders}) AND s.span_type IN ({_MODEL_TYPES})"
    if connection.vendor == "postgresql":
        values = ", ".join(f"x.j -> '{key}'" for key in _KEYS)
        sql = (
            "SELECT s.id, s.model, s.cost_usd, s.input_tokens, s.output_tokens, "
            f"jsonb_build_array({values}) FROM tracing_span s, LATERAL (SELECT "
            "s.attributes_json::jsonb AS j OFFSET 0) x WHERE " + where
        )
    else:
        paths = ", ".join(f"'$.\"{key}\"'" for key in _KEYS)
        sql = (
            "SELECT s.id, s.model, s.cost_usd, s.input_tokens, s.output_tokens, "
            f"json_extract(s.attributes_json, {paths}) FROM tracing_span s WHERE " + where
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, ids)
        rows = cursor.fetchall()
    out = []
    for pk, model, stored, input_tokens, output_tokens, extracted in rows:
        values = selectors.json_values(extracted, len(_KEYS)) or [None] * len(_KEYS)
        used = costs.Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=costs.first_int(values, 0, _READS),
            cache_write_tokens=costs.first_int(values, _READS, _WRITES),
            reasoning_tokens=costs.first_int(values, _WRITES, len(_KEYS)),
        )
        out.append((pk, model, stored, used))
    return out


def reprice_traces(ids: list[str], table: PriceTable) -> int:
    """Price these traces' model calls again and update their totals, in one transaction;
    returns how many calls changed. Only changed rows are written (the search index holds no
    cost: an update leaves it as it is)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # The writer folds a batch into the summary row it read (ingest.writer): repriced
            # and committed between that read and its write, a trace would keep the old prices'
            # total. So, as the retention purge does, these traces' lock buckets are held
            # exclusive first, and each side waits for the other.
            # (SQLite's IMMEDIATE transactions serialise the two already.)
            with connection.cursor() as cursor:
                retention.lock_traces(cursor, ids)
        changed = []
        for pk, model, stored, used in _usages(ids):
            cost = costs.cost(table.price(model), used)
            if cost != stored:
                changed.append((cost, pk))
        with connection.cursor() as cursor:
            if changed:
                cursor.executemany("UPDATE tracing_span SET cost_usd = %s WHERE id = %s", changed)
            placeholders = ", ".join(["%s"] * len(ids))
            cursor.execute(_TRACE_SQL.format(ids=placeholders), ids)
    return len(changed)


def reprice(
    table: PriceTable | None = None,
    chunk: int = CHUNK_TRACES,
    progress: Callable[[Repriced], None] | None = None,
) -> Repriced:
    """Every trace, `chunk` at a time in trace id order (each chunk its own transaction)."""
    table = selectors.price_table() if table is None else table
    done = Repriced()
    after = ""
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT trace_id FROM tracing_trace WHERE trace_id > %s ORDER BY trace_id LIMIT %s",
                [after, chunk],
            )
            ids = [trace_id for (trace_id,) in cursor.fetchall()]
        if not ids:
            return done
        done.spans += reprice_traces(ids, table)
        done.traces += len(ids)
        after = ids[-1]
        if progress is not None:
            progress(done)
