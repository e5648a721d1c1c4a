"""Benchmark what an AgentScope application waits on, and the run pages, over real HTTP.

    .venv/bin/python benchmarks/bench_runs.py                  # 2,000 runs, 20,000 traces
    .venv/bin/python benchmarks/bench_runs.py --runs 500 --traces-per-run 4

Starts its own `runstudio` (fresh SQLite directory, free ports), then:
1. `POST /trpc/pushMessage` latency, sequentially as agentscope sends them (each message streamed
   in 5 chunks of the same id): the application blocks on every one.
2. registers `--runs` runs and sends `--traces-per-run` traces of 3 spans for each over OTLP/HTTP
   JSON, carrying the run id as `gen_ai.conversation.id`.
3. median and p95 of `/runs/`, `/runs/?project=`, `/runs/<id>/`, `/api/runs/`, `/api/runs/<id>/`.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import start_studio  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--traces-per-run", type=int, default=10)
    parser.add_argument("--messages", type=int, default=500, help="messages pushed (x5 chunks)")
    parser.add_argument("--repeat", type=int, default=30, help="requests per page")
    return parser.parse_args()


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return (
        f"median {statistics.median(ordered) * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms   "
        f"p99 {p99 * 1000:7.2f} ms"
    )


def bench_push(session: requests.Session, url: str, messages: int) -> None:
    session.post(f"{url}/trpc/registerRun", json={"id": "push", "project": "b", "name": "push"})
    samples = []
    started = time.perf_counter()
    for n in range(messages):
        msg_id = f"m{n}"
        for chunk in range(1, 6):
            body = {
                "runId": "push",
                "replyId": "r",
                "replyName": "Agent",
                "replyRole": "assistant",
                "msg": {
                    "id": msg_id,
                    "name": "Agent",
                    "role": "assistant",
                    "content": [{"type": "text", "text": "word " * (20 * chunk)}],
                    "metadata": {},
                    "timestamp": "2026-01-01 00:00:00.000",
                },
            }
            before = time.perf_counter()
            session.post(f"{url}/trpc/pushMessage", json=body).raise_for_status()
            samples.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    print(f"pushMessage x{len(samples):,} (sequential)  {percentiles(samples)}   "
          f"{len(samples) / elapsed:,.0f}/s")  # fmt: skip


def otlp_traces(run_ids: list[str], per_run: int, now_ns: int) -> dict:
    spans = []
    for r, run_id in enumerate(run_ids):
        conversation = {"key": "gen_ai.conversation.id", "value": {"stringValue": f'"{run_id}"'}}
        for t in range(per_run):
            trace_id = secrets.token_hex(16)
            start = now_ns - (len(run_ids) - r) * 10**9 + t * 10**7
            root = secrets.token_hex(8)
            operation = {"key": "gen_ai.operation.name", "value": {"stringValue": "invoke_agent"}}
            spans.append(
                {
                    "traceId": trace_id,
                    "spanId": root,
                    "name": "invoke_agent Agent",
                    "kind": 1,
                    "startTimeUnixNano": str(start),
                    "endTimeUnixNano": str(start + 5 * 10**6),
                    "attributes": [conversation, operation],
                }
            )
            for c in range(2):
                spans.append({
                    "traceId": trace_id, "spanId": secrets.token_hex(8), "parentSpanId": root,
                    "name": "chat gpt-4o", "kind": 1,
                    "startTimeUnixNano": str(start + c * 10**6),
                    "endTimeUnixNano": str(start + (c + 1) * 10**6),
                    "attributes": [
                        conversation,
                        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "100"}},
                        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "20"}},
                    ],
                })  # fmt: skip
    return {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}


def seed(session: requests.Session, url: str, runs: int, per_run: int) -> list[str]:
    started = time.perf_counter()
    run_ids = []
    for n in range(runs):
        run_id = f"run{n:06d}"
        project = f"project-{n % 10}"
        session.post(
            f"{url}/trpc/registerRun", json={"id": run_id, "project": project, "name": f"r{n}"}
        ).raise_for_status()
        run_ids.append(run_id)
        if n < 50:
            for m in range(50):
                message = {"id": f"{run_id}-{m}", "name": "Agent", "role": "assistant",
                           "content": "hello " * 30}  # fmt: skip
                session.post(f"{url}/trpc/pushMessage", json={"runId": run_id, "msg": message})
    now_ns = time.time_ns()
    batch = max(1, 1000 // per_run)
    for i in range(0, runs, batch):
        body = otlp_traces(run_ids[i : i + batch], per_run, now_ns)
        session.post(f"{url}/v1/traces", json=body).raise_for_status()
    print(f"seeded {runs:,} runs, {runs * per_run:,} traces, {runs * per_run * 3:,} spans "
          f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
    return run_ids


def bench_pages(session: requests.Session, url: str, run_id: str, repeat: int) -> None:
    pages = {
        "/runs/": "/runs/",
        "/runs/?project=": "/runs/?project=project-3",
        "/runs/<id>/ (50 msgs)": f"/runs/{run_id}/",
        # What an open run page polls every 2 s (htmx asks for each region alone).
        "  live region poll": f"/runs/{run_id}/?fragment=live",
        "  input region poll": f"/runs/{run_id}/?fragment=input",
        "/conversations/<id>/": f"/conversations/{run_id}/",
        "/api/runs/": "/api/runs/",
        "/api/runs/<id>/": f"/api/runs/{run_id}/",
    }
    for label, path in pages.items():
        htmx = {"HX-Request": "true"} if "fragment=" in path else {}
        session.get(f"{url}{path}", headers=htmx).raise_for_status()
        samples = []
        for _ in range(repeat):
            before = time.perf_counter()
            session.get(f"{url}{path}", headers=htmx).raise_for_status()
            samples.append(time.perf_counter() - before)
        print(f"{label:24} {percentiles(samples)}")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        server, cleanup = start_studio(Path(data_dir))
        url = server.url
        try:
            session = requests.Session()
            bench_push(session, url, args.messages)
            run_ids = seed(session, url, args.runs, args.traces_per_run)
            bench_pages(session, url, run_ids[0], args.repeat)
        finally:
            server.stop()
            cleanup()


if __name__ == "__main__":
    main()
