"""Runs: what an AgentScope application registers with `init(studio_url=...)`, the messages it
prints and the input its `UserAgent`s ask a person for. Its spans carry the run id as
`gen_ai.conversation.id`, which is how a run finds its traces.

The tables keep the names they had when these models lived in `tracing` (see the migrations).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from tracing.models import Trace

RUN_RUNNING = "running"
RUN_FINISHED = "finished"
RUN_STATUSES = (RUN_RUNNING, RUN_FINISHED)


class RunQuerySet(models.QuerySet["Run"]):
    def with_trace_totals(self) -> RunQuerySet:
        """Each run with the count, tokens and cost (`cost_usd`, `unpriced_spans`) of its traces,
        as correlated subqueries (one query for the whole page, using the (conversation_id,
        start_ns) index)."""
        # Of the run's project only: a trace of another project naming the run as its
        # conversation is not the run's.
        traces = Trace.objects.filter(
            conversation_id=models.OuterRef("pk"), project=models.OuterRef("project")
        ).order_by()
        count = traces.values("conversation_id").annotate(n=models.Count("*")).values("n")
        tokens = traces.values("conversation_id").annotate(n=models.Sum("total_tokens")).values("n")
        cost = traces.values("conversation_id").annotate(n=models.Sum("cost_usd")).values("n")
        unpriced = (
            traces.values("conversation_id").annotate(n=models.Sum("unpriced_spans")).values("n")
        )
        return self.annotate(
            trace_count=Coalesce(models.Subquery(count), 0, output_field=models.IntegerField()),
            token_count=Coalesce(models.Subquery(tokens), 0, output_field=models.BigIntegerField()),
            cost_usd=Coalesce(models.Subquery(cost), 0.0, output_field=models.FloatField()),
            unpriced_spans=Coalesce(
                models.Subquery(unpriced), 0, output_field=models.IntegerField()
            ),
        )

    def name_of_conversation(self) -> models.Subquery:
        """For annotating traces: the name of the run whose id is the trace's conversation id,
        or None when it is no run's (so a trace page links to its run without another query)."""
        return models.Subquery(
            self.filter(
                id=models.OuterRef("conversation_id"), project=models.OuterRef("project")
            ).values("name")[:1]
        )

    def per_project(self) -> dict[str, tuple[int, datetime | None]]:
        """{project: (runs, newest start)}, for studio's project list."""
        rows = (
            self.order_by()
            .values_list("project")
            .annotate(n=models.Count("*"), newest=models.Max("started_at"))
        )
        return {project: (n, newest) for project, n, newest in rows}

    def projects(self) -> list[str]:
        return list(self.order_by("project").values_list("project", flat=True).distinct())


class Run(models.Model):
    id = models.CharField(max_length=64, primary_key=True)
    project = models.TextField(default="")
    # The project name the application sent, when its ingest key put the run in another.
    app_project = models.TextField(default="", blank=True)
    name = models.TextField(default="")
    pid = models.IntegerField(null=True, blank=True)
    # As the client wrote it: its local time, without a zone, so only shown, never computed with.
    client_timestamp = models.CharField(max_length=64, default="", blank=True)
    run_dir = models.TextField(default="", blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        db_table = "tracing_run"
        indexes = [
            models.Index(fields=["-started_at"], name="run_started_idx"),
            models.Index(fields=["project", "-started_at"], name="run_project_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.project}/{self.name} ({self.id})"

    # A run is running until its socket disconnects: `finished_at` says both.
    @property
    def is_running(self) -> bool:
        return self.finished_at is None

    @property
    def status(self) -> str:
        return RUN_RUNNING if self.finished_at is None else RUN_FINISHED

    @property
    def cost(self) -> float | None:
        """Of a run read `with_trace_totals`, as Trace.cost: None when there were model calls
        and none had a price."""
        cost_usd = getattr(self, "cost_usd", None)
        if getattr(self, "unpriced_spans", 0) and not cost_usd:
            return None
        return cost_usd

    @property
    def duration_seconds(self) -> float:
        end = self.finished_at or timezone.now()
        return max((end - self.started_at).total_seconds(), 0.0)


class Message(models.Model):
    """A message an application printed. Streamed chunks repeat `msg_id` with growing content:
    each replaces the stored content, so a message is one row however it was streamed."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="messages")
    msg_id = models.CharField(max_length=64)
    reply_id = models.CharField(max_length=64, default="", blank=True)
    reply_name = models.TextField(default="", blank=True)
    reply_role = models.CharField(max_length=32, default="", blank=True)
    name = models.TextField(default="", blank=True)
    role = models.CharField(max_length=32, default="", blank=True)
    client_timestamp = models.CharField(max_length=64, default="", blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    # A string or a list of content blocks ({"type": "text" | "tool_use" | ...}), as JSON text.
    content_json = models.TextField(default='""')
    metadata_json = models.TextField(default="{}")

    class Meta:
        db_table = "tracing_message"
        constraints = [
            models.UniqueConstraint(fields=["run", "msg_id"], name="message_run_msg_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.name}: {self.msg_id}"

    @property
    def content(self) -> Any:
        return json.loads(self.content_json)

    @property
    def metadata(self) -> Any:
        return json.loads(self.metadata_json)


class UserInputRequest(models.Model):
    """A `UserAgent` waiting for a person: answered from the run page over the run's socket."""

    request_id = models.CharField(max_length=64, primary_key=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="input_requests")
    agent_id = models.CharField(max_length=64, default="", blank=True)
    agent_name = models.TextField(default="", blank=True)
    # The JSON schema of the structured input asked for, as JSON text; "" when only text is.
    structured_schema_json = models.TextField(default="", blank=True)
    created_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    answer_text = models.TextField(default="", blank=True)
    answer_structured_json = models.TextField(default="", blank=True)

    class Meta:
        db_table = "tracing_userinputrequest"
        indexes = [models.Index(fields=["run", "created_at"], name="input_request_run_idx")]

    def __str__(self) -> str:
        return f"{self.agent_name} ({self.request_id})"

    @property
    def structured_schema(self) -> dict[str, Any] | None:
        return json.loads(self.structured_schema_json) if self.structured_schema_json else None

    @property
    def is_pending(self) -> bool:
        return self.answered_at is None
