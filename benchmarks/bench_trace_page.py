"""Benchmark the trace page: server render of big traces, Chromium on a 50,000-span trace, and
the span panel of a span carrying 1 MB of messages.

    .venv/bin/python benchmarks/bench_trace_page.py              # 10,000 and 50,000 spans
    .venv/bin/python benchmarks/bench_trace_page.py --no-browser # server figures only

It migrates a fresh STUDIO_DATA_DIR and stores generated agent traces through the real ingest
path (OTLP/JSON decoding, then the writer's `write_batch`). Server figures come from Django's test
client (middleware, view, template: everything but the socket), median of `--repeat` renders.
The browser figures come from a real `runstudio` process on that database, driven by Playwright
with Debian's Chromium: from navigation until the tree answers (rows laid out, trace.js ready),
then scroll, expand and collapse, filter, and select a span (until its panel is swapped in).

Targets (issue 4): 10,000 spans server-side < 1 s; 50,000 spans usable in Chromium < 3 s;
the panel of a span with 1 MB of messages < 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import start_studio  # noqa: E402

BASE_NS = 1_700_000_000_000_000_000
CHROMIUM = "/usr/bin/chromium"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000", help="span counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--data-dir", help="use this directory (default: a temporary one)")
    return parser.parse_args()


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


def big_message_trace(trace_id: str) -> tuple[list[dict[str, Any]], str]:
    """One chat span carrying about 1 MB of messages (200 turns of ~5 kB)."""
    rng = random.Random(7)
    words = ["agent", "tool", "result", "price", "the", "of", "search", "answer", "<b>", "&"]
    text = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
    messages = []
    for i in range(200):
        if i % 2:
            messages.append(
                {
                    "role": "assistant",
                    "parts": [
                        {"type": "text", "content": text(900)},
                        {
                            "type": "tool_call",
                            "id": f"c{i}",
                            "name": "search",
                            "arguments": {"query": text(20), "page": i},
                        },
                    ],
                }
            )
        else:
            messages.append({"role": "user", "parts": [{"type": "text", "content": text(1200)}]})
    body = json.dumps(messages)
    span_id = "00000000000000b1"
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": str(BASE_NS),
        "endTimeUnixNano": str(BASE_NS + 10**9),
        "attributes": otlp(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.input.messages": body,
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": text(300)}],
                            "finish_reason": "stop",
                        }
                    ]
                ),
            }
        ),
    }
    return [span], f"{len(body) / 1e6:.2f} MB"


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


def timed(repeat: int, fn: Any) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def browser(data_dir: Path, trace_id: str, spans: int) -> None:
    from playwright.sync_api import sync_playwright

    # The server reads the database this script filled (start_studio would give PostgreSQL a
    # fresh one).
    database = {"DATABASE_URL": os.environ["DATABASE_URL"]} if "DATABASE_URL" in os.environ else {}
    server, cleanup = start_studio(data_dir, database)
    url = server.url
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            page = chromium.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/traces/{trace_id}/", wait_until="commit")  # warm the server
            page.wait_for_selector("#tree.virtual .r")
            results: list[tuple[str, float]] = []
            painted = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"

            def step(label: str, action: Any) -> None:
                started = time.perf_counter()
                action()
                page.evaluate(painted)
                results.append((label, time.perf_counter() - started))

            def navigate() -> None:
                page.goto(f"{url}/traces/{trace_id}/", wait_until="commit")
                page.wait_for_selector("#tree.virtual .r")  # trace.js has drawn the tree

            step("navigate until the tree is drawn", navigate)
            ids = page.evaluate(
                "(() => { const rows = JSON.parse(document.getElementById('tree-data')"
                f".textContent).rows; return [rows[0][0], rows[{spans // 2}][0]]; }})()"
            )
            root, middle = ids

            def scroll() -> None:
                page.evaluate(
                    "(() => { const pane = document.querySelector('.tree-pane');"
                    " pane.scrollTop = pane.scrollHeight / 2; })()"
                )

            step("scroll to the middle", scroll)
            step("collapse the root", lambda: page.click(f"#s-{root} .tg"))
            step("expand the root", lambda: page.click(f"#s-{root} .tg"))
            step("collapse all", lambda: page.click("[data-tree=collapse]"))
            step("expand all", lambda: page.click("[data-tree=expand]"))
            step(
                "filter 'fetch' (highlights, opens ancestors)",
                lambda: (
                    page.fill("#tree-filter", "fetch"),
                    page.wait_for_selector("#tree-filter-count:has-text('match')"),
                ),
            )
            page.fill("#tree-filter", "")

            def select() -> None:
                page.click("#tree")
                page.evaluate(
                    "(() => { const pane = document.querySelector('.tree-pane');"
                    " pane.scrollTop = pane.scrollHeight / 2; })()"
                )
                page.click(f"#s-{middle} a")
                page.wait_for_selector(f'#span-panel [data-span-id="{middle}"]')

            step("select a span, until its panel shows", select)
            chromium.close()
        print(f"  Chromium, {spans:,} spans:")
        for label, seconds in results:
            print(f"    {label:<48} {seconds * 1000:8.0f} ms")
    finally:
        server.stop()
        cleanup()


def main() -> None:
    args = parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-"))
    os.environ["STUDIO_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    rng = random.Random(42)
    client = Client()
    nproc = os.cpu_count()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    print(f"Machine: {nproc} CPUs, {model}; database: {data_dir}")
    try:
        traces = {}
        for size in sizes:
            trace_id = f"{rng.getrandbits(128):032x}"
            started = time.perf_counter()
            store(agent_trace(trace_id, size, rng))
            print(f"stored {size:,} spans in {time.perf_counter() - started:.1f} s")
            traces[size] = trace_id
        big_trace = f"{rng.getrandbits(128):032x}"
        big_spans, big_size = big_message_trace(big_trace)
        store(big_spans)

        print("Server (Django test client, median):")
        for size, trace_id in traces.items():
            seconds, response = timed(args.repeat, lambda t=trace_id: client.get(f"/traces/{t}/"))
            assert response.status_code == 200
            print(
                f"  /traces/<id>/ with {size:>6,} spans: {seconds * 1000:7.0f} ms, "
                f"{len(response.content) / 1e6:.1f} MB of HTML"
            )
        seconds, response = timed(
            args.repeat * 2,
            lambda: client.get(
                f"/traces/{big_trace}/spans/00000000000000b1/", HTTP_HX_REQUEST="true"
            ),
        )
        assert response.status_code == 200
        print(
            f"  span panel, {big_size} of messages:   {seconds * 1000:7.0f} ms, "
            f"{len(response.content) / 1e6:.1f} MB of HTML"
        )
        seconds, response = timed(args.repeat, lambda: client.get(f"/traces/{big_trace}/otlp.json"))
        print(f"  OTLP/JSON download of that trace:  {seconds * 1000:7.0f} ms")
        if not args.no_browser and Path(CHROMIUM).exists():
            from django.db import connection

            connection.close()
            for size, trace_id in traces.items():
                browser(data_dir, trace_id, size)
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
