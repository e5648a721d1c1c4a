"""Benchmark the overview's charts (`/api/traces/stats/`) and its cost column on a big SQLite
database, built like bench_overview's (spans priced as the decoder prices them).

    .venv/bin/python benchmarks/bench_charts.py                      # 100,000 traces
    .venv/bin/python benchmarks/bench_charts.py --data-dir /tmp/bench --keep   # build once, reuse

Prints the median, p95 and CPU time of each request through Django's test client, and the
queries it made. Target: every stats request under 100 ms at 100,000 traces.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_overview import RARE_SERVICE, build, calibrate  # noqa: E402
from common import setup_django, time_requests  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--spans-per-trace", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--data-dir")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    data_dir = setup_django(args.data_dir)
    from django.conf import settings
    from django.test import Client

    from tracing.models import Trace

    db_path = Path(settings.DATABASES["default"]["NAME"])
    if not (args.keep and Trace.objects.exists()):
        build(db_path, args.traces, args.spans_per_trace)
    count = Trace.objects.count()
    urls = {
        "stats: all time": "/api/traces/stats/",
        "stats: 30 d": "/api/traces/stats/?range=30d",
        "stats: 24 h": "/api/traces/stats/?range=24h",
        "stats: 7 d": "/api/traces/stats/?range=7d",
        "stats: service (1 %)": f"/api/traces/stats/?service={RARE_SERVICE}",
        "stats: status ERROR": "/api/traces/stats/?status=ERROR",
        "stats: min cost $0.01": "/api/traces/stats/?min_cost=0.01",
        "page: sorted by cost": "/traces/?sort=-cost",
        "page: min cost $0.01": "/traces/?min_cost=0.01",
        "api: sorted by cost": "/api/traces/?sort=-cost",
    }
    client = Client(HTTP_HOST="127.0.0.1")
    print(f"{count:,} traces in {db_path}; {args.repeat} requests each, in ms")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"calibration (fixed Python loop): {calibrate():.1f} ms")
    print(f"{'request':<24} {'median':>8} {'p95':>8} {'cpu med':>8} {'queries':>8}")
    for label, url in urls.items():
        print(f"{label:<24} {time_requests(client, url, args.repeat).columns()}")
    print(f"load average after: {os.getloadavg()[0]:.2f}; calibration {calibrate():.1f} ms")
    if not args.keep and not args.data_dir:
        shutil.rmtree(data_dir)


if __name__ == "__main__":
    main()
