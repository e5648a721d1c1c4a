"""Ingest throughput on PostgreSQL with `runstudio --workers N`, against the PostgreSQL floor.

    DATABASE_URL=postgres://user:pass@host/db REDIS_URL=redis://host:6379/0 \
        python benchmarks/bench_workers.py [--spans 100000] [--workers 1,2] [--senders 8]

The same agent-like spans as bench_ingest.py (about 1 KB of input/output each, 500 a request)
over OTLP/HTTP, timed until all are readable through the API, each `--workers` figure from its
own Studio on a fresh PostgreSQL database beside DATABASE_URL's (more than one worker needs
REDIS_URL). Beside them, the floor: decoding the same bodies and psycopg's executemany into a
PostgreSQL table in one process, no server.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from benchmarks.bench_ingest import SPANS_PER_TRACE, build_bodies, peak_memory_mb  # noqa: E402
from tests.conftest import start_studio  # noqa: E402


def rows_of(body: bytes) -> list[tuple[object, ...]]:
    from ingest.otlp import key_values

    request = ExportTraceServiceRequest.FromString(body)
    rows = []
    for resource_spans in request.resource_spans:
        resource = orjson.dumps(key_values(resource_spans.resource.attributes)).decode()
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                rows.append(
                    (
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                        span.name,
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                        span.status.code,
                        orjson.dumps(key_values(span.attributes)).decode(),
                        resource,
                    )
                )
    return rows


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


def studio(bodies: list[bytes], senders: int, total: int, workers: int = 1) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server, cleanup = start_studio(Path(tmp), args=("--workers", str(workers)))
        try:
            queue = list(reversed(bodies))
            lock = threading.Lock()
            failures: list[str] = []

            def send() -> None:
                session = requests.Session()
                while True:
                    with lock:
                        if not queue:
                            return
                        body = queue.pop()
                    while True:
                        response = session.post(
                            f"{server.url}/v1/traces",
                            data=body,
                            headers={"Content-Type": "application/x-protobuf"},
                            timeout=120,
                        )
                        if response.status_code == 503:
                            time.sleep(float(response.headers.get("Retry-After", "1")))
                            continue
                        if response.status_code != 200:
                            failures.append(f"{response.status_code} {response.text[:200]}")
                        break

            started = time.perf_counter()
            threads = [threading.Thread(target=send) for _ in range(senders)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            traces = total // SPANS_PER_TRACE
            while server.api("/api/traces/", limit=1)["count"] < traces:
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            assert not failures, failures[:3]
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
    return total / elapsed, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--per-request", type=int, default=500)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--workers", default="1,2", help="comma-separated: 1,2")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        parser.error("set DATABASE_URL to a PostgreSQL database")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

    bodies = build_bodies(args.spans, args.per_request)
    size = sum(len(b) for b in bodies)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print("PostgreSQL (a fresh database beside DATABASE_URL's)")
    print(f"payload: {args.spans} spans in {len(bodies)} requests, {size / 1e6:.1f} MB protobuf")
    floor_rate = postgres_floor(bodies, os.environ["DATABASE_URL"])
    print(f"floor (decode + psycopg executemany, one process): {floor_rate:,.0f} spans/s")
    rates = {}
    for workers in (int(n) for n in args.workers.split(",")):
        rate, memory = studio(bodies, args.senders, args.spans, workers)
        rates[workers] = rate
        print(
            f"studio, {workers} worker(s) (OTLP/HTTP, {args.senders} senders, until readable): "
            f"{rate:,.0f} spans/s, ratio to floor {rate / floor_rate:.2f}, "
            f"peak memory (VmHWM) {memory:.0f} MB"
        )
    if 1 in rates:
        for workers, rate in rates.items():
            if workers != 1:
                print(f"{workers} workers / 1 worker: {rate / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
