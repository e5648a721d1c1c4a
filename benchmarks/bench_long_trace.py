"""One long trace arriving in many batches: the writer's summary fold against recomputing it.

    python benchmarks/bench_long_trace.py [--spans 100000] [--batches 200] [--per-trace 10]
    DATABASE_URL=postgres://... python benchmarks/bench_long_trace.py   # on PostgreSQL

Writes a trace of --spans agent-like spans (the root last, as exporters send it when it ends) in
--batches batches through `ingest.writer.write_batch` (which folds the inserted spans into the
trace's summary), and, in the same run, through the writer as it was before (the same insert,
then the summary recomputed from every span of the trace, `refresh_summaries`). Prints each
one's total, its first and last tenth of batches, and the time per batch at the end against the
start: about 1 when a batch costs the same however long its trace (linear in all), about the
number of batches when it re-reads the trace (quadratic). On SQLite the database is a file in a
temporary directory; on PostgreSQL, the span and trace tables of DATABASE_URL's database are
emptied before each run (use a database of your own).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build(spans: int, per_trace: int = 0, seed: int = 7) -> list:
    """One trace of `spans` spans; with `per_trace`, traces of that many spans each instead."""
    from ingest.otlp import SpanRecord

    if per_trace:
        records = []
        for n in range(0, spans, per_trace):
            records += build(min(per_trace, spans - n), seed=seed + n)
        return records
    rng = random.Random(seed)
    trace_id = f"{rng.getrandbits(128):032x}"
    root = f"{rng.getrandbits(64):016x}"
    start = time.time_ns()
    records = []
    for n in range(1, spans):
        kind = rng.choice(["llm", "tool", "formatter", "agent"])
        llm = kind == "llm"
        records.append(
            SpanRecord(
                trace_id, f"{rng.getrandbits(64):016x}", root, start + n * 1000,
                start + n * 1000 + 900, 1, 0, kind, "chat" if llm else "", 120 if llm else 0,
                30 if llm else 0, 0, 0, 0, 0, f"{kind} step {n}", "agent-service",
                "gpt-4o" if llm else "", "", "conv-1",
                f"question {n}: what next?" if llm else "", "", "",
                json.dumps({"gen_ai.operation.name": "chat", "step": n, "text": "x" * 300}),
                "[]", "[]", '{"service.name": "agent-service"}', '{"name": "bench"}',
            )
        )  # fmt: skip
    records.append(
        SpanRecord(
            trace_id, root, "", start, start + spans * 1000, 1, 1, "agent", "invoke_agent", 0, 0,
            0, 0, 0, 0, "invoke_agent Friday", "agent-service", "", "Friday", "conv-1", "", "",
            "", "{}", "[]", "[]", '{"service.name": "agent-service"}', '{"name": "bench"}',
        )
    )  # fmt: skip
    return records


def recompute_write(records: Sequence) -> None:
    """The writer before the fold: insert, then recompute the summary from all the spans."""
    from django.db import connection, transaction

    from ingest import writer

    previews = writer.output_previews(records)
    trace_ids = {r.trace_id for r in records}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(writer._INSERT_SQL, map(writer._row, records))
        if connection.vendor == "postgresql":
            writer.lock_traces(cursor, trace_ids)
        writer.refresh_summaries(cursor, trace_ids)
        if previews:
            writer.set_output_previews(cursor, previews)


def run(name: str, write: Callable[[Sequence], object], records: list, batches: int) -> dict:
    from django.db import connection

    from tracing.models import Trace

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # With the tables kept from the spans, which a TRUNCATE's triggers do not empty.
            cursor.execute(
                "TRUNCATE tracing_span, tracing_trace, tracing_span_search, tracing_span_attr, "
                "tracing_span_search_backlog, tracing_tracetotal"
            )
        else:
            cursor.execute("DELETE FROM tracing_span")
            cursor.execute("DELETE FROM tracing_trace")
    size = -(-len(records) // batches)
    times = []
    cpu = time.process_time()
    for start in range(0, len(records), size):
        started = time.perf_counter()
        write(records[start : start + size])
        times.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu
    trace = list(Trace.objects.order_by("trace_id").values())
    tenth = max(len(times) // 10, 1)
    first, last = sum(times[:tenth]), sum(times[-tenth:])
    print(
        f"{name:<10} total {sum(times):7.2f} s  cpu {cpu:6.2f} s  first tenth {first:6.2f} s  "
        f"last tenth {last:6.2f} s  last/first {last / first:5.1f}  "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--only", choices=["fold", "recompute"], help="run one of the two")
    parser.add_argument(
        "--per-trace", type=int, default=0, help="many traces of this many spans (ingest's usual)"
    )
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="bench-long-")
    os.environ["STUDIO_DATA_DIR"] = data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from ingest import writer

    call_command("migrate", interactive=False, verbosity=0)
    records = build(args.spans, args.per_trace)
    shape = f"traces of {args.per_trace}" if args.per_trace else "one trace of"
    print(
        f"{connection.vendor}: {shape} {len(records):,} spans in {args.batches} batches; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    summaries = {}
    if args.only != "recompute":
        summaries["fold"] = run("fold", writer.write_batch, records, args.batches)
    if args.only != "fold":
        summaries["recompute"] = run("recompute", recompute_write, records, args.batches)
    shutil.rmtree(data_dir, ignore_errors=True)
    if len(summaries) == 2 and summaries["fold"] != summaries["recompute"]:
        sys.exit(f"the summaries differ: {summaries}")


if __name__ == "__main__":
    main()
