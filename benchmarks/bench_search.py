"""Benchmark search: full text, attribute clauses and trace-level filters on a big SQLite (or, with
DATABASE_URL, PostgreSQL) database of realistic agent traces with messages.

    .venv/bin/python benchmarks/bench_search.py                  # 100,000 traces / 1,000,000 spans
    .venv/bin/python benchmarks/bench_search.py --traces 20000   # smaller
    .venv/bin/python benchmarks/bench_search.py --data-dir /tmp/bench --keep   # build once, reuse

Each trace is an agent run of 10 spans: the agent (the user's question), two LLM calls carrying
the chat so far and the answer as GenAI messages JSON, two tool calls (arguments, result), a
formatter and some functions; questions are in English, and one in ten in Chinese, Japanese or
Arabic. The spans go in through the writer's own INSERT and the trace rows come from the writer's
summary SQL; then the search index is built as the indexer builds it at ingest (SQLite; on
PostgreSQL the trigger has built it with the spans). Then
pages render through Django's test client and the median and p95 of each are printed, with the
bytes on disk per span.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import setup_django, time_requests  # noqa: E402

DAY_NS = 86_400 * 10**9
SPANS_PER_TRACE = 10
CITIES = ["Paris", "Lisbon", "Osaka", "Denver", "Nairobi", "Lima", "Oslo", "Hanoi", "Quito"]
CITIES += [f"Town{n}" for n in range(200)]  # a long tail: most words are rare
RARE_CITY = "Tokyo"  # in about 1 % of traces
WORDS = (
    "the agent called a tool to check the weather and the budget for the trip then it planned "
    "each day with museums food trains hotels and a short walk along the river before dinner"
).split()
FOREIGN = [
    "东京的天气怎么样？我想去旅行三天。",
    "東京タワーの高さは何メートルですか？",
    "ما هو الطقس في دبي غدا؟ أريد أن أسافر",
]
MODELS = ["gpt-4o"] * 6 + ["gpt-4o-mini"] * 3 + ["qwen-max"]


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def chat(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def build(traces: int, seed: int = 42) -> None:
    from django.db import connection, transaction

    from ingest.otlp import SPAN_COLUMNS
    from ingest.writer import _INSERT_SQL, refresh_summaries
    from tracing import search

    rng = random.Random(seed)
    now = time.time_ns()
    started = time.perf_counter()
    rows: list[tuple[Any, ...]] = []
    trace_ids: list[str] = []

    def flush() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(_INSERT_SQL, rows)
            refresh_summaries(cursor, trace_ids)
        rows.clear()
        trace_ids.clear()

    for t in range(traces):
        trace_id = f"{rng.getrandbits(128):032x}"
        trace_ids.append(trace_id)
        start = now - rng.randrange(30 * DAY_NS)
        duration = int(rng.lognormvariate(20, 1.2))
        city = RARE_CITY if rng.random() < 0.01 else rng.choice(CITIES)
        if rng.random() < 0.1:
            question = rng.choice(FOREIGN)
        else:
            question = f"Plan {rng.randrange(2, 9)} days in {city}: {sentence(rng, 12)}?"
        failed_tool = rng.random() < 0.05
        model = rng.choice(MODELS)
        agent = rng.choice(["Planner", "Booker", "Researcher"])
        root = f"{rng.getrandbits(64):016x}"
        history = [chat("system", "You plan trips."), chat("user", question)]
        for s in range(SPANS_PER_TRACE):
            span_id = root if s == 0 else f"{rng.getrandbits(64):016x}"
            kind = ["agent", "formatter", "llm", "tool", "tool", "llm", "function", "function",
                    "formatter", "function"][s]  # fmt: skip
            attributes: dict[str, Any] = {}
            status, message, model_col, tokens_in, tokens_out = 1, "", "", 0, 0
            name, label, operation = f"{kind} step {s}", "", "chat"
            if kind == "agent":
                name, label, operation = f"invoke_agent {agent}", agent, "invoke_agent"
                attributes = {
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": agent,
                    "gen_ai.input.messages": json.dumps([chat("user", question)]),
                }
            elif kind == "llm":
                answer = f"For {city}, {sentence(rng, 30)}."
                history = [*history, chat("assistant", answer)]
                tokens_in, tokens_out = rng.randrange(200, 4000), rng.randrange(20, 800)
                name, label, model_col = f"chat {model}", model, model
                attributes = {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": model,
                    "gen_ai.usage.input_tokens": tokens_in,
                    "gen_ai.usage.output_tokens": tokens_out,
                    "llm.token_count.total": tokens_in + tokens_out,
                    "gen_ai.input.messages": json.dumps(history[:-1]),
                    "gen_ai.output.messages": json.dumps([history[-1]]),
                }
            elif kind == "tool":
                tool = rng.choice(["get_weather_forecast", "search_hotels", "convert_currency"])
                name, label, operation = f"execute_tool {tool}", tool, "execute_tool"
                attributes = {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": tool,
                    "gen_ai.tool.call.arguments": json.dumps({"city": city, "days": 3}),
                    "gen_ai.tool.call.result": f"{city}: {sentence(rng, 15)}",
                }
                if failed_tool and s == 4:
                    status, message = 2, f"{tool} timed out after 30 s"
                    attributes["error.type"] = "TimeoutError"
            else:
                attributes = {"gen_ai.operation.name": operation, "code.function": name}
            span_start = start + (0 if s == 0 else rng.randrange(max(duration, 1)))
            span_end = start + duration if s == 0 else min(start + duration, span_start + 10**7)
            values = {
                "trace_id": trace_id, "span_id": span_id, "parent_span_id": "" if s == 0 else root,
                "start_ns": span_start, "end_ns": span_end, "kind": 1, "status_code": status,
                "span_type": kind, "operation": operation, "input_tokens": tokens_in,
                "output_tokens": tokens_out, "flags": 0, "dropped_attributes_count": 0,
                "dropped_events_count": 0, "dropped_links_count": 0, "name": name,
                "service_name": "travel-agent", "model": model_col, "label": label,
                "conversation_id": f"conv-{t // 5}",
                "input_preview": question[:200] if s == 0 else "", "status_message": message,
                "trace_state": "", "attributes_json": json.dumps(attributes, ensure_ascii=False),
                "events_json": "[]", "links_json": "[]",
                "resource_json": json.dumps({"attributes": {"service.name": "travel-agent",
                                                            "deployment.environment": "prod"}}),
                "scope_json": '{"name": "agentscope"}', "project": "default", "cost_usd": None,
            }  # fmt: skip
            rows.append(tuple(values[column] for column in SPAN_COLUMNS))
        if len(trace_ids) >= 500:
            flush()
        if t and t % 10_000 == 0:
            rate = t * SPANS_PER_TRACE / (time.perf_counter() - started)
            print(f"  {t:,} traces, {rate:,.0f} spans/s", flush=True)
    if rows:
        flush()
    print(f"built {traces:,} traces / {traces * SPANS_PER_TRACE:,} spans in "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    # Both databases index after the commit (what runstudio's indexer thread does).
    started = time.perf_counter()
    indexed = 0
    while done := search.index_pending(limit=5000):
        indexed += done
    if indexed:
        elapsed = time.perf_counter() - started
        print(f"indexed {indexed:,} spans in {elapsed:.0f} s ({indexed / elapsed:,.0f} spans/s)")


def disk_usage() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.execute(
                "SELECT CASE WHEN name LIKE 'tracing_span_search%%' THEN 'search index' "
                "WHEN name LIKE 'tracing_span_attr%%' THEN 'attribute table' "
                "ELSE 'everything else' END, SUM(pgsize) FROM dbstat GROUP BY 1"
            )
        else:
            cursor.execute(
                "SELECT 'search index', pg_total_relation_size('tracing_span_search') UNION ALL "
                "SELECT 'attribute table', pg_total_relation_size('tracing_span_attr') UNION ALL "
                "SELECT 'everything else', pg_total_relation_size('tracing_span') + "
                "pg_total_relation_size('tracing_trace')"
            )
        sizes = dict(cursor.fetchall())
        cursor.execute("SELECT COUNT(*) FROM tracing_span")
        spans = cursor.fetchone()[0]
    before = sizes.get("everything else", 0) / spans
    text = sizes.get("search index", 0) / spans
    attrs = sizes.get("attribute table", 0) / spans
    after = before + text + attrs
    return (
        f"bytes on disk per span: {before:,.0f} without the search tables, {after:,.0f} with them "
        f"(x{after / before:.2f}: full text {text:,.0f}, attributes {attrs:,.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20, help="renders per page")
    parser.add_argument("--data-dir", help="use (and with --keep, reuse) this directory")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    data_dir = setup_django(args.data_dir)
    from django.db import connection
    from django.test import Client

    from benchmarks.bench_overview import calibrate
    from tracing.models import Span, Trace

    if not (args.keep and Trace.objects.exists()):
        build(args.traces)
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA optimize")
        else:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
    count = Trace.objects.count()
    big = Trace.objects.order_by("-start_ns").values_list("trace_id", flat=True)[count // 2]
    failed = Span.objects.filter(status_code=2).values_list("trace_id", flat=True).first()
    pages = {
        "overview, no filter": "/traces/",
        "full text: Tokyo (~1 %)": f"/traces/?q={RARE_CITY}",
        "full text: Town17 (~0.5 %)": "/traces/?q=Town17",
        "full text: 东京 (2 chars)": "/traces/?q=%E4%B8%9C%E4%BA%AC",
        "full text: タワー": "/traces/?q=%E3%82%BF%E3%83%AF%E3%83%BC",
        "full text: الطقس": "/traces/?q=%D8%A7%D9%84%D8%B7%D9%82%D8%B3",
        "full text: common word": "/traces/?q=museums",
        "full text: error (status)": "/traces/?q=error",
        "attr: model = gpt-4o-mini": "/traces/?attr=gen_ai.request.model+%3D+gpt-4o-mini",
        "attr: tokens > 4500": "/traces/?attr=llm.token_count.total+%3E+4500",
        "attr: error.type exists": "/traces/?attr=error.type+exists",
        "error in a tool span": "/traces/?error_type=tool",
        "model = qwen-max": "/traces/?model=qwen-max",
        "agent = Booker, >= 10 spans": "/traces/?agent=Booker&min_spans=10",
        "api: full text Tokyo": f"/api/traces/?q={RARE_CITY}",
        "api: attr + q": f"/api/traces/?q={RARE_CITY}&attr=gen_ai.request.model+%3D+gpt-4o",
        "finder: one trace, 'weather'": f"/traces/{big}/find?q=weather",
        "finder: errors": f"/traces/{failed}/find?q=timed+out",
    }
    client = Client(HTTP_HOST="localhost")
    print(f"{count:,} traces on {connection.vendor}; {args.repeat} renders each, in ms")
    print(disk_usage())
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"calibration (fixed Python loop): {calibrate():.1f} ms")
    # cpu: this process's CPU time (on SQLite the database's work too), steadier than wall time
    # on a loaded machine.
    print(f"{'page':<30} {'median':>8} {'p95':>8} {'cpu':>8} {'queries':>8} {'rows':>5}")
    for label, url in pages.items():
        timing = time_requests(client, url, args.repeat)
        response = timing.response
        if url.startswith("/api/"):
            rows = len(response.json()["results"])
        elif "/find" in url:
            rows = len(response.json()["matches"])
        else:
            rows = response.content.count(b'class="trace-row')
        print(f"{label:<30} {timing.columns()} {rows:5d}")
    print(f"load average after: {os.getloadavg()[0]:.2f}; calibration {calibrate():.1f} ms")
    if not args.keep and not args.data_dir:
        shutil.rmtree(data_dir)


if __name__ == "__main__":
    main()
