"""What the benchmarks share: posting OTLP bodies to a Studio as exporters do, and the CPU time
that processes spent, so a figure can say whether the load generator itself was the bottleneck on
a small machine; Django set up on a benchmark's database, the generated agent traces the trace
page, analysis and compare benchmarks store, and the timing of requests through Django's test
client."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

PROTOBUF_HEADERS = {"Content-Type": "application/x-protobuf"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BASE_NS = 1_700_000_000_000_000_000


@dataclass
class Sent:
    seconds: float  # from the first request until the last 200
    sender_cpu: float  # CPU seconds the senders spent (their processes, or this process's)


def _send_threads(
    url: str, bodies: list[bytes], senders: int, headers: dict[str, str]
) -> list[str]:
    """Post every body from `senders` threads, retrying 503s as exporters do; the failures."""
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
                response = session.post(f"{url}/v1/traces", data=body, headers=headers, timeout=120)
                if response.status_code == 503:
                    time.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                break

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def _child(
    url: str,
    bodies: list[bytes],
    senders: int,
    headers: dict[str, str],
    start: Any,
    results: Any,
) -> None:
    start.wait()
    cpu = time.process_time()
    failures = _send_threads(url, bodies, senders, headers)
    results.put((failures, time.process_time() - cpu))


def send_all(
    url: str,
    bodies: list[bytes],
    senders: int,
    headers: dict[str, str] | None = None,
    processes: int = 1,
) -> Sent:
    """Post every body to `url` from `senders` threads (retrying 503s); with `processes` > 1,
    the threads are spread over that many forked processes, so that the senders' own Python
    (one GIL) does not cap what a multi-process Studio is offered."""
    headers = headers or PROTOBUF_HEADERS
    if processes <= 1:
        started, cpu = time.perf_counter(), time.process_time()
        failures = _send_threads(url, bodies, senders, headers)
        sent = Sent(time.perf_counter() - started, time.process_time() - cpu)
    else:
        context = multiprocessing.get_context("fork")
        start = context.Barrier(processes + 1)
        results = context.Queue()
        children = [
            context.Process(
                target=_child,
                args=(
                    url,
                    bodies[i::processes],
                    max(1, senders // processes),
                    headers,
                    start,
                    results,
                ),
                daemon=True,
            )
            for i in range(processes)
        ]
        for child in children:
            child.start()
        start.wait()
        started = time.perf_counter()
        failures, cpu_total = [], 0.0
        for _ in children:
            child_failures, child_cpu = results.get()
            failures += child_failures
            cpu_total += child_cpu
        sent = Sent(time.perf_counter() - started, cpu_total)
        for child in children:
            child.join()
    assert not failures, failures[:3]
    return sent


def rows_of(body: bytes) -> list[tuple[object, ...]]:
    """The floors' decoding of an OTLP/protobuf body: a row per span of the columns that carry
    its weight, JSON made by the same library as Studio's, so ratios compare like with like."""
    import orjson
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


def setup_django(data_dir: str | None) -> Path:
    """Studio on `data_dir` (default: a new temporary directory, or DATABASE_URL's database),
    Django set up and the database migrated; the directory."""
    directory = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["STUDIO_DATA_DIR"] = str(directory)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    return directory


@dataclass
class Timed:
    wall: float  # median seconds
    cpu: float  # median CPU seconds of this process
    least_cpu: float
    result: Any  # the last call's


def timed(repeat: int, fn: Any) -> Timed:
    """`fn` called `repeat` times: on a shared machine the wall time includes waiting for a core;
    the CPU time is what the call itself costs."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timed(statistics.median(walls), statistics.median(cpus), min(cpus), result)


@dataclass
class RequestTimes:
    """`repeat` GETs of one URL through Django's test client, in milliseconds."""

    median: float
    p95: float
    cpu: float  # median CPU time of this process (on SQLite the database's work too)
    queries: int  # the last request's
    response: Any  # the last one

    def columns(self) -> str:
        return f"{self.median:8.1f} {self.p95:8.1f} {self.cpu:8.1f} {self.queries:8d}"


def time_requests(client: Any, url: str, repeat: int) -> RequestTimes:
    """GET `url` once to warm (templates compiled, pages cached), then `repeat` times."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)
    timings, cpu = [], []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    timings.sort()
    p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
    return RequestTimes(
        statistics.median(timings),
        p95,
        statistics.median(cpu),
        len(queries.captured_queries),
        response,
    )


def otlp(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    from tracing.otlp_json import key_values

    return key_values(attributes)


def agent_trace(trace_id: str, spans: int, rng: random.Random) -> list[dict[str, Any]]:
    """An agent loop: the root agent, then rounds of format > chat > tool (> nested functions),
    with sub-agents every so often, until `spans` spans."""
    out: list[dict[str, Any]] = []
    clock = [0]

    def add(name: str, parent: str, attributes: dict[str, Any], duration: int) -> str:
        span_id = f"{rng.getrandbits(64) | 1:016x}"
        start = clock[0]
        clock[0] += max(duration // 4, 1000)
        document = {
            "traceId": trace_id,
            "spanId": span_id,
            "name": name,
            "kind": 1,
            "startTimeUnixNano": str(BASE_NS + start),
            "endTimeUnixNano": str(BASE_NS + start + duration),
            "attributes": otlp(attributes),
            "status": {"code": 2 if rng.random() < 0.01 else 1},
        }
        if parent:
            document["parentSpanId"] = parent
        out.append(document)
        return span_id

    root = add(
        "invoke_agent Orchestrator",
        "",
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Orchestrator"},
        spans * 2_000_000,
    )
    parents = [root]
    while len(out) < spans:
        parent = parents[-1]
        if rng.random() < 0.05 and len(parents) < 6:
            parents.append(
                add(
                    "invoke_agent Helper",
                    parent,
                    {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Helper"},
                    5_000_000,
                )
            )
            continue
        if rng.random() < 0.05 and len(parents) > 1:
            parents.pop()
        add(
            "format openai",
            parent,
            {"gen_ai.operation.name": "format", "agentscope.format.target": "openai"},
            100_000,
        )
        add(
            "chat gpt-4o",
            parent,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": rng.randrange(100, 4000),
                "gen_ai.usage.output_tokens": rng.randrange(10, 400),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [
                                {
                                    "type": "tool_call",
                                    "id": "c",
                                    "name": "search",
                                    "arguments": {"q": "x"},
                                }
                            ],
                        }
                    ]
                ),
            },
            800_000,
        )
        tool = add(
            "execute_tool search",
            parent,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "search",
                "gen_ai.tool.call.arguments": '{"q": "x"}',
            },
            300_000,
        )
        for _ in range(rng.randrange(0, 3)):
            add(
                "invoke_generic_function fetch",
                tool,
                {
                    "gen_ai.operation.name": "invoke_generic_function",
                    "agentscope.function.name": "fetch",
                },
                50_000,
            )
    return out[:spans]


def store(spans: list[dict[str, Any]]) -> None:
    from ingest.otlp import decode_json
    from ingest.writer import write_batch

    document = {
        "resourceSpans": [
            {
                "resource": {"attributes": otlp({"service.name": "bench-agent"})},
                "scopeSpans": [{"scope": {"name": "bench"}, "spans": spans}],
            }
        ]
    }
    batch = decode_json(json.dumps(document).encode())
    assert not batch.rejected, batch.messages
    for start in range(0, len(batch.records), 5000):
        write_batch(batch.records[start : start + 5000])


def enrich(spans: list[dict[str, Any]], rng: random.Random) -> None:
    """Give every model call 2 kB of input messages and a cached-token count."""
    words = ["agent", "tool", "result", "price", "the", "of", "search", "answer"]
    for span in spans:
        if span["name"].startswith("chat"):
            text = " ".join(rng.choice(words) for _ in range(300))
            messages = [{"role": "user", "parts": [{"type": "text", "content": text}]}]
            span["attributes"] += otlp(
                {
                    "gen_ai.input.messages": json.dumps(messages),
                    "gen_ai.usage.cache_read.input_tokens": 50,
                    "gen_ai.request.temperature": 0.2,
                }
            )


def variant(spans: list[dict[str, Any]], trace_id: str, rng: random.Random) -> list[dict]:
    """The same run again, a little different: slower tools, new and lost spans, new answers."""
    out = []
    removed: set[str] = set()
    for span in copy.deepcopy(spans):
        span["traceId"] = trace_id
        if span.get("parentSpanId") in removed:
            removed.add(span["spanId"])
            continue
        if span["name"].startswith("execute_tool") and rng.random() < 0.02:
            removed.add(span["spanId"])
            continue
        if span["name"].startswith("execute_tool") and rng.random() < 0.1:
            span["endTimeUnixNano"] = str(int(span["endTimeUnixNano"]) + 2_000_000)
        if span["name"].startswith("chat"):
            span["attributes"] += otlp(
                {
                    "gen_ai.output.messages": json.dumps(
                        [{"role": "assistant", "parts": [{"type": "text", "content": "v2"}]}]
                    )
                }
            )
        out.append(span)
        if span["name"].startswith("format") and rng.random() < 0.02:
            extra = copy.deepcopy(span)
            extra["spanId"] = f"{rng.getrandbits(64) | 1:016x}"
            extra["name"] = "format retry"
            out.append(extra)
    return out


def store_pair(size: int, rng: random.Random) -> tuple[str, str]:
    """Two agent traces of `size` spans (enriched) that differ as `variant` makes them: their
    ids."""
    trace_a = f"{rng.getrandbits(128):032x}"
    trace_b = f"{rng.getrandbits(128):032x}"
    spans = agent_trace(trace_a, size, rng)
    enrich(spans, rng)
    started = time.perf_counter()
    store(spans)
    store(variant(spans, trace_b, rng))
    print(f"stored 2 x {size:,} spans in {time.perf_counter() - started:.1f} s")
    return trace_a, trace_b
