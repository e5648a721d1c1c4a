"""Decoding in worker processes, so that ingest at full speed does not starve the pages.

Decoding a body is pure Python work that holds the GIL: done in the server's threads, 20 senders
made `/traces/` answer in half a second instead of 9 ms. Worker processes decode instead, with
protobuf or JSON bytes in and pickled row tuples out (tuples pickle several times faster than
records); the server turns the rows back into records and hands them to the one writer, exactly
as an in-process decode would.

A worker that dies (killed, out of memory) breaks the pool: the requests it held hear
WorkerLost (the receivers answer 503, which exporters retry), and the next request starts a fresh
pool.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from operator import attrgetter
from pathlib import Path
from typing import Any

from ingest import memory, otlp
from tracing.prices import Price, PriceTable

logger = logging.getLogger(__name__)

# How often a worker checks that the server it decodes for is still there.
SERVER_CHECK_SECONDS = 1.0

_row = attrgetter(*otlp.SPAN_COLUMNS)
Rows = tuple[list[bytes], int, list[str]]


class WorkerLost(Exception):
    """A decoding process died before it answered; nothing of the body was stored."""


# Rows are pickled this many at a time as the worker decodes them, so that it holds compact
# pickles rather than every span's Python objects (about 5x smaller for tiny spans), and the server
# unpickles in short steps that leave the GIL to pages in between.
CHUNK_ROWS = 2000

# Columns whose values repeat from span to span (a trace's id, a service, a span name, `{}`):
# each distinct value is pickled once a chunk (pickle's memo keeps one object per identity), so
# the server makes one string where it made one per span. Span ids and times never repeat.
_SHARED = frozenset(
    ("trace_id", "parent_span_id", "span_type", "operation", "name", "service_name", "model",
     "label", "conversation_id", "status_message", "trace_state", "attributes_json",
     "events_json", "links_json", "resource_json", "scope_json", "project")
)  # fmt: skip
_SHARED_AT = tuple(i for i, column in enumerate(otlp.SPAN_COLUMNS) if column in _SHARED)


class _PickledRows(list):  # type: ignore[type-arg]
    """A Batch's `records` for a worker: each record appended becomes a row in a pickled chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self._rows: list[tuple[Any, ...]] = []
        self._seen: dict[Any, Any] = {}

    def append(self, record: Any) -> None:
        row = list(_row(record))
        seen = self._seen.setdefault
        for i in _SHARED_AT:
            row[i] = seen(row[i], row[i])
        self._rows.append(tuple(row))
        if len(self._rows) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            self.chunks.append(pickle.dumps(self._rows, protocol=pickle.HIGHEST_PROTOCOL))
            self._rows = []
            self._seen.clear()


_prices: tuple[dict[str, Price], PriceTable] | None = None


def _price_table(overrides: dict[str, Price]) -> PriceTable:
    """The server's price table, rebuilt in this worker only when its overrides change."""
    global _prices
    if _prices is None or _prices[0] != overrides:
        _prices = (overrides, PriceTable(overrides))
    return _prices[1]


def decode_rows(body: bytes, content_type: str, overrides: dict[str, Price] | None = None) -> Rows:
    """Run in a worker: otlp.decode, as (pickled chunks of row tuples, rejected, messages),
    model calls priced with the server's overrides (STUDIO_PRICES) over the shipped table."""
    try:
        rows = _PickledRows()
        prices = _price_table(overrides or {})
        batch = otlp.decode(body, content_type, otlp.Batch(records=rows), prices)
        rows.flush()
        return rows.chunks, batch.rejected, batch.messages
    finally:
        # The parsed message and the rows are freed by now: hand their memory back, so the
        # worker's resident size is one decode's, not the largest heap it ever grew.
        memory.trim(interval=0)


def batch_from_rows(result: Rows) -> otlp.Batch:
    chunks, rejected, messages = result
    records = []
    for index, chunk in enumerate(chunks):
        records.extend(otlp.SpanRecord(*row) for row in pickle.loads(chunk))
        chunks[index] = b""  # each chunk goes once its records are made
    return otlp.Batch(records, rejected, messages)


def lower_priority(niceness: int) -> None:
    """Gives the calling thread (on Linux niceness is per thread; threads it starts inherit it)
    the niceness `niceness`, so that the CPU goes to the pages first when both want it. Ingest
    has its exporters' retries and a bounded queue; a reader has nothing but the wait."""
    if niceness <= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (OSError, AttributeError):  # not allowed, or no such call here: run as we are
        pass


def _start_worker(server_pid: int, niceness: int = 0) -> None:
    # A fresh interpreter: the server's malloc settings are not inherited.
    memory.limit_heap_growth()
    lower_priority(niceness)
    # A server killed outright (SIGKILL, OOM) cannot stop its workers: they watch for it and go
    # with it.
    threading.Thread(target=_exit_with, args=(server_pid,), daemon=True).start()


def _exit_with(server_pid: int) -> None:
    while _alive(server_pid):
        time.sleep(SERVER_CHECK_SECONDS)
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        # A zombie (dead, not yet reaped by its parent) still answers kill(pid, 0).
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


class DecodePool:
    """A pool of `workers` decoding processes, started on first use and again after a crash."""

    def __init__(self, workers: int, niceness: int = 0) -> None:
        self.workers = workers
        self.niceness = niceness
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                # spawn: workers are fresh interpreters, not forks of this process and its
                # threads (gRPC's among them, which do not survive a fork). Not forkserver: its
                # server process is one more interpreter resident for good, and the pages a
                # worker inherits from it count again in the worker's resident size.
                context = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(
                    self.workers,
                    mp_context=context,
                    initializer=_start_worker,
                    initargs=(os.getpid(), self.niceness),
                )
            return self._executor

    def decode(
        self, body: bytes, content_type: str, overrides: dict[str, Price] | None = None
    ) -> otlp.Batch:
        """otlp.decode in a worker, priced with `overrides` over the shipped table. Raises
        otlp.DecodeError as it does, or WorkerLost."""
        executor = self._current()
        try:
            result = executor.submit(decode_rows, body, content_type, overrides).result()
        except (BrokenProcessPool, RuntimeError) as exc:
            # RuntimeError: another request found the pool broken and shut it down first.
            self._discard(executor)
            raise WorkerLost(f"a decoding process died ({exc}); retry") from None
        return batch_from_rows(result)

    def processes(self) -> list[int]:
        """The workers' process ids (for tests and benchmarks)."""
        with self._lock:
            executor = self._executor
        return list(getattr(executor, "_processes", None) or {})

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor = None
                logger.error("a decoding process died; starting new ones")
        executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
