"""Benchmark the comparison of two traces: `GET /api/traces/compare/?a=&b=` and the page
`/traces/compare/?a=&b=` (its first window of rows, and "changes only").

    .venv/bin/python benchmarks/bench_compare.py                 # 10,000 spans a trace
    .venv/bin/python benchmarks/bench_compare.py --sizes 10000,50000 --repeat 9

It migrates a fresh STUDIO_DATA_DIR (or uses DATABASE_URL) and stores two generated agent traces
of each size through the real ingest path (bench_analysis's generator: 2 kB of input messages on
every model call; B differs in a few spans, some slower, some added, some removed, and in every
answer's text). Figures come from Django's test client in this process: median wall time and
median CPU time of `--repeat` requests (on a shared machine the wall time includes waiting for a
core, so the load average is printed with them), and the peak resident memory (VmHWM) the
requests added above what storing the traces reached (the peak is reset before they run).

Target (issue 13): under 300 ms for each at 10,000 spans.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import setup_django, store_pair, timed  # noqa: E402


def vm_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> bool:
    """Set VmHWM back to the current RSS (Linux 4.0+), so the peak seen next is the requests'."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000", help="span counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--data-dir", help="use this directory (default: a temporary one)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    # The generated traces start in 2023: retention must not take them while we measure.
    os.environ.setdefault("STUDIO_RETENTION_DAYS", "36500")
    data_dir = setup_django(args.data_dir)
    from django.db import connection
    from django.test import Client

    rng = random.Random(42)
    client = Client(HTTP_HOST="localhost")
    print(f"Machine: {os.cpu_count()} CPUs; {connection.vendor}")
    try:
        for size in sizes:
            trace_a, trace_b = store_pair(size, rng)
            query = f"?a={trace_a}&b={trace_b}"
            cases = [
                ("page", f"/traces/compare/{query}"),
                ("page, changes only", f"/traces/compare/{query}&changes=1"),
                ("API", f"/api/traces/compare/{query}"),
            ]
            for label, url in cases:
                client.get(url)  # warm: templates compiled, price table read
                before = vm_kib("VmRSS")
                peak_known = reset_peak()
                measured = timed(args.repeat, lambda u=url: client.get(u))
                wall, cpu, response = measured.wall, measured.cpu, measured.result
                assert response.status_code == 200, response.content[:300]
                peak = vm_kib("VmHWM") - before if peak_known else 0
                print(
                    f"  {label:<18} {size:>6,} spans: wall {wall * 1000:5.0f} ms, "
                    f"CPU {cpu * 1000:4.0f} ms, peak RSS +{peak / 1024:.0f} MB "
                    f"({len(response.content) / 1e6:.2f} MB), load {os.getloadavg()[0]:.1f}"
                )
            print(f"  process peak RSS (VmHWM) {vm_kib('VmHWM') / 1024:.0f} MB")
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
