"""Ingest throughput on PostgreSQL with `runstudio --workers N`, against the PostgreSQL floor.

    DATABASE_URL=postgres://user:pass@host/db REDIS_URL=redis://host:6379/0 \
        python benchmarks/bench_workers.py [--spans 100000] [--workers 1,2] [--senders 8]

The same agent-like spans as bench_ingest.py (about 1 KB of input/output each, 500 a request)
over OTLP/HTTP, timed until all are readable through the API, each `--workers` figure from its
own Studio on a fresh PostgreSQL database beside DATABASE_URL's (more than one worker needs
REDIS_URL). Beside them, the floor: decoding the same bodies and psycopg's executemany into a
PostgreSQL table in one process, no server.

With --search, the price of search at ingest instead (one worker): Studio as shipped (`async`:
the writer notes each span in the search backlog, the indexer thread indexes it after the
commit) against the same Studio with no search work at all (`none`: the backlog's triggers
dropped in that run's database), and, with --search-modes none,async,sync, the row-level
triggers of the writer's transaction that PostgreSQL ran before migration 0015_search_backlog
(`sync`), alternating in each round; `nototals` is as shipped without the triggers that keep
the overview's totals (tracing.totals), for their price. Each run reports its bytes on disk per
span (every table and index of the database, the search index caught up) and how long after the
last span was readable the backlog was empty.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from benchmarks.bench_ingest import SPANS_PER_TRACE, build_bodies, peak_memory_mb  # noqa: E402
from benchmarks.common import cpu_seconds, rows_of, send_all, tree_cpu_seconds  # noqa: E402
from tests.conftest import start_studio  # noqa: E402


def postgres_floor(bodies: list[bytes], database_url: str) -> float:
    """Decode and executemany into PostgreSQL in one process, a commit per request, as Studio
    commits (at least) once per group of requests."""
    import psycopg

    from tests.conftest import _fresh_database_url

    url, drop = _fresh_database_url(database_url)
    try:
        with psycopg.connect(url) as db:
            db.execute(
                "CREATE TABLE span (trace_id TEXT, span_id TEXT, parent TEXT, name TEXT, "
                "start BIGINT, end_ BIGINT, status INT, attributes JSONB, resource JSONB, "
                "PRIMARY KEY (trace_id, span_id))"
            )
            db.commit()
            started = time.perf_counter()
            count = 0
            for body in bodies:
                rows = rows_of(body)
                with db.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO span VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                        "ON CONFLICT DO NOTHING",
                        rows,
                    )
                db.commit()
                count += len(rows)
            elapsed = time.perf_counter() - started
    finally:
        drop()
    return count / elapsed


class LockSampler:
    """Samples pg_stat_activity of Studio's database every `interval` seconds: how many client
    backends were active, and how many of those waited for a lock (the writer's advisory locks,
    `lock_traces`, or any other)."""

    def __init__(self, database_url: str, interval: float = 0.02) -> None:
        self.url, self.interval = database_url, interval
        self.samples = self.active = self.advisory = self.other_locks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LockSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            while not self._stop.wait(self.interval):
                active, advisory, other = db.execute(
                    "SELECT count(*) FILTER (WHERE state = 'active'), "
                    "count(*) FILTER (WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'), "
                    "count(*) FILTER (WHERE wait_event_type = 'Lock' AND wait_event <> 'advisory') "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ).fetchone()
                self.samples += 1
                self.active += active
                self.advisory += advisory
                self.other_locks += other

    def backend_pids(self) -> list[int]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            rows = db.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchall()
        return [pid for (pid,) in rows]


@dataclass
class Round:
    workers: int
    rate: float  # spans/s, until readable
    seconds: float
    sender_cpu: float
    studio_cpu: float
    postgres_cpu: float
    advisory_wait: float  # share of active backend samples waiting on an advisory lock
    memory: float
    load: float
    search: str = "async"
    bytes_per_span: float = 0.0
    lag: float = 0.0  # seconds from readable to an empty search backlog
    postgres_cpu_indexed: float = 0.0  # PostgreSQL's CPU seconds until then


def set_search(database_url: str, mode: str) -> None:
    """`none`: no search work at ingest; `sync`: the triggers of the writer's transaction, as
    before 0015_search_backlog (the backlog table stays, empty, for the idle indexer)."""
    import psycopg

    from tracing import search, totals

    if mode == "async":
        return
    with psycopg.connect(database_url, autocommit=True) as db:
        if mode == "nototals":
            # As shipped but for the overview's totals (tracing.totals): their price at ingest.
            for statement in totals.PG_DROP:
                db.execute(statement)
            return
        db.execute(f"DROP TRIGGER {search.BACKLOG}_enqueue ON tracing_span")
        db.execute(f"DROP TRIGGER {search.TABLE}_forget ON tracing_span")
        if mode == "sync":
            for statement in search.PG_BACKLOG_DROP:
                if statement.startswith("LOCK") or f"TABLE IF EXISTS {search.BACKLOG}" in statement:
                    continue  # nothing writes yet; the idle indexer reads the empty backlog
                db.execute(statement)


def caught_up(database_url: str, timeout: float = 1800) -> float:
    """Seconds until the search backlog is empty."""
    import psycopg

    from tracing import search

    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as db:
        while db.execute(f"SELECT EXISTS (SELECT 1 FROM {search.BACKLOG})").fetchone()[0]:
            if time.perf_counter() - started > timeout:
                raise TimeoutError("the search backlog did not empty")
            time.sleep(0.1)
    return time.perf_counter() - started


def bytes_on_disk(database_url: str) -> int:
    """Every table of the database with its indexes and TOAST."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as db:
        return db.execute(
            "SELECT SUM(pg_total_relation_size(oid)) FROM pg_class "
            "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
        ).fetchone()[0]


def studio(
    bodies: list[bytes],
    senders: int,
    processes: int,
    total: int,
    workers: int = 1,
    search: str = "async",
) -> Round:
    with tempfile.TemporaryDirectory() as tmp:
        server, cleanup = start_studio(Path(tmp), args=("--workers", str(workers)))
        try:
            set_search(server.env["DATABASE_URL"], search)
            sampler = LockSampler(server.env["DATABASE_URL"])
            traces = total // SPANS_PER_TRACE
            load = os.getloadavg()[0]
            studio_cpu = tree_cpu_seconds(server.process.pid)
            pg_before = {pid: cpu_seconds(pid) for pid in sampler.backend_pids()}
            with sampler:
                started = time.perf_counter()
                sent = send_all(server.url, bodies, senders, processes=processes)
                # Polled gently: this process shares the two cores with Studio.
                # Counted from the trace rows (a filter), not the totals a run may go without.
                while server.api("/api/traces/", limit=1, min_duration=0)["count"] < traces:
                    time.sleep(0.1)
                elapsed = time.perf_counter() - started
            studio_cpu = tree_cpu_seconds(server.process.pid) - studio_cpu
            postgres_cpu = sum(
                cpu_seconds(pid) - pg_before.get(pid, 0.0) for pid in sampler.backend_pids()
            )
            lag = caught_up(server.env["DATABASE_URL"])
            postgres_cpu_indexed = sum(
                cpu_seconds(pid) - pg_before.get(pid, 0.0) for pid in sampler.backend_pids()
            )
            size = bytes_on_disk(server.env["DATABASE_URL"])
            for trace_no in (0, traces // 2, traces - 1):
                trace = server.trace(f"{trace_no + 1:032x}")
                assert trace["span_count"] == SPANS_PER_TRACE, trace["span_count"]
            # With workers, the parent only waits: the workers' memory is what counts.
            children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
            pids = [int(pid) for pid in children.read_text().split()] if workers > 1 else []
            memory = sum(peak_memory_mb(pid) for pid in pids or [server.process.pid])
        finally:
            server.stop()
            cleanup()
    return Round(
        workers,
        total / elapsed,
        elapsed,
        sent.sender_cpu,
        studio_cpu,
        postgres_cpu,
        sampler.advisory / max(sampler.active, 1),
        memory,
        load,
        search,
        size / total,
        lag,
        postgres_cpu_indexed,
    )


def compare_search(args: argparse.Namespace, bodies: list[bytes]) -> None:
    modes = args.search_modes.split(",")
    print(
        f"{'round':>5} {'search':>8} {'spans/s':>9} {'wall s':>7} {'studio':>7} {'pg':>6} "
        f"{'pg+idx':>6} {'B/span':>7} {'lag s':>6} {'load':>5}   (CPU seconds, pg+idx: until "
        "indexed; lag: readable to indexed)"
    )
    rounds: list[Round] = []
    for number in range(args.rounds):
        for mode in modes if number % 2 == 0 else list(reversed(modes)):
            r = studio(bodies, args.senders, args.sender_processes, args.spans, 1, mode)
            rounds.append(r)
            print(
                f"{number + 1:>5} {mode:>8} {r.rate:9,.0f} {r.seconds:7.1f} {r.studio_cpu:7.1f} "
                f"{r.postgres_cpu:6.1f} {r.postgres_cpu_indexed:6.1f} {r.bytes_per_span:7,.0f} "
                f"{r.lag:6.1f} {r.load:5.1f}"
            )
    medians = {}
    for mode in modes:
        mine = [r for r in rounds if r.search == mode]
        medians[mode] = statistics.median(r.rate for r in mine)
        print(
            f"{mode}: median {medians[mode]:,.0f} spans/s, "
            f"{statistics.median(r.bytes_per_span for r in mine):,.0f} bytes/span on disk, "
            f"PostgreSQL CPU per 1,000 spans "
            f"{statistics.median(r.postgres_cpu for r in mine) / args.spans * 1000:.3f} s "
            f"until readable, "
            f"{statistics.median(r.postgres_cpu_indexed for r in mine) / args.spans * 1000:.3f} s "
            f"until indexed, "
            f"index caught up {statistics.median(r.lag for r in mine):.1f} s after readable"
        )
    base = modes[0]  # the ratios are to the first mode named
    for mode in modes[1:]:
        pairs = [
            b.rate / a.rate
            for a, b in zip(
                [r for r in rounds if r.search == base],
                [r for r in rounds if r.search == mode],
                strict=False,
            )
        ]
        print(
            f"{mode} / {base}: {medians[mode] / medians[base]:.2f} of medians; per round "
            + ", ".join(f"{p:.2f}" for p in pairs)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--per-request", type=int, default=500)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument(
        "--sender-processes", type=int, default=2, help="processes the sender threads share"
    )
    parser.add_argument("--workers", default="1,2", help="comma-separated: 1,2")
    parser.add_argument("--rounds", type=int, default=3, help="each round runs every --workers")
    parser.add_argument(
        "--search", action="store_true", help="search at ingest: as shipped against none"
    )
    parser.add_argument(
        "--search-modes", default="none,async", help="of none,async,sync,nototals (vs the first)"
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        parser.error("set DATABASE_URL to a PostgreSQL database")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

    bodies = build_bodies(args.spans, args.per_request)
    size = sum(len(b) for b in bodies)
    counts = [int(n) for n in args.workers.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print("PostgreSQL (a fresh database beside DATABASE_URL's for each Studio)")
    print(f"payload: {args.spans} spans in {len(bodies)} requests, {size / 1e6:.1f} MB protobuf")
    if args.search:
        import django

        django.setup()  # tracing.search's SQL
        compare_search(args, bodies)
        return
    print(
        f"senders: {args.senders} threads in {args.sender_processes} processes; "
        f"{args.rounds} rounds, the order of --workers alternating"
    )
    print(
        f"{'round':>5} {'workers':>7} {'spans/s':>9} {'wall s':>7} {'senders':>8} {'studio':>7} "
        f"{'pg':>6} {'advisory':>8} {'MB':>5} {'load':>5}   (CPU seconds; advisory: share of "
        "active backends waiting on lock_traces)"
    )
    floors, rounds = [], []
    for number in range(args.rounds):
        floors.append(postgres_floor(bodies, os.environ["DATABASE_URL"]))
        print(f"{number + 1:>5} {'floor':>7} {floors[-1]:9,.0f}")
        order = counts if number % 2 == 0 else list(reversed(counts))
        for workers in order:
            r = studio(bodies, args.senders, args.sender_processes, args.spans, workers)
            rounds.append(r)
            print(
                f"{number + 1:>5} {workers:>7} {r.rate:9,.0f} {r.seconds:7.1f} "
                f"{r.sender_cpu:8.1f} {r.studio_cpu:7.1f} {r.postgres_cpu:6.1f} "
                f"{r.advisory_wait:8.1%} {r.memory:5.0f} {r.load:5.1f}"
            )
    floor = statistics.median(floors)
    print(f"floor (decode + psycopg executemany, one process), median: {floor:,.0f} spans/s")
    medians = {}
    for workers in counts:
        mine = [r for r in rounds if r.workers == workers]
        medians[workers] = statistics.median(r.rate for r in mine)
        print(
            f"studio, {workers} worker(s), median of {len(mine)}: {medians[workers]:,.0f} spans/s, "
            f"{medians[workers] / floor:.2f} of the floor; studio CPU per 1,000 spans "
            f"{statistics.median(r.studio_cpu for r in mine) / args.spans * 1000:.3f} s"
        )
    if 1 in medians:
        for workers in counts:
            if workers == 1:
                continue
            pairs = [
                b.rate / a.rate
                for a, b in zip(
                    [r for r in rounds if r.workers == 1],
                    [r for r in rounds if r.workers == workers],
                    strict=False,
                )
            ]
            print(
                f"{workers} workers / 1 worker: {medians[workers] / medians[1]:.2f}x of medians;"
                f" per round {', '.join(f'{p:.2f}x' for p in pairs)}"
            )


if __name__ == "__main__":
    main()
