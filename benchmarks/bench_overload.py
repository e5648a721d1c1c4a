"""Overload: memory and page latency while senders push Studio past what it can take.

    python benchmarks/bench_overload.py                        # both scenarios, default settings
    python benchmarks/bench_overload.py --scenario senders --repeat 3
    python benchmarks/bench_overload.py --scenario big --big-mb 60
    python benchmarks/bench_overload.py --compare /tmp/old-studio --repeat 2   # before/after

`--compare DIR` runs each round twice, alternating: first with the Studio in DIR (another
checkout, e.g. `git archive <commit> | tar -x -C DIR`), then with this one, on the same bodies.

Starts a real `runstudio` (SQLite under TMPDIR, default settings unless the environment says
otherwise) and runs one scenario at a time:

- senders: `--senders` (20) concurrent senders, each posting `--bodies` official OTLP protobuf
  bodies of `--spans` (5,000) agent-like spans (about 1 KB each);
- big: `--big-senders` (2) senders posting `--big-count` bodies of `--big-mb` MB of tiny spans
  each, the input that inflates most once decoded. A body over the limit gets 413 and is counted
  as refused, not as lost.

Senders retry 503 after its Retry-After, as the OTLP exporters do (a bounded number of times).
Meanwhile a reader polls `/traces/` and records its latency. Reports the server's peak memory
(VmHWM of runstudio, plus that of any child process it started: worker processes), the sampled
peak of their summed RSS and of their summed PSS (shared pages divided among the processes
sharing them, so the forkserver's pages inherited by a worker count once), `/traces/`
p50/p95/max, ingest throughput, and whether every acknowledged span is in the database at the
end (count of rows == spans acknowledged).
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from google.protobuf.internal.encoder import _VarintBytes

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tests.conftest  # noqa: E402
from benchmarks.bench_ingest import build_bodies  # noqa: E402
from tests.conftest import start_studio  # noqa: E402

PROTOBUF = {"Content-Type": "application/x-protobuf"}
MAX_ATTEMPTS = 300  # per body: a sender gives up (and says so) rather than loop forever
READ_PAUSE = 0.1


def tiny_spans_body(megabytes: float, first_span: int) -> tuple[bytes, int]:
    """An ExportTraceServiceRequest of about `megabytes` MB of minimal spans (ids, name, times),
    written straight in the wire format: building a million spans through the protobuf classes
    would take longer than the benchmark. Returns (body, spans)."""
    target = int(megabytes * 1_000_000)
    start = time.time_ns() - 3600 * 10**9
    spans = []
    size = 0
    n = first_span
    while size < target:
        n += 1
        trace_id = (n // 100 + 1).to_bytes(16, "big")
        span = (
            b"\x0a\x10" + trace_id
            + b"\x12\x08" + n.to_bytes(8, "big")
            + b"\x2a\x04tiny"
            + b"\x39" + (start + n).to_bytes(8, "little")
            + b"\x41" + (start + n + 1000).to_bytes(8, "little")
        )  # fmt: skip
        spans.append(b"\x12" + _VarintBytes(len(span)) + span)
        size += len(spans[-1])
    scope_spans = b"".join(spans)
    resource_spans = b"\x12" + _VarintBytes(len(scope_spans)) + scope_spans
    body = b"\x0a" + _VarintBytes(len(resource_spans)) + resource_spans
    return body, len(spans)


def cached_bodies(total: int, per_request: int) -> list[bytes]:
    """bench_ingest's bodies, kept under TMPDIR: building them takes minutes on a busy machine."""
    path = Path(tempfile.gettempdir()) / f"bench_overload_{total}_{per_request}.pickle"
    if path.exists():
        return pickle.loads(path.read_bytes())
    bodies = build_bodies(total, per_request)
    path.write_bytes(pickle.dumps(bodies))
    return bodies


def memory_kb(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found |= {int(c) for c in (task / "children").read_text().split()}
    except OSError:
        pass
    for child in list(found):
        found |= children(child)
    return found


@dataclass
class Probe:
    """Samples the server's memory and the overview's latency until stopped."""

    pid: int
    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    latencies: list[float] = field(default_factory=list)
    page_errors: int = 0
    peak_rss_kb: int = 0
    peak_pss_kb: int = 0
    child_hwm_kb: dict[int, int] = field(default_factory=dict)

    def sample_memory(self) -> None:
        while not self.stop.is_set():
            kids = children(self.pid)
            rss = memory_kb(self.pid, "VmRSS") + sum(memory_kb(c, "VmRSS") for c in kids)
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            pss = pss_kb(self.pid) + sum(pss_kb(c) for c in kids)
            self.peak_pss_kb = max(self.peak_pss_kb, pss)
            for child in kids:
                hwm = memory_kb(child, "VmHWM")
                self.child_hwm_kb[child] = max(self.child_hwm_kb.get(child, 0), hwm)
            self.stop.wait(0.05)

    def read_pages(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                response = session.get(f"{self.url}/traces/", timeout=60)
                if response.status_code != 200:
                    self.page_errors += 1
            except requests.RequestException:
                self.page_errors += 1
            self.latencies.append(time.perf_counter() - started)
            self.stop.wait(READ_PAUSE)


@dataclass
class Tally:
    acknowledged: int = 0
    refused_413: int = 0
    retries_503: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def send_all(url: str, bodies: list[tuple[bytes, int]], tally: Tally) -> None:
    session = requests.Session()
    for body, spans in bodies:
        for _ in range(MAX_ATTEMPTS):
            try:
                response = session.post(
                    f"{url}/v1/traces", data=body, headers=PROTOBUF, timeout=120
                )
            except requests.RequestException as exc:
                with tally.lock:
                    tally.failures.append(f"connection: {exc}")
                time.sleep(1)
                continue
            if response.status_code == 503:
                with tally.lock:
                    tally.retries_503 += 1
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            with tally.lock:
                if response.status_code == 200:
                    tally.acknowledged += spans
                elif response.status_code == 413:
                    tally.refused_413 += 1
                else:
                    tally.failures.append(f"{response.status_code} {response.text[:200]}")
            break
        else:
            with tally.lock:
                tally.failures.append(f"gave up after {MAX_ATTEMPTS} attempts")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(name: str, per_sender: list[list[tuple[bytes, int]]]) -> dict[str, float]:
    total_spans = sum(spans for bodies in per_sender for _, spans in bodies)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.pop("DATABASE_URL", None)
        server, cleanup = start_studio(Path(tmp))
        pid = server.process.pid
        probe = Probe(pid, server.url)
        tally = Tally()
        try:
            helpers = [
                threading.Thread(target=probe.sample_memory, daemon=True),
                threading.Thread(target=probe.read_pages, daemon=True),
            ]
            for thread in helpers:
                thread.start()
            time.sleep(1)  # a few idle page reads first
            idle = list(probe.latencies)
            started = time.perf_counter()
            senders = [
                threading.Thread(target=send_all, args=(server.url, bodies, tally))
                for bodies in per_sender
            ]
            for thread in senders:
                thread.start()
            for thread in senders:
                thread.join()
            elapsed = time.perf_counter() - started
            probe.stop.set()
            for thread in helpers:
                thread.join()
            loaded = probe.latencies[len(idle) :]
            hwm_main = memory_kb(pid, "VmHWM")
            hwm_children = sum(probe.child_hwm_kb.values())
        finally:
            server.stop()
            with sqlite3.connect(Path(tmp) / "studio.sqlite3") as db:
                stored = db.execute("SELECT COUNT(*) FROM tracing_span").fetchone()[0]
            cleanup()
    ok = stored == tally.acknowledged and not tally.failures
    print(
        f"[{name}] {total_spans:,} spans offered in {len(per_sender)} senders, "
        f"{elapsed:.1f} s: {tally.acknowledged / elapsed:,.0f} spans/s acknowledged\n"
        f"  peak memory: runstudio VmHWM {hwm_main / 1024:.0f} MB, children VmHWM "
        f"{hwm_children / 1024:.0f} MB ({len(probe.child_hwm_kb)} processes), sum "
        f"{(hwm_main + hwm_children) / 1024:.0f} MB; sampled peak of summed RSS "
        f"{probe.peak_rss_kb / 1024:.0f} MB, of summed PSS {probe.peak_pss_kb / 1024:.0f} MB\n"
        f"  /traces/ idle: median {statistics.median(idle) * 1000:.0f} ms over {len(idle)}; "
        f"under load: p50 {percentile(loaded, 50) * 1000:.0f} ms, "
        f"p95 {percentile(loaded, 95) * 1000:.0f} ms, max {max(loaded) * 1000:.0f} ms "
        f"over {len(loaded)} reads ({probe.page_errors} errors)\n"
        f"  acknowledged {tally.acknowledged:,} spans, stored {stored:,}; "
        f"{tally.retries_503} answers 503 (retried), {tally.refused_413} bodies refused 413; "
        f"{len(tally.failures)} failures {tally.failures[:2]} -> "
        f"{'every acknowledged span stored' if ok else 'MISMATCH'}"
    )
    return {
        "hwm_mb": (hwm_main + hwm_children) / 1024,
        "pss_mb": probe.peak_pss_kb / 1024,
        "spans_s": tally.acknowledged / elapsed,
        "p95_ms": percentile(loaded, 95) * 1000,
        "ok": float(ok),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", choices=["senders", "big", "both"], default="both")
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--spans", type=int, default=5000, help="spans per body")
    parser.add_argument("--bodies", type=int, default=2, help="bodies per sender")
    parser.add_argument("--big-mb", type=float, default=60)
    parser.add_argument("--big-senders", type=int, default=2)
    parser.add_argument("--big-count", type=int, default=2, help="big bodies per sender")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--compare", type=Path, help="another Studio checkout: alternate rounds with its server"
    )
    args = parser.parse_args()
    trees = [("base", args.compare.resolve()), ("this", ROOT)] if args.compare else [("", ROOT)]
    results: dict[str, list[dict[str, float]]] = {}

    def rounds(name: str, per_sender: list[list[tuple[bytes, int]]]) -> None:
        for n in range(args.repeat):
            for label, root in trees:
                # start_studio runs manage.py in tests.conftest.ROOT.
                tests.conftest.ROOT = root
                key = f"{name} {label}".strip()
                results.setdefault(key, []).append(run(f"{key} #{n + 1}", per_sender))

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(
        "settings from the environment:",
        {k: v for k, v in os.environ.items() if k.startswith("STUDIO_")},
    )
    if args.scenario in ("senders", "both"):
        bodies = cached_bodies(args.senders * args.bodies * args.spans, args.spans)
        print(f"senders: bodies of {len(bodies[0]) / 1e6:.1f} MB")
        per_sender = [
            [(body, args.spans) for body in bodies[i :: args.senders]] for i in range(args.senders)
        ]
        rounds("senders", per_sender)
    if args.scenario in ("big", "both"):
        per_sender = []
        first = 0
        for _ in range(args.big_senders):
            bodies = []
            for _ in range(args.big_count):
                body, spans = tiny_spans_body(args.big_mb, first)
                first += spans
                bodies.append((body, spans))
            per_sender.append(bodies)
        print(
            f"big: bodies of {len(per_sender[0][0][0]) / 1e6:.1f} MB, {per_sender[0][0][1]:,} spans"
        )
        rounds("big", per_sender)
    print("summary (each round; memory peaks in MB):")
    for key, rows in results.items():
        print(
            f"  {key}: summed VmHWM {[round(r['hwm_mb']) for r in rows]}, "
            f"summed PSS {[round(r['pss_mb']) for r in rows]}, "
            f"spans/s {[round(r['spans_s']) for r in rows]}, "
            f"/traces/ p95 ms {[round(r['p95_ms']) for r in rows]}, "
            f"all stored {all(r['ok'] for r in rows)}"
        )
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
