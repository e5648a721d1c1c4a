"""The overview's charts: what the matched traces did over time, from their summary rows only.

Per time bucket: traces, error traces, exact nearest-rank p50 and p95 duration, tokens and cost;
and the points of the scatter of duration against start (Jaeger's), at most MAX_POINTS of them:
the slowest of each bucket, so the outliers a scatter is for are always drawn. One statement
(plus one for the time range when the filter leaves it open), in SQL that SQLite and PostgreSQL
share: the matched rows are numbered by duration within their bucket once, and both the
percentiles and the points are picked from that numbering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connections
from django.db.models import Max, Min, QuerySet

# Bucket widths a chart's axis reads well in, in seconds.
INTERVALS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600,
    12 * 3600, 86400, 2 * 86400, 7 * 86400, 30 * 86400, 365 * 86400,
)  # fmt: skip
MAX_BUCKETS = 120
MAX_POINTS = 2000
SECOND = 1_000_000_000

_TIMELINE_SQL = """
WITH f AS MATERIALIZED (
    SELECT (m.start_ns - %s) / %s AS b, m.start_ns, m.duration_ns, m.status_code,
        m.total_tokens, m.cost_usd, m.trace_id
    FROM ({matching}) m
), r AS MATERIALIZED (
    SELECT f.*,
        ROW_NUMBER() OVER (PARTITION BY b ORDER BY duration_ns) AS rn,
        COUNT(*) OVER (PARTITION BY b) AS n
    FROM f
)
SELECT 0, b, COUNT(*), SUM(CASE WHEN status_code = 2 THEN 1 ELSE 0 END),
    COALESCE(SUM(total_tokens), 0), COALESCE(SUM(cost_usd), 0),
    MAX(CASE WHEN rn = (n + 1) / 2 THEN duration_ns END),
    MAX(CASE WHEN rn = (n * 95 + 99) / 100 THEN duration_ns END),
    CAST(NULL AS TEXT)
FROM r GROUP BY b
UNION ALL
SELECT 1, b, start_ns, duration_ns, status_code, cost_usd, NULL, NULL, trace_id
FROM r WHERE n - rn < %s
"""


@dataclass
class Timeline:
    """Columns, as a chart library takes them: bucket i starts at `start_ns + i * bucket_ns`."""

    start_ns: int
    end_ns: int
    bucket_ns: int
    traces: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    p50_ns: list[int | None] = field(default_factory=list)
    p95_ns: list[int | None] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    cost_usd: list[float] = field(default_factory=list)
    # The scatter, by start: (start_ns, duration_ns, trace_id, is_error).
    points: list[tuple[int, int, str, bool]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(self.traces)

    @property
    def sampled(self) -> bool:
        """True when the scatter holds only the slowest traces of busy buckets."""
        return len(self.points) < self.count


def bucket_for(span_ns: int) -> int:
    """The narrowest readable bucket that cuts `span_ns` into at most MAX_BUCKETS."""
    for seconds in INTERVALS:
        if span_ns <= seconds * SECOND * MAX_BUCKETS:
            return seconds * SECOND
    return INTERVALS[-1] * SECOND


def timeline(traces: QuerySet, since_ns: int | None, until_ns: int | None) -> Timeline:
    """The charts of `traces` (a filtered Trace queryset, possibly sliced) between since and
    until; an open end is the matched traces' first or last start."""
    if since_ns is None or until_ns is None:
        bounds = traces.order_by().aggregate(first=Min("start_ns"), last=Max("start_ns"))
        if bounds["first"] is None:
            now = until_ns or since_ns or 0
            return Timeline(now, now, SECOND)
        since_ns = bounds["first"] if since_ns is None else since_ns
        until_ns = bounds["last"] + 1 if until_ns is None else until_ns
    bucket_ns = bucket_for(max(until_ns - since_ns, 1))
    start_ns = since_ns - since_ns % bucket_ns
    buckets = max(1, -(-(until_ns - start_ns) // bucket_ns))
    result = Timeline(start_ns, start_ns + buckets * bucket_ns, bucket_ns)
    result.traces = [0] * buckets
    result.errors = [0] * buckets
    result.p50_ns = [None] * buckets
    result.p95_ns = [None] * buckets
    result.tokens = [0] * buckets
    result.cost_usd = [0.0] * buckets
    columns = ("start_ns", "duration_ns", "status_code", "total_tokens", "cost_usd", "trace_id")
    matching, params = traces.values(*columns).query.sql_with_params()
    per_bucket = -(-MAX_POINTS // buckets)
    connection = connections[traces.db]
    with connection.cursor() as cursor:
        cursor.execute(
            _TIMELINE_SQL.format(matching=matching),
            [start_ns, bucket_ns, *params, per_bucket],
        )
        rows = cursor.fetchall()
    points = []
    for kind, b, c1, c2, c3, c4, c5, c6, trace_id in rows:
        if not 0 <= b < buckets:
            continue  # a trace outside the window the filter gave (none, unless it is open)
        if kind == 0:
            result.traces[b] = int(c1)
            result.errors[b] = int(c2)
            result.tokens[b] = int(c3)
            result.cost_usd[b] = float(c4 or 0)
            result.p50_ns[b] = None if c5 is None else int(c5)
            result.p95_ns[b] = None if c6 is None else int(c6)
        else:
            points.append((int(c1), int(c2), trace_id, int(c3) == 2))
    points.sort()
    result.points = points
    return result
