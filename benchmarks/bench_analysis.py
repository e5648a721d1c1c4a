"""Benchmark a trace's analysis, its place on the trace page, the flame graph's data and the
comparison of two traces.

    .venv/bin/python benchmarks/bench_analysis.py            # 10,000 spans; flame at 50,000
    .venv/bin/python benchmarks/bench_analysis.py --sizes 10000,50000 --flame-sizes 50000

It migrates a fresh STUDIO_DATA_DIR (or uses DATABASE_URL) and stores generated agent traces
through the real ingest path (the trace page benchmark's generator; every model call carries 2 kB
of input messages and cached-token counts). Figures come from Django's test client, median of
`--repeat` requests: `GET /api/traces/<id>/analysis/`; the trace page's "where the time went"
(`GET /traces/<id>/analysis/` as htmx asks for it after a big trace's page, and the page with it
inside, `?analysis=1`, what a reader without JavaScript gets); the flame graph's data
(`GET /traces/<id>/flame/`); and `GET /api/traces/compare/?a=&b=` of two traces of that size that
differ in a few spans (some slower, some added, some removed) and in every answer's text.
`--flame-sizes` stores one more trace of each size and measures the analysis and the flame
graph's data alone.

Target (issue 13): under 300 ms each at 10,000 spans; the flame graph usable at 50,000.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import agent_trace, enrich, setup_django, store, store_pair, timed  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000", help="span counts, comma-separated")
    parser.add_argument("--flame-sizes", default="50000", help="span counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data-dir", help="use this directory (default: a temporary one)")
    return parser.parse_args()


def report(label: str, size: int, repeat: int, get: Any) -> Any:
    measured = timed(repeat, get)
    response = measured.result
    assert response.status_code == 200, response.content[:300]
    print(
        f"  {label:<16} {size:>6,} spans: {measured.wall * 1000:6.0f} ms "
        f"(CPU {measured.cpu * 1000:.0f} ms, least {measured.least_cpu * 1000:.0f} ms), "
        f"{len(response.content) / 1e6:.2f} MB; load {os.getloadavg()[0]:.1f}"
    )
    return response


def page_figures(client: Any, trace_id: str, size: int, repeat: int) -> None:
    """Where the time went on the trace page, and the flame graph's data."""
    report(
        "time split (htmx)",
        size,
        repeat,
        lambda: client.get(f"/traces/{trace_id}/analysis/", HTTP_HX_REQUEST="true"),
    )
    report("page ?analysis=1", size, repeat, lambda: client.get(f"/traces/{trace_id}/?analysis=1"))
    report("flame data", size, repeat, lambda: client.get(f"/traces/{trace_id}/flame/"))


def main() -> None:
    args = parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size]
    data_dir = setup_django(args.data_dir)
    from django.db import connection
    from django.test import Client

    rng = random.Random(42)
    client = Client(HTTP_HOST="localhost")
    print(f"Machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {connection.vendor}")
    try:
        for size in sizes:
            trace_a, trace_b = store_pair(size, rng)
            analysis = timed(
                args.repeat, lambda t=trace_a: client.get(f"/api/traces/{t}/analysis/")
            )
            response = analysis.result
            assert response.status_code == 200, response.content[:300]
            body = response.json()
            print(
                f"  analysis, {size:>6,} spans: {analysis.wall * 1000:6.0f} ms "
                f"(CPU {analysis.cpu * 1000:.0f} ms, least {analysis.least_cpu * 1000:.0f} ms)"
                f"\n    {len(body['critical_path'])} spans on the critical path, "
                f"cost ${body['cost_usd']:.2f}, {len(response.content) / 1e6:.1f} MB of JSON"
            )
            url = f"/api/traces/compare/?a={trace_a}&b={trace_b}"
            compare = timed(args.repeat, lambda u=url: client.get(u))
            response = compare.result
            assert response.status_code == 200, response.content[:300]
            summary = response.json()["summary"]
            print(
                f"  compare,  {size:>6,} spans: {compare.wall * 1000:6.0f} ms "
                f"(CPU {compare.cpu * 1000:.0f} ms, least {compare.least_cpu * 1000:.0f} ms)"
                f"\n    {summary['added']} added, {summary['removed']} removed, "
                f"{summary['changed']} changed, {len(response.content) / 1e6:.1f} MB of JSON"
            )
            page_figures(client, trace_a, size, args.repeat)
        for size in [int(size) for size in args.flame_sizes.split(",") if size]:
            trace_id = f"{rng.getrandbits(128):032x}"
            spans = agent_trace(trace_id, size, rng)
            enrich(spans, rng)
            started = time.perf_counter()
            store(spans)
            print(f"stored {size:,} spans in {time.perf_counter() - started:.1f} s")
            report(
                "analysis",
                size,
                args.repeat,
                lambda t=trace_id: client.get(f"/api/traces/{t}/analysis/"),
            )
            page_figures(client, trace_id, size, args.repeat)
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
