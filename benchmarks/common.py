"""What the ingest benchmarks share: posting OTLP bodies to a Studio as exporters do, and the
CPU time that processes spent, so a figure can say whether the load generator itself was the
bottleneck on a small machine."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

PROTOBUF_HEADERS = {"Content-Type": "application/x-protobuf"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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
