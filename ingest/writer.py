"""The one writer: group commit of span batches.

Receivers hand their decoded records to `writer.submit()` and wait on the returned future. The
writer thread takes everything queued, writes it in ONE transaction (bulk insert, duplicates
ignored by `(trace_id, span_id)`), recomputes the summary row of every touched trace, commits, and
only then resolves the futures: an exporter hears success only for spans that are committed and
readable, and many small requests share one commit.

The queue is bounded in spans and in bytes (a span can carry megabytes of prompt); when it is full
`submit` raises QueueFull and the receivers answer 503 / UNAVAILABLE, which OTLP exporters retry.
So memory stays bounded under any load.

A database failure that may pass (a dropped connection, a restart, a lock held past the timeout) is
retried with backoff for a few seconds; if it lasts, the requests of that commit fail with
DatabaseUnavailable, which the receivers also answer 503 / UNAVAILABLE: nothing was stored, and the
exporter's retry lands once the database is back. Only a failure that no retry can mend (a value the
database refuses) fails a request for good, and then only that request.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from operator import attrgetter
from typing import Any

import orjson
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.backends.utils import CursorWrapper

from ingest import memory, otlp, ownership, workers
from ingest.otlp import SPAN_COLUMNS, Batch, SpanRecord
from tracing import conventions, messages, projects
from tracing.signals import traces_changed

logger = logging.getLogger(__name__)

# Trace ids per summary statement: far below SQLite's and PostgreSQL's bound-parameter limits.
SUMMARY_CHUNK = 500
# Several Studio processes may share one PostgreSQL database. Two of them summarising one trace at
# once would each see only their own uncommitted spans, and the later commit would keep a summary
# missing the other's. A lock per trace, taken after the insert, makes the second summary wait for
# the first commit and see its spans. Every lock held costs PostgreSQL shared memory, so trace ids
# share 256 coarse buckets; but two batches of a hundred traces or more almost always share one,
# which made writers of several processes take turns. So a batch of at most FINE_LOCK_TRACES
# traces takes its coarse buckets shared and a lock per trace (a fine bucket) exclusive: two such
# batches wait for each other only when they share a trace. A bigger batch takes its coarse
# buckets exclusive, which excludes both kinds. Coarse before fine, each sorted: no cycle.
# (SQLite's IMMEDIATE transactions already serialise writers.)
LOCK_BUCKETS = 256
FINE_LOCK_BUCKETS = 1 << 30
FINE_LOCK_TRACES = 256
_LOCK_SQL = "SELECT pg_advisory_xact_lock(7370, b) FROM unnest(%s::int[]) AS b"
_SHARED_LOCK_SQL = "SELECT pg_advisory_xact_lock_shared(7370, b) FROM unnest(%s::int[]) AS b"
_FINE_LOCK_SQL = "SELECT pg_advisory_xact_lock(7371, b) FROM unnest(%s::int[]) AS b"

# OTLP's STATUS_CODE_ERROR (tracing.models.STATUS_ERROR).
STATUS_ERROR = 2

# What a record costs in memory besides its strings: the object and its small fields.
RECORD_OVERHEAD_BYTES = 500


class Unavailable(Exception):
    """Studio cannot take these spans now; the receivers answer 503 / UNAVAILABLE, and OTLP
    exporters retry."""


class QueueFull(Unavailable):
    """The writer has as many spans waiting as it may hold."""


class WriterClosed(Unavailable):
    """The process is shutting down and takes no more spans."""


class Busy(Unavailable):
    """Too many bytes are being decoded at once."""


class DatabaseUnavailable(Unavailable):
    """The database failed in a way that may pass, for longer than the writer retries."""


# A failure that may pass is retried after these pauses, doubling, for at most this long in all.
RETRY_FIRST_DELAY = 0.05
RETRY_MAX_DELAY = 1.0
RETRY_FOR_SECONDS = 5.0


def may_pass(exc: BaseException) -> bool:
    """Whether a database error may go away on its own. Django maps the drivers' errors: a lost or
    refused connection, a server shutting down, a lock or serialization timeout, too many clients
    are OperationalError or InterfaceError; bad data and bad SQL are not."""
    return isinstance(exc, OperationalError | InterfaceError)


_INSERT_SQL = "INSERT INTO tracing_span ({columns}) VALUES ({values}) ON CONFLICT (trace_id, span_id) DO NOTHING".format(  # noqa: E501
    columns=", ".join(SPAN_COLUMNS), values=", ".join(["%s"] * len(SPAN_COLUMNS))
)

# The summary of a trace recomputed from all its spans (`refresh_summaries`): what the writer's
# fold must always equal, and what bulk loads (the benchmarks) run once at the end. The root is
# the span without a parent; until it arrives, the earliest span stands in for it.
_SUMMARY_SQL = """
INSERT INTO tracing_trace (
    trace_id, name, root_span_id, has_root, span_type, service_name, start_ns, end_ns,
    duration_ns, span_count, error_count, status_code, input_tokens, output_tokens, total_tokens,
    conversation_id, input_preview, label, output_preview, project, cost_usd, unpriced_spans
)
SELECT
    a.trace_id, r.name, r.span_id, r.parent_span_id = '', r.span_type, r.service_name,
    a.start_ns, a.end_ns, a.end_ns - a.start_ns, a.span_count, a.error_count,
    CASE WHEN a.error_count > 0 THEN 2 ELSE r.status_code END,
    a.input_tokens, a.output_tokens, a.input_tokens + a.output_tokens,
    a.conversation_id, COALESCE(p.input_preview, ''), r.label, '',
    COALESCE(r.project, 'default'), a.cost_usd, a.unpriced_spans
FROM (
    SELECT
        trace_id,
        MIN(start_ns) AS start_ns,
        MAX(end_ns) AS end_ns,
        COUNT(*) AS span_count,
        SUM(CASE WHEN status_code = 2 THEN 1 ELSE 0 END) AS error_count,
        COALESCE(SUM(CASE WHEN span_type IN ('llm', 'embedding') THEN input_tokens ELSE 0 END), 0)
            AS input_tokens,
        COALESCE(SUM(CASE WHEN span_type IN ('llm', 'embedding') THEN output_tokens ELSE 0 END), 0)
            AS output_tokens,
        MAX(conversation_id) AS conversation_id,
        -- Priced at ingest (otlp.SpanRecord.cost_usd); a model call without a price is
        -- counted rather than taken as free. Rounded to 1e-12 USD: a float sum's last bit
        -- depends on the rows' order, and the summary must not.
        ROUND(CAST(COALESCE(SUM(cost_usd), 0) AS NUMERIC), 12) AS cost_usd,
        SUM(CASE WHEN cost_usd IS NULL AND span_type IN ('llm', 'embedding') THEN 1 ELSE 0 END)
            AS unpriced_spans
    FROM tracing_span
    WHERE trace_id IN ({ids})
    GROUP BY trace_id
) a
JOIN (
    SELECT
        trace_id, name, span_id, parent_span_id, span_type, service_name, status_code, label,
        project, ROW_NUMBER() OVER (
            PARTITION BY trace_id
            ORDER BY CASE WHEN parent_span_id = '' THEN 0 ELSE 1 END, start_ns, span_id
        ) AS rn
    FROM tracing_span
    WHERE trace_id IN ({ids})
) r ON r.trace_id = a.trace_id AND r.rn = 1
LEFT JOIN (
    SELECT
        trace_id, input_preview,
        ROW_NUMBER() OVER (PARTITION BY trace_id ORDER BY start_ns, span_id) AS rn
    FROM tracing_span
    WHERE trace_id IN ({ids}) AND input_preview <> ''
) p ON p.trace_id = a.trace_id AND p.rn = 1
WHERE 1 = 1
ON CONFLICT (trace_id) DO UPDATE SET
    -- Not the project: a trace keeps the one it was created with.
    name = excluded.name,
    root_span_id = excluded.root_span_id,
    has_root = excluded.has_root,
    span_type = excluded.span_type,
    service_name = excluded.service_name,
    start_ns = excluded.start_ns,
    end_ns = excluded.end_ns,
    duration_ns = excluded.duration_ns,
    span_count = excluded.span_count,
    error_count = excluded.error_count,
    status_code = excluded.status_code,
    input_tokens = excluded.input_tokens,
    output_tokens = excluded.output_tokens,
    total_tokens = excluded.total_tokens,
    conversation_id = excluded.conversation_id,
    input_preview = excluded.input_preview,
    label = excluded.label,
    cost_usd = excluded.cost_usd,
    unpriced_spans = excluded.unpriced_spans
"""
# The summary of a trace is folded from the spans each batch inserted: the trace's row already
# holds what its earlier spans add up to, so a batch costs its own spans, not the trace's. Every
# column below combines in any grouping and order (a sum, a min, a max, the first span by a fixed
# key), so batches that arrive out of order, split, or twice (a duplicate is not inserted, so it
# folds nothing) all end at the row one batch of every span would give: the row
# `refresh_summaries` computes from the spans alone, which tests/test_writer_fold.py checks.
TOKEN_SPAN_TYPES = frozenset({conventions.LLM, conventions.EMBEDDING})

# Summed columns: what one span adds. A new summed column is one line here (and the column).
SUMMED: dict[str, Callable[[SpanRecord], Any]] = {
    "span_count": lambda r: 1,
    "error_count": lambda r: int(r.status_code == STATUS_ERROR),
    "input_tokens": lambda r: r.input_tokens if r.span_type in TOKEN_SPAN_TYPES else 0,
    "output_tokens": lambda r: r.output_tokens if r.span_type in TOKEN_SPAN_TYPES else 0,
    # Priced at ingest; a model call without a price is counted rather than taken as free.
    "cost_usd": lambda r: r.cost_usd or 0.0,
    "unpriced_spans": lambda r: int(r.cost_usd is None and r.span_type in TOKEN_SPAN_TYPES),
}
# Columns taken from the root (the span without a parent; until it arrives, the earliest span).
ROOT_COLUMNS = ("name", "root_span_id", "has_root", "span_type", "service_name", "label")
_FOLD_COLUMNS = (
    "trace_id", *ROOT_COLUMNS, "start_ns", "end_ns", "duration_ns", *SUMMED, "status_code",
    "total_tokens", "conversation_id", "input_preview",
)  # fmt: skip
_READ_SQL = "SELECT {columns} FROM tracing_trace WHERE trace_id IN ({ids})"
# One statement per chunk of traces, not one per trace: the statement triggers that keep the
# overview's totals on PostgreSQL (tracing.totals) then run once per chunk.
_FOLD_SQL = """
INSERT INTO tracing_trace ({columns}, output_preview, project) VALUES {{values}}
ON CONFLICT (trace_id) DO UPDATE SET {updates}
""".format(
    columns=", ".join(_FOLD_COLUMNS),
    # Not the project: a trace keeps the one it was created with.
    updates=", ".join(f"{c} = excluded.{c}" for c in _FOLD_COLUMNS[1:]),
)
_FOLD_ROW = "({}, '', %s)".format(", ".join(["%s"] * len(_FOLD_COLUMNS)))
# Whether a span stored before holds an input preview and starts before (start_ns, span_id).
_EARLIER_PREVIEW_SQL = """
SELECT 1 FROM tracing_span
WHERE trace_id = %s AND input_preview <> '' AND (start_ns < %s OR (start_ns = %s AND span_id < %s))
ORDER BY start_ns, span_id LIMIT 1
"""
_SPAN_START_SQL = "SELECT start_ns FROM tracing_span WHERE trace_id = %s AND span_id = %s"


def _root_key(record: SpanRecord) -> tuple[int, int, str]:
    return (0 if record.parent_span_id == "" else 1, record.start_ns, record.span_id)


def _start_key(record: SpanRecord) -> tuple[int, str]:
    return (record.start_ns, record.span_id)


class _Delta:
    """What one batch's inserted spans of one trace add to its summary."""

    __slots__ = ("conversation_id", "end_ns", "preview", "root", "start_ns", "sums")

    def __init__(self, record: SpanRecord) -> None:
        self.root = record
        self.preview = record if record.input_preview else None
        self.start_ns = record.start_ns
        self.end_ns = record.end_ns
        self.conversation_id = record.conversation_id
        self.sums = {column: value(record) for column, value in SUMMED.items()}

    def add(self, record: SpanRecord) -> None:
        if _root_key(record) < _root_key(self.root):
            self.root = record
        if record.input_preview and (
            self.preview is None or _start_key(record) < _start_key(self.preview)
        ):
            self.preview = record
        self.start_ns = min(self.start_ns, record.start_ns)
        self.end_ns = max(self.end_ns, record.end_ns)
        self.conversation_id = max(self.conversation_id, record.conversation_id)
        for column, value in SUMMED.items():
            self.sums[column] += value(record)


def fold_summaries(cursor: Any, inserted: Iterable[SpanRecord]) -> None:
    """Fold the spans a batch inserted into their traces' summary rows. The caller holds the
    traces' locks (on PostgreSQL), so no other writer changes these rows before commit."""
    deltas: dict[str, _Delta] = {}
    for record in inserted:
        delta = deltas.get(record.trace_id)
        if delta is None:
            deltas[record.trace_id] = _Delta(record)
        else:
            delta.add(record)
    ids = sorted(deltas)
    for start in range(0, len(ids), SUMMARY_CHUNK):
        chunk = ids[start : start + SUMMARY_CHUNK]
        cursor.execute(
            _READ_SQL.format(columns=", ".join(_FOLD_COLUMNS), ids=", ".join(["%s"] * len(chunk))),
            chunk,
        )
        stored = {row[0]: dict(zip(_FOLD_COLUMNS, row, strict=True)) for row in cursor.fetchall()}
        rows = [_fold(cursor, deltas[t], stored.get(t)) for t in chunk]
        cursor.execute(
            _FOLD_SQL.format(values=", ".join([_FOLD_ROW] * len(rows))),
            [value for row in rows for value in row],
        )
        projects.resolve(cursor, chunk)


def _fold(cursor: Any, delta: _Delta, old: dict[str, Any] | None) -> list[Any]:
    root = delta.root
    new = {
        "trace_id": root.trace_id,
        "name": root.name,
        "root_span_id": root.span_id,
        "has_root": root.parent_span_id == "",
        "span_type": root.span_type,
        "service_name": root.service_name,
        "label": root.label,
        "start_ns": delta.start_ns,
        "end_ns": delta.end_ns,
        "conversation_id": delta.conversation_id,
        "input_preview": delta.preview.input_preview if delta.preview else "",
        **delta.sums,
    }
    root_status = root.status_code
    if old is not None:
        if not _replaces_root(cursor, root, old):
            new.update({column: old[column] for column in ROOT_COLUMNS})
            # With no error, the trace's status is its root's.
            root_status = old["status_code"]
        if old["input_preview"] and (
            delta.preview is None or _has_earlier_preview(cursor, delta.preview)
        ):
            new["input_preview"] = old["input_preview"]
        new["start_ns"] = min(new["start_ns"], old["start_ns"])
        new["end_ns"] = max(new["end_ns"], old["end_ns"])
        new["conversation_id"] = max(new["conversation_id"], old["conversation_id"])
        for column in SUMMED:
            new[column] += old[column] or 0
    new["duration_ns"] = new["end_ns"] - new["start_ns"]
    new["status_code"] = STATUS_ERROR if new["error_count"] > 0 else root_status
    new["total_tokens"] = new["input_tokens"] + new["output_tokens"]
    # As _SUMMARY_SQL rounds: a float sum's last bit depends on the order it was added in.
    new["cost_usd"] = round(new["cost_usd"], 12)
    project = root.project if root.project is not None else conventions.DEFAULT_PROJECT
    return [*(new[column] for column in _FOLD_COLUMNS), project]


def _replaces_root(cursor: Any, candidate: SpanRecord, old: dict[str, Any]) -> bool:
    """Whether the batch's best root candidate beats the stored trace's root."""
    if not old["has_root"]:
        # The stand-in is the earliest span, so it starts when the trace does.
        return _root_key(candidate) < (1, old["start_ns"], old["root_span_id"])
    if candidate.parent_span_id != "":
        return False
    # Two spans without a parent (rare): the stored root's start is on its span row.
    cursor.execute(_SPAN_START_SQL, [candidate.trace_id, old["root_span_id"]])
    row = cursor.fetchone()
    return row is None or _start_key(candidate) < (row[0], old["root_span_id"])


def _has_earlier_preview(cursor: Any, candidate: SpanRecord) -> bool:
    # Walks the trace's spans in start order (span_tree_idx) up to the first preview; only the
    # batch's earliest preview span asks, and the first preview of a trace is usually early.
    start, span_id = _start_key(candidate)
    cursor.execute(_EARLIER_PREVIEW_SQL, [candidate.trace_id, start, start, span_id])
    return cursor.fetchone() is not None


# The output preview is the root span's final answer, read from its attributes: too costly for
# SQL, so it is computed from the records before the transaction and set here, for the trace
# whose root that span is (a trace whose root has not arrived keeps "").
_OUTPUT_PREVIEW_SQL = """
WITH v (preview, trace_id, span_id) AS (VALUES {values})
UPDATE tracing_trace SET output_preview = v.preview
FROM v WHERE tracing_trace.trace_id = v.trace_id AND tracing_trace.root_span_id = v.span_id
"""


def set_output_previews(cursor: Any, previews: Sequence[tuple[str, str, str]]) -> None:
    """(preview, trace id, span id): one statement a chunk, as the fold. A span sent twice in
    one batch is stored as it came first (the second is not inserted): so is its preview (in
    one UPDATE the database would pick either)."""
    first: dict[tuple[str, str], tuple[str, str, str]] = {}
    for preview in previews:
        first.setdefault(preview[1:], preview)
    previews = list(first.values())
    for start in range(0, len(previews), SUMMARY_CHUNK):
        chunk = previews[start : start + SUMMARY_CHUNK]
        values = ", ".join(["(%s, %s, %s)"] * len(chunk))
        cursor.execute(_OUTPUT_PREVIEW_SQL.format(values=values), [v for row in chunk for v in row])


# A record as the INSERT's parameters, in SPAN_COLUMNS order.
_row = attrgetter(*SPAN_COLUMNS)


def write_batch(records: Sequence[SpanRecord]) -> set[str]:
    """Store records and fold the ones inserted into their traces' summaries, in one
    transaction; return the traces."""
    trace_ids = {record.trace_id for record in records}
    if not records:
        return trace_ids
    previews = output_previews(records)
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Spans a key may not add to their traces are refused (ingest/ownership.py).
            records, previews = ownership.admit(cursor, records, trace_ids, previews)
            inserted = insert_spans(cursor, records)
            if connection.vendor == "postgresql":
                lock_traces(cursor, trace_ids)
            fold_summaries(cursor, inserted)
            if previews:
                set_output_previews(cursor, previews)
    return trace_ids


_RETURNING_SQL = _INSERT_SQL + " RETURNING trace_id, span_id"
_LAST_ID_SQL = "SELECT MAX(id) FROM tracing_span"
_INSERTED_SQL = "SELECT trace_id, span_id FROM tracing_span WHERE id > %s"


def insert_spans(cursor: CursorWrapper, records: Sequence[SpanRecord]) -> Sequence[SpanRecord]:
    """Insert records, skipping spans already stored; return the records actually inserted (of
    a span repeated within `records`, the first, which is the one stored)."""
    if not records:
        # Every span refused (ingest.ownership): psycopg's executemany of no rows has no result
        # to fetch.
        return []
    if connection.vendor == "postgresql":
        # psycopg runs the statements in one pipeline and keeps each one's result; Django's
        # wrapper has no `returning`, so its error mapping (may_pass) is applied here.
        raw = cursor.cursor
        with connection.wrap_database_errors:
            raw.executemany(_RETURNING_SQL, map(_row, records), returning=True)
            keys = set(raw.fetchall())
            while raw.nextset():
                keys.update(raw.fetchall())
    else:
        # SQLite gives each row a rowid above every existing one, and IMMEDIATE transactions keep
        # other writers out, so the rows above the last id are this batch's.
        cursor.execute(_LAST_ID_SQL)
        last_id = cursor.fetchone()[0] or 0
        # Rows made one at a time as the driver binds them: a list of them all would double
        # the memory of a large batch.
        cursor.executemany(_INSERT_SQL, map(_row, records))
        if cursor.rowcount == len(records):
            return records
        cursor.execute(_INSERTED_SQL, [last_id])
        keys = set(cursor.fetchall())
    inserted = []
    for record in records:
        key = (record.trace_id, record.span_id)
        if key in keys:
            keys.discard(key)
            inserted.append(record)
    return inserted


def lock_traces(
    cursor: CursorWrapper, trace_ids: set[str], fine_limit: int = FINE_LOCK_TRACES
) -> None:
    """Holds, until commit, the locks that keep two writers from summarising a trace at once."""
    hashes = {zlib.crc32(t.encode()) for t in trace_ids}
    # Sorted, so that two writers never wait for each other's buckets in a cycle.
    coarse = sorted({h % LOCK_BUCKETS for h in hashes})
    if len(trace_ids) > fine_limit:
        cursor.execute(_LOCK_SQL, [coarse])
        return
    cursor.execute(_SHARED_LOCK_SQL, [coarse])
    cursor.execute(_FINE_LOCK_SQL, [sorted({h % FINE_LOCK_BUCKETS for h in hashes})])


def output_previews(records: Iterable[SpanRecord]) -> list[tuple[str, str, str]]:
    """(preview, trace id, span id) of the root spans among `records` (one per trace, usually
    the last span to end): only theirs are parsed again, outside the transaction."""
    previews = []
    for record in records:
        if record.parent_span_id:
            continue
        try:
            attributes = orjson.loads(record.attributes_json)
            events = orjson.loads(record.events_json)
            answer = conventions.one_line(messages.final_answer(attributes, events))
        except Exception:
            # A preview is a convenience: a shape no reader foresaw must not cost the spans.
            logger.exception("no output preview for trace %s", record.trace_id)
            continue
        previews.append((answer, record.trace_id, record.span_id))
    return previews


def refresh_summaries(cursor: Any, trace_ids: Iterable[str]) -> None:
    """Recompute the summaries of `trace_ids` from all their spans (bulk loads, and the tests
    that check the writer's fold against it)."""
    ids = sorted(trace_ids)
    for start in range(0, len(ids), SUMMARY_CHUNK):
        chunk = ids[start : start + SUMMARY_CHUNK]
        placeholders = ", ".join(["%s"] * len(chunk))
        cursor.execute(_SUMMARY_SQL.format(ids=placeholders), chunk * 3)
        projects.resolve(cursor, chunk)


# What a committed request's future holds: (trace id, span id) of the spans ingest.ownership
# refused. Only these outlive the commit, so a receiver can report them without keeping its
# records (which the writer frees as it commits).
Refused = list[tuple[str, str]]
# Records queued by one request, the future its receiver waits on, and their size in bytes.
_Pending = tuple[Sequence[SpanRecord], Future[Refused], int]


class Writer:
    """One per process: a thread that commits whatever the receivers queued, in groups."""

    def __init__(self, max_queue_spans: int, max_queue_bytes: int | None = None) -> None:
        self.max_queue_spans = max_queue_spans
        self.max_queue_bytes = max_queue_bytes
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        # Spans (and their estimated bytes) accepted but not yet committed, the batch being
        # written included.
        self._queued_spans = 0
        self._queued_bytes = 0
        self._closing = False
        self._thread: threading.Thread | None = None

    def submit(self, records: Sequence[SpanRecord]) -> Future[Refused]:
        """Queue records; the future resolves once they are committed, to the refused spans."""
        future: Future[Refused] = Future()
        if not records:
            future.set_result([])
            return future
        size = records_size(records)
        with self._cond:
            if self._closing:
                raise WriterClosed("Studio is shutting down")
            # One request larger than the whole queue still gets in when the queue is empty,
            # otherwise it could never be stored.
            if self._queued_spans and self._queued_spans + len(records) > self.max_queue_spans:
                raise QueueFull(
                    f"{self._queued_spans} spans are waiting to be written "
                    f"(STUDIO_MAX_QUEUE_SPANS={self.max_queue_spans})"
                )
            if (
                self.max_queue_bytes is not None
                and self._queued_bytes
                and self._queued_bytes + size > self.max_queue_bytes
            ):
                raise QueueFull(f"{self._queued_bytes} bytes of spans are waiting to be written")
            self._pending.append((records, future, size))
            self._queued_spans += len(records)
            self._queued_bytes += size
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="studio-writer", daemon=True)
                self._thread.start()
            self._cond.notify()
        return future

    @property
    def queued_bytes(self) -> int:
        """Estimated bytes of the spans accepted and not yet committed."""
        return self._queued_bytes

    def close(self, timeout: float | None = None) -> bool:
        """Take no more spans, write what is queued, and stop. True if it drained in time."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        workers.lower_priority(settings.STUDIO_INGEST_NICENESS)
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if not self._pending and self._closing:
                        return
                    taken, self._pending = self._pending, []
                for _, future, _ in taken:
                    # Marks it running, so a waiter that gives up cannot cancel it under us.
                    future.set_running_or_notify_cancel()
                try:
                    self._commit(taken)
                finally:
                    with self._cond:
                        self._queued_spans -= sum(len(records) for records, _, _ in taken)
                        self._queued_bytes -= sum(size for _, _, size in taken)
                    # Not kept while waiting for the next batch: the queue no longer counts it.
                    del taken
                    if not self._queued_spans:
                        # Drained: the spans' strings freed into malloc's heaps go back to the
                        # OS, so the next burst starts from the server's own size.
                        memory.trim()
        finally:
            connection.close()

    def _commit(self, taken: list[_Pending]) -> None:
        records = [record for batch, _, _ in taken for record in batch]
        started = time.perf_counter()
        try:
            touched = self._write(records)
        except DatabaseUnavailable as exc:
            # No request's fault, so no point in trying them one by one: all hear 503 and retry.
            logger.error("%s; %d requests answered 503", exc, len(taken))
            touched = set()
            for _, future, _ in taken:
                _resolve(future, exc)
        except Exception:
            # One bad request must not fail the others that shared its commit: retry alone.
            logger.exception(
                "group commit of %d spans failed; retrying requests one by one", len(records)
            )
            touched = set()
            for batch, future, _ in taken:
                try:
                    touched |= self._write(batch)
                except DatabaseUnavailable as exc:
                    _resolve(future, exc)
                except Exception as exc:
                    logger.exception("storing a batch of %d spans failed", len(batch))
                    _resolve(future, exc)
                else:
                    _resolve(future, refused=refused_in(batch))
        else:
            for batch, future, _ in taken:
                _resolve(future, refused=refused_in(batch))
        logger.debug(
            "committed %d spans of %d requests in %.1f ms",
            len(records), len(taken), (time.perf_counter() - started) * 1000,
        )  # fmt: skip
        if touched:
            try:
                traces_changed.send(sender=Writer, trace_ids=touched)
            except Exception:
                logger.exception("a traces_changed receiver failed")

    def _write(self, records: Sequence[SpanRecord]) -> set[str]:
        """write_batch, retrying failures that may pass with backoff; DatabaseUnavailable once
        they have lasted RETRY_FOR_SECONDS. The batch is idempotent, so a commit that failed
        after all (or that succeeded but was not confirmed) is safe to repeat."""
        deadline = time.monotonic() + RETRY_FOR_SECONDS
        delay = RETRY_FIRST_DELAY
        while True:
            try:
                return write_batch(records)
            except Exception as exc:
                if not may_pass(exc):
                    raise
                # The next attempt needs a fresh connection: the old one may be dead.
                _close_connection()
                if time.monotonic() + delay > deadline:
                    raise DatabaseUnavailable(f"the database is unavailable: {exc}") from exc
                logger.warning("writing %d spans failed, retrying: %s", len(records), exc)
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)


def records_size(records: Sequence[SpanRecord]) -> int:
    """Roughly what the records hold in memory. Resource and scope JSON are shared by the spans
    of a request, so they are not counted per span."""
    return sum(
        len(r.attributes_json) + len(r.events_json) + len(r.links_json) + len(r.name)
        for r in records
    ) + RECORD_OVERHEAD_BYTES * len(records)


def _close_connection() -> None:
    try:
        connection.close()
    except Exception:  # closing a connection the server already dropped
        logger.debug("closing a failed connection failed", exc_info=True)


def refused_in(records: Sequence[SpanRecord]) -> Refused:
    return [(record.trace_id, record.span_id) for record in records if record.refused]


def _resolve(
    future: Future[Refused], exc: BaseException | None = None, refused: Refused | None = None
) -> None:
    if future.done():  # cancelled by a waiter that went away
        return
    if exc is None:
        future.set_result(refused or [])
    else:
        future.set_exception(exc)


class DecoderLost(Unavailable):
    """A decoding process died before it answered (it may have been killed); retry."""


# What one byte of body may become in the server while it is decoded: the body, the pickled rows
# a worker sends back and the records with their Python objects (measured: about 15x for the
# smallest spans, 54 bytes each on the wire; under 3x for spans of 1 KB). Charged up front.
DECODE_INFLATION = 16


def decoded_size(body_bytes: int) -> int:
    """The memory a body of `body_bytes` (after decompression) may take while it is decoded."""
    return body_bytes * DECODE_INFLATION


class DecodeBudget:
    """Bounds the memory taken by decoding across both receivers, in estimated decoded bytes,
    together with the spans decoded before and still queued for the writer.

    A body is charged `decoded_size` of its length before it is decoded (the HTTP receiver charges
    its announced Content-Length before even reading it, then what it inflates to), and refused
    with Busy, which the receivers answer 503 + Retry-After, when the charge does not fit beside
    the other decodes and the queue: an exporter retries it rather than Studio decoding it into
    more memory than it may use. One body always gets in when nothing else is decoding or queued,
    so a maximum body is not refused forever.
    """

    def __init__(self, limit: int, queued: Callable[[], int] = lambda: 0) -> None:
        self.limit = limit
        self.queued = queued
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def reserve(self, size: int) -> Reservation:
        """Charge `size` bytes now (raising Busy if they do not fit); a `with` block, or
        `release()`, gives them back."""
        reservation = Reservation(self)
        reservation.resize(size)
        return reservation

    def _change(self, old: int, new: int) -> None:
        with self._lock:
            others = self._in_flight - old
            if new > old:
                queued = self.queued()
                if (others or queued) and others + queued + new > self.limit:
                    raise Busy(
                        f"{others} bytes are being decoded and {queued} queued; retry shortly"
                    )
            self._in_flight = others + new


class Reservation:
    """Bytes of a DecodeBudget held by one body; resized once its decoded length is known."""

    def __init__(self, budget: DecodeBudget) -> None:
        self.budget = budget
        self.size = 0

    def resize(self, size: int) -> None:
        """Hold `size` bytes instead; raises Busy (keeping the old size) if more do not fit."""
        self.budget._change(self.size, size)
        self.size = size

    def release(self) -> None:
        self.resize(0)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


_writer: Writer | None = None
_budget: DecodeBudget | None = None
_pool: workers.DecodePool | None = None
_singletons_lock = threading.Lock()

# Bodies up to this size are decoded in the calling thread: a worker's round trip would cost
# more than it saves.
WORKER_DECODE_BYTES = 64 * 1024


def get_writer() -> Writer:
    global _writer
    with _singletons_lock:
        if _writer is None:
            _writer = Writer(settings.STUDIO_MAX_QUEUE_SPANS, settings.STUDIO_MAX_QUEUE_BYTES)
        return _writer


def get_decode_budget() -> DecodeBudget:
    global _budget
    with _singletons_lock:
        if _budget is None:
            _budget = DecodeBudget(settings.STUDIO_DECODE_BUDGET_BYTES, _queued_bytes)
        return _budget


def _queued_bytes() -> int:
    return get_writer().queued_bytes


def get_decode_pool() -> workers.DecodePool | None:
    """The worker processes that decode large bodies; None with STUDIO_DECODE_WORKERS=0."""
    global _pool
    with _singletons_lock:
        if _pool is None and settings.STUDIO_DECODE_WORKERS:
            _pool = workers.DecodePool(
                settings.STUDIO_DECODE_WORKERS, settings.STUDIO_INGEST_NICENESS
            )
        return _pool


def decode(body: bytes, content_type: str) -> Batch:
    """otlp.decode, in a worker process for all but small bodies. Raises otlp.DecodeError, or
    DecoderLost when the worker died."""
    pool = get_decode_pool() if len(body) > WORKER_DECODE_BYTES else None
    if pool is None:
        return otlp.decode(body, content_type)
    try:
        return pool.decode(body, content_type, settings.STUDIO_PRICES)
    except workers.WorkerLost as exc:
        raise DecoderLost(str(exc)) from None


def accept(
    body: bytes,
    content_type: str,
    project: str | None = None,
    *,
    reservation: Reservation | None = None,
) -> tuple[Batch, Future[Refused]]:
    """What a receiver does with a request body: decode it within the budget and queue its spans.
    `project` is the sending key's. The future resolves once they are committed. A receiver that
    charged the budget before reading the body passes its reservation, which is resized to the
    body. Raises otlp.DecodeError, or Unavailable (the receivers' 503)."""
    if reservation is None:
        reservation = get_decode_budget().reserve(0)
    with reservation:
        reservation.resize(decoded_size(len(body)))
        batch = decode(body, content_type)
        batch.set_project(project)
        # Queued before the reservation goes: from here the queue's bound holds the records, and
        # only the queue: the writer frees them as it commits, not once the caller wakes.
        records, batch.records = batch.records, []
        return batch, get_writer().submit(records)
