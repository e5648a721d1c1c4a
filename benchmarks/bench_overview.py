"""Benchmark the trace overview: server-side render time of `/traces/` on a big SQLite database,
or on PostgreSQL when DATABASE_URL names one (a database `<its name>_overview` beside it, filled
with COPY).

    .venv/bin/python benchmarks/bench_overview.py                 # 100,000 traces / 1,000,000 spans
    .venv/bin/python benchmarks/bench_overview.py --traces 20000  # smaller
    .venv/bin/python benchmarks/bench_overview.py --data-dir /tmp/bench --keep   # build once, reuse

It migrates a fresh STUDIO_DATA_DIR, inserts spans with sqlite3 `executemany` (the writer's
own INSERT columns), derives the trace rows with the writer's own summary SQL, indexes the spans
for search as runstudio's indexer thread does (tracing.search.index_pending), then renders pages
through Django's test client (middleware, view, template: everything but the socket) and prints
the median and p95 of each. Traces are spread over the last 30 days, so "24 h" holds about 1/30
of them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVICES = [("checkout-agent", 50), ("support-bot", 25), ("research-agent", 15), ("indexer", 9)]
RARE_SERVICE = "nightly-eval"  # 1 % of traces: a selective filter
DAY_NS = 86_400 * 10**9


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--spans-per-trace", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=30, help="renders per page")
    parser.add_argument("--data-dir", help="use (and with --keep, reuse) this directory")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--no-search-tables",
        action="store_true",
        help="PostgreSQL: leave the full-text and attribute tables empty (a quick build; "
        "full-text searches then match trace names only)",
    )
    parser.add_argument(
        "--only", default="", help="time only the pages whose label holds one of these: first,api"
    )
    parser.add_argument(
        "--trace-pages", default="", help="also time the trace page of traces this big: 10000,50000"
    )
    return parser.parse_args()


def build(
    db_path: Path | None, traces: int, spans_per_trace: int, fill_search: bool = True
) -> None:
    from ingest.otlp import SPAN_COLUMNS
    from ingest.writer import _SUMMARY_SQL

    if db_path is None:
        return build_postgresql(
            spans(traces, spans_per_trace), traces, spans_per_trace, fill_search
        )
    rows: list[tuple] = []
    trace_ids: list[str] = []
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    insert = "INSERT INTO tracing_span ({}) VALUES ({})".format(
        ", ".join(SPAN_COLUMNS), ", ".join("?" * len(SPAN_COLUMNS))
    )
    started = time.perf_counter()
    for trace_id, batch in spans(traces, spans_per_trace):
        trace_ids.append(trace_id)
        rows += batch
        if len(rows) >= 200_000:
            conn.executemany(insert, rows)
            rows.clear()
    conn.executemany(insert, rows)
    conn.commit()
    inserted = time.perf_counter()
    trace_ids.sort()
    summary = _SUMMARY_SQL.replace("%s", "?")
    for start in range(0, len(trace_ids), 500):
        chunk = trace_ids[start : start + 500]
        conn.execute(summary.format(ids=", ".join("?" * len(chunk))), chunk * 3)
    conn.commit()
    conn.close()
    summarised = time.perf_counter()
    # The search index, as runstudio's indexer thread builds it after each commit: without it
    # every search reads every span's text on the fly, which no running Studio does for long.
    from tracing import search

    while search.index_pending(limit=5000):
        pass
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA optimize")
    conn.close()
    print(
        f"built {traces:,} traces / {traces * spans_per_trace:,} spans: spans "
        f"{inserted - started:.1f} s, summaries {summarised - inserted:.1f} s, search index "
        f"{time.perf_counter() - summarised:.1f} s, {db_path.stat().st_size / 1e6:.0f} MB"
    )


def build_postgresql(
    generated: Any, traces: int, spans_per_trace: int, fill_search: bool = True
) -> None:
    """The same rows into PostgreSQL with COPY, in big batches (the search triggers run, as on
    ingest), then the writer's summary SQL and ANALYZE."""
    from django.db import connection

    from ingest.otlp import SPAN_COLUMNS
    from ingest.writer import _SUMMARY_SQL
    from tracing import search

    started = time.perf_counter()
    trace_ids: list[str] = []
    copy = "COPY tracing_span ({}) FROM STDIN".format(", ".join(SPAN_COLUMNS))
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own, for COPY
        # The search triggers cost about 1 ms a span row by row: the tables they keep are filled
        # afterwards by their migrations' own set-based statements instead.
        cursor.execute("ALTER TABLE tracing_span DISABLE TRIGGER USER")
        pending: list[tuple] = []
        for trace_id, batch in generated:
            trace_ids.append(trace_id)
            pending += batch
            if len(pending) >= 100_000:
                with raw.copy(copy) as copying:  # autocommit: a transaction per batch
                    for row in pending:
                        copying.write_row(row)
                pending.clear()
        with raw.copy(copy) as copying:
            for row in pending:
                copying.write_row(row)
        cursor.execute("ALTER TABLE tracing_span ENABLE TRIGGER USER")
        copied = time.perf_counter()
        trace_ids.sort()
        for start in range(0, len(trace_ids), 500):
            chunk = trace_ids[start : start + 500]
            cursor.execute(_SUMMARY_SQL.format(ids=", ".join(["%s"] * len(chunk))), chunk * 3)
        summarised = time.perf_counter()
        if fill_search:
            # About 0.9 ms of PostgreSQL CPU a span: a quarter of an hour for 1,000,000.
            for fill in (search.POSTGRES_CREATE[-1], search.POSTGRES_ATTRS_CREATE[-1]):
                assert fill.startswith("INSERT INTO"), fill
                cursor.execute(fill)
        cursor.execute("ANALYZE")
        cursor.execute("SELECT pg_database_size(current_database())")
        size = cursor.fetchone()[0]
    print(
        f"built {traces:,} traces / {traces * spans_per_trace:,} spans on PostgreSQL: COPY "
        f"{copied - started:.1f} s, summaries {summarised - copied:.1f} s, search tables "
        f"{f'{time.perf_counter() - summarised:.1f} s' if fill_search else 'left empty'}, "
        f"{size / 1e6:.0f} MB"
    )


def spans(traces: int, spans_per_trace: int) -> Any:
    """(trace id, its span rows in SPAN_COLUMNS order), trace by trace."""
    rng = random.Random(42)
    now = time.time_ns()
    services = [name for name, weight in SERVICES for _ in range(weight)] + [RARE_SERVICE]
    attributes = json.dumps({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"})
    for t in range(traces):
        trace_id = f"{rng.getrandbits(128):032x}"
        rows: list[tuple] = []
        service = rng.choice(services)
        start = now - rng.randrange(30 * DAY_NS)
        duration = int(rng.lognormvariate(20, 1.2))  # median ~0.5 s, long tail
        failed = rng.random() < 0.05
        conversation = f"conv-{t // 5}"
        root_id = f"{rng.getrandbits(64):016x}"
        for s in range(spans_per_trace):
            span_id = root_id if s == 0 else f"{rng.getrandbits(64):016x}"
            kind = "agent" if s == 0 else rng.choice(["llm", "tool", "formatter", "function"])
            span_start = start + (0 if s == 0 else rng.randrange(max(duration, 1)))
            span_end = start + duration if s == 0 else min(start + duration, span_start + 10**7)
            tokens = kind == "llm"
            used = (rng.randrange(2000), rng.randrange(500)) if tokens else (0, 0)
            # Priced as the decoder prices gpt-4o (2.50 / 10.00 USD per million).
            cost = (used[0] * 2.5 + used[1] * 10.0) / 1e6 if tokens else None
            rows.append(
                (
                    trace_id, span_id, "" if s == 0 else root_id, span_start, span_end, 1,
                    2 if failed and s == spans_per_trace - 1 else 0, kind,
                    "invoke_agent" if s == 0 else "chat", used[0], used[1], 0, 0, 0, 0,
                    f"invoke_agent Friday-{t % 7}" if s == 0 else f"{kind} step {s}", service,
                    "gpt-4o" if tokens else "", "", conversation,
                    f"Question number {t}: how do I reset my password?" if s == 0 else "",
                    "boom" if failed and s == spans_per_trace - 1 else "", "", attributes, "[]",
                    "[]", json.dumps({"service.name": service}), '{"name": "agentscope"}',
                    "default", cost,
                )
            )  # fmt: skip
        yield trace_id, rows


def calibrate() -> float:
    """Milliseconds for a fixed pure-Python workload: shared virtual machines change speed from
    minute to minute, so figures are only comparable next to this number."""
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        sum(i * i for i in range(1_000_000))
        timings.append((time.perf_counter() - started) * 1000)
    return min(timings)


def main() -> None:
    args = parse_args()
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["STUDIO_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    postgresql = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
    drop_database = None
    if postgresql:
        os.environ["DATABASE_URL"], drop_database = database_beside(
            os.environ["DATABASE_URL"], "_overview", fresh=not args.keep
        )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tracing.models import Trace

    db_path = None if postgresql else Path(settings.DATABASES["default"]["NAME"])
    call_command("migrate", interactive=False, verbosity=0)
    if not (args.keep and Trace.objects.exists()):
        build(db_path, args.traces, args.spans_per_trace, not args.no_search_tables)
    count = Trace.objects.count()
    big_traces = store_big_traces(args.trace_pages) if args.trace_pages else {}

    # A trace about 90 % of the way into the past, for a deep keyset page.
    deep = Trace.objects.order_by("-start_ns", "-trace_id").values("start_ns", "trace_id")[
        count * 9 // 10
    ]
    deep_cursor = f"{deep['start_ns']}_{deep['trace_id']}"
    pages = {
        "first page (all time)": "/traces/?range=all",
        "first page (24 h)": "/traces/?range=24h",
        "filtered: service (1 %)": f"/traces/?range=all&service={RARE_SERVICE}",
        "filtered: service (50 %)": f"/traces/?range=all&service={SERVICES[0][0]}",
        "project home (all)": "/projects/default/",
        "filtered: status ERROR": "/traces/?range=all&status=ERROR",
        "filtered: search name": "/traces/?range=all&q=Friday-3",
        "filtered: 7 d, min 2 s": "/traces/?range=7d&min_duration=2000",
        "sorted by duration": "/traces/?range=all&sort=-duration",
        "sorted by cost": "/traces/?range=all&sort=-cost",
        "filtered: min cost $0.01": "/traces/?range=all&min_cost=0.01",
        "deep page (90 % back)": f"/traces/?range=all&after={deep_cursor}",
        "htmx swap (filtered)": f"/traces/?range=all&service={RARE_SERVICE}",
        # The API pages the same way (and counts every match for `count`).
        "api: first page": "/api/traces/",
        "api: deep page (cursor)": f"/api/traces/?after={deep_cursor}",
        "api: deep page (offset)": f"/api/traces/?offset={count * 9 // 10}",
        # The overview's charts (tracing.timeline): buckets and the scatter, one or two queries.
        "stats: all time": "/api/traces/stats/",
        "stats: 24 h": "/api/traces/stats/?range=24h",
        "stats: 7 d": "/api/traces/stats/?range=7d",
        "stats: service (1 %)": f"/api/traces/stats/?service={RARE_SERVICE}",
        "stats: status ERROR": "/api/traces/stats/?status=ERROR",
        # The trace page of an ordinary trace among them, and of the big ones (--trace-pages).
        "trace page, 10 spans": f"/traces/{deep['trace_id']}/",
        "api: trace, 10 spans": f"/api/traces/{deep['trace_id']}/",
    }
    for size, trace_id in big_traces.items():
        pages[f"trace page, {size:,} spans"] = f"/traces/{trace_id}/"
    client = Client(HTTP_HOST="127.0.0.1")  # an allowed host (studio.security)
    where = connection.settings_dict["NAME"] if postgresql else db_path
    print(f"{count:,} traces in {where} ({connection.vendor}); {args.repeat} renders each, in ms")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"calibration (fixed Python loop): {calibrate():.1f} ms")
    # Wall time is what a user waits for; CPU time (this process, one thread) is the work
    # itself, and stays honest on a machine shared with other jobs.
    # PostgreSQL's share of the work runs in its backend process: its CPU time too, when that
    # process is on this machine and readable (/proc), else a dash.
    db_cpu = backend_cpu(connection) if postgresql else None
    print(
        f"{'page':<26} {'median':>8} {'p95':>8} {'cpu med':>8} {'db cpu':>8} {'queries':>8} "
        f"{'rows':>5}"
    )
    if args.only:
        wanted = args.only.split(",")
        pages = {label: url for label, url in pages.items() if any(w in label for w in wanted)}
    for label, url in pages.items():
        headers = {"HX-Request": "true", "HX-Target": "results"} if "htmx" in label else {}
        client.get(url, headers=headers)  # warm the page cache and the template loader
        timings, cpu, database_cpu = [], [], []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as queries:
                started, started_cpu = time.perf_counter(), time.process_time()
                started_db = db_cpu() if db_cpu else 0.0
                response = client.get(url, headers=headers)
                if response.streaming:  # the API's trace document streams
                    body = b"".join(response.streaming_content)
                timings.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - started_cpu) * 1000)
                if db_cpu:
                    database_cpu.append(db_cpu() - started_db)
            assert response.status_code == 200, (url, response.status_code)
        rows = (body if response.streaming else response.content).count(b'class="trace-row')
        timings.sort()
        p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
        db = f"{statistics.mean(database_cpu):8.1f}" if database_cpu else f"{'-':>8}"
        print(
            f"{label:<26} {statistics.median(timings):8.1f} {p95:8.1f} "
            f"{statistics.median(cpu):8.1f} {db} {len(queries.captured_queries):8d} {rows:5d}"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}; calibration {calibrate():.1f} ms")
    if not args.keep and not args.data_dir:
        shutil.rmtree(data_dir)
    if drop_database is not None and not args.keep:
        connection.close()
        drop_database()


def backend_cpu(connection: Any) -> Callable[[], float] | None:
    """A reader of the CPU milliseconds the connection's PostgreSQL backend has used, or None
    if its process cannot be read from here. Linux counts them in clock ticks (10 ms), so the
    bench reports their mean over the renders, not a median."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    stat = Path(f"/proc/{pid}/stat")
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")

    def read() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * tick_ms

    try:
        read()
    except OSError:
        return None
    return read


def database_beside(url: str, suffix: str, fresh: bool) -> tuple[str, Callable[[], None]]:
    """A PostgreSQL database named after DATABASE_URL's plus `suffix` (new if `fresh`, else
    created only if missing, so --keep can reuse it), and its dropper."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.strip("/") + suffix
    admin = urlunsplit(("postgres", parts.netloc, "/postgres", "", ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, "")), drop


def store_big_traces(sizes: str) -> dict[int, str]:
    """Agent traces of these span counts (bench_trace_page's), through the writer; their ids.
    Stored once: a kept database already has them."""
    from benchmarks.bench_trace_page import agent_trace, store
    from tracing.models import Trace

    rng = random.Random(7)
    stored = {}
    for size in (int(n) for n in sizes.split(",")):
        trace_id = f"{rng.getrandbits(128):032x}"
        if not Trace.objects.filter(trace_id=trace_id).exists():
            started = time.perf_counter()
            store(agent_trace(trace_id, size, rng))
            print(f"stored a {size:,}-span trace in {time.perf_counter() - started:.1f} s")
        stored[size] = trace_id
    return stored


if __name__ == "__main__":
    main()
