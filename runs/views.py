"""The run pages (`/runs/`, `/runs/<id>/`, `/projects/<project>`) and conversations
(`/conversations/<id>/`): the traces sharing a `gen_ai.conversation.id`, whoever emitted them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.roles import requires_member
from runs import sockets, writes
from runs.forms import UserInputForm
from runs.models import Message, Run, UserInputRequest
from tracing import messages, selectors

RUNS_PER_PAGE = 50
RUN_MESSAGES_SHOWN = 500
RUN_TRACES_SHOWN = 100


def run_list(request: HttpRequest) -> HttpResponse:
    project = request.GET.get("project", "")
    runs = Run.objects.with_trace_totals().order_by("-started_at", "-id")
    if project:
        runs = runs.filter(project=project)
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "project": project,
        "projects": [] if request.htmx else Run.objects.projects(),
        "nav": "runs",
    }
    # Polled by htmx while open, so statuses and counts stay live without a reload.
    template = "runs/run_list.html#run-table" if request.htmx else "runs/run_list.html"
    return render(request, template, context)


@dataclass(frozen=True)
class TranscriptEntry:
    row: Message
    message: messages.Message | None


def _live_context(run: Run) -> dict[str, Any]:
    """The transcript, the traces and the model calls: the region that polls while the run runs,
    so both lists are cut to their newest rows (`run` carries the totals, see run_detail)."""
    newest = list(run.messages.order_by("-id")[:RUN_MESSAGES_SHOWN])
    newest.reverse()
    hidden = run.messages.count() - len(newest) if len(newest) == RUN_MESSAGES_SHOWN else 0
    traces = list(selectors.conversation_traces(run.id, run.project).reverse()[:RUN_TRACES_SHOWN])
    traces.reverse()
    return {
        "transcript": [
            TranscriptEntry(row, messages.to_message({"role": row.role, "content": row.content}))
            for row in newest
        ],
        "hidden_messages": hidden,
        "message_count": hidden + len(newest),
        "traces": traces,
        "hidden_traces": run.trace_count - len(traces),
        "usage": selectors.model_usage(run.id, run.project),
    }


def _input_context(
    run: Run, form: UserInputForm | None, form_request_id: str, error: str
) -> dict[str, Any]:
    """The requests waiting for a person, each with its form (`form` if it was just submitted)."""
    pending = list(run.input_requests.filter(answered_at__isnull=True).order_by("created_at"))
    return {
        "pending": pending,
        "pending_forms": [
            (
                request,
                form
                if form is not None and request.request_id == form_request_id
                else UserInputForm(schema=request.structured_schema),
            )
            for request in pending
        ],
        "input_error": error,
    }


RUN_FRAGMENTS = {"live": "run-live", "input": "run-input"}


def _render_run(
    request: HttpRequest,
    run: Run,
    *,
    form: UserInputForm | None = None,
    form_request_id: str = "",
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    fragment = RUN_FRAGMENTS.get(request.GET.get("fragment", "")) if request.htmx else None
    context = {"run": run, "connected": sockets.is_connected(run.id), "nav": "runs"}
    # Both regions poll every 2 s: each reads only what it shows.
    if fragment != "run-input":
        context.update(_live_context(run))
    if fragment != "run-live":
        context.update(_input_context(run, form, form_request_id, error))
    template = f"runs/run_detail.html#{fragment}" if fragment else "runs/run_detail.html"
    return render(request, template, context, status=status)


def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    run = get_object_or_404(Run.objects.with_trace_totals(), id=run_id)
    return _render_run(request, run)


@require_POST
@requires_member
async def run_answer(request: HttpRequest, run_id: str, request_id: str) -> HttpResponse:
    """A person answers a `UserAgent`: the answer goes to the run's socket as
    `forwardUserInput`, and the agent continues."""
    pending = await UserInputRequest.objects.filter(run_id=run_id, request_id=request_id).afirst()
    if pending is None:
        raise Http404("no such input request")
    run_page = redirect("run_detail", run_id=run_id)
    if not pending.is_pending:
        return run_page
    form = UserInputForm(request.POST, schema=pending.structured_schema)
    if not form.is_valid():
        error, status = "Check the highlighted fields.", 400
    elif not await sync_to_async(sockets.is_connected)(run_id):
        error = "This run is not connected to Studio: its application stopped or lost the link."
        status = 409
    else:
        text, structured = form.cleaned_data["text"], form.structured_input()
        if await sync_to_async(writes.answer_user_input)(pending, text, structured):
            await sockets.forward_user_input(run_id, request_id, text, structured)
        return run_page
    run = await Run.objects.with_trace_totals().aget(id=run_id)
    return await sync_to_async(_render_run)(
        request, run, form=form, form_request_id=request_id, error=error, status=status
    )


def conversation_detail(request: HttpRequest, conversation_id: str) -> HttpResponse:
    traces = list(selectors.conversation_traces(conversation_id)[: selectors.MAX_TURNS + 1])
    if not traces:
        raise Http404("no traces carry this conversation id")
    context = {
        "conversation_id": conversation_id,
        "turns": selectors.conversation_turns(traces[: selectors.MAX_TURNS]),
        "cost": selectors.traces_cost(traces[: selectors.MAX_TURNS]),
        "truncated": len(traces) > selectors.MAX_TURNS,
        "usage": selectors.model_usage(conversation_id),
        "run": Run.objects.filter(id=conversation_id).first(),
        # A conversation is traces (its breadcrumb starts at Traces), whether or not a run's.
        "nav": "traces",
    }
    return render(request, "runs/conversation.html", context)
