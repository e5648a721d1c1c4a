"""A database that fails for a while loses nothing: the official exporter, sending to a real
`runstudio` while SQLite's write lock is held elsewhere or PostgreSQL restarts, hears 503 (which
it retries) rather than 500 (which it drops), and every span it was acknowledged for is stored
exactly once."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ingest import writer
from tests.conftest import StudioServer

pytestmark = pytest.mark.server

ON_POSTGRESQL = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
SPANS_PER_BATCH = 20


def make_batches(count: int) -> list[list[ReadableSpan]]:
    """`count` batches of finished spans, one trace each, as an SDK would hand them over."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "outage"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests")
    batches = []
    for _ in range(count):
        with tracer.start_as_current_span("root"):
            for n in range(SPANS_PER_BATCH - 1):
                with tracer.start_as_current_span(f"child {n}"):
                    pass
        batches.append(list(memory.get_finished_spans()))
        memory.clear()
    provider.shutdown()
    return batches


def trace_id(batch: list[ReadableSpan]) -> str:
    return f"{batch[0].context.trace_id:032x}"


def send_through(server: StudioServer, outage: Callable[[], None], senders: int = 3) -> None:
    """Senders export batch after batch with the official exporter while `outage` runs; then
    every acknowledged batch must be stored once, and (the exporter retrying 503) all are."""
    batches = make_batches(senders * 12)
    results: dict[str, SpanExportResult] = {}
    acknowledged = threading.Event()

    def send(mine: list[list[ReadableSpan]]) -> None:
        # Its own exporter per thread, as separate applications would have; a deadline long
        # enough to outlast the outage.
        exporter = HttpExporter(endpoint=f"{server.url}/v1/traces", timeout=60)
        for batch in mine:
            results[trace_id(batch)] = exporter.export(batch)
            acknowledged.set()
            time.sleep(0.3)
        exporter.shutdown()

    threads = [
        threading.Thread(target=send, args=(batches[n::senders],), daemon=True)
        for n in range(senders)
    ]
    for thread in threads:
        thread.start()
    assert acknowledged.wait(30)
    outage()
    for thread in threads:
        thread.join(120)
    assert len(results) == len(batches)
    for batch in batches:
        if results[trace_id(batch)] is not SpanExportResult.SUCCESS:
            continue
        trace = server.trace(trace_id(batch))
        span_ids = [span["span_id"] for span in trace["spans"]]
        assert trace["span_count"] == len(span_ids) == len(set(span_ids)) == SPANS_PER_BATCH
    failed = [t for t, result in results.items() if result is not SpanExportResult.SUCCESS]
    assert not failed, f"{len(failed)} of {len(batches)} batches were dropped by the exporter"


def test_spans_sent_while_sqlite_is_locked_elsewhere_are_stored_once(fresh_studio) -> None:
    if ON_POSTGRESQL:
        pytest.skip("SQLite's write lock")
    server = fresh_studio(STUDIO_SQLITE_TIMEOUT="1")

    def hold_the_write_lock() -> None:
        holder = sqlite3.connect(server.data_dir / "studio.sqlite3", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        # Past the busy timeout and the writer's retries: requests get 503 meanwhile.
        time.sleep(writer.RETRY_FOR_SECONDS + 3)
        holder.execute("ROLLBACK")
        holder.close()

    send_through(server, hold_the_write_lock)


def pg_cluster() -> tuple[str, str] | None:
    if not shutil.which("pg_lsclusters"):
        return None
    lines = subprocess.run(
        ["pg_lsclusters", "-h"], capture_output=True, text=True, check=False
    ).stdout.split("\n")
    fields = lines[0].split() if lines and lines[0] else []
    return (fields[0], fields[1]) if len(fields) >= 2 else None


@pytest.mark.skipif(
    not ON_POSTGRESQL or os.environ.get("STUDIO_TEST_PG_RESTART") != "1",
    reason="restarts the local PostgreSQL: set STUDIO_TEST_PG_RESTART=1 on a PostgreSQL run",
)
def test_spans_sent_across_a_postgresql_restart_are_stored_once(fresh_studio) -> None:
    cluster = pg_cluster()
    if cluster is None or os.geteuid() != 0:
        pytest.skip("needs pg_ctlcluster and root to restart PostgreSQL")
    server = fresh_studio()

    def restart_postgresql() -> None:
        subprocess.run(
            ["pg_ctlcluster", *cluster, "restart", "--", "-m", "fast"], check=True, timeout=60
        )

    send_through(server, restart_postgresql)
