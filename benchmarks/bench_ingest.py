"""Ingest throughput: agent-like spans over OTLP/HTTP into a real `runstudio` on SQLite.

    python benchmarks/bench_ingest.py [--spans 100000] [--per-request 500] [--senders 4]
    STUDIO_SQLITE_SYNCHRONOUS=NORMAL python benchmarks/bench_ingest.py   # against the default FULL

Sends the spans (about 1 KB of input/output each) from concurrent senders, and times from the
first request until every span is readable through the API. Beside it, this machine's floor in the
same run: decoding the same protobuf bodies and inserting the rows with sqlite3.executemany in one
process, no server. Prints spans/s for both, their ratio, and the server's peak memory (VmHWM).
Both use the SQLite `synchronous` mode STUDIO_SQLITE_SYNCHRONOUS picks (Studio's default, FULL,
when unset); the databases live under TMPDIR, which should be a real disk for the figure to mean
anything about fsync.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
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
    from ingest.otlp import key_values

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
            request = ExportTraceServiceRequest.FromString(body)
            rows = []
            for resource_spans in request.resource_spans:
                # The same JSON library as Studio, so the ratio compares like with like.
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


def studio(bodies: list[bytes], senders: int, total: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.pop("DATABASE_URL", None)
        server, cleanup = start_studio(Path(tmp))
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
            memory = peak_memory_mb(server.process.pid)
        finally:
            server.stop()
            cleanup()
    return total / elapsed, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--per-request", type=int, default=500)
    parser.add_argument("--senders", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

    bodies = build_bodies(args.spans, args.per_request)
    size = sum(len(b) for b in bodies)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"SQLite synchronous={SYNCHRONOUS} (WAL), under {tempfile.gettempdir()}")
    print(f"payload: {args.spans} spans in {len(bodies)} requests, {size / 1e6:.1f} MB protobuf")
    floor_rate = floor(bodies)
    print(f"floor (decode + sqlite3.executemany, one process): {floor_rate:,.0f} spans/s")
    rate, memory = studio(bodies, args.senders, args.spans)
    print(f"studio (OTLP/HTTP, {args.senders} senders, until readable): {rate:,.0f} spans/s")
    print(f"ratio to floor: {rate / floor_rate:.2f}")
    print(f"server peak memory (VmHWM): {memory:.0f} MB")


if __name__ == "__main__":
    main()
