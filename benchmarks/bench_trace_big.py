"""Benchmark the trace page on one very large trace: server time and memory, and time to usable
in Chromium, for one reader and for several at once (issue 11).

    .venv/bin/python benchmarks/bench_trace_big.py                       # 150,000 spans
    .venv/bin/python benchmarks/bench_trace_big.py --data-dir /tmp/big   # keep (and reuse) it

It stores one agent trace (nested agent > format/chat/tool > function spans, each carrying about
1 KB of attributes) through the real ingest path into a fresh STUDIO_DATA_DIR (or the database of
DATABASE_URL), starts a real `runstudio` on it as tests/conftest.py does, and measures that
process from /proc: VmRSS before each step and VmHWM during it (the peak is reset through
/proc/<pid>/clear_refs), so "growth" is the peak over the resident size before. Each step gets a
freshly started server, warmed up on /traces/.

Steps, each for 1 reader and for `--readers` at once:
- the page's HTML (`/traces/<id>/`), read to the end;
- the tree data, when the page points trace.js at it (`data-tree-url`), read to the end;
- Chromium (Debian's, through Playwright): from navigation until the tree shows rows and the
  first span's panel is shown (usable), and until every row has arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_trace_page import CHROMIUM  # noqa: E402
from common import agent_trace, otlp, store  # noqa: E402

from tests.conftest import start_studio  # noqa: E402

WORDS = ["agent", "tool", "result", "price", "the", "of", "search", "answer", "plan", "step"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=150_000)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--data-dir", help="use (and keep) this directory")
    parser.add_argument("--no-browser", action="store_true")
    return parser.parse_args()


def fill(spans: int, data_dir: Path) -> str:
    """Store the trace unless `data_dir` has it already; its trace id."""
    marker = data_dir / f"bench-trace-{spans}.txt"
    if marker.exists():
        return marker.read_text().strip()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    rng = random.Random(11)
    trace_id = f"{rng.getrandbits(128):032x}"
    started = time.perf_counter()
    documents = agent_trace(trace_id, spans, rng)
    for document in documents:  # about 1 KB of attributes a span, as real agent spans carry
        text = " ".join(rng.choice(WORDS) for _ in range(150))[:900]
        document["attributes"] += otlp({"app.context": text})
    for start in range(0, len(documents), 10_000):
        store(documents[start : start + 10_000])
    print(f"stored {spans:,} spans in {time.perf_counter() - started:.1f} s")
    marker.write_text(trace_id)
    return trace_id


def status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) // 1024  # MB
    return fields


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of the process, all its threads (the figure that a busy
    machine does not inflate, unlike wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Memory:
    """The server's resident size before a step and its peak during it, and its CPU time."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> Memory:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # resets VmHWM to VmRSS
        self.before = status(self.pid)["VmRSS"]
        self.cpu = cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = cpu_seconds(self.pid) - self.cpu
        after = status(self.pid)
        self.peak, self.after = after["VmHWM"], after["VmRSS"]

    def __str__(self) -> str:
        return (
            f"RSS {self.before} MB before, peak {self.peak} MB "
            f"(growth {self.peak - self.before} MB), {self.after} MB after; "
            f"server CPU {self.cpu:.2f} s"
        )


def concurrently(readers: int, fn: Any) -> list[Any]:
    results: list[Any] = [None] * readers

    def run(i: int) -> None:
        results[i] = fn()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def fetch(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with requests.get(url, stream=True, timeout=300) as response:
        response.raise_for_status()
        size = sum(len(part) for part in response.iter_content(64 * 1024))
    return time.perf_counter() - started, size


async def usable(url: str, first: str, readers: int) -> list[tuple[float, float]]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )

        async def reader() -> float:
            context = await chromium.new_context(viewport={"width": 1400, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(120_000)
            started = time.perf_counter()
            await page.goto(url, wait_until="commit")
            await page.wait_for_selector("#tree.virtual .r")
            await page.wait_for_selector(f'#span-panel [data-span-id="{first}"]')
            seconds = time.perf_counter() - started
            # A streamed tree keeps aria-busy until its last row has arrived.
            await page.wait_for_selector("#tree.virtual:not([aria-busy])")
            complete = time.perf_counter() - started
            await context.close()
            return seconds, complete

        times = await asyncio.gather(*(reader() for _ in range(readers)))
        await chromium.close()
    return list(times)


def main() -> None:
    args = parse_args()
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="bench-big-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["STUDIO_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    import django

    django.setup()
    from django.db import connection

    trace_id = fill(args.spans, data_dir)
    connection.close()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"Machine: {os.cpu_count()} CPUs, {model}; load average {' '.join(load)}")
    database = {"DATABASE_URL": os.environ["DATABASE_URL"]} if "DATABASE_URL" in os.environ else {}

    def measured(label: str, readers: int, step: Any) -> None:
        # A fresh server for each step: memory Python freed for an earlier step stays resident
        # and would hide this step's growth.
        server, cleanup = start_studio(data_dir, database)
        try:
            requests.get(f"{server.url}/traces/", timeout=60).raise_for_status()  # warm up
            with Memory(server.process.pid) as memory:
                results = step(server, readers)
            print(f"  {label}, {readers} reader(s): {results}; {memory}")
        finally:
            server.stop()
            cleanup()

    def read(url: str) -> Any:
        def step(server: Any, readers: int) -> str:
            results = concurrently(readers, lambda: fetch(server.url + url))
            seconds = ", ".join(f"{t:.2f}" for t, _ in results)
            return f"{seconds} s, {results[0][1] / 1e6:.1f} MB"

        return step

    def browse(server: Any, readers: int) -> str:
        times = asyncio.run(usable(f"{server.url}/traces/{trace_id}/", first, readers))
        usable_in = ", ".join(f"{t:.2f}" for t, _ in times)
        complete = ", ".join(f"{t:.2f}" for _, t in times)
        return f"usable in {usable_in} s, every row in {complete} s"

    server, cleanup = start_studio(data_dir, database)
    try:
        html = requests.get(f"{server.url}/traces/{trace_id}/", timeout=300).text
    finally:
        server.stop()
        cleanup()
    first = re.search(r'data-selected="([0-9a-f]{16})"', html).group(1)
    tree_url = re.search(r'data-tree-url="([^"]+)"', html)
    steps = [("page HTML", read(f"/traces/{trace_id}/"))]
    if tree_url:
        steps.append(("tree data", read(tree_url.group(1).replace("&amp;", "&"))))
    if not args.no_browser and Path(CHROMIUM).exists():
        steps.append(("Chromium until usable", browse))
    print(f"{args.spans:,} spans:")
    for label, step in steps:
        for readers in (1, args.readers):
            measured(label, readers, step)


if __name__ == "__main__":
    main()
