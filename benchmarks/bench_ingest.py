"""Ingest throughput: agent-like spans over OTLP/HTTP into a real `runstudio` on SQLite.

    python benchmarks/bench_ingest.py [--spans 100000] [--per-request 500] [--senders 4]
    STUDIO_SQLITE_SYNCHRONOUS=NORMAL python benchmarks/bench_ingest.py   # against the default FULL
    python benchmarks/bench_ingest.py --key [--repeat 3]   # with an ingest key against without

Sends the spans (about 1 KB of input/output each) from concurrent senders, and times from the
first request until every span is readable through the API. Beside it, this machine's floor in the
same run: decoding the same protobuf bodies and inserting the rows with sqlite3.executemany in one
process, no server. Prints spans/s for both, their ratio, and the server's peak memory (VmHWM).
Both use the SQLite `synchronous` mode STUDIO_SQLITE_SYNCHRONOUS picks (Studio's default, FULL,
when unset); the databases live under TMPDIR, which should be a real disk for the figure to mean
anything about fsync.

With --key, compares Studio with STUDIO_AUTH=login and every request carrying an ingest key
(`Authorization: Bearer`, checked against the database per request) to Studio without sign-in,
in alternating runs, best of --repeat each. On a shared machine those runs vary by more than the
check costs, so it also times requests one at a time on ONE server, alternating with and without
a key (a key's project is looked up in either mode), and compares their median latencies.

With --totals, Studio as shipped against the same without the triggers that keep the overview's
totals (tracing.totals), alternating, --repeat rounds: their price at ingest.

With --compare, it runs twice, once with the full-text search indexer idle (what ingest cost
before the index) and once as shipped, and reports the ratio, the bytes on disk per span of each,
and how long after the last span was readable the search index had caught up (SQLite indexes
after the commit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from benchmarks.common import rows_of, send_all  # noqa: E402
from tests.conftest import start_studio  # noqa: E402

SPANS_PER_TRACE = 10
SYNCHRONOUS = os.environ.get("STUDIO_SQLITE_SYNCHRONOUS", "FULL").upper()
OPERATIONS = ["invoke_agent", "format", "chat", "execute_tool", "chat"]


def text(rng: random.Random, size: int) -> str:
    words = ["the", "agent", "tool", "model", "trip", "Kyoto", "budget", "yen", "plan", "day"]
    out = []
    while sum(len(w) + 1 for w in out) < size:
        out.append(rng.choice(words))
    return " ".join(out)


def build_bodies(total: int, per_request: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    bodies = []
    base = time.time_ns() - 3600 * 10**9
    span_no = 0
    for _ in range(total // per_request):
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        attr = resource_spans.resource.attributes.add()
        attr.key, attr.value.string_value = "service.name", "bench-agent"
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "agentscope"
        for _ in range(per_request):
            trace_no, index = divmod(span_no, SPANS_PER_TRACE)
            span = scope_spans.spans.add()
            span.trace_id = (trace_no + 1).to_bytes(16, "big")
            span.span_id = (span_no + 1).to_bytes(8, "big")
            if index:
                span.parent_span_id = (trace_no * SPANS_PER_TRACE + 1).to_bytes(8, "big")
            op = OPERATIONS[index % len(OPERATIONS)]
            span.name = f"{op} step{index}"
            span.kind = 1
            span.start_time_unix_nano = base + span_no * 1_000_000
            span.end_time_unix_nano = span.start_time_unix_nano + 500_000
            span.status.code = 1
            attrs = {
                "gen_ai.operation.name": op,
                "gen_ai.request.model": "qwen-max",
                "gen_ai.conversation.id": f"run-{trace_no // 10}",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": text(rng, 450)}]}]
                ),
                "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": text(rng, 450)}]}]
                ),
            }
            for key, value in attrs.items():
                kv = span.attributes.add()
                kv.key, kv.value.string_value = key, value
            for key, value in (
                ("gen_ai.usage.input_tokens", 120),
                ("gen_ai.usage.output_tokens", 40),
            ):
                kv = span.attributes.add()
                kv.key, kv.value.int_value = key, value
            span_no += 1
        bodies.append(request.SerializeToString())
    return bodies


def floor(bodies: list[bytes]) -> float:
    """Decode and executemany in one process: what this machine can do with no server at all."""

    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.sqlite3", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
        db.execute(
            "CREATE TABLE span (trace_id TEXT, span_id TEXT, parent TEXT, name TEXT, start INT, "
            "end_ INT, status INT, attributes TEXT, resource TEXT)"
        )
        db.execute("CREATE UNIQUE INDEX span_uniq ON span (trace_id, span_id)")
        started = time.perf_counter()
        count = 0
        for body in bodies:
            rows = rows_of(body)
            db.execute("BEGIN")
            db.executemany("INSERT OR IGNORE INTO span VALUES (?,?,?,?,?,?,?,?,?)", rows)
            db.execute("COMMIT")
            count += len(rows)
        elapsed = time.perf_counter() - started
        db.close()
    return count / elapsed


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def manage(env: dict[str, str], *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def studio(
    bodies: list[bytes],
    senders: int,
    total: int,
    *,
    key: bool = False,
    search_index: bool = True,
    totals: bool = True,
) -> tuple[float, float, float, float]:
    """Spans/s, the server's peak memory (MB), the database's bytes per span, and the seconds
    the search index took to catch up after the last span was readable."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.pop("DATABASE_URL", None)
        server, cleanup = start_studio(Path(tmp), {"STUDIO_AUTH": "login" if key else "none"})
        database = Path(tmp) / "studio.sqlite3"
        if not search_index:
            # Studio as it was before the index: the indexer finds no span past its last id.
            with sqlite3.connect(database) as db:
                db.execute("UPDATE tracing_span_search_state SET last_id = 1 << 62")
        if not totals:
            # Without the triggers that keep the overview's totals (tracing.totals).
            from tracing.totals import SQLITE_DROP

            with sqlite3.connect(database) as db:
                for statement in SQLITE_DROP:
                    db.execute(statement)
        headers = {"Content-Type": "application/x-protobuf"}
        read_headers: dict[str, str] = {}
        if key:
            manage(server.env, "adduser", "bench", "--password-stdin", stdin="bench-pass-9x\n")
            ingest = manage(server.env, "apikey", "create", "--project", "bench")
            headers["Authorization"] = f"Bearer {ingest}"
            read_headers["Authorization"] = "Bearer " + manage(
                server.env, "apikey", "create", "--user", "bench"
            )

        def api(path: str, **params: object) -> dict:
            response = requests.get(
                f"{server.url}{path}", params=params, headers=read_headers, timeout=30
            )
            response.raise_for_status()
            return response.json()

        try:
            started = time.perf_counter()
            send_all(server.url, bodies, senders, headers)
            traces = total // SPANS_PER_TRACE
            # Counted from the trace rows (a filter), not the totals, which a run may go without.
            while api("/api/traces/", limit=1, min_duration=0)["count"] < traces:
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            for trace_no in (0, traces // 2, traces - 1):
                trace = api(f"/api/traces/{trace_no + 1:032x}/")
                assert trace["span_count"] == SPANS_PER_TRACE, trace["span_count"]
            readable = time.perf_counter()
            with sqlite3.connect(database, timeout=60) as db:
                newest = db.execute("SELECT MAX(id) FROM tracing_span").fetchone()[0]
                while (
                    db.execute("SELECT last_id FROM tracing_span_search_state").fetchone()[0]
                    < newest
                ):
                    time.sleep(0.05)
            lag = time.perf_counter() - readable
            memory = peak_memory_mb(server.process.pid)
        finally:
            server.stop()
            cleanup()
        with sqlite3.connect(database) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = (pages - free) * page_size
    return total / elapsed, memory, size / total, lag


def interleaved(bodies: list[bytes]) -> tuple[float, float]:
    """Median request latency (ms) without and with a key, alternating on one server."""
    import statistics

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.pop("DATABASE_URL", None)
        server, cleanup = start_studio(Path(tmp), {"STUDIO_AUTH": "none"})
        try:
            key = manage(server.env, "apikey", "create", "--project", "bench")
            plain = {"Content-Type": "application/x-protobuf"}
            keyed = {**plain, "Authorization": f"Bearer {key}"}
            session = requests.Session()
            times: dict[bool, list[float]] = {False: [], True: []}
            for index, body in enumerate(bodies):
                with_key = index % 2 == 1
                started = time.perf_counter()
                response = session.post(
                    f"{server.url}/v1/traces",
                    data=body,
                    headers=keyed if with_key else plain,
                    timeout=120,
                )
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.status_code
                if index >= 20:  # warm-up
                    times[with_key].append(elapsed * 1000)
        finally:
            server.stop()
            cleanup()
    return statistics.median(times[False]), statistics.median(times[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--per-request", type=int, default=500)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--key", action="store_true", help="with an ingest key against without")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, with --key")
    parser.add_argument(
        "--compare", action="store_true", help="also run without the full-text index, first"
    )
    parser.add_argument(
        "--totals",
        action="store_true",
        help="as shipped against without the overview totals' triggers, --repeat rounds",
    )
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

    bodies = build_bodies(args.spans, args.per_request)
    size = sum(len(b) for b in bodies)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"SQLite synchronous={SYNCHRONOUS} (WAL), under {tempfile.gettempdir()}")
    print(f"payload: {args.spans} spans in {len(bodies)} requests, {size / 1e6:.1f} MB protobuf")
    if args.key:
        runs: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeat):
            for keyed in (False, True):
                runs[keyed].append(studio(bodies, args.senders, args.spans, key=keyed)[0])
        without, with_key = max(runs[False]), max(runs[True])
        print(
            f"without a key (STUDIO_AUTH=none): {without:,.0f} spans/s  (runs: "
            + ", ".join(f"{r:,.0f}" for r in runs[False])
            + ")"
        )
        print(
            f"with an ingest key (STUDIO_AUTH=login): {with_key:,.0f} spans/s  (runs: "
            + ", ".join(f"{r:,.0f}" for r in runs[True])
            + ")"
        )
        print(f"key check cost: {(1 - with_key / without) * 100:.1f} % of throughput")
        plain_ms, keyed_ms = interleaved(bodies)
        print(
            f"one request at a time, alternating on one server: median {plain_ms:.2f} ms "
            f"without a key, {keyed_ms:.2f} ms with one "
            f"({(keyed_ms / plain_ms - 1) * 100:+.1f} %)"
        )
        return
    if args.totals:
        import django

        django.setup()  # tracing.totals's SQL
        rates: dict[bool, list[float]] = {False: [], True: []}
        for number in range(args.repeat):
            for kept in (False, True) if number % 2 == 0 else (True, False):
                rate = studio(bodies, args.senders, args.spans, totals=kept)[0]
                rates[kept].append(rate)
                state = "kept" if kept else "off"
                print(f"round {number + 1}, totals {state}: {rate:,.0f} spans/s")
        kept_rate, off_rate = statistics.median(rates[True]), statistics.median(rates[False])
        print(
            f"with the totals / without: {kept_rate / off_rate:.2f} of the medians "
            f"({kept_rate:,.0f} against {off_rate:,.0f} spans/s)"
        )
        return
    floor_rate = floor(bodies)
    print(f"floor (decode + sqlite3.executemany, one process): {floor_rate:,.0f} spans/s")
    if args.compare:
        before, before_memory, before_bytes, _ = studio(
            bodies, args.senders, args.spans, search_index=False
        )
        print(
            f"studio without the search index: {before:,.0f} spans/s, "
            f"{before_bytes:,.0f} bytes/span on disk, peak {before_memory:.0f} MB"
        )
    rate, memory, per_span, lag = studio(bodies, args.senders, args.spans)
    print(f"studio (OTLP/HTTP, {args.senders} senders, until readable): {rate:,.0f} spans/s")
    print(f"ratio to floor: {rate / floor_rate:.2f}")
    print(f"server peak memory (VmHWM): {memory:.0f} MB")
    print(f"bytes on disk per span: {per_span:,.0f}")
    print(f"search index caught up {lag:.1f} s after the last span was readable")
    if args.compare:
        print(
            f"with the search index / without: throughput {rate / before:.2f}, "
            f"bytes per span {per_span / before_bytes:.2f}"
        )


if __name__ == "__main__":
    main()
