"""Retention: nothing is kept forever. Traces whose last span is older than the policy's days go,
then the oldest traces while more spans than the policy's cap are kept.

A trace goes whole: its spans and its summary row in one transaction, so no page ever shows half a
trace or a summary that disagrees with its spans. Transactions are small (about BATCH_SPANS spans)
and paced (the purge sleeps several times as long as each one took): on SQLite the purge shares
the one write lock with ingest (ingest.writer), which then never waits long for it.

Other apps' data that lives and dies with traces (runs, their messages and input requests) is not
known here (arrows point into tracing): they register a purger (`register_purger`), which runs
after the traces with the same cutoff, or listen to `tracing.signals.traces_purged`.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connections, models, transaction

from tracing.models import Cursor, ProjectRetention, Span, Trace
from tracing.signals import traces_purged

logger = logging.getLogger(__name__)

DAY_NS = 86_400 * 1_000_000_000
# Spans per delete transaction: a few milliseconds of the write lock on SQLite.
BATCH_SPANS = 1000
# Share of the time the purge may hold the database: after holding the write lock t seconds it
# sleeps t * (1 - DUTY) / DUTY, so ingest keeps the lock most of the time. Only the time held
# counts: waiting for the writer's lock is not work to rest from.
DUTY = 0.2
MIN_PAUSE = 0.002
# Pages given back to the disk per incremental-vacuum step (4 MiB with SQLite's 4 KiB pages).
VACUUM_PAGES = 1024
SQLITE_AUTO_VACUUM_NONE = 0
SQLITE_AUTO_VACUUM_INCREMENTAL = 2

# The writer's per-trace lock buckets on PostgreSQL (ingest.writer.LOCK_BUCKETS and _LOCK_SQL;
# tests/test_retention.py pins that they match). Taken before deleting, so a batch that adds
# spans to a trace being purged either commits first and is deleted with it, or summarises after
# the purge and sees only its own spans: a trace never keeps a summary of spans already gone.
LOCK_BUCKETS = 256
_LOCK_SQL = "SELECT pg_advisory_xact_lock(7370, b) FROM unnest(%s::int[]) AS b"


def lock_traces(cursor: Any, trace_ids: Iterable[str]) -> None:
    """PostgreSQL: hold, until commit, these traces' writer lock buckets exclusive. Whatever
    changes or deletes spans or summaries of stored traces outside the writer takes them first:
    the writer folds a batch into the summary row it read, so a change committed between that
    read and its write would be overwritten (a deleted trace would come back counting its gone
    spans). Sorted, like the writer's, so the two never wait for each other in a cycle."""
    buckets = sorted({zlib.crc32(t.encode()) % LOCK_BUCKETS for t in trace_ids})
    cursor.execute(_LOCK_SQL, [buckets])


@dataclass(frozen=True)
class Policy:
    """How long traces are kept: `days` by their last span, and at most `max_spans` spans in
    all (the oldest traces go first). 0 turns a limit off."""

    days: int
    max_spans: int

    def cutoff_ns(self, now_ns: int) -> int | None:
        """Traces that ended before this go; None when age is no limit."""
        return now_ns - self.days * DAY_NS if self.days else None

    def describe(self) -> str:
        """The policy in a few words, as the overview shows it."""
        days = f"for {self.days} day{_s(self.days)}" if self.days else ""
        spans = f"at most {_count(self.max_spans)} spans" if self.max_spans else ""
        if days and spans:
            return f"Keeping traces {days}, {spans}"
        if days:
            return f"Keeping traces {days}"
        if spans:
            return f"Keeping {spans}"
        return "Keeping traces forever"


def _count(n: int) -> str:
    # Exact, never rounded: a cap is a promise.
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1_000_000:g}M"
    if n >= 1_000 and n % 100 == 0:
        return f"{n / 1_000:g}k"
    return f"{n:,}"


def default_policy() -> Policy:
    """The global policy (settings only: no query)."""
    return Policy(
        days=settings.STUDIO_RETENTION_DAYS, max_spans=settings.STUDIO_RETENTION_MAX_SPANS
    )


def policy_for(project: str | None = None, using: str = "default") -> Policy:
    """The policy for a project's traces: its own where an admin set one (a blank field takes
    the global default's), else the global policy. No project: the global policy, no query."""
    default = default_policy()
    if not project:
        return default
    own = ProjectRetention.objects.using(using).filter(project=project).first()
    return default if own is None else _merged(default, own)


def own_policies(using: str = "default") -> dict[str, Policy]:
    """{project: its policy} for the projects that have their own."""
    default = default_policy()
    return {own.project: _merged(default, own) for own in ProjectRetention.objects.using(using)}


def set_policy(
    project: str, days: int | None, max_spans: int | None, using: str = "default"
) -> None:
    """Give a project its own policy; both None: back to the global one."""
    if days is None and max_spans is None:
        ProjectRetention.objects.using(using).filter(project=project).delete()
        return
    ProjectRetention.objects.using(using).update_or_create(
        project=project, defaults={"days": days, "max_spans": max_spans}
    )


@dataclass(frozen=True)
class ProjectPolicy:
    """A project's policy in force, with what its admin set (None: left blank) and the global
    default the blanks take, for the project's page."""

    project: str
    policy: Policy
    days: int | None
    max_spans: int | None
    default: Policy

    @property
    def own(self) -> bool:
        return self.days is not None or self.max_spans is not None


def project_policy(project: str, using: str = "default") -> ProjectPolicy:
    """One query."""
    default = default_policy()
    own = ProjectRetention.objects.using(using).filter(project=project).first()
    if own is None:
        return ProjectPolicy(project, default, None, None, default)
    return ProjectPolicy(project, _merged(default, own), own.days, own.max_spans, default)


def _merged(default: Policy, own: ProjectRetention) -> Policy:
    return Policy(
        days=default.days if own.days is None else own.days,
        max_spans=default.max_spans if own.max_spans is None else own.max_spans,
    )


@dataclass(frozen=True)
class PurgeContext:
    """What a registered purger is told: purge what belongs to traces that ended before
    `cutoff_ns` (None: age is no limit), or with `dry_run` only count it."""

    policy: Policy
    cutoff_ns: int | None
    dry_run: bool
    using: str
    # The pass's project (None: every project without a policy of its own, those in `others`
    # excepted), so a purger narrows its rows the same way.
    project: str | None = None
    others: frozenset[str] = frozenset()


# A purger deletes (or with dry_run counts) its own rows and returns how many.
Purger = Callable[[PurgeContext], int]
_purgers: dict[str, Purger] = {}


def register_purger(name: str, purger: Purger) -> None:
    """Run `purger` after every purge of traces; `name` labels its count ("runs": 3). Register
    from an AppConfig.ready(); registering a name again replaces it."""
    _purgers[name] = purger


@dataclass
class PurgeResult:
    policy: Policy
    cutoff_ns: int | None
    dry_run: bool
    aged_traces: int = 0
    aged_spans: int = 0
    capped_traces: int = 0
    capped_spans: int = 0
    others: dict[str, int] = field(default_factory=dict)
    freed_bytes: int = 0
    seconds: float = 0.0
    stopped: bool = False
    # Set when the pass was for one project's own policy.
    project: str | None = None

    @property
    def traces(self) -> int:
        return self.aged_traces + self.capped_traces

    @property
    def spans(self) -> int:
        return self.aged_spans + self.capped_spans

    @property
    def deleted_anything(self) -> bool:
        return bool(self.traces or any(self.others.values()))

    def lines(self) -> list[str]:
        """What was (or with dry_run would be) deleted, for the command and the log."""
        verb = "Would delete" if self.dry_run else "Deleted"
        lines = [f"{verb} {_traces(self.traces, self.spans)}."]
        if self.project is not None:
            lines[0] = f"Project {self.project}: {lines[0][0].lower()}{lines[0][1:]}"
        if self.cutoff_ns is not None:
            cutoff = datetime.fromtimestamp(self.cutoff_ns / 1e9, UTC)
            lines.append(
                f"  older than {self.policy.days} day{_s(self.policy.days)} "
                f"(ended before {cutoff:%Y-%m-%d %H:%M} UTC): "
                f"{_traces(self.aged_traces, self.aged_spans)}"
            )
        if self.policy.max_spans:
            lines.append(
                f"  oldest beyond {self.policy.max_spans:,} spans: "
                f"{_traces(self.capped_traces, self.capped_spans)}"
            )
        lines.extend(f"  {name}: {count:,}" for name, count in self.others.items())
        if self.freed_bytes:
            lines.append(f"Gave back {self.freed_bytes / 1e6:.1f} MB of disk (incremental vacuum).")
        if self.stopped:
            lines.append("Stopped before the end: the next purge goes on.")
        return lines


def _traces(traces: int, spans: int) -> str:
    return f"{traces:,} trace{_s(traces)} ({spans:,} span{_s(spans)})"


def _s(n: int) -> str:
    return "" if n == 1 else "s"


class Pacer:
    """Sleeps between transactions in proportion to their length, and says when to stop."""

    def __init__(self, duty: float = DUTY, stop: threading.Event | None = None) -> None:
        self.ratio = (1 - duty) / duty if duty < 1 else 0.0
        self.stop = stop or threading.Event()

    def pause(self, busy_seconds: float) -> bool:
        """Yield to ingest after `busy_seconds` of work; False once asked to stop."""
        if self.ratio:
            self.stop.wait(max(MIN_PAUSE, busy_seconds * self.ratio))
        return not self.stop.is_set()


def purge(
    policy: Policy | None = None,
    *,
    dry_run: bool = False,
    now_ns: int | None = None,
    batch_spans: int = BATCH_SPANS,
    pacer: Pacer | None = None,
    using: str = "default",
    project: str | None = None,
    others: frozenset[str] = frozenset(),
    give_back: bool = True,
) -> PurgeResult:
    """Delete (or with `dry_run` count) what the policy no longer keeps, oldest first, then run
    the registered purgers and, on SQLite, give the freed pages back to the disk. With `project`
    only that project's traces are looked at (its cap counts only them); `others` are projects
    left out (those that have a policy of their own)."""
    started = time.perf_counter()
    policy = policy or policy_for()
    pacer = pacer or Pacer()
    cutoff = policy.cutoff_ns(time.time_ns() if now_ns is None else now_ns)
    result = PurgeResult(policy, cutoff, dry_run, project=project)
    traces = Trace.objects.using(using)
    if project is not None:
        traces = traces.filter(project=project)
    elif others:
        traces = traces.exclude(project__in=others)
    if connections[using].vendor == "sqlite":
        with connections[using].cursor() as cursor:
            # Some builds (Debian's) zero every deleted byte (secure_delete=ON), doubling the
            # writes of a purge; FAST zeroes what costs no extra I/O, and the incremental vacuum
            # cuts the freed pages off the file.
            cursor.execute("PRAGMA secure_delete=FAST")

    def handle(ids: list[str], estimate: int, aged: bool) -> tuple[int, int, float]:
        if dry_run:
            return len(ids), estimate, 0.0
        return _delete_batch(ids, cutoff if aged else None, using)

    if cutoff is not None:
        # end >= start, so `start < cutoff` changes nothing but lets the start index find them.
        old = traces.filter(start_ns__lt=cutoff, end_ns__lt=cutoff)
        result.aged_traces, result.aged_spans = _walk(
            old, None, batch_spans, pacer, lambda ids, n: handle(ids, n, True)
        )
    if policy.max_spans and not pacer.stop.is_set():
        kept = traces.aggregate(n=models.Sum("span_count"))["n"] or 0
        remaining = traces
        if dry_run:
            # Nothing went: leave out what the age limit would already have taken.
            kept -= result.aged_spans
            if cutoff is not None:
                remaining = traces.exclude(end_ns__lt=cutoff)
        excess = kept - policy.max_spans
        if excess > 0:
            result.capped_traces, result.capped_spans = _walk(
                remaining, excess, batch_spans, pacer, lambda ids, n: handle(ids, n, False)
            )
    if not pacer.stop.is_set():
        context = PurgeContext(policy, cutoff, dry_run, using, project, frozenset(others))
        for name, purger in list(_purgers.items()):
            try:
                result.others[name] = purger(context)
            except Exception:
                logger.exception("the %s purger failed", name)
    if give_back and not dry_run and result.deleted_anything and not pacer.stop.is_set():
        result.freed_bytes = give_back_space(using, pacer)
    result.stopped = pacer.stop.is_set()
    result.seconds = time.perf_counter() - started
    return result


def purge_all(
    *,
    dry_run: bool = False,
    now_ns: int | None = None,
    batch_spans: int = BATCH_SPANS,
    pacer: Pacer | None = None,
    using: str = "default",
) -> list[PurgeResult]:
    """What the background purge and `manage.py purge` run: one pass per project that has a
    policy of its own, over its traces alone, then one with the global policy over the rest
    (so the global cap counts only the traces of projects without their own); then the freed
    pages go back to the disk once."""
    pacer = pacer or Pacer()
    own = own_policies(using)
    results = []
    for name in sorted(own):
        if pacer.stop.is_set():
            break
        results.append(
            purge(own[name], dry_run=dry_run, now_ns=now_ns, batch_spans=batch_spans,
                  pacer=pacer, using=using, project=name, give_back=False)
        )  # fmt: skip
    if not pacer.stop.is_set() or not results:
        results.append(
            purge(default_policy(), dry_run=dry_run, now_ns=now_ns, batch_spans=batch_spans,
                  pacer=pacer, using=using, others=frozenset(own), give_back=False)
        )  # fmt: skip
    if not dry_run and any(r.deleted_anything for r in results) and not pacer.stop.is_set():
        results[-1].freed_bytes = give_back_space(using, pacer)
    results[-1].stopped = pacer.stop.is_set()
    return results


def _walk(
    qs: models.QuerySet[Trace],
    need: int | None,
    batch_spans: int,
    pacer: Pacer,
    handle: Callable[[list[str], int], tuple[int, int, float]],
) -> tuple[int, int]:
    """Hand the traces of `qs` to `handle` oldest first (by start), in batches of about
    `batch_spans` spans, until `need` spans went (None: all of them). Keyset pages, so a trace
    `handle` skipped is not met again."""
    after: Cursor | None = None
    traces = spans = 0
    while need is None or spans < need:
        page = qs
        if after is not None:
            page = page.filter(
                models.Q(start_ns__gte=after[0]),
                models.Q(start_ns__gt=after[0]) | models.Q(trace_id__gt=after[1]),
            )
        rows = list(
            page.order_by("start_ns", "trace_id").values_list("trace_id", "start_ns", "span_count")[
                :batch_spans
            ]
        )
        if not rows:
            break
        batch: list[str] = []
        estimate = 0
        for trace_id, start_ns, span_count in rows:
            batch.append(trace_id)
            estimate += span_count
            after = (start_ns, trace_id)
            if estimate >= batch_spans or (need is not None and spans + estimate >= need):
                break
        deleted_traces, deleted_spans, held = handle(batch, estimate)
        traces += deleted_traces
        spans += deleted_spans
        if not pacer.pause(held):
            break
    return traces, spans


def _delete_batch(ids: list[str], cutoff_ns: int | None, using: str) -> tuple[int, int, float]:
    """Delete these traces whole, those that still qualify (with `cutoff_ns`: that still ended
    before it, since a span may have arrived since they were chosen). One transaction; returns
    the traces and spans deleted, and the seconds it held the database."""
    connection = connections[using]
    quote = connection.ops.quote_name
    trace_table, span_table = quote(Trace._meta.db_table), quote(Span._meta.db_table)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        # On SQLite the write lock is held from here (BEGIN IMMEDIATE); on PostgreSQL, from the
        # bucket locks just below.
        held = time.perf_counter()
        if connection.vendor == "postgresql":
            lock_traces(cursor, ids)
        placeholders = ", ".join(["%s"] * len(ids))
        sql = (
            f"SELECT trace_id, conversation_id FROM {trace_table} "
            f"WHERE trace_id IN ({placeholders})"
        )
        params: list[object] = list(ids)
        if cutoff_ns is not None:
            sql += " AND end_ns < %s"
            params.append(cutoff_ns)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        if not rows:
            return 0, 0, time.perf_counter() - held
        gone = [trace_id for trace_id, _ in rows]
        placeholders = ", ".join(["%s"] * len(gone))
        cursor.execute(f"DELETE FROM {span_table} WHERE trace_id IN ({placeholders})", gone)
        spans = cursor.rowcount
        cursor.execute(f"DELETE FROM {trace_table} WHERE trace_id IN ({placeholders})", gone)
    held = time.perf_counter() - held
    try:
        traces_purged.send(
            sender=Trace,
            trace_ids=frozenset(gone),
            conversation_ids=frozenset(c for _, c in rows if c),
        )
    except Exception:
        logger.exception("a traces_purged receiver failed")
    return len(gone), spans, held


def give_back_space(using: str = "default", pacer: Pacer | None = None) -> int:
    """SQLite: return free pages to the disk in small steps (incremental vacuum); the bytes
    freed. PostgreSQL's autovacuum makes deleted rows' space reusable by itself."""
    connection = connections[using]
    # Inside a transaction, executescript below would commit it first.
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return 0
    pacer = pacer or Pacer()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA auto_vacuum")
        if cursor.fetchone()[0] != SQLITE_AUTO_VACUUM_INCREMENTAL:
            return 0
        cursor.execute("PRAGMA page_size")
        page_size = cursor.fetchone()[0]
        freed = 0
        while True:
            cursor.execute("PRAGMA freelist_count")
            free = cursor.fetchone()[0]
            if not free:
                break
            busy = time.perf_counter()
            # executescript steps the pragma to its end; execute() would free a single page.
            with connection.wrap_database_errors:
                connection.connection.executescript(
                    f"PRAGMA incremental_vacuum({min(free, VACUUM_PAGES)});"
                )
            cursor.execute("PRAGMA freelist_count")
            freed += free - cursor.fetchone()[0]
            if not pacer.pause(time.perf_counter() - busy):
                break
    return freed * page_size


def prepare_sqlite_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    """The connection_created receiver: a new SQLite database gets incremental auto-vacuum (so
    that retention can give freed pages back to the disk), then WAL (pages read while the writer
    commits). Auto-vacuum takes only on a database with no tables yet, and before WAL, which
    writes the file; an older database is converted once by runstudio (ensure_incremental_vacuum).
    Only a database with no tables is asked: setting auto_vacuum takes the write lock even when
    it is set already, and a page's new connection would wait for the writer's transaction
    (under ingest, most of `/traces/`'s time)."""
    if connection.vendor != "sqlite":
        return
    raw = connection.connection
    if not raw.execute("SELECT EXISTS (SELECT 1 FROM sqlite_master)").fetchone()[0]:
        raw.execute(f"PRAGMA auto_vacuum={SQLITE_AUTO_VACUUM_INCREMENTAL}")
    raw.execute("PRAGMA journal_mode=WAL")


def ensure_incremental_vacuum(using: str = "default") -> bool:
    """Convert a SQLite database made before Studio set auto_vacuum (it takes only on an empty
    database) with one VACUUM; True if it did. Runs once, at runstudio's start, before anything
    is served: the VACUUM rewrites the whole file and holds the write lock meanwhile."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return False
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA auto_vacuum")
        if cursor.fetchone()[0] != SQLITE_AUTO_VACUUM_NONE:
            return False
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        size_mb = pages * cursor.fetchone()[0] / 1e6
        logger.warning(
            "converting %s (%.0f MB) to incremental auto-vacuum, so that retention can give "
            "space back: one VACUUM, once",
            connection.settings_dict["NAME"],
            size_mb,
        )
        started = time.perf_counter()
        cursor.execute(f"PRAGMA auto_vacuum={SQLITE_AUTO_VACUUM_INCREMENTAL}")
        cursor.execute("VACUUM")
        logger.warning("converted in %.1f s", time.perf_counter() - started)
    return True


def run_periodically(interval: float, stop: threading.Event, duty: float = DUTY) -> None:
    """The background purge of runstudio: one pass now, then one every `interval` seconds, until
    `stop` is set. A failed pass is logged and tried again next time."""
    try:
        while not stop.is_set():
            try:
                results = purge_all(pacer=Pacer(duty, stop))
            except Exception:
                logger.exception("the retention purge failed; trying again in %.0f s", interval)
            else:
                for result in results:
                    log = logger.info if result.deleted_anything else logger.debug
                    log("retention (%s), %.1f s: %s", result.policy.describe(), result.seconds,
                        " ".join(line.strip() for line in result.lines()))  # fmt: skip
            if stop.wait(interval):
                break
    finally:
        connections.close_all()


def start_background_purge(interval: float) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(
        target=run_periodically, args=(interval, stop), name="studio-retention", daemon=True
    )
    thread.start()
    return thread, stop
