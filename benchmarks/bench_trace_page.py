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
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import BASE_NS, agent_trace, otlp, setup_django, store, timed  # noqa: E402
from tests.conftest import start_studio  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000", help="span counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--data-dir", help="use this directory (default: a temporary one)")
    return parser.parse_args()


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
    data_dir = setup_django(args.data_dir)
    from django.test import Client

    rng = random.Random(42)
    client = Client(HTTP_HOST="localhost")
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
            page = timed(args.repeat, lambda t=trace_id: client.get(f"/traces/{t}/"))
            assert page.result.status_code == 200
            print(
                f"  /traces/<id>/ with {size:>6,} spans: {page.wall * 1000:7.0f} ms, "
                f"{len(page.result.content) / 1e6:.1f} MB of HTML"
            )
        panel = timed(
            args.repeat * 2,
            lambda: client.get(
                f"/traces/{big_trace}/spans/00000000000000b1/", HTTP_HX_REQUEST="true"
            ),
        )
        assert panel.result.status_code == 200
        print(
            f"  span panel, {big_size} of messages:   {panel.wall * 1000:7.0f} ms, "
            f"{len(panel.result.content) / 1e6:.1f} MB of HTML"
        )
        download = timed(args.repeat, lambda: client.get(f"/traces/{big_trace}/otlp.json"))
        print(f"  OTLP/JSON download of that trace:  {download.wall * 1000:7.0f} ms")
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
