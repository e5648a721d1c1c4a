"""Retention of runs: a run goes with its messages and input requests once it finished, its last
trace was purged, and its last activity is older than the cutoff (runs.retention)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from runs.models import Message, Run, UserInputRequest
from tests.test_retention import DAY, EAGER, NOW, spans, trace_id, write
from tracing import retention
from tracing.models import Trace, ns_to_datetime
from tracing.retention import Policy

pytestmark = pytest.mark.django_db


def make_run(run_id: str, *, days_ago: float, finished: bool = True, project: str = "p") -> Run:
    moment = ns_to_datetime(NOW) - timedelta(days=days_ago)
    run = Run.objects.create(
        id=run_id,
        project=project,
        name=run_id,
        started_at=moment,
        finished_at=moment if finished else None,
    )
    Message.objects.create(run=run, msg_id="m1", created_at=moment, updated_at=moment)
    UserInputRequest.objects.create(request_id=f"{run_id}-q", run=run, created_at=moment)
    return run


def test_finished_runs_without_traces_older_than_the_cutoff_go_with_their_rows() -> None:
    make_run("old", days_ago=40)
    make_run("young", days_ago=1)
    make_run("still-running", days_ago=40, finished=False)
    make_run("old-with-a-kept-trace", days_ago=40)
    write(spans(1, 2, start_ns=NOW - DAY, conversation_id="old-with-a-kept-trace"))
    dry = retention.purge(Policy(days=3, max_spans=0), dry_run=True, now_ns=NOW, pacer=EAGER)
    assert dry.others["runs"] == 1
    assert Run.objects.count() == 4
    result = retention.purge(Policy(days=3, max_spans=0), now_ns=NOW, pacer=EAGER)
    assert result.others["runs"] == 1
    assert set(Run.objects.values_list("id", flat=True)) == {
        "young",
        "still-running",
        "old-with-a-kept-trace",
    }
    assert not Message.objects.filter(run_id="old").exists()
    assert not UserInputRequest.objects.filter(run_id="old").exists()
    assert Trace.objects.filter(trace_id=trace_id(1)).exists()


def test_a_run_goes_with_its_last_trace() -> None:
    make_run("r", days_ago=40)
    write(spans(2, 2, start_ns=NOW - 40 * DAY, conversation_id="r"))
    result = retention.purge(Policy(days=3, max_spans=0), now_ns=NOW, pacer=EAGER)
    assert result.aged_traces == 1 and result.others["runs"] == 1
    assert not Run.objects.exists()


def test_with_only_a_span_cap_a_run_goes_once_older_than_every_trace_kept() -> None:
    make_run("older", days_ago=40)
    make_run("newer", days_ago=1)
    write(spans(3, 2, start_ns=NOW - 10 * DAY), spans(4, 2, start_ns=NOW - 5 * DAY))
    result = retention.purge(Policy(days=0, max_spans=3), now_ns=NOW, pacer=EAGER)
    assert result.capped_traces == 1
    assert result.others["runs"] == 1
    assert set(Run.objects.values_list("id", flat=True)) == {"newer"}


def test_a_projects_runs_follow_its_own_policy(settings: object) -> None:
    settings.STUDIO_RETENTION_DAYS = 30  # type: ignore[attr-defined]
    settings.STUDIO_RETENTION_MAX_SPANS = 0  # type: ignore[attr-defined]
    retention.set_policy("short", days=3, max_spans=None)
    retention.set_policy("long", days=90, max_spans=None)
    make_run("short-10d", days_ago=10, project="short")
    make_run("long-40d", days_ago=40, project="long")
    make_run("p-40d", days_ago=40)
    make_run("p-10d", days_ago=10)
    results = retention.purge_all(now_ns=NOW, pacer=EAGER)
    assert [(r.project, r.others["runs"]) for r in results] == [
        ("long", 0),
        ("short", 1),
        (None, 1),
    ]
    assert set(Run.objects.values_list("id", flat=True)) == {"long-40d", "p-10d"}
