"""The overview's charts: what the matched traces did over time, from their summary rows only.

Per time bucket: traces, error traces, p50 and p95 duration, tokens and cost; and the points of
the scatter of duration against start (Jaeger's). Window functions (an exact percentile per
bucket) cost a sort of every matched row, several times the budget at 100,000 traces on SQLite,
so the durations are counted into a histogram instead: GROUP BY bucket and the duration's first
two significant digits (integer arithmetic only), and the percentiles are read from it to within
5 % (the cards above the charts keep the exact ones). Both passes read the covering cards index,
never the trace rows. The scatter holds a uniform sample of the matched traces (trace ids are
random: those below a cut-off, read from the primary key's index), at most SAMPLE, plus the
SLOWEST slowest, so the outliers a scatter is for are always drawn.
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
SAMPLE = 1500
SLOWEST = 500
SECOND = 1_000_000_000

# A duration's class: k * 100 + its first two digits, k being its digits less two (exact below
# 100 ns). Bucket and class in one integer key, which groups faster than two columns.
_CLASS = (
    "CASE "
    + " ".join(
        f"WHEN m.duration_ns < {10 ** (k + 2)} THEN {k * 100} + m.duration_ns / {10**k}"
        for k in range(17)
    )
    + " ELSE 1699 END"
)
CLASSES = 10_000

_SUMS_SQL = """
SELECT (m.start_ns - %s) / %s, COUNT(*), SUM(CASE WHEN m.status_code = 2 THEN 1 ELSE 0 END),
    COALESCE(SUM(m.input_tokens + m.output_tokens), 0), COALESCE(SUM(m.cost_usd), 0)
FROM ({matching}) m
GROUP BY 1
"""

_HISTOGRAM_SQL = f"""
SELECT ((m.start_ns - %s) / %s) * {CLASSES} + {_CLASS}, COUNT(*)
FROM ({{matching}}) m
GROUP BY 1
"""

_POINTS_SQL = """
SELECT m.start_ns, m.duration_ns, m.status_code, m.trace_id FROM ({matching}) m {sample}
UNION
SELECT s.start_ns, s.duration_ns, s.status_code, s.trace_id FROM (
    SELECT m.start_ns, m.duration_ns, m.status_code, m.trace_id FROM ({matching}) m
    ORDER BY m.duration_ns DESC LIMIT %s
) s
"""


def class_value(duration_class: int) -> int:
    """The middle of a histogram class, in ns."""
    k, leading = divmod(duration_class, 100)
    if k == 0:
        return leading
    width = 10**k
    return leading * width + width // 2


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
        """True when the scatter holds a sample of the traces (and the slowest)."""
        return len(self.points) < self.count


def bucket_for(span_ns: int) -> int:
    """The narrowest readable bucket that cuts `span_ns` into at most MAX_BUCKETS."""
    for seconds in INTERVALS:
        if span_ns <= seconds * SECOND * MAX_BUCKETS:
            return seconds * SECOND
    return INTERVALS[-1] * SECOND


def timeline(traces: QuerySet, since_ns: int | None, until_ns: int | None) -> Timeline:
    """The charts of `traces` (a filtered Trace queryset, possibly sliced) between since and
    until; an open end is the matched traces' first or last start. Three statements (four
    with an open end)."""
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
    result.tokens = [0] * buckets
    result.cost_usd = [0.0] * buckets
    columns = ("start_ns", "duration_ns", "status_code", "input_tokens", "output_tokens")
    matching, params = traces.values(*columns, "cost_usd").query.sql_with_params()
    connection = connections[traces.db]
    with connection.cursor() as cursor:
        cursor.execute(_SUMS_SQL.format(matching=matching), [start_ns, bucket_ns, *params])
        sums = cursor.fetchall()
        cursor.execute(_HISTOGRAM_SQL.format(matching=matching), [start_ns, bucket_ns, *params])
        counted = cursor.fetchall()
    for b, count, errors, tokens, cost in sums:
        if 0 <= b < buckets:  # none outside the window, unless the filter left it open
            result.traces[b] = int(count)
            result.errors[b] = int(errors)
            result.tokens[b] = int(tokens)
            result.cost_usd[b] = float(cost or 0)
    classes: list[list[tuple[int, int]]] = [[] for _ in range(buckets)]
    for key, count in counted:
        b, duration_class = divmod(int(key), CLASSES)
        if 0 <= b < buckets:
            classes[b].append((duration_class, int(count)))
    result.p50_ns = [_percentile(histogram, 50) for histogram in classes]
    result.p95_ns = [_percentile(histogram, 95) for histogram in classes]
    total = result.count
    if not total:
        return result
    sample = ""
    if total > SAMPLE:
        # Trace ids are random: those below this cut-off are a uniform sample.
        sample = "WHERE m.trace_id < %s"
    cut = [f"{SAMPLE * 16**8 // total:08x}"] if sample else []
    point_columns = ("start_ns", "duration_ns", "status_code", "trace_id")
    matching, params = traces.values(*point_columns).query.sql_with_params()
    points_sql = _POINTS_SQL.format(matching=matching, sample=sample)
    with connection.cursor() as cursor:
        cursor.execute(points_sql, [*params, *cut, *params, SLOWEST])
        found = cursor.fetchall()
    result.points = sorted(
        (int(start), int(duration), trace_id, int(status) == 2)
        for start, duration, status, trace_id in found
        if start_ns <= start < result.end_ns
    )
    return result


def _percentile(histogram: list[tuple[int, int]], percent: int) -> int | None:
    """Nearest rank (ceil(p * n)) over a histogram of duration classes."""
    n = sum(count for _, count in histogram)
    if not n:
        return None
    rank = (n * percent + 99) // 100
    seen = 0
    for duration_class, count in sorted(histogram):
        seen += count
        if seen >= rank:
            return class_value(duration_class)
    return None
