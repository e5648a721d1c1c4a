"""Retention for runs: tracing.retention purges traces, then calls `purge_runs`, registered in
RunsConfig.ready() (tracing cannot import runs). A run goes with its messages and input requests
once it has finished, no trace of it is left, and its last activity is older than the cutoff."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Exists, Max, OuterRef, QuerySet
from django.db.models.functions import Coalesce

from runs.models import Message, Run, UserInputRequest
from tracing.models import Trace, ns_to_datetime
from tracing.retention import PurgeContext

BATCH = 500


def purgeable(cutoff: datetime | None, using: str) -> QuerySet[Run]:
    traces = Trace.objects.using(using).filter(conversation_id=OuterRef("pk"))
    runs = (
        Run.objects.using(using)
        .filter(finished_at__isnull=False)
        .annotate(last=Coalesce(Max("messages__updated_at"), "finished_at"))
        .exclude(Exists(traces))
    )
    if cutoff is None:
        # Age is no limit (only the span cap): a run goes once it is older than every trace kept,
        # as its own traces were, so a run that sent only messages is not purged the day it ends.
        oldest = Trace.objects.using(using).order_by("start_ns").values_list("start_ns", flat=True)
        first = oldest.first()
        if first is None:
            return runs.none()
        cutoff = ns_to_datetime(first)
    return runs.filter(last__lt=cutoff)


def purge_runs(context: PurgeContext) -> int:
    cutoff = ns_to_datetime(context.cutoff_ns) if context.cutoff_ns is not None else None
    candidates = purgeable(cutoff, context.using)
    # The same projects as the traces' pass: a project with a policy of its own keeps its runs
    # by that policy.
    if context.project is not None:
        candidates = candidates.filter(project=context.project)
    elif context.others:
        candidates = candidates.exclude(project__in=context.others)
    if context.dry_run:
        return candidates.count()
    deleted = 0
    while True:
        # Small transactions: the SQLite write lock is ingest's too.
        with transaction.atomic(using=context.using):
            ids = list(candidates.values_list("id", flat=True)[:BATCH])
            if not ids:
                return deleted
            UserInputRequest.objects.using(context.using).filter(run_id__in=ids).delete()
            Message.objects.using(context.using).filter(run_id__in=ids).delete()
            Run.objects.using(context.using).filter(id__in=ids).delete()
        deleted += len(ids)
