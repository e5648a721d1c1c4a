"""The run API: `/api/runs/` and `/api/runs/<id>/`, paged like `/api/traces/`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import Http404
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from runs import sockets
from runs.models import RUN_RUNNING, RUN_STATUSES, Message, Run, UserInputRequest
from studio.api import TracePagination
from tracing import selectors


def _iso_datetime(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def run_to_dict(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "project": run.project,
        # The project name the application sent, when its ingest key's project overrode it.
        "app_project": run.app_project,
        "name": run.name,
        "status": run.status,
        "pid": run.pid,
        "started_at": _iso_datetime(run.started_at),
        "finished_at": _iso_datetime(run.finished_at),
        "duration_ms": round(run.duration_seconds * 1000, 3),
        "client_timestamp": run.client_timestamp,
        "trace_count": getattr(run, "trace_count", None),
        "total_tokens": getattr(run, "token_count", None),
        # USD of its traces' priced model calls; None when there were model calls and none
        # had a price (as a trace's `cost_usd`).
        "cost_usd": run.cost,
        "unpriced_spans": getattr(run, "unpriced_spans", None),
    }


def message_to_dict(message: Message) -> dict[str, Any]:
    return {
        "id": message.msg_id,
        "name": message.name,
        "role": message.role,
        "content": message.content,
        "metadata": message.metadata,
        "timestamp": message.client_timestamp,
        "reply_id": message.reply_id,
        "reply_name": message.reply_name,
        "reply_role": message.reply_role,
    }


def input_request_to_dict(request: UserInputRequest) -> dict[str, Any]:
    return {
        "request_id": request.request_id,
        "agent_id": request.agent_id,
        "agent_name": request.agent_name,
        "structured_input": request.structured_schema,
        "created_at": _iso_datetime(request.created_at),
        "answered_at": _iso_datetime(request.answered_at),
        "answer": request.answer_text if request.answered_at else None,
    }


class RunSerializer(serializers.BaseSerializer):
    def to_representation(self, instance: Run) -> dict[str, Any]:
        return run_to_dict(instance)


class RunList(ListAPIView):
    """`GET /api/runs/`: registered runs, newest first, filtered by `project` and `status`."""

    serializer_class = RunSerializer
    pagination_class = TracePagination

    def get_queryset(self) -> Any:
        params = self.request.query_params
        qs = Run.objects.with_trace_totals().order_by("-started_at", "-id")
        if params.get("project"):
            qs = qs.filter(project=params["project"])
        status = params.get("status", "")
        if status:
            if status not in RUN_STATUSES:
                raise ValidationError({"status": f"must be one of {', '.join(RUN_STATUSES)}"})
            qs = qs.filter(finished_at__isnull=status == RUN_RUNNING)
        return qs


class RunDetail(APIView):
    """`GET /api/runs/<run_id>/`: the run, its messages (streamed chunks collapsed), its input
    requests, the ids of its traces (oldest first) and its LLM usage per model."""

    def get(self, request: Request, run_id: str) -> Response:
        run = Run.objects.with_trace_totals().filter(id=run_id).first()
        if run is None:
            raise Http404("no such run")
        data = run_to_dict(run)
        data["connected"] = sockets.is_connected(run.id)
        data["trace_ids"] = list(
            selectors.conversation_traces(run.id, run.project).values_list("trace_id", flat=True)
        )
        data["messages"] = [message_to_dict(m) for m in run.messages.order_by("id")]
        data["input_requests"] = [
            input_request_to_dict(r) for r in run.input_requests.order_by("created_at")
        ]
        data["models"] = [
            {
                "model": usage.model,
                "calls": usage.calls,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "duration_ms": usage.duration_ms,
                "cost_usd": usage.cost,
                "unpriced_calls": usage.unpriced_spans,
            }
            for usage in selectors.model_usage(run.id, run.project)
        ]
        return Response(data)
