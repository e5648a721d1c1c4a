"""A trace belongs to one project, and an ingest key writes only to its own project's traces.

A trace takes its project when it is first stored (tracing.projects); without this check a key of
project A could append spans, and so names, messages and output previews, to a trace of project B
by sending B's trace id. So the writer, in its transaction and before it inserts anything, admits
a span sent with a key (`SpanRecord.keyed`) only when its trace is the key's project's: the
stored trace's project, or, for a trace this commit creates, the project the commit gives it (its
root's, else its earliest span's, as the summary chooses). Other spans are refused: not stored,
marked `refused`, and reported to their sender as OTLP `partial_success` (rejected_spans and a
message), since a retry would never succeed; the rest of the request is stored. Spans without a
key (STUDIO_AUTH=none, where no key guards anything) join any trace, as before.

Races: two commits creating one trace with keys of different projects. On PostgreSQL the check
runs under the writer's per-trace locks (`writer.lock_traces`, taken here, before the insert, for
the same traces the writer locks later, so no new lock order appears), so the second commit waits
for the first and then sees its trace; SQLite's IMMEDIATE transactions serialise writers already.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection

from ingest.otlp import SpanRecord

# Trace ids per lookup: far below both databases' bound-parameter limits.
CHUNK = 500


def _rank(record: SpanRecord) -> tuple[int, int, str]:
    # The summary's choice of the span that names a trace: a root first, then the earliest.
    return (0 if not record.parent_span_id else 1, record.start_ns, record.span_id)


def admit(
    cursor: Any,
    records: Sequence[SpanRecord],
    trace_ids: set[str],
    previews: list[tuple[str, str, str]],
) -> tuple[Sequence[SpanRecord], list[tuple[str, str, str]]]:
    """The records (and output previews) the writer may store; marks the others `refused`.
    Runs inside the writer's transaction, first. `trace_ids` are all the traces of `records`."""
    keyed = [record for record in records if record.keyed]
    if not keyed:
        return records, previews
    for record in keyed:
        record.refused = False  # this attempt decides, not a failed one before it
    if connection.vendor == "postgresql":
        from ingest.writer import lock_traces

        lock_traces(cursor, trace_ids)
    owners = stored_projects(cursor, {record.trace_id for record in keyed})
    creators: dict[str, SpanRecord] = {}
    for record in records:
        if record.trace_id in owners:
            continue
        best = creators.get(record.trace_id)
        if best is None or _rank(record) < _rank(best):
            creators[record.trace_id] = record
    for trace_id, creator in creators.items():
        owners[trace_id] = creator.project
    refused: set[tuple[str, str]] = set()
    for record in keyed:
        if record.project != owners[record.trace_id]:
            record.refused = True
            refused.add((record.trace_id, record.span_id))
    if not refused:
        return records, previews
    return (
        [record for record in records if not record.refused],
        # A refused root must not set the output preview of the trace it claimed.
        [preview for preview in previews if (preview[1], preview[2]) not in refused],
    )


def stored_projects(cursor: Any, trace_ids: set[str]) -> dict[str, str]:
    """{trace id: project} of those of `trace_ids` that are stored."""
    ids = sorted(trace_ids)
    owners: dict[str, str] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        cursor.execute(
            "SELECT trace_id, project FROM tracing_trace WHERE trace_id IN ({})".format(
                ", ".join(["%s"] * len(chunk))
            ),
            chunk,
        )
        owners.update(cursor.fetchall())
    return owners
