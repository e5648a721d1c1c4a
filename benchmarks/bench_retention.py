"""Ingest throughput while retention purges: a real `runstudio` on SQLite.

    python benchmarks/bench_retention.py [--old-spans 1000000] [--spans 100000] [--rounds 5]

Builds once a database holding `--old-spans` agent-like spans (10 a trace, about 1 KB of
input/output each) that ended 60 days ago. Then, in alternating rounds, each on a fresh copy of it:

- normal: runstudio with no background purge; 4 senders post `--spans` new spans over OTLP/HTTP
  (500 a request, as bench_ingest.py) and the time until every request has its 200 gives spans/s;
- purge: the same, while runstudio's background purge (STUDIO_RETENTION_DAYS=30) deletes the old
  spans, which it starts on at once; with --wait-for-purge, also the whole pass (vacuum included).

Each round is a pair, normal then purge or purge then normal (alternating, so that a drift in the
machine's load favours neither), and gives a ratio: purge / normal. On a shared machine one pair
can be off by 30% either way, so the figure is the median of the pairs' ratios, printed with their
spread (min, quartiles, max), beside the medians of each kind and the load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_ingest import SPANS_PER_TRACE, build_bodies, text  # noqa: E402
from common import send_all  # noqa: E402

from tests.conftest import start_studio  # noqa: E402

DAY_NS = 86_400 * 10**9
OLD_TRACE_BASE = 10**12  # old trace ids start here: never those of bench_ingest's bodies


def build_template(directory: Path, old_spans: int) -> float:
    """A migrated Studio database holding `old_spans` spans that ended 60 days ago, written by
    Studio's own writer; returns its size in MB."""
    import json
    import random

    os.environ["STUDIO_DATA_DIR"] = str(directory)
    os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "studio.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from ingest import writer
    from ingest.otlp import SpanRecord

    call_command("migrate", verbosity=0)
    rng = random.Random(3)
    attributes = [
        json.dumps(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.input.messages": text(rng, 450),
                "gen_ai.output.messages": text(rng, 450),
            }
        )
        for _ in range(50)
    ]
    blank = SpanRecord(
        trace_id="", span_id="", parent_span_id="", start_ns=0, end_ns=0, kind=1, status_code=1,
        span_type="llm", operation="chat", input_tokens=120, output_tokens=40, flags=0,
        dropped_attributes_count=0, dropped_events_count=0, dropped_links_count=0, name="chat",
        service_name="bench-agent", model="qwen-max", label="", conversation_id="",
        input_preview="", status_message="", trace_state="", attributes_json="{}",
        events_json="[]", links_json="[]", resource_json='{"service.name": "bench-agent"}',
        scope_json='{"name": "agentscope"}',
    )  # fmt: skip
    base = time.time_ns() - 60 * DAY_NS
    chunk = []
    for n in range(old_spans):
        trace_no, index = divmod(n, SPANS_PER_TRACE)
        start = base + n * 1_000_000
        chunk.append(
            replace(
                blank,
                trace_id=f"{OLD_TRACE_BASE + trace_no:032x}",
                span_id=f"{n + 1:016x}",
                parent_span_id="" if index == 0 else f"{trace_no * SPANS_PER_TRACE + 1:016x}",
                start_ns=start,
                end_ns=start + 500_000,
                attributes_json=attributes[n % len(attributes)],
                conversation_id=f"run-{trace_no // 10}",
            )
        )
        if len(chunk) == 5000:
            writer.write_batch(chunk)
            chunk = []
    if chunk:
        writer.write_batch(chunk)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return (directory / "studio.sqlite3").stat().st_size / 1e6


def old_traces_left(url: str, cutoff_iso: str) -> int:
    response = requests.get(
        f"{url}/api/traces/", params={"until": cutoff_iso, "limit": 1}, timeout=60
    )
    response.raise_for_status()
    return response.json()["count"]


def one_round(
    template: Path, bodies: list[bytes], senders: int, purge: bool, wait: bool
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=template.parent) as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(template, data)
        env = {"STUDIO_RETENTION_INTERVAL": "3600" if purge else "0", "STUDIO_RETENTION_DAYS": "30"}
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30 * 86400))
        started = time.perf_counter()
        # The purge starts with runstudio: it is already on when the senders start.
        server, cleanup = start_studio(data, env)
        lines: list[str] = []
        assert server.process.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(server.process.stdout), daemon=True)
        reader.start()
        try:
            elapsed = send_all(server.url, bodies, senders).seconds
            ingest_ended = time.perf_counter() - started
            left = old_traces_left(server.url, cutoff) if purge else 0
            if purge and wait:
                # The pass ends after the incremental vacuum: its log line says when.
                while not any("tracing.retention" in line for line in lines):
                    time.sleep(0.5)
        finally:
            # Stops a purge between two transactions.
            server.stop()
            cleanup()
        reader.join(timeout=10)
        size = sum(f.stat().st_size for f in data.iterdir() if f.name.startswith("studio"))
    passes = re.findall(
        r"tracing\.retention: retention \([^)]*\), ([0-9.]+) s: (.*)", "".join(lines)
    )
    return {
        "seconds": elapsed,
        "ingest_ended": ingest_ended,
        "old_traces_left": left,
        "pass": passes[0] if passes else None,
        "size_mb_after": size / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old-spans", type=int, default=1_000_000)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--per-request", type=int, default=500)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="pairs of rounds")
    parser.add_argument(
        "--wait-for-purge", action="store_true", help="also time the whole pass, vacuum included"
    )
    parser.add_argument(
        "--template", default=None, help="keep the old-spans database here, and reuse it next time"
    )
    parser.add_argument("--workdir", default=None, help="where the databases go (default: /tmp)")
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        template = Path(args.template) if args.template else Path(work) / "template"
        if (template / "studio.sqlite3").exists():
            size = (template / "studio.sqlite3").stat().st_size / 1e6
            print(f"template: {template}, {size:.0f} MB, as built before")
        else:
            template.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            size = build_template(template, args.old_spans)
            print(
                f"template: {args.old_spans:,} spans ended 60 days ago, {size:.0f} MB, "
                f"built in {time.perf_counter() - started:.0f} s"
            )
        bodies = build_bodies(args.spans, args.per_request)
        rates: dict[bool, list[float]] = {False: [], True: []}
        ratios: list[float] = []
        for round_no in range(args.rounds):
            pair: dict[bool, float] = {}
            for purge in (False, True) if round_no % 2 == 0 else (True, False):
                result = one_round(template, bodies, args.senders, purge, args.wait_for_purge)
                rate = args.spans / result["seconds"]
                rates[purge].append(rate)
                pair[purge] = rate
                line = (
                    f"round {round_no + 1} {'purge ' if purge else 'normal'}: "
                    f"{rate:,.0f} spans/s ({args.spans:,} spans in {result['seconds']:.1f} s; "
                    f"load {os.getloadavg()[0]:.1f})"
                )
                if purge:
                    old_traces = args.old_spans // SPANS_PER_TRACE
                    gone = (old_traces - result["old_traces_left"]) * SPANS_PER_TRACE
                    line += (
                        f"; purged meanwhile: {gone:,} of {args.old_spans:,} old spans "
                        f"({gone / result['ingest_ended']:,.0f} spans/s since start)"
                    )
                    if result["pass"]:
                        seconds, what = result["pass"]
                        line += (
                            f"; the whole pass (vacuum included) took {seconds} s: {what}; "
                            f"files after: {result['size_mb_after']:.0f} MB"
                        )
                print(line, flush=True)
            ratios.append(pair[True] / pair[False])
            print(f"round {round_no + 1} ratio: {ratios[-1]:.2f}", flush=True)
        normal, during = statistics.median(rates[False]), statistics.median(rates[True])
        print(f"median normal: {normal:,.0f} spans/s; during purge: {during:,.0f} spans/s")
        spread = sorted(ratios)
        quartiles = (
            statistics.quantiles(spread, n=4, method="inclusive") if len(spread) > 1 else spread * 3
        )
        print(
            f"ratio (median of {len(ratios)} pairs): {statistics.median(ratios):.2f} "
            f"(target >= 0.8); spread: min {spread[0]:.2f}, quartiles {quartiles[0]:.2f} / "
            f"{quartiles[2]:.2f}, max {spread[-1]:.2f}; ratio of the medians "
            f"{during / normal:.2f}; load average {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
