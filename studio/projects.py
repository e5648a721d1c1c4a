"""Projects: the names traces (and the apps' things, e.g. runs) are grouped under.

A project exists while something belongs to it: there is no table of projects, the names come
from the traces' project index (one seek per project) and from each app's source in
`studio.extensions.project_counts`. The last project a person looked at is remembered in a
cookie, so `/` and the switcher take them back to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote, unquote

from django import forms
from django.db import connection, models, transaction
from django.http import HttpRequest, HttpResponse

from studio import extensions
from tracing import retention
from tracing.models import Span, Trace, ns_to_datetime

COOKIE = "studio_project"
# A year: it only says where to land.
COOKIE_MAX_AGE = 365 * 24 * 3600
# Traces deleted per transaction when a project goes: memory and lock time stay bounded.
DELETE_CHUNK = 1000


@dataclass
class Project:
    name: str
    trace_count: int = 0
    last_activity: datetime | None = None
    # Per app source ("run"): how many of its things belong to the project.
    counts: dict[str, int] = field(default_factory=dict)
    # USD of its traces' priced model calls, and how many model calls had no price.
    cost_usd: float = 0.0
    unpriced_spans: int = 0

    @property
    def cost(self) -> float | None:
        """As Trace.cost: None when there were model calls and none had a price."""
        return None if self.unpriced_spans and not self.cost_usd else self.cost_usd

    def seen(self, moment: datetime | None) -> None:
        if moment is not None and (self.last_activity is None or moment > self.last_activity):
            self.last_activity = moment


def names() -> list[str]:
    """Every project's name, sorted: one query for the traces' (by skip-scan) and one per
    app source."""
    found = set(Trace.objects.project_names())
    for source in extensions.project_counts.values():
        found.update(source())
    found.discard("")
    return sorted(found)


def summaries() -> list[Project]:
    """Every project with its counts and last activity, most recently active first."""
    projects: dict[str, Project] = {}
    rows = (
        Trace.objects.order_by()
        .values_list("project")
        .annotate(
            n=models.Count("*"),
            newest=models.Max("start_ns"),
            cost=models.Sum("cost_usd"),
            unpriced=models.Sum("unpriced_spans"),
        )
    )
    for name, count, newest, cost, unpriced in rows:
        project = projects.setdefault(name, Project(name))
        project.trace_count = count
        project.cost_usd, project.unpriced_spans = cost or 0.0, unpriced or 0
        project.seen(ns_to_datetime(newest) if newest is not None else None)
    for source_name, source in extensions.project_counts.items():
        for name, (count, newest) in source().items():
            if not name:
                continue
            project = projects.setdefault(name, Project(name))
            project.counts[source_name] = count
            project.seen(newest)
    for project in projects.values():
        for source_name in extensions.project_counts:
            project.counts.setdefault(source_name, 0)
    return sorted(
        projects.values(),
        key=lambda p: (p.last_activity.timestamp() if p.last_activity else 0.0, p.name),
        reverse=True,
    )


def delete(name: str) -> list[str]:
    """Delete a project's traces with their spans, and (through `project_deleted`) what the apps
    keep for it. Returns the ids of the traces that went, for the live pages."""
    gone: list[str] = []
    while True:
        with transaction.atomic():
            traces = Trace.objects.filter(project=name).values_list("trace_id", flat=True)
            ids = list(traces[:DELETE_CHUNK])
            if not ids:
                extensions.project_deleted.send(sender=Project, project=name)
                return gone
            if connection.vendor == "postgresql":
                # The writer must not fold spans into a summary read before this delete.
                with connection.cursor() as cursor:
                    retention.lock_traces(cursor, ids)
            Span.objects.filter(trace_id__in=ids).delete()
            Trace.objects.filter(trace_id__in=ids).delete()
        gone += ids


class RetentionForm(forms.Form):
    """A project's own retention; a blank field keeps the global default, 0 turns it off."""

    days = forms.IntegerField(required=False, min_value=0, max_value=1_000_000)
    max_spans = forms.IntegerField(required=False, min_value=0, max_value=10**15)


def remembered(request: HttpRequest) -> str:
    return unquote(request.COOKIES.get(COOKIE, ""))


def remember(response: HttpResponse, project: str) -> None:
    # Percent-encoded: a cookie carries ASCII only, and a name may be any text.
    value = quote(project, safe="")
    response.set_cookie(COOKIE, value, max_age=COOKIE_MAX_AGE, samesite="Lax", httponly=True)


def forget(response: HttpResponse) -> None:
    response.delete_cookie(COOKIE, samesite="Lax")
