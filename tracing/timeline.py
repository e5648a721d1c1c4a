"""The overview's charts: what the matched traces did over time, from their summary rows only.

Per time bucket: traces, error traces, exact nearest-rank p50 and p95 duration, tokens and cost;
and the points of the scatter of duration against start (Jaeger's). SQLite cannot group by an
expression of the start without sorting every matched row (nor can window functions number them
without one), several times the budget at 100,000 traces; so each bucket is its own range of the
covering cards index (start, duration, ...): one correlated subquery per bucket sums it, and with
those counts one statement picks each bucket's two percentiles by ORDER BY duration LIMIT 1
OFFSET rank, a sort of that bucket's rows only (bounded from the far end for p95). The scatter
holds a uniform sample of the matched traces (trace ids are random: those below a cut-off, read
from the primary key's index), at most SAMPLE, plus the SLOWEST slowest, so the outliers a
scatter is for are always drawn. Three statements, four when the range is open-ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connections
from django.db.models import QuerySet

# Bucket widths a chart's axis reads well in, in seconds.
INTERVALS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600,
    12 * 3600, 86400, 2 * 86400, 7 * 86400, 30 * 86400, 365 * 86400,
)  # fmt: skip
MAX_BUCKETS = 120
SAMPLE = 1500
SLOWEST = 500
SECOND = 1_000_000_000

# Bucket i is [start + i * width, start + (i + 1) * width), the first and the last clipped to the
# window: the window is these bounds only, as a second lower bound on the start would make SQLite
# seek from the window's start for every bucket. The sums come back as one text per bucket: a
# scalar subquery returns one value.
_IN_BUCKET = (
    "m.start_ns >= CASE WHEN c.i = 0 THEN CAST(%s AS BIGINT) "
    "ELSE CAST(%s AS BIGINT) + c.i * CAST(%s AS BIGINT) END "
    "AND m.start_ns < CASE WHEN c.i = %s THEN CAST(%s AS BIGINT) "
    "ELSE CAST(%s AS BIGINT) + (c.i + 1) * CAST(%s AS BIGINT) END"
)
_SUMS_SQL = f"""
WITH RECURSIVE c (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < %s)
SELECT c.i, (
    SELECT COUNT(*) || ' ' || COALESCE(SUM(CASE WHEN m.status_code = 2 THEN 1 ELSE 0 END), 0)
        || ' ' || COALESCE(SUM(m.input_tokens + m.output_tokens), 0)
        || ' ' || COALESCE(SUM(m.cost_usd), 0)
    FROM ({{matching}}) m WHERE {_IN_BUCKET}
) FROM c
"""
# `+duration_ns`: not the duration index, whose order would walk every bucket's rows to find
# this one's; the bucket's range of the cards index, then a sort of its rows.
_PERCENTILE_SQL = (
    "(SELECT m.duration_ns FROM ({matching}) m "
    "WHERE m.start_ns >= %s AND m.start_ns < %s ORDER BY +m.duration_ns {order} LIMIT 1 OFFSET %s)"
)

# Many matches: a sample by trace id from the primary key's index, and the slowest from the
# duration index. `+start_ns`: the window is checked on those rows, not used as an index range
# (which would read every row in it for its trace id).
_POINTS_SQL = """
SELECT m.start_ns, m.duration_ns, m.status_code, m.trace_id FROM ({matching}) m
WHERE +m.start_ns >= %s AND +m.start_ns < %s AND m.trace_id >= %s AND m.trace_id < %s
UNION
SELECT s.start_ns, s.duration_ns, s.status_code, s.trace_id FROM (
    SELECT m.start_ns, m.duration_ns, m.status_code, m.trace_id FROM ({matching}) m
    WHERE +m.start_ns >= %s AND +m.start_ns < %s ORDER BY m.duration_ns DESC LIMIT %s
) s
"""


# A scatter point: start_ns, duration_ns, trace_id, is_error.
Point = tuple[int, int, str, bool]


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
    # The scatter, by start.
    points: list[Point] = field(default_factory=list)

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
    """The charts of `traces` (a filtered Trace queryset, without the time window: it is
    `since_ns`, `until_ns`) over that window; an open end is the matched traces' first or last
    start. A sliced queryset (a broad search's first matches, window applied) is read whole and
    counted here."""
    if since_ns is None or until_ns is None:
        first, last = _bounds(traces)
        if first is None or last is None:
            now = until_ns or since_ns or 0
            return Timeline(now, now, SECOND)
        since_ns = first if since_ns is None else since_ns
        until_ns = last + 1 if until_ns is None else until_ns
    bucket_ns = bucket_for(max(until_ns - since_ns, 1))
    start_ns = since_ns - since_ns % bucket_ns
    buckets = max(1, -(-(until_ns - start_ns) // bucket_ns))
    result = Timeline(start_ns, start_ns + buckets * bucket_ns, bucket_ns)
    if traces.query.is_sliced:
        return _counted(result, buckets, traces)
    columns = ("start_ns", "duration_ns", "status_code", "input_tokens", "output_tokens")
    matching, params = traces.values(*columns, "cost_usd").query.sql_with_params()
    connection = connections[traces.db]
    window = [since_ns, start_ns, bucket_ns, buckets - 1, until_ns, start_ns, bucket_ns]
    with connection.cursor() as cursor:
        cursor.execute(_SUMS_SQL.format(matching=matching), [buckets - 1, *params, *window])
        sums = sorted(cursor.fetchall())
    result.traces = [0] * buckets
    result.errors = [0] * buckets
    result.tokens = [0] * buckets
    result.cost_usd = [0.0] * buckets
    result.p50_ns = [None] * buckets
    result.p95_ns = [None] * buckets
    for b, packed in sums:
        count, errors, tokens, cost = (packed or "0 0 0 0").split()
        result.traces[b] = int(count)
        result.errors[b] = int(float(errors))
        result.tokens[b] = int(float(tokens))
        result.cost_usd[b] = float(cost)
    if not result.count:
        return result
    picks, pick_params = [], []
    matching, params = traces.values("start_ns", "duration_ns").query.sql_with_params()
    for b, n in enumerate(result.traces):
        if not n:
            continue
        low = max(start_ns + b * bucket_ns, since_ns)
        high = min(start_ns + (b + 1) * bucket_ns, until_ns)
        for rank, order in (((n + 1) // 2 - 1, ""), (n - (n * 95 + 99) // 100, "DESC")):
            picks.append(_PERCENTILE_SQL.format(matching=matching, order=order))
            pick_params += [*params, low, high, rank]
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(picks), pick_params)
        picked = iter(cursor.fetchone())
    for b, n in enumerate(result.traces):
        if n:
            result.p50_ns[b], result.p95_ns[b] = next(picked), next(picked)
    result.points = _points(traces, since_ns, until_ns, result.count)
    return result


def _points(traces: QuerySet, since_ns: int, until_ns: int, count: int) -> list[Point]:
    """The scatter: every match, or a uniform sample of SAMPLE (trace ids are random: those
    below a cut-off) and the SLOWEST slowest. One statement."""
    cut = f"{SAMPLE * 16**8 // count:08x}" if count > SAMPLE else "g"
    columns = ("start_ns", "duration_ns", "status_code", "trace_id")
    if count <= 4 * SAMPLE:
        # Few enough to read (by whatever index the filter has) and sample here.
        windowed = traces.filter(start_ns__gte=since_ns, start_ns__lt=until_ns)
        rows = list(windowed.values_list(*columns))
        slowest = set(sorted(rows, key=lambda row: row[1], reverse=True)[:SLOWEST])
        found = [row for row in rows if row[3] < cut or row in slowest]
    else:
        matching, params = traces.values(*columns).query.sql_with_params()
        window = [since_ns, until_ns]
        with connections[traces.db].cursor() as cursor:
            cursor.execute(
                _POINTS_SQL.format(matching=matching),
                [*params, *window, "", cut, *params, *window, SLOWEST],
            )
            found = cursor.fetchall()
    return sorted(
        (int(start), int(duration), trace_id, int(status) == 2)
        for start, duration, status, trace_id in found
        if since_ns <= start < until_ns
    )


def _bounds(traces: QuerySet) -> tuple[int | None, int | None]:
    """The first and last start of the matches: two seeks of a start index in one statement
    (MIN and MAX together would read every row)."""
    if traces.query.is_sliced:
        starts = [start for (start,) in traces.values_list("start_ns")]
        return (min(starts), max(starts)) if starts else (None, None)
    first, first_params = traces.order_by("start_ns").values("start_ns")[:1].query.sql_with_params()
    last, last_params = traces.order_by("-start_ns").values("start_ns")[:1].query.sql_with_params()
    with connections[traces.db].cursor() as cursor:
        cursor.execute(f"SELECT ({first}), ({last})", [*first_params, *last_params])
        row = cursor.fetchone()
    return row[0], row[1]


def _counted(result: Timeline, buckets: int, traces: QuerySet) -> Timeline:
    """The same charts of a few rows, counted here."""
    rows = list(
        traces.values_list(
            "start_ns", "duration_ns", "status_code", "input_tokens", "output_tokens",
            "cost_usd", "trace_id",
        )
    )  # fmt: skip
    durations: list[list[int]] = [[] for _ in range(buckets)]
    result.traces = [0] * buckets
    result.errors = [0] * buckets
    result.tokens = [0] * buckets
    result.cost_usd = [0.0] * buckets
    for start, duration, status, tokens_in, tokens_out, cost, trace_id in rows:
        b = (start - result.start_ns) // result.bucket_ns
        if not 0 <= b < buckets:
            continue
        result.traces[b] += 1
        result.errors[b] += status == 2
        result.tokens[b] += tokens_in + tokens_out
        result.cost_usd[b] += cost or 0.0
        durations[b].append(duration)
        result.points.append((start, duration, trace_id, status == 2))
    result.p50_ns = [_rank(sorted(values), 50) for values in durations]
    result.p95_ns = [_rank(sorted(values), 95) for values in durations]
    result.points.sort()
    return result


def _rank(values: list[int], percent: int) -> int | None:
    """Nearest rank: the value at ceil(p * n)."""
    if not values:
        return None
    return values[(len(values) * percent + 99) // 100 - 1]
