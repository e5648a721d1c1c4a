"""What a trace is: the spans as they arrived, and one summary row per trace derived from them.

Span rows keep the whole OTLP span (ids as lowercase hex, times as integer nanoseconds, the
structured parts as JSON text) plus the few columns that lists and filters need. The narrow columns
come first and the JSON bodies last: SQLite stores a row in column order, so summaries and lists
that read only the narrow columns never touch the overflow pages holding the bodies.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connections, models, transaction

from tracing import conventions, search
from tracing.clauses import Clause

STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2
STATUS_NAMES = {STATUS_UNSET: "UNSET", STATUS_OK: "OK", STATUS_ERROR: "ERROR"}
STATUS_CODES = {name: code for code, name in STATUS_NAMES.items()}

KIND_NAMES = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}


def ns_to_datetime(ns: int | None) -> datetime | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def datetime_to_ns(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000) * 1000


class TimedRow:
    """What a trace and a span both show of their status and times (integer ns columns)."""

    status_code: int
    start_ns: int
    end_ns: int
    duration_ns: int

    @property
    def status(self) -> str:
        return STATUS_NAMES.get(self.status_code, "UNSET")

    @property
    def start_time(self) -> datetime | None:
        return ns_to_datetime(self.start_ns)

    @property
    def end_time(self) -> datetime | None:
        return ns_to_datetime(self.end_ns)

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6


# A keyset cursor: the sort column's value (an int, or a str for the name) and the trace id of the
# row a page starts or ends at.
Cursor = tuple[int | str, str]


@dataclass(frozen=True)
class TracePage:
    """One page of a keyset-paginated list, with the cursors of its neighbours (None at an end)."""

    rows: list[Trace]
    previous: Cursor | None
    next: Cursor | None
    # The ids of the first matches a walked first page read beyond its rows, for its cards
    # (studio.filters.TraceFilter.page); None when it read only its rows.
    first: list[str] | None = None


@dataclass(frozen=True)
class TraceStats:
    """Totals over every trace a filter matches: the overview's summary cards."""

    traces: int
    spans: int
    error_traces: int
    error_spans: int
    input_tokens: int
    output_tokens: int
    duration_p50_ns: int | None
    duration_p95_ns: int | None
    newest_start_ns: int | None
    # USD of the priced model calls (stored at ingest) and the model calls without a price.
    cost_usd: float = 0.0
    unpriced_spans: int = 0
    # True when the totals stop at a bound (a broad search): `traces` is then "at least".
    capped: bool = False


# The cards of no trace at all.
NO_TRACES = TraceStats(0, 0, 0, 0, 0, 0, None, None, None)


# What the cards read and what a filter walkable to its percentiles tests (see
# TraceQuerySet.stats). The indexes that sort by duration and cost and the ones that filter by
# service, status and project carry them all, so that the cards of such a filter read an index
# range or scan, never the wide trace rows (names, previews) one by one.
CARD_COLUMNS = [
    "duration_ns",
    "start_ns",
    "status_code",
    "span_count",
    "error_count",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "unpriced_spans",
    "service_name",
    "project",
]


def _carrying(*leading: str) -> list[str]:
    """An index's fields: `leading`, then every other card column."""
    names = {name.lstrip("-") for name in leading}
    return [*leading, *(name for name in CARD_COLUMNS if name not in names)]


# A filtered match bigger than this gets its percentiles by walking the duration index (about
# half of all traces stepped over, each a test of a few columns in the index) instead of sorting
# every match twice (n log n, and on PostgreSQL beyond work_mem, on disk). Below it, sorting the
# match (read through a covering index) costs less, at 100,000 traces.
WALK_PERCENTILES = 20_000

# PostgreSQL's planner cost of a random page read for the cards' statement (see stats()): the
# value customary where the data is in memory or on SSDs.
CARDS_RANDOM_PAGE_COST = 1.1

# Totals and exact nearest-rank percentiles (rank = ceil(p * n)) in one statement, in SQL that
# SQLite and PostgreSQL share. Filtered: the matching rows are materialized once, summed, and
# sorted for each pick. (No GROUP BY: it cost SQLite a temporary B-tree insert per match.)
_STATS_SQL = """
WITH f AS MATERIALIZED ({matching}), n AS MATERIALIZED (SELECT COUNT(*) AS n FROM f)
SELECT
    (SELECT n FROM n),
    COALESCE(SUM(span_count), 0),
    COALESCE(SUM(CASE WHEN status_code = 2 THEN 1 ELSE 0 END), 0),
    COALESCE(SUM(error_count), 0),
    COALESCE(SUM(input_tokens), 0),
    COALESCE(SUM(output_tokens), 0),
    MAX(start_ns),
    (SELECT duration_ns FROM f ORDER BY duration_ns LIMIT 1 OFFSET {p50_offset}),
    (SELECT duration_ns FROM f ORDER BY duration_ns DESC LIMIT 1 OFFSET {p95_offset}),
    COALESCE(SUM(cost_usd), 0),
    COALESCE(SUM(unpriced_spans), 0)
FROM f
"""
_P50_OFFSET = "(SELECT CASE WHEN n > 0 THEN (n + 1) / 2 - 1 ELSE 0 END FROM n)"
_P95_OFFSET = "(SELECT n - (n * 95 + 99) / 100 FROM n)"

# A filter on CARD_COLUMNS alone: the sums in one pass over the match (an index range
# or scan that covers them), nothing materialized but the totals; each percentile a second read
# of the match in duration order (`{up}` / `{down}`, ending in ORDER BY), sorted when it is
# small, and walked down the duration index when it is big (`{walk_up}` / `{walk_down}`). Both
# databases evaluate only the branch taken.
_WALKED_STATS_SQL = """
WITH n AS MATERIALIZED (
    SELECT
        COUNT(*) AS n,
        COALESCE(SUM(span_count), 0) AS span_count,
        COALESCE(SUM(CASE WHEN status_code = 2 THEN 1 ELSE 0 END), 0) AS error_traces,
        COALESCE(SUM(error_count), 0) AS error_count,
        COALESCE(SUM(input_tokens), 0) AS input_tokens,
        COALESCE(SUM(output_tokens), 0) AS output_tokens,
        MAX(start_ns) AS newest,
        COALESCE(SUM(cost_usd), 0) AS cost_usd,
        COALESCE(SUM(unpriced_spans), 0) AS unpriced_spans
    FROM ({matching}) AS m
)
SELECT
    n.n,
    n.span_count,
    n.error_traces,
    n.error_count,
    n.input_tokens,
    n.output_tokens,
    n.newest,
    CASE WHEN n.n > {walk_from}
        THEN ({walk_up} LIMIT 1 OFFSET {p50_offset})
        ELSE ({up} LIMIT 1 OFFSET {p50_offset}) END,
    CASE WHEN n.n > {walk_from}
        THEN ({walk_down} LIMIT 1 OFFSET {p95_offset})
        ELSE ({down} LIMIT 1 OFFSET {p95_offset}) END,
    n.cost_usd,
    n.unpriced_spans
FROM n
"""

# Unfiltered: the count, the error traces and the newest start come from indexes, the sums from
# one pass over the narrow cards index (never the wide trace rows), and the percentiles walk the
# duration index (p95 from its far end). A trace is ERROR exactly when it has an error span.
_ALL_STATS_SQL = """
WITH n AS MATERIALIZED (SELECT COUNT(*) AS n FROM {table})
SELECT
    n.n,
    sums.span_count,
    (SELECT COUNT(*) FROM {table} WHERE status_code = 2),
    sums.error_count,
    sums.input_tokens,
    sums.output_tokens,
    (SELECT MAX(start_ns) FROM {table}),
    (SELECT duration_ns FROM {table} ORDER BY duration_ns LIMIT 1 OFFSET (
        SELECT CASE WHEN n > 0 THEN (n + 1) / 2 - 1 ELSE 0 END FROM n)),
    (SELECT duration_ns FROM {table} ORDER BY duration_ns DESC LIMIT 1 OFFSET (
        SELECT n - (n * 95 + 99) / 100 FROM n)),
    sums.cost_usd,
    sums.unpriced_spans
FROM n, (
    SELECT
        COALESCE(SUM(span_count), 0) AS span_count,
        COALESCE(SUM(error_count), 0) AS error_count,
        COALESCE(SUM(input_tokens), 0) AS input_tokens,
        COALESCE(SUM(output_tokens), 0) AS output_tokens,
        COALESCE(SUM(cost_usd), 0) AS cost_usd,
        COALESCE(SUM(unpriced_spans), 0) AS unpriced_spans
    FROM {table}
) AS sums
"""

# Distinct services by skip-scan: one index seek per service instead of reading every row.
_SERVICES_SQL = """
WITH RECURSIVE s (name) AS (
    SELECT MIN(service_name) FROM {table}
    UNION ALL
    SELECT (SELECT MIN(service_name) FROM {table} WHERE service_name > s.name)
    FROM s WHERE s.name IS NOT NULL
)
SELECT name FROM s WHERE name IS NOT NULL LIMIT %s
"""

# Distinct projects the same way, on the (project, start) index.
_PROJECTS_SQL = _SERVICES_SQL.replace("service_name", "project")


def _trace_stats(row: tuple[Any, ...] | None, first: tuple[str, bool, int] | None) -> TraceStats:
    row = row or (0, 0, 0, 0, 0, 0, None, None, None, 0, 0)
    totals = [int(value) for value in row[:6]]
    newest, p50, p95 = (None if value is None else int(value) for value in row[6:9])
    return TraceStats(
        *totals,
        duration_p50_ns=p50,
        duration_p95_ns=p95,
        newest_start_ns=newest,
        cost_usd=float(row[9] or 0),
        unpriced_spans=int(row[10] or 0),
        capped=first is not None and totals[0] >= first[2],
    )


class TraceQuerySet(models.QuerySet["Trace"]):
    def matching(
        self,
        *,
        q: str = "",
        service: str = "",
        status: str = "",
        since_ns: int | None = None,
        until_ns: int | None = None,
        min_duration_ns: int | None = None,
        conversation_id: str = "",
        clauses: Sequence[Clause] = (),
        min_spans: int | None = None,
        max_spans: int | None = None,
        min_tokens: int | None = None,
        max_tokens: int | None = None,
        min_cost: float | None = None,
        max_cost: float | None = None,
        max_duration_ns: int | None = None,
        error_type: str = "",
        model: str = "",
        agent: str = "",
        project: str = "",
        broad_text: bool = False,
        broad_clauses: bool = False,
        walked_spans: Collection[str] = (),
    ) -> TraceQuerySet:
        """The overview's filters, shared by the page and the API. `q` is full text over every
        span of a trace (tracing.search), `clauses` attribute clauses that one span must all
        match; the span-level filters are semi-joins on partial span indexes. `broad_text`
        (search.is_broad) checks each trace's spans as the rows are read instead of collecting
        every match first: for a first page ordered by an index, of a word in many spans;
        `broad_clauses` (search.clauses_broad) the same for attribute clauses, and
        `walked_spans` names the span-level filters (SpanQuerySet.trace_filters) to check the same
        way, each trace's spans through the filter's partial index (SpanQuerySet.holds_widely)."""
        qs = self.filter(project=project) if project else self
        q = q.strip()
        if q:
            lowered = q.lower()
            # Every span's text holds its name and label (the display name is either), so the
            # root's are found there too: the search index drives the query, never a scan of
            # the trace rows.
            table = connections[self.db].ops.quote_name(self.model._meta.db_table)
            walk = search.text_exists(q, table, using=self.db) if broad_text else None
            text = None if walk is not None else search.text_trace_ids(q, using=self.db)
            if walk is not None:
                named = models.Q(walk)
            elif text is not None:
                named = search.trace_ids_filter(text, table)
            else:
                named = models.Q(name__icontains=q) | models.Q(label__icontains=q)
            if conventions.is_hex_id(lowered, 32):
                qs = qs.filter(models.Q(trace_id=lowered) | named)
            else:
                qs = qs.filter(named)
        if clauses and broad_clauses:
            table = connections[self.db].ops.quote_name(self.model._meta.db_table)
            qs = qs.filter(search.clauses_exist(clauses, table, using=self.db))
        elif clauses:
            table = connections[self.db].ops.quote_name(self.model._meta.db_table)
            found = search.clause_trace_ids(clauses, using=self.db)
            if found is not None:
                qs = qs.filter(search.trace_ids_filter(found, table))
        if min_spans is not None:
            qs = qs.filter(span_count__gte=min_spans)
        if max_spans is not None:
            qs = qs.filter(span_count__lte=max_spans)
        if min_tokens is not None:
            qs = qs.filter(total_tokens__gte=min_tokens)
        if max_tokens is not None:
            qs = qs.filter(total_tokens__lte=max_tokens)
        if min_cost is not None:
            qs = qs.filter(cost_usd__gte=min_cost)
        if max_cost is not None:
            qs = qs.filter(cost_usd__lte=max_cost)
        if max_duration_ns is not None:
            qs = qs.filter(duration_ns__lte=max_duration_ns)
        filtered = Span.objects.using(self.db).trace_filters(
            error_type=error_type, model=model, agent=agent
        )
        for name, spans in filtered.items():
            if name in walked_spans:
                qs = qs.filter(models.Exists(spans.filter(trace_id=models.OuterRef("trace_id"))))
            else:
                qs = qs.filter(trace_id__in=spans.values("trace_id"))
        if service:
            qs = qs.filter(service_name=service)
        if status:
            qs = qs.filter(status_code=STATUS_CODES[status.upper()])
        if since_ns is not None:
            qs = qs.filter(start_ns__gte=since_ns)
        if until_ns is not None:
            qs = qs.filter(start_ns__lt=until_ns)
        if min_duration_ns is not None:
            qs = qs.filter(duration_ns__gte=min_duration_ns)
        if conversation_id:
            qs = qs.filter(conversation_id=conversation_id)
        return qs

    def keyset_page(
        self,
        field: str,
        *,
        descending: bool = True,
        after: Cursor | None = None,
        before: Cursor | None = None,
        offset: int = 0,
        size: int = 50,
    ) -> TracePage:
        """The `size` rows ordered by (`field`, trace_id) that follow the cursor `after` (or,
        with `before`, precede it). Pages stay put while new traces arrive, and every page,
        however deep, is one index seek: `field <= value` is a range the index can start from,
        and the OR only breaks ties. Without a cursor, `offset` rows are skipped first (for API
        clients that count rows; their next and previous pages have cursors)."""
        backwards = before is not None
        cursor = before if backwards else after
        walk_descending = descending != backwards
        rows_qs = self
        if cursor is not None:
            value, trace_id = cursor
            if walk_descending:
                rows_qs = rows_qs.filter(
                    models.Q(**{f"{field}__lte": value}),
                    models.Q(**{f"{field}__lt": value}) | models.Q(trace_id__lt=trace_id),
                )
            else:
                rows_qs = rows_qs.filter(
                    models.Q(**{f"{field}__gte": value}),
                    models.Q(**{f"{field}__gt": value}) | models.Q(trace_id__gt=trace_id),
                )
        else:
            offset = max(offset, 0)
        prefix = "-" if walk_descending else ""
        ordered = rows_qs.order_by(f"{prefix}{field}", f"{prefix}trace_id")
        rows = list(ordered[offset : offset + size + 1] if cursor is None else ordered[: size + 1])
        more = len(rows) > size
        del rows[size:]
        if backwards:
            rows.reverse()
            has_previous, has_next = more, True
        else:
            has_previous, has_next = cursor is not None or offset > 0, more
        if not rows:
            return TracePage(rows, None, None)
        first, last = rows[0], rows[-1]
        return TracePage(
            rows,
            (getattr(first, field), first.trace_id) if has_previous else None,
            (getattr(last, field), last.trace_id) if has_next else None,
        )

    def stats(self, first: tuple[str, bool, int] | None = None, walk: bool = False) -> TraceStats:
        """Counts, tokens and exact duration p50/p95 of the matched traces, in one statement.
        With `first` (field, descending, n), of the first n in that order only (a broad search,
        whose every match would take a walk over every trace): `capped` if n were found. `walk`
        says the filter tests CARD_COLUMNS only: a big match's percentiles are then found by
        walking the duration index, which carries them."""
        connection = connections[self.db]
        table = connection.ops.quote_name(self.model._meta.db_table)
        if not self.query.where:
            with connection.cursor() as cursor:
                cursor.execute(_ALL_STATS_SQL.format(table=table))
                return _trace_stats(cursor.fetchone(), None)
        columns = ("duration_ns", "span_count", "error_count", "status_code")
        columns += ("input_tokens", "output_tokens", "start_ns", "cost_usd", "unpriced_spans")
        rows = self.order_by()
        if first is not None:
            field, descending, _ = first
            prefix = "-" if descending else ""
            rows = self.order_by(f"{prefix}{field}", f"{prefix}trace_id")
        values = rows.values(*columns)
        if first is not None:
            values = values[: first[2]]
        matching, params = values.query.sql_with_params()
        offsets = {"p50_offset": _P50_OFFSET, "p95_offset": _P95_OFFSET}
        if walk and first is None:
            up, up_params = self._durations("duration_ns")
            down, down_params = self._durations("-duration_ns")
            walk_up, walk_down = up, down
            if connection.vendor == "sqlite":
                # Its planner would rather read the filter's own index and sort the match.
                indexed = f"FROM {table} INDEXED BY trace_duration_cards_idx"
                walk_up = up.replace(f"FROM {table}", indexed, 1)
                walk_down = down.replace(f"FROM {table}", indexed, 1)
            sql = _WALKED_STATS_SQL.format(
                matching=matching,
                walk_from=WALK_PERCENTILES,
                walk_up=walk_up,
                up=up,
                walk_down=walk_down,
                down=down,
                **offsets,
            )
            params = (*params, *up_params, *up_params, *down_params, *down_params)
        else:
            sql = _STATS_SQL.format(matching=matching, **offsets)
        postgresql = connection.vendor == "postgresql"
        # On PostgreSQL in a transaction of its own, for the planner settings below (no
        # savepoint inside a caller's: they then last until its end).
        own = transaction.atomic(using=self.db, savepoint=False) if postgresql else nullcontext()
        with own, connection.cursor() as cursor:
            if postgresql:
                # The sums read a covering index (CARD_COLUMNS): at the default
                # random_page_cost (4, for disks that seek) the planner reads the wide table
                # instead once a filter holds on a third of the traces or more, twice as slow
                # with the table in memory (`min_cost` at 100,000 traces: 43-47 ms against
                # 20-22), and in parallel workers, whose CPU the pages and ingest then lack.
                cursor.execute(
                    "SELECT set_config('random_page_cost', %s, true), "
                    "set_config('max_parallel_workers_per_gather', '0', true)",
                    [str(CARDS_RANDOM_PAGE_COST)],
                )
            cursor.execute(sql, params)
            return _trace_stats(cursor.fetchone(), first)

    def _durations(self, order: str) -> tuple[str, tuple[Any, ...]]:
        """The matched durations in `order`, as SQL ending in its ORDER BY."""
        sql, params = self.order_by(order).values("duration_ns").query.sql_with_params()
        return sql, tuple(params)

    def service_names(self, limit: int = 500) -> list[str]:
        """Every service of every trace (at most `limit`), sorted, whatever this queryset filters:
        one index seek per service however many traces there are."""
        connection = connections[self.db]
        table = connection.ops.quote_name(self.model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(_SERVICES_SQL.format(table=table), [limit])
            return [name for (name,) in cursor.fetchall()]

    def project_names(self, limit: int = 1000) -> list[str]:
        """Every trace's project (at most `limit`), sorted, by skip-scan like service_names."""
        connection = connections[self.db]
        table = connection.ops.quote_name(self.model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(_PROJECTS_SQL.format(table=table), [limit])
            return [name for (name,) in cursor.fetchall()]

    def delete_with_spans(self) -> int:
        """Delete these traces and every span of theirs; returns how many traces went."""
        ids = list(self.values_list("trace_id", flat=True))
        with transaction.atomic(using=self.db):
            if ids and connections[self.db].vendor == "postgresql":
                from tracing import retention  # which imports these models

                with connections[self.db].cursor() as cursor:
                    retention.lock_traces(cursor, ids)
            Span.objects.using(self.db).filter(trace_id__in=ids).delete()
            deleted, _ = self.model.objects.using(self.db).filter(trace_id__in=ids).delete()
        return deleted


class Trace(TimedRow, models.Model):
    """The summary of a trace, recomputed from its spans after every batch that touches it."""

    trace_id = models.CharField(max_length=32, primary_key=True)
    name = models.TextField(default="")
    root_span_id = models.CharField(max_length=16, default="")
    # False until the span without a parent arrives; until then `name` is the earliest span's.
    has_root = models.BooleanField(default=False)
    span_type = models.CharField(max_length=16, default="")
    service_name = models.TextField(default="")
    start_ns = models.BigIntegerField()
    end_ns = models.BigIntegerField()
    duration_ns = models.BigIntegerField()
    span_count = models.IntegerField(default=0)
    error_count = models.IntegerField(default=0)
    status_code = models.SmallIntegerField(default=STATUS_UNSET)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    conversation_id = models.TextField(default="")
    input_preview = models.TextField(default="")
    # The root span's label (see conventions.label) and the start of its final answer.
    label = models.TextField(default="")
    output_preview = models.TextField(default="")
    # Set when the trace is first stored and kept (see tracing.projects).
    project = models.TextField(default=conventions.DEFAULT_PROJECT)
    # USD of its priced model calls (Span.cost_usd summed at ingest; 0 when none), and how many
    # model calls had no price (as tracing.costs.total counts them). Nullable only so that
    # adding them alters the table in place; the writer always sets both, and the migration
    # filled the older rows.
    cost_usd = models.FloatField(null=True, blank=True)
    unpriced_spans = models.IntegerField(null=True, blank=True)

    objects = TraceQuerySet.as_manager()
    # Where a search matched in this trace, set by the overview; a class default, because the
    # template's lookup of an attribute an instance lacks costs a dir() of the model per row.
    snippet: search.Snippet | None = None

    class Meta:
        indexes = [
            models.Index(fields=["-start_ns", "-trace_id"], name="trace_start_idx"),
            models.Index(
                fields=_carrying("service_name", "-start_ns"), name="trace_service_cards_idx"
            ),
            models.Index(
                fields=_carrying("status_code", "-start_ns"), name="trace_status_cards_idx"
            ),
            # Sorting by duration, and the walk to a big match's exact percentiles.
            models.Index(
                fields=_carrying("-duration_ns", "-trace_id"), name="trace_duration_cards_idx"
            ),
            models.Index(fields=["-span_count", "-trace_id"], name="trace_span_count_idx"),
            models.Index(fields=["-total_tokens", "-trace_id"], name="trace_tokens_idx"),
            models.Index(fields=_carrying("-cost_usd", "-trace_id"), name="trace_cost_cards_idx"),
            models.Index(fields=["conversation_id", "start_ns"], name="trace_conversation_idx"),
            # A project's overview, newest first, and the list of projects by skip-scan.
            models.Index(
                fields=_carrying("project", "-start_ns", "-trace_id"),
                name="trace_project_cards_idx",
            ),
            # Covers the overview's cards: sums and counts over a time range (or everything)
            # read this narrow index instead of the trace rows with their names and previews.
            models.Index(
                fields=[
                    "start_ns",
                    "duration_ns",
                    "span_count",
                    "error_count",
                    "status_code",
                    "input_tokens",
                    "output_tokens",
                    "cost_usd",
                    "unpriced_spans",
                ],
                name="trace_cards_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.trace_id})"

    @property
    def display_name(self) -> str:
        return conventions.display_name(self.name, self.label)

    @property
    def cost(self) -> float | None:
        """What the API and pages show (tracing.costs.total's rule): None when there were model
        calls and none had a price, never a misleading 0."""
        if self.unpriced_spans and not self.cost_usd:
            return None
        return self.cost_usd or 0.0


# Where a walk through a trace's spans in start order stands: the last span's (start_ns, span_id).
SpanCursor = tuple[int, str]


# A span-level trace filter that holds on at least this many spans is checked trace by trace in
# the page's order (a page of 50 then costs about 50 * traces / matches index probes), instead of
# collecting every matching trace and sorting them (one probe and row read per match).
WALK_SPANS = 2000


class SpanQuerySet(models.QuerySet["Span"]):
    def trace_filters(
        self, *, error_type: str = "", model: str = "", agent: str = ""
    ) -> dict[str, SpanQuerySet]:
        """The spans each given span-level trace filter asks for (a trace matches when it has
        one), each answered by its partial index (span_error_type_idx, span_model_idx,
        span_agent_idx)."""
        found: dict[str, SpanQuerySet] = {}
        if error_type:
            found["error_type"] = self.filter(status_code=STATUS_ERROR, span_type=error_type)
        if model:
            found["model"] = self.filter(model=model).exclude(model="")
        if agent:
            found["agent"] = self.filter(span_type=conventions.AGENT, label=agent)
        return found

    def holds_widely(self) -> bool:
        """True if at least WALK_SPANS spans match: a bounded read of a partial index."""
        return self.order_by()[:WALK_SPANS].count() >= WALK_SPANS

    def for_trace(self, trace_id: str) -> SpanQuerySet:
        return self.filter(trace_id=trace_id).order_by("start_ns", "span_id")

    def after(self, cursor: SpanCursor | None) -> SpanQuerySet:
        """The spans that follow `cursor` in (start_ns, span_id) order. `start_ns >= value` is a
        range the (trace_id, start_ns, span_id) index starts from; the OR only breaks ties, so
        every page of a trace, however deep, is one index seek."""
        if cursor is None:
            return self
        start_ns, span_id = cursor
        return self.filter(
            models.Q(start_ns__gte=start_ns),
            models.Q(start_ns__gt=start_ns) | models.Q(span_id__gt=span_id),
        )


class Span(TimedRow, models.Model):
    id = models.BigAutoField(primary_key=True)
    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, default="", blank=True)
    start_ns = models.BigIntegerField()
    end_ns = models.BigIntegerField()
    kind = models.SmallIntegerField(default=0)
    status_code = models.SmallIntegerField(default=STATUS_UNSET)
    span_type = models.CharField(max_length=16, default="")
    operation = models.CharField(max_length=64, default="")
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    flags = models.BigIntegerField(default=0)
    dropped_attributes_count = models.IntegerField(default=0)
    dropped_events_count = models.IntegerField(default=0)
    dropped_links_count = models.IntegerField(default=0)
    name = models.TextField(default="")
    service_name = models.TextField(default="")
    model = models.TextField(default="")
    label = models.TextField(default="")
    conversation_id = models.TextField(default="")
    input_preview = models.TextField(default="")
    status_message = models.TextField(default="")
    trace_state = models.TextField(default="")
    # JSON documents, kept as text: written once by the writer, parsed only when shown.
    attributes_json = models.TextField(default="{}")
    events_json = models.TextField(default="[]")
    links_json = models.TextField(default="[]")
    resource_json = models.TextField(default="{}")
    scope_json = models.TextField(default="{}")
    # The project the span claimed when it arrived (its key's or its resource's); the trace's
    # project is that of the spans that created it. Nullable only so that adding it alters the
    # table in place: SQLite would otherwise rebuild it, dropping the search index's triggers.
    project = models.TextField(null=True, blank=True)  # noqa: DJ001
    # A model call's USD at the prices in force when it was written (`manage.py reprice` redoes
    # it); NULL: not a model call, or no price for its model. Nullable, so added in place.
    cost_usd = models.FloatField(null=True, blank=True)

    objects = SpanQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["trace_id", "span_id"], name="span_trace_span_uniq"),
        ]
        indexes = [
            # A trace's spans in start order without a sort (the API's keyset pages, the chunks the
            # trace detail streams), and its tree order, first span and services from this index
            # alone: without it, they read every span's row with its JSON bodies.
            models.Index(
                fields=["trace_id", "start_ns", "span_id", "parent_span_id", "service_name"],
                name="span_tree_idx",
            ),
            # The overview's span-level trace filters (an error span of a kind, a model, an
            # agent): partial, so only the few spans they can match are indexed at ingest.
            models.Index(
                fields=["span_type", "trace_id"],
                name="span_error_type_idx",
                condition=models.Q(status_code=STATUS_ERROR),
            ),
            models.Index(
                fields=["model", "trace_id"], name="span_model_idx", condition=~models.Q(model="")
            ),
            models.Index(
                fields=["label", "trace_id"],
                name="span_agent_idx",
                condition=models.Q(span_type="agent"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.trace_id}/{self.span_id})"

    @property
    def attributes(self) -> dict[str, Any]:
        return json.loads(self.attributes_json)

    @property
    def events(self) -> list[dict[str, Any]]:
        return json.loads(self.events_json)

    @property
    def links(self) -> list[dict[str, Any]]:
        return json.loads(self.links_json)

    @property
    def resource(self) -> dict[str, Any]:
        return json.loads(self.resource_json)

    @property
    def scope(self) -> dict[str, Any]:
        return json.loads(self.scope_json)

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, "UNSPECIFIED")

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def type_label(self) -> str:
        return self.span_type or conventions.OTHER

    @property
    def display_name(self) -> str:
        return conventions.display_name(self.name, self.label)


class TraceTotal(models.Model):
    """What a project's traces add up to, split by duration bucket (tracing.totals): the
    overview's cards over all time without reading every trace. Triggers on tracing_trace keep
    it, whichever statement changes a trace (the writer, a delete, a purge, a reprice). A
    project's totals are the sum of its rows: one per bucket on SQLite, updated in place; on
    PostgreSQL each statement appends rows (no two writers wait on one row) that the serving
    processes fold together now and then (tracing.totals.compact)."""

    project = models.TextField()
    bucket = models.IntegerField()
    traces = models.BigIntegerField(default=0)
    spans = models.BigIntegerField(default=0)
    error_traces = models.BigIntegerField(default=0)
    error_spans = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0)
    unpriced_spans = models.BigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["project", "bucket"], name="trace_total_bucket_idx")]

    def __str__(self) -> str:
        return f"{self.project} {self.bucket}"


class ProjectRetention(models.Model):
    """A project's own retention policy, set by an admin on the project's page (tracing.retention
    reads it). A field left blank (NULL) keeps the global default; a project without a row keeps
    the global policy, its traces counted under the global cap with every such project's."""

    # Projects have no table of their own (studio.projects): the name is the key.
    project = models.TextField(primary_key=True)
    days = models.PositiveIntegerField(null=True, blank=True)
    max_spans = models.PositiveBigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return self.project
