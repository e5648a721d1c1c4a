"""Benchmark reading one very big trace through the API: time and server memory.

    .venv/bin/python benchmarks/bench_big_trace.py                 # 150,000 spans, 3 readers
    .venv/bin/python benchmarks/bench_big_trace.py --spans 20000   # a quicker look

It starts a real `runstudio` (as tests/conftest.py's start_studio does, on a temporary data dir,
or a fresh PostgreSQL database when DATABASE_URL points at one), sends one agent-like trace of
`--spans` spans (~1 KB of attributes each) over OTLP/HTTP, then restarts Studio on that storage
for each measurement, so every one starts from the same warm, quiet process:

- one reader of `/api/traces/<id>/`;
- `--readers` readers of it at once;
- one client paging through `/api/traces/<id>/spans/` until `next` is null (skipped, with a
  note, on a Studio that does not have that route).

Memory is the runstudio process's: VmRSS before the reads, and its peak during them (VmHWM,
reset through /proc/<pid>/clear_refs after the warm-up, and VmRSS sampled every 20 ms as a
cross-check), from /proc/<pid>/status. Run it from another tree (`python
/tmp/base/benchmarks/bench_big_trace.py`) to measure that tree's code: the server runs from the
tree the script is in.

Target (issue 11): RSS growth under 200 MB with three readers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import StudioServer, start_studio  # noqa: E402

BASE_NS = 1_780_000_000_000_000_000
WORDS = (
    "the agent searched for flights to Lisbon and compared prices across three carriers "
    "before asking the user which fare to book tool result price answer plan step"
).split()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=150_000)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000, help="spans per OTLP request")
    parser.add_argument("--page-limit", type=int, default=1000, help="`limit` when paging")
    parser.add_argument(
        "--data-dir",
        help="use this directory and keep it (default: a temporary one); a trace stored there by "
        "an earlier run is read again instead of sent again",
    )
    return parser.parse_args()


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def agent_spans(trace_id: str, total: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    """An agent loop of `total` spans: a root agent, then rounds of format > chat > tool, with
    sub-agents now and then. Every span carries about 1 KB of attributes (messages, tool
    arguments and results), and a format span starts at the same nanosecond as its chat span,
    so start times tie."""
    clock = BASE_NS
    made = 0

    def span(name: str, parent: str, start: int, duration: int, attributes: dict[str, Any]):
        nonlocal made
        made += 1
        span_id = f"{rng.getrandbits(64) | 1:016x}"
        document = {
            "traceId": trace_id,
            "spanId": span_id,
            "name": name,
            "kind": 3 if name.startswith("chat") else 1,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + duration),
            "attributes": [attr(key, value) for key, value in attributes.items()],
            "status": {"code": 2 if rng.random() < 0.01 else 1},
        }
        if parent:
            document["parentSpanId"] = parent
        return span_id, document

    root, document = span(
        "invoke_agent Orchestrator",
        "",
        clock,
        total * 2_000_000,
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "Orchestrator",
            "gen_ai.conversation.id": "bench-big-trace",
            "gen_ai.input.messages": json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": text(rng, 900)}]}]
            ),
        },
    )
    yield document
    parents = [root]
    while made < total:
        clock += rng.randrange(1_000, 50_000)
        parent = parents[-1]
        if rng.random() < 0.03 and len(parents) < 6:
            agent, document = span(
                "invoke_agent Helper",
                parent,
                clock,
                5_000_000,
                {
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": "Helper",
                    "gen_ai.agent.description": text(rng, 950),
                },
            )
            parents.append(agent)
            yield document
            continue
        if rng.random() < 0.03 and len(parents) > 1:
            parents.pop()
        kind = made % 3
        if kind == 0:
            # format and chat start together: ties in start time.
            _, document = span(
                "format openai",
                parent,
                clock,
                100_000,
                {
                    "gen_ai.operation.name": "format",
                    "agentscope.format.target": "openai",
                    "agentscope.format.input": text(rng, 950),
                },
            )
            yield document
            continue
        if kind == 1:
            _, document = span(
                "chat gpt-4o",
                parent,
                clock,
                800_000,
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
                                    {"type": "text", "content": text(rng, 500)},
                                    {
                                        "type": "tool_call",
                                        "id": f"call_{made}",
                                        "name": "search",
                                        "arguments": {"q": text(rng, 200)},
                                    },
                                ],
                                "finish_reason": "tool_calls",
                            }
                        ]
                    ),
                },
            )
            yield document
            continue
        _, document = span(
            "execute_tool search",
            parent,
            clock,
            300_000,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "search",
                "gen_ai.tool.call.id": f"call_{made}",
                "gen_ai.tool.call.arguments": json.dumps({"q": text(rng, 200)}),
                "gen_ai.tool.call.result": text(rng, 700),
            },
        )
        yield document


def batches(spans: Iterator[dict[str, Any]], size: int) -> Iterator[bytes]:
    chunk: list[dict[str, Any]] = []
    for span in spans:
        chunk.append(span)
        if len(chunk) == size:
            yield otlp_body(chunk)
            chunk = []
    if chunk:
        yield otlp_body(chunk)


def otlp_body(spans: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [attr("service.name", "bench-agent")]},
                    "scopeSpans": [{"scope": {"name": "bench", "version": "1"}, "spans": spans}],
                }
            ]
        }
    ).encode()


def post(url: str, body: bytes) -> None:
    for _ in range(600):
        response = requests.post(
            f"{url}/v1/traces",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=300,
        )
        if response.status_code == 200:
            return
        if response.status_code in (429, 502, 503, 504):
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        raise RuntimeError(f"ingest answered {response.status_code}: {response.text[:300]}")
    raise RuntimeError("ingest stayed busy")


def ingest(server: StudioServer, trace_id: str, spans: int, batch: int) -> float:
    started = time.perf_counter()
    rng = random.Random(42)
    with ThreadPoolExecutor(2) as pool:
        for future in [
            pool.submit(post, server.url, body)
            for body in batches(agent_spans(trace_id, spans, rng), batch)
        ]:
            future.result()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = server.api("/api/traces/", q=trace_id)["results"]
        if rows and rows[0]["span_count"] == spans:
            return time.perf_counter() - started
        time.sleep(0.5)
    raise RuntimeError(f"trace {trace_id} did not reach {spans} spans")


def status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Sampler(threading.Thread):
    """VmRSS of a process every 20 ms, keeping the maximum."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, status(self.pid)["VmRSS"])
            self.done.wait(0.02)

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak


def read_detail(url: str, trace_id: str, keep: bool = False) -> tuple[int, bytes]:
    """The detail, read to its end in 1 MB pieces; its size, and its body when `keep`."""
    pieces: list[bytes] = []
    size = 0
    with requests.get(f"{url}/api/traces/{trace_id}/", stream=True, timeout=600) as response:
        response.raise_for_status()
        for piece in response.iter_content(1 << 20):
            size += len(piece)
            if keep:
                pieces.append(piece)
    return size, b"".join(pieces)


def page_through(url: str, trace_id: str, limit: int) -> tuple[int, int, set[str]]:
    """Follow `next` from the first page; the spans seen, the pages, and the distinct ids."""
    seen: set[str] = set()
    spans = pages = 0
    next_url: str | None = f"{url}/api/traces/{trace_id}/spans/?limit={limit}"
    while next_url:
        response = requests.get(next_url, timeout=600)
        response.raise_for_status()
        body = response.json()
        pages += 1
        spans += len(body["results"])
        seen.update(span["span_id"] for span in body["results"])
        next_url = body["next"]
    return spans, pages, seen


def measure(
    data_dir: Path, env: dict[str, str], label: str, work: Callable[[str], str]
) -> dict[str, Any]:
    """Start Studio on the stored data, warm it up, reset its peak, run `work`, read its memory."""
    server, _ = start_studio(data_dir, env)
    try:
        pid = server.process.pid
        # Warm up: the detail and the list code paths, on a small trace.
        requests.get(f"{server.url}/api/traces/", timeout=60).raise_for_status()
        requests.get(f"{server.url}/api/traces/{WARM_TRACE}/", timeout=60).raise_for_status()
        time.sleep(1)
        before = status(pid)["VmRSS"]
        exact = reset_peak(pid)
        sampler = Sampler(pid)
        sampler.start()
        started = time.perf_counter()
        note = work(server.url)
        seconds = time.perf_counter() - started
        sampled = sampler.stop()
        after = status(pid)
        peak = max(after["VmHWM"] if exact else 0, sampled)
        result = {
            "label": label,
            "seconds": seconds,
            "before": before,
            "peak": peak,
            "after": after["VmRSS"],
            "exact": exact,
            "note": note,
        }
        growth = (peak - before) / 1e6
        print(
            f"  {label:<38} {seconds:7.1f} s   RSS {before / 1e6:6.0f} MB -> peak "
            f"{peak / 1e6:6.0f} MB (+{growth:5.0f} MB), after {after['VmRSS'] / 1e6:6.0f} MB"
            f"{'' if exact else ' (sampled)'}   {note}",
            flush=True,
        )
        return result
    finally:
        server.stop()


WARM_TRACE = "0123456789abcdef0123456789abcdef"


def main() -> None:
    args = parse_args()
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-"))
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"Code: {ROOT}")
    print(f"Machine: {os.cpu_count()} CPUs, {model}; load average {' '.join(load)}")
    trace_id = f"{random.Random(150).getrandbits(128):032x}"
    server, cleanup = start_studio(data_dir)
    # Later starts must find the same storage (start_studio gives PostgreSQL a fresh database).
    env = {"DATABASE_URL": server.env["DATABASE_URL"]} if "DATABASE_URL" in server.env else {}
    print(f"Storage: {env.get('DATABASE_URL', data_dir)}")
    try:
        try:
            stored = server.api("/api/traces/", q=trace_id)["results"]
            if stored and stored[0]["span_count"] == args.spans:
                print(f"The {args.spans:,}-span trace is already in {data_dir}")
            else:
                post(server.url, otlp_body(list(agent_spans(WARM_TRACE, 10, random.Random(1)))))
                seconds = ingest(server, trace_id, args.spans, args.batch)
                rate = f"{seconds:.1f} s ({args.batch} per request)"
                print(f"Ingested {args.spans:,} spans in {rate}")
        finally:
            server.stop()

        def one(url: str) -> str:
            started = time.perf_counter()
            size, body = read_detail(url, trace_id, keep=True)
            read = time.perf_counter() - started
            document = json.loads(body)  # checked within the time; the note gives the read alone
            spans = document["spans"]
            assert len(spans) == args.spans, len(spans)
            starts = [span["start_time_unix_nano"] for span in spans]
            assert starts == sorted(starts)
            return f"{size / 1e6:.0f} MB read in {read:.1f} s, {len(spans):,} spans in start order"

        def many(url: str) -> str:
            with ThreadPoolExecutor(args.readers) as pool:
                sizes = list(pool.map(lambda _: read_detail(url, trace_id)[0], range(args.readers)))
            return f"{args.readers} x {sizes[0] / 1e6:.0f} MB"

        def paged(url: str) -> str:
            probe = requests.get(f"{url}/api/traces/{trace_id}/spans/", timeout=60)
            if probe.status_code == 404:
                return "no /spans/ route on this code"
            spans, pages, seen = page_through(url, trace_id, args.page_limit)
            assert spans == len(seen) == args.spans, (spans, len(seen))
            return f"{pages} pages of {args.page_limit}, {spans:,} spans, each once"

        print("Reads (each on a freshly started Studio, after a warm-up):")
        measure(data_dir, env, "one reader of /api/traces/<id>/", one)
        measure(data_dir, env, f"{args.readers} readers of /api/traces/<id>/ at once", many)
        measure(data_dir, env, "paging /api/traces/<id>/spans/ fully", paged)
    finally:
        cleanup()
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
