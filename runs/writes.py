"""Writes for runs: what an AgentScope application registers, prints and asks a person.

The HTTP receivers (runs/trpc.py) and the Socket.IO server (runs/sockets.py) call these with
validated values; everything here is a short transaction, since the clients block on the answer.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from runs.models import Message, Run, UserInputRequest
from tracing.conventions import DEFAULT_PROJECT
from tracing.models import Trace
from tracing.signals import traces_changed

logger = logging.getLogger(__name__)


class OtherProject(Exception):
    """The key that sent a write belongs to another project than the run it names."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} belongs to another project than this key's")


@dataclass(frozen=True)
class PushedMessage:
    run_id: str
    msg_id: str
    name: str
    role: str
    content: Any
    metadata: Any
    client_timestamp: str = ""
    reply_id: str = ""
    reply_name: str = ""
    reply_role: str = ""


def _ensure_run(run_id: str, key_project: str | None = None) -> Run:
    """The run, checked against the project of the key that names it (None: no key).

    Messages, input requests and sockets can name a run this Studio never saw registered (its
    data was reset while the application ran): what they carry is kept under a bare run, in the
    key's project."""
    defaults: dict[str, Any] = {"started_at": timezone.now(), "name": run_id}
    if key_project is not None:
        defaults["project"] = key_project
    run, _ = Run.objects.get_or_create(id=run_id, defaults=defaults)
    if key_project is not None and run.project != key_project:
        raise OtherProject(run_id)
    return run


def _json_or_empty(value: dict[str, Any] | None) -> str:
    # "" rather than "null": the columns say "nothing structured" with an empty string.
    return json.dumps(value) if value is not None else ""


def register_run(
    *,
    run_id: str,
    project: str,
    name: str,
    pid: int | None = None,
    client_timestamp: str = "",
    run_dir: str = "",
    key_project: str | None = None,
) -> Run:
    """Registers (or, for a re-used run id, re-registers) a run as running.

    Sent with an ingest key, the run goes in the key's project, the one the key is good for;
    `project`, the name the application gave, is kept as `app_project` when it differs. A key
    cannot re-register another project's run."""
    if key_project is not None:
        owner = Run.objects.filter(id=run_id).values_list("project", flat=True).first()
        if owner is not None and owner != key_project:
            raise OtherProject(run_id)
    values = {
        "project": project if key_project is None else key_project,
        "app_project": "" if key_project in (None, project) else project,
        "name": name,
        "pid": pid,
        "client_timestamp": client_timestamp,
        "run_dir": run_dir,
    }
    run, _ = Run.objects.update_or_create(
        id=run_id,
        defaults={**values, "finished_at": None},
        create_defaults={**values, "started_at": timezone.now()},
    )
    _claim_traces(run)
    return run


# The writer's resolver (registered in RunsConfig.ready): in the commit that stores a trace, a
# trace still in the default project whose conversation id is a run's takes the run's project.
_TRACE_PROJECTS_SQL = """
UPDATE tracing_trace SET project = (
    SELECT r.project FROM tracing_run r WHERE r.id = tracing_trace.conversation_id
)
WHERE trace_id IN ({ids}) AND project = %s AND conversation_id IN (
    SELECT id FROM tracing_run WHERE project <> '' AND project <> %s
)
"""


def project_of_app(name: str) -> str | None:
    """The project of runs whose application called it `name`, when that is not a project of
    runs itself (the app registered with an ingest key of another project)."""
    if Run.objects.filter(project=name).exists():
        return None
    keyed = Run.objects.filter(app_project=name).order_by("-started_at")
    return keyed.values_list("project", flat=True).first()


def trace_projects_from_runs(cursor: Any, trace_ids: Sequence[str]) -> None:
    placeholders = ", ".join(["%s"] * len(trace_ids))
    sql = _TRACE_PROJECTS_SQL.format(ids=placeholders)
    cursor.execute(sql, [*trace_ids, DEFAULT_PROJECT, DEFAULT_PROJECT])


def _claim_traces(run: Run) -> None:
    """A run usually registers before its spans arrive, but not always (a restarted Studio, an
    exporter that flushed first): traces already stored for it move to its project, unless a key
    or a resource attribute already put them in one."""
    if run.project in ("", DEFAULT_PROJECT):
        return
    traces = Trace.objects.filter(conversation_id=run.id, project=DEFAULT_PROJECT)
    ids = set(traces.values_list("trace_id", flat=True))
    if ids:
        traces.update(project=run.project)
        # Open overview pages re-check them against their project.
        traces_changed.send(sender=Run, trace_ids=ids)


def push_message(pushed: PushedMessage, key_project: str | None = None) -> None:
    """Stores a message, or updates it when a streamed chunk repeats its id.

    The application blocks on every chunk, so a repeated id costs one UPDATE (which checks the
    key's project in the same statement)."""
    now = timezone.now()
    values = {
        "reply_id": pushed.reply_id,
        "reply_name": pushed.reply_name,
        "reply_role": pushed.reply_role,
        "name": pushed.name,
        "role": pushed.role,
        "client_timestamp": pushed.client_timestamp,
        "content_json": json.dumps(pushed.content, ensure_ascii=False),
        "metadata_json": json.dumps(pushed.metadata, ensure_ascii=False),
        "updated_at": now,
    }
    chunk = Message.objects.filter(run_id=pushed.run_id, msg_id=pushed.msg_id)
    if key_project is not None:
        chunk = chunk.filter(run__project=key_project)
    with transaction.atomic():
        if chunk.update(**values):
            return
        run = _ensure_run(pushed.run_id, key_project)
        try:
            with transaction.atomic():
                Message.objects.create(run=run, msg_id=pushed.msg_id, created_at=now, **values)
        except IntegrityError:
            # A concurrent chunk of the same message created it first.
            chunk.update(**values)


def request_user_input(
    *,
    request_id: str,
    run_id: str,
    agent_id: str,
    agent_name: str,
    structured_schema: dict[str, Any] | None,
    key_project: str | None = None,
) -> UserInputRequest:
    run = _ensure_run(run_id, key_project)
    if key_project is not None:
        # Request ids are global: re-sending another run's would move it into this one.
        owner = UserInputRequest.objects.filter(request_id=request_id).values_list("run_id")
        if owner.first() not in (None, (run_id,)):
            raise OtherProject(run_id)
    values = {
        "run": run,
        "agent_id": agent_id,
        "agent_name": agent_name,
        "structured_schema_json": _json_or_empty(structured_schema),
    }
    request, _ = UserInputRequest.objects.update_or_create(
        request_id=request_id,
        defaults=values,
        create_defaults={**values, "created_at": timezone.now()},
    )
    return request


def answer_user_input(
    request: UserInputRequest, text: str, structured: dict[str, Any] | None
) -> bool:
    """Records the answer; False when the request had already been answered (two tabs)."""
    updated = UserInputRequest.objects.filter(
        request_id=request.request_id, answered_at__isnull=True
    ).update(
        answered_at=timezone.now(),
        answer_text=text,
        answer_structured_json=_json_or_empty(structured),
    )
    return bool(updated)


def mark_connected(run_id: str, key_project: str | None = None) -> None:
    """The run's socket connected (or reconnected, e.g. after Studio restarted)."""
    run = _ensure_run(run_id, key_project)
    if not run.is_running:
        Run.objects.filter(id=run_id).update(finished_at=None)


def mark_finished(run_id: str) -> None:
    Run.objects.filter(id=run_id, finished_at=None).update(finished_at=timezone.now())


def finish_orphaned_runs(
    is_live: Callable[[Collection[str]], Collection[str]], started_before: datetime | None = None
) -> int:
    """At start-up this process holds no socket: runs still marked running lost theirs when a
    Studio process stopped, unless `is_live` says another process holds it now (several workers
    or hosts, through Redis). The others are finished; one whose application still lives
    reconnects (AgentScope's client retries) and is running again. `started_before`: leave
    younger runs alone (the periodic sweep: a run registers before its socket connects)."""
    running_runs = Run.objects.filter(finished_at=None)
    if started_before is not None:
        running_runs = running_runs.filter(started_at__lt=started_before)
    running = list(running_runs.values_list("id", flat=True))
    orphans = set(running) - set(is_live(running))
    if not orphans:
        return 0
    return Run.objects.filter(id__in=orphans, finished_at=None).update(finished_at=timezone.now())


def sweep_orphaned_runs(
    is_live: Callable[[Collection[str]], Collection[str]], interval: float, grace: float
) -> tuple[threading.Thread, threading.Event]:
    """Every `interval` seconds, finishes the running runs that no process holds a socket for
    (a Studio process killed with -9 never releases its runs, and its holder keys expire with
    their TTL), leaving runs younger than `grace` seconds alone. One thread; set the event to
    stop it."""
    stop = threading.Event()

    def sweep() -> None:
        while not stop.wait(interval):
            try:
                cutoff = timezone.now() - timedelta(seconds=grace)
                finished = finish_orphaned_runs(is_live, started_before=cutoff)
                if finished:
                    logger.info("finished %d runs that no process holds any more", finished)
            except Exception:
                # The database or Redis may be away for a moment: the next sweep tries again.
                logger.exception("sweeping orphaned runs failed")
            finally:
                connection.close()  # this thread's: a pooled one goes back between sweeps

    thread = threading.Thread(target=sweep, name="studio-run-sweep", daemon=True)
    thread.start()
    return thread, stop
