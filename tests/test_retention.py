"""Retention: whole traces go by age and by the span cap, in small transactions, with the space
given back on SQLite; `manage.py purge`, the background purge and the overview's policy line."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client

from ingest import otlp, writer
from ingest.otlp import SpanRecord
from tests.conftest import ROOT, fixture_bytes, start_studio
from tests.races import ON_POSTGRESQL, Threads, postgresql_only
from tracing import retention
from tracing.models import Span, Trace
from tracing.retention import Pacer, Policy, PurgeContext
from tracing.signals import traces_purged

SECOND = 1_000_000_000
DAY = 86_400 * SECOND
NOW = time.time_ns()
AGENTSCOPE_TRACE = "ad27a918a7ce11d08dc80c6ec77cd536"  # 9 spans, captured 2026-11-21
AGENTSCOPE_CONVERSATION = "FBR8Y7LSqV7pXo8fzTZ8TV"
EAGER = Pacer(duty=1)  # no pauses: tests need no pacing

BLANK = SpanRecord(
    trace_id="", span_id="", parent_span_id="", start_ns=0, end_ns=0, kind=1, status_code=1,
    span_type="", operation="", input_tokens=0, output_tokens=0, flags=0,
    dropped_attributes_count=0, dropped_events_count=0, dropped_links_count=0, name="",
    service_name="shop", model="", label="", conversation_id="", input_preview="",
    status_message="", trace_state="", attributes_json="{}", events_json="[]", links_json="[]",
    resource_json="{}", scope_json="{}",
)  # fmt: skip


def trace_id(n: int) -> str:
    return f"{n:032x}"


def spans(n: int, count: int, *, start_ns: int, first: int = 0, **fields: Any) -> list[SpanRecord]:
    """`count` spans of trace `n`, one microsecond apart from `start_ns`; span `first` onwards."""
    return [
        replace(
            BLANK,
            trace_id=trace_id(n),
            span_id=f"{n:08x}{i:08x}",
            parent_span_id="" if i == 0 else f"{n:08x}{0:08x}",
            start_ns=start_ns + i * 1000,
            end_ns=start_ns + i * 1000 + 500,
            name=f"span {i}",
            **fields,
        )
        for i in range(first, first + count)
    ]


def write(*batches: list[SpanRecord]) -> None:
    for batch in batches:
        writer.write_batch(batch)


def agentscope() -> None:
    writer.write_batch(
        otlp.decode_protobuf(fixture_bytes("agentscope-1.0.21-react-agent.pb")).records
    )


def consistent() -> dict[str, int]:
    """Every trace row agrees with its spans, and no span is left without its trace: the
    {trace id: span count} that is stored."""
    rows = dict(Trace.objects.values_list("trace_id", "span_count"))
    counted: dict[str, int] = {}
    for tid in Span.objects.values_list("trace_id", flat=True):
        counted[tid] = counted.get(tid, 0) + 1
    assert counted == rows
    return rows


# By age.


@pytest.mark.django_db
def test_it_deletes_traces_whose_last_span_is_older_than_the_days() -> None:
    agentscope()  # a real AgentScope trace, older than 3 days
    write(
        spans(1, 3, start_ns=NOW - 40 * DAY),  # old
        spans(2, 3, start_ns=NOW - 2 * DAY),  # young enough
        # Started long ago but still going: its last span is recent, so it stays.
        spans(3, 1, start_ns=NOW - 40 * DAY) + spans(3, 1, start_ns=NOW - DAY, first=1),
        spans(4, 2, start_ns=NOW),
    )
    result = retention.purge(Policy(days=3, max_spans=0), now_ns=NOW, pacer=EAGER)
    assert consistent() == {trace_id(2): 3, trace_id(3): 2, trace_id(4): 2}
    assert (result.aged_traces, result.aged_spans) == (2, 12)
    assert (result.capped_traces, result.capped_spans) == (0, 0)


@pytest.mark.django_db
def test_no_age_limit_and_no_cap_keeps_everything() -> None:
    agentscope()
    result = retention.purge(Policy(days=0, max_spans=0), pacer=EAGER)
    assert result.traces == 0
    assert consistent() == {AGENTSCOPE_TRACE: 9}


# By span cap.


@pytest.mark.django_db
def test_the_span_cap_deletes_the_oldest_whole_traces_until_under_it() -> None:
    for n in range(1, 6):  # 5 traces of 10 spans, trace 1 the oldest
        write(spans(n, 10, start_ns=NOW - (10 - n) * SECOND))
    # Small batches: several transactions, and never a trace split between two.
    result = retention.purge(Policy(days=0, max_spans=25), batch_spans=7, pacer=EAGER)
    assert consistent() == {trace_id(4): 10, trace_id(5): 10}
    assert (result.capped_traces, result.capped_spans) == (3, 30)


@pytest.mark.django_db
def test_under_the_cap_nothing_goes() -> None:
    write(spans(1, 10, start_ns=NOW))
    assert retention.purge(Policy(days=0, max_spans=10), pacer=EAGER).traces == 0
    assert consistent() == {trace_id(1): 10}


# Dry run.


@pytest.mark.django_db
def test_a_dry_run_deletes_nothing_and_counts_what_a_purge_then_deletes() -> None:
    agentscope()  # old: goes by age
    write(spans(1, 4, start_ns=NOW - 60 * DAY))  # old too
    for n in range(2, 6):  # young, 5 spans each: the cap takes the oldest of them
        write(spans(n, 5, start_ns=NOW - (10 - n) * SECOND))
    before = consistent()
    policy = Policy(days=3, max_spans=12)

    dry = retention.purge(policy, dry_run=True, now_ns=NOW, batch_spans=3, pacer=EAGER)
    assert consistent() == before
    assert (dry.aged_traces, dry.aged_spans, dry.capped_traces, dry.capped_spans) == (2, 13, 2, 10)

    real = retention.purge(policy, now_ns=NOW, batch_spans=3, pacer=EAGER)
    assert (real.aged_traces, real.aged_spans, real.capped_traces, real.capped_spans) == (
        2,
        13,
        2,
        10,
    )
    assert consistent() == {trace_id(4): 5, trace_id(5): 5}


# A project's own policy.


@pytest.mark.django_db
def test_a_projects_own_policy_governs_its_traces_and_the_rest_keep_the_global_one(
    settings: Any,
) -> None:
    settings.STUDIO_RETENTION_DAYS = 30
    settings.STUDIO_RETENTION_MAX_SPANS = 12
    # alpha keeps 1 day (its cap blank: the global 12, over its own spans alone); gamma keeps
    # at most 5 spans (its days blank: the global 30); beta and delta share the global policy.
    retention.set_policy("alpha", days=1, max_spans=None)
    retention.set_policy("gamma", days=None, max_spans=5)
    write(
        spans(1, 4, start_ns=NOW - 2 * DAY, project="alpha"),  # over alpha's day
        spans(2, 4, start_ns=NOW - 10, project="alpha"),
        spans(3, 4, start_ns=NOW - 2 * DAY, project="beta"),  # within the global 30 days
        spans(4, 4, start_ns=NOW - 40 * DAY, project="beta"),  # over them
        spans(5, 4, start_ns=NOW - 3 * SECOND, project="gamma"),  # gamma's oldest: over its 5
        spans(6, 4, start_ns=NOW - 2 * SECOND, project="gamma"),
        spans(7, 5, start_ns=NOW - 5 * DAY, project="delta"),
        spans(8, 5, start_ns=NOW - 4 * DAY, project="delta"),
    )
    assert retention.policy_for("alpha") == Policy(days=1, max_spans=12)
    assert retention.policy_for("gamma") == Policy(days=30, max_spans=5)
    assert retention.policy_for("beta") == Policy(days=30, max_spans=12)

    dry = retention.purge_all(dry_run=True, now_ns=NOW, pacer=EAGER)
    assert [(r.project, r.traces, r.spans) for r in dry] == [
        ("alpha", 1, 4),
        ("gamma", 1, 4),
        # beta's old trace by age; then beta and delta's 4 + 10 spans are over the global 12
        # together (alpha's and gamma's are not counted): the oldest, trace 7, goes.
        (None, 2, 9),
    ]
    assert len(consistent()) == 8

    results = retention.purge_all(now_ns=NOW, pacer=EAGER)
    assert [(r.project, r.traces, r.spans) for r in results] == [
        (r.project, r.traces, r.spans) for r in dry
    ]
    assert consistent() == {trace_id(2): 4, trace_id(3): 4, trace_id(6): 4, trace_id(8): 5}

    # Both blank again: back to the global policy (no row left).
    retention.set_policy("alpha", days=None, max_spans=None)
    assert retention.policy_for("alpha") == retention.default_policy()
    assert list(retention.own_policies()) == ["gamma"]


@pytest.mark.django_db
def test_the_purge_command_applies_each_projects_own_policy(settings: Any) -> None:
    settings.STUDIO_RETENTION_DAYS = 30
    settings.STUDIO_RETENTION_MAX_SPANS = 0
    retention.set_policy("alpha", days=1, max_spans=None)
    write(
        spans(1, 3, start_ns=NOW - 2 * DAY, project="alpha"),
        spans(2, 3, start_ns=NOW - 2 * DAY, project="beta"),
    )
    out = io.StringIO()
    call_command("purge", stdout=out)
    text = out.getvalue()
    assert "Project alpha: Keeping traces for 1 day." in text
    assert "Project alpha: deleted 1 trace (3 spans)." in text
    assert "Keeping traces for 30 days (projects without their own policy)." in text
    assert consistent() == {trace_id(2): 3}


# Spans arriving while a trace is purged.


@pytest.mark.django_db
def test_a_trace_that_gets_a_new_span_after_it_was_chosen_stays_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(spans(1, 5, start_ns=NOW - 40 * DAY))
    delete_batch = retention._delete_batch

    def a_span_arrives_first(ids: list[str], cutoff_ns: int | None, using: str) -> Any:
        # Chosen as old, then a span of today arrives before the delete transaction.
        write(spans(1, 1, start_ns=NOW, first=5))
        return delete_batch(ids, cutoff_ns, using)

    monkeypatch.setattr(retention, "_delete_batch", a_span_arrives_first)
    result = retention.purge(Policy(days=30, max_spans=0), now_ns=NOW, pacer=EAGER)
    assert result.traces == 0
    assert consistent() == {trace_id(1): 6}


@pytest.mark.django_db
def test_a_trace_over_the_cap_goes_whole_with_the_span_that_arrived_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(spans(1, 5, start_ns=NOW - 2 * SECOND), spans(2, 5, start_ns=NOW - SECOND))
    delete_batch = retention._delete_batch

    def a_span_arrives_first(ids: list[str], cutoff_ns: int | None, using: str) -> Any:
        write(spans(1, 1, start_ns=NOW - 2 * SECOND, first=5))
        return delete_batch(ids, cutoff_ns, using)

    monkeypatch.setattr(retention, "_delete_batch", a_span_arrives_first)
    result = retention.purge(Policy(days=0, max_spans=5), pacer=EAGER)
    assert (result.capped_traces, result.capped_spans) == (1, 6)
    assert consistent() == {trace_id(2): 5}


@pytest.mark.django_db(transaction=True)
def test_a_purge_waits_for_a_batch_summarising_the_trace_and_deletes_it_whole() -> None:
    # The writer has stored a span of trace 1 and its new summary, not yet committed, when the
    # purge starts on trace 1. On PostgreSQL, without the writer's lock, the purge would delete
    # the spans it can see, wait for the trace row, delete it once the writer commits, and leave
    # the new span without a trace. On SQLite the writer's transaction holds the write lock.
    write(spans(1, 5, start_ns=NOW - 2 * SECOND), spans(2, 5, start_ns=NOW - SECOND))
    summarised, commit = threading.Event(), threading.Event()
    threads = Threads()

    def write_and_hold() -> None:
        try:
            with transaction.atomic():
                writer.write_batch(spans(1, 1, start_ns=NOW - 2 * SECOND, first=5))
                summarised.set()
                commit.wait(30)
        finally:
            summarised.set()

    held = threads.start(write_and_hold)
    summarised.wait(30)
    purging = threads.start(retention.purge, Policy(days=0, max_spans=5), pacer=EAGER)
    time.sleep(1)  # the purge is now as far as it can get
    commit.set()
    held.join()
    purging.join()
    assert not threads.failures
    assert consistent() == {trace_id(2): 5}


@postgresql_only("on SQLite the writer holds the write lock from its first insert")
@pytest.mark.django_db(transaction=True)
def test_a_span_inserted_before_the_cap_purge_locks_its_trace_keeps_a_summary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # PostgreSQL: the writer inserts first and takes the trace's lock after. Trace 1 is chosen
    # by the cap, a batch inserts a late span of it (not yet committed, not yet locked), and the
    # purge deletes trace 1 meanwhile: the purge cannot see the late span, so that span must not
    # be left without its trace row once the batch commits.
    write(spans(1, 5, start_ns=NOW - 2 * SECOND), spans(2, 5, start_ns=NOW - SECOND))
    inserted, purged = threading.Event(), threading.Event()
    threads = Threads()
    lock_traces = writer.lock_traces

    def insert_then_wait(cursor: Any, trace_ids: set[str], *args: Any) -> None:
        inserted.set()
        purged.wait(30)
        lock_traces(cursor, trace_ids, *args)

    monkeypatch.setattr(writer, "lock_traces", insert_then_wait)

    def late_batch() -> None:
        try:
            writer.write_batch(spans(1, 1, start_ns=NOW - 2 * SECOND, first=5))
        finally:
            inserted.set()

    thread = threads.start(late_batch)
    inserted.wait(30)
    try:
        result = retention.purge(Policy(days=0, max_spans=5), pacer=EAGER)
    finally:
        purged.set()
        thread.join()
    assert not threads.failures
    assert (result.capped_traces, result.capped_spans) == (1, 5)
    # The late span was acknowledged: it stays, with a summary of its own.
    assert consistent() == {trace_id(1): 1, trace_id(2): 5}


@pytest.mark.django_db(transaction=True)
def test_traces_stay_consistent_while_the_writer_adds_to_them_during_a_purge() -> None:
    # Traces 1-20 are purged under a cap while another thread keeps adding spans to some of them
    # (and to the young trace 99). Each trace must end either whole or gone, its row matching
    # its spans.
    for n in range(1, 21):
        write(spans(n, 20, start_ns=NOW - (100 - n) * SECOND))
    write(spans(99, 20, start_ns=NOW))
    stop = threading.Event()
    threads = Threads()

    def keep_writing() -> None:
        k = 20
        while not stop.is_set():
            batch = [
                s
                for n in (*range(1, 21, 3), 99)
                for s in spans(n, 1, start_ns=NOW - (100 - n) * SECOND, first=k)
            ]
            writer.write_batch(batch)
            k += 1
            time.sleep(0.001)

    thread = threads.start(keep_writing)
    try:
        retention.purge(Policy(days=0, max_spans=100), batch_spans=25, pacer=Pacer(duty=0.5))
    finally:
        stop.set()
        thread.join()
    assert not threads.failures
    stored = consistent()
    assert trace_id(99) in stored
    assert len(stored) < 21


# What else hears about a purge.


@pytest.mark.django_db
def test_the_signal_names_the_purged_traces_and_their_conversations() -> None:
    agentscope()
    write(spans(1, 2, start_ns=NOW))
    heard: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs)

    traces_purged.connect(receiver)
    try:
        retention.purge(Policy(days=3, max_spans=0), now_ns=NOW, pacer=EAGER)
    finally:
        traces_purged.disconnect(receiver)
    assert [(h["trace_ids"], h["conversation_ids"]) for h in heard] == [
        ({AGENTSCOPE_TRACE}, {AGENTSCOPE_CONVERSATION})
    ]


@pytest.mark.django_db
def test_registered_purgers_run_after_the_traces_with_the_cutoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retention, "_purgers", {})
    told: list[PurgeContext] = []

    def runs(context: PurgeContext) -> int:
        told.append(context)
        return 3

    retention.register_purger("runs", runs)
    policy = Policy(days=30, max_spans=0)
    dry = retention.purge(policy, dry_run=True, now_ns=NOW, pacer=EAGER)
    real = retention.purge(policy, now_ns=NOW, pacer=EAGER)
    assert (dry.others, real.others) == ({"runs": 3}, {"runs": 3})
    assert [(c.cutoff_ns, c.dry_run) for c in told] == [
        (NOW - 30 * DAY, True),
        (NOW - 30 * DAY, False),
    ]


def test_the_purge_takes_the_same_postgresql_locks_as_the_writer() -> None:
    assert retention.LOCK_BUCKETS == writer.LOCK_BUCKETS
    assert retention._LOCK_SQL == writer._LOCK_SQL


# Space given back on SQLite.

sqlite_only = pytest.mark.skipif(
    ON_POSTGRESQL,
    reason="incremental vacuum is SQLite's; PostgreSQL's autovacuum makes space reusable",
)


def pragma(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA {name}")
        return cursor.fetchone()[0]


@sqlite_only
@pytest.mark.django_db
def test_a_new_database_is_made_with_incremental_auto_vacuum() -> None:
    assert pragma("auto_vacuum") == retention.SQLITE_AUTO_VACUUM_INCREMENTAL
    assert pragma("journal_mode") == "wal"


@sqlite_only
@pytest.mark.django_db(transaction=True)
def test_a_purge_gives_the_freed_pages_back_to_the_disk() -> None:
    big = '{"gen_ai.input.messages": "%s"}' % ("x" * 20_000)
    for n in range(1, 21):
        write(spans(n, 10, start_ns=NOW - 40 * DAY, attributes_json=big))
    pages = pragma("page_count")
    result = retention.purge(Policy(days=30, max_spans=0), now_ns=NOW, pacer=EAGER)
    assert result.traces == 20
    # Without the vacuum, the deleted rows' ~4 MB would sit in the freelist.
    assert pragma("freelist_count") == 0
    assert pages - pragma("page_count") > 800
    assert result.freed_bytes > 800 * pragma("page_size")


@sqlite_only
def test_an_older_sqlite_database_is_converted_once_at_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    old = sqlite3.connect(data / "studio.sqlite3")
    old.execute("CREATE TABLE made_before (x)")  # auto_vacuum can no longer change by itself
    old.close()
    server, cleanup = start_studio(data)
    server.stop()
    cleanup()
    output = server.process.stdout.read() if server.process.stdout else ""
    assert "to incremental auto-vacuum" in output
    with sqlite3.connect(data / "studio.sqlite3") as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    # Once: a second start has nothing to convert.
    server, cleanup = start_studio(data)
    server.stop()
    cleanup()
    assert "auto-vacuum" not in (server.process.stdout.read() if server.process.stdout else "")


# The command, the background purge, the settings.


@pytest.mark.django_db
def test_the_purge_command_says_what_it_deletes_and_a_dry_run_deletes_nothing(
    settings: Any,
) -> None:
    settings.STUDIO_RETENTION_DAYS = 3
    settings.STUDIO_RETENTION_MAX_SPANS = 1_000_000
    agentscope()
    write(spans(1, 2, start_ns=time.time_ns()))
    out = io.StringIO()
    call_command("purge", "--dry-run", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Keeping traces for 3 days, at most 1M spans."
    assert lines[1] == "Would delete 1 trace (9 spans)."
    assert lines[2].startswith("  older than 3 days (ended before ")
    assert lines[2].endswith(" UTC): 1 trace (9 spans)")
    assert lines[3] == "  oldest beyond 1,000,000 spans: 0 traces (0 spans)"
    assert lines[-1] == "Nothing was deleted (--dry-run)."
    assert consistent() == {AGENTSCOPE_TRACE: 9, trace_id(1): 2}

    out = io.StringIO()
    call_command("purge", stdout=out)
    assert "Deleted 1 trace (9 spans)." in out.getvalue().splitlines()
    assert consistent() == {trace_id(1): 2}


@pytest.mark.server
def test_runstudio_purges_in_the_background_and_logs_it(tmp_path: Path) -> None:
    server, cleanup = start_studio(
        tmp_path / "data", {"STUDIO_RETENTION_INTERVAL": "1", "STUDIO_RETENTION_DAYS": "3"}
    )
    try:
        response = requests.post(
            f"{server.url}/v1/traces",
            data=fixture_bytes("agentscope-1.0.21-react-agent.pb"),
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
        assert response.status_code == 200
        deadline = time.monotonic() + 30
        while server.api("/api/traces/")["count"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.api("/api/traces/")["count"] == 0
        assert "Keeping traces for 3 days" in requests.get(f"{server.url}/traces/", timeout=30).text
    finally:
        server.stop()
        cleanup()
    output = server.process.stdout.read() if server.process.stdout else ""
    assert "tracing.retention: retention (Keeping traces for 3 days, at most 1M spans)" in output
    assert "Deleted 1 trace (9 spans)." in output


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "STUDIO_RETENTION_DAYS",
            "a month",
            "STUDIO_RETENTION_DAYS must be an integer from 0 to 36500, got 'a month'",
        ),
        (
            "STUDIO_RETENTION_MAX_SPANS",
            "-1",
            "STUDIO_RETENTION_MAX_SPANS must be at least 0, got -1",
        ),
        (
            "STUDIO_RETENTION_INTERVAL",
            "5m",
            "STUDIO_RETENTION_INTERVAL must be an integer, got '5m'",
        ),
    ],
)
def test_a_bad_retention_setting_stops_studio(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path), variable: value}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "purge", "--dry-run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == f"Bad setting: {expected}\n"


# The overview.


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("days", "max_spans", "shown"),
    [
        (30, 10_000_000, "Keeping traces for 30 days, at most 10M spans."),
        (1, 0, "Keeping traces for 1 day."),
        (0, 2_500_000, "Keeping at most 2.5M spans."),
        (0, 0, "Keeping traces forever."),
    ],
)
def test_the_overview_shows_the_policy_in_force(
    client: Client, settings: Any, days: int, max_spans: int, shown: str
) -> None:
    settings.STUDIO_RETENTION_DAYS = days
    settings.STUDIO_RETENTION_MAX_SPANS = max_spans
    html = client.get("/traces/").content.decode()
    assert f">{shown}</p>" in html
