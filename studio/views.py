from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any
from urllib.parse import urlencode, urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    JsonResponse,
    QueryDict,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.roles import requires_member
from ingest.views import export_traces
from studio import live, sockets, trace_page
from studio.api import span_to_dict
from studio.filters import (
    PAGE_SIZE,
    RANGES,
    SORT_FIELDS,
    SORTS,
    TraceFilter,
    as_trace_id,
    zone_from_cookie,
)
from studio.forms import UserInputForm
from studio.runtime import runtime
from tracing import messages, otlp_json, runs, selectors
from tracing.models import STATUS_CODES, Message, Run, Span, Trace, UserInputRequest


@csrf_exempt
async def home(request: HttpRequest) -> HttpResponse:
    # AgentScope's guide points the OTLP exporter at the bare Studio URL, so `/` is also a receiver.
    if request.method == "POST":
        return await export_traces(request)
    if request.method in ("GET", "HEAD"):
        return redirect("trace_list")
    return HttpResponseNotAllowed(["GET", "HEAD", "POST"])


async def healthz(request: HttpRequest) -> JsonResponse:
    problems = []
    if not runtime.migrated:
        problems.append("database not migrated yet")
    if not runtime.grpc_listening:
        problems.append(f"OTLP/gRPC receiver not listening (port {settings.OTEL_GRPC_PORT})")
    if problems:
        return JsonResponse({"status": "starting", "problems": problems}, status=503)
    return JsonResponse({"status": "ok"})


# The trace overview: a filterable, keyset-paginated list of trace summaries, kept live over a
# websocket by studio.consumers.TraceListConsumer.

MAX_DELETE = 500


def trace_list(request: HttpRequest) -> HttpResponse:
    """`/traces/`. An htmx request aimed at `#results` gets just that region (cards, table,
    pager); everything else, history restores included, gets the whole page."""
    htmx = request.htmx
    fragment = bool(htmx and htmx.target == "results" and not htmx.history_restore_request)
    with timezone.override(_viewer_zone(request)):
        trace_filter = TraceFilter.from_query(request.GET)
        context = _overview_context(request, trace_filter, full_page=not fragment)
        template = "studio/trace_list.html#results" if fragment else "studio/trace_list.html"
        response = render(request, template, context)
    if fragment and not request.headers.get("X-Studio-Refresh"):
        # The canonical URL, not the form's every empty field; a live catch-up (the header) is
        # the same view again and must not add a history entry.
        response["HX-Push-Url"] = trace_filter.url()
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


@require_POST
@requires_member
def trace_delete(request: HttpRequest) -> HttpResponse:
    """Delete the selected traces with their spans. Without JavaScript the first POST shows a
    confirmation page; the page's own form confirms in the browser and says `confirm=1`."""
    back = _overview_url(request.POST.get("next", ""))
    ids = sorted({tid for raw in request.POST.getlist("trace_id") if (tid := as_trace_id(raw))})
    if len(ids) > MAX_DELETE:
        return HttpResponseBadRequest(f"At most {MAX_DELETE} traces can be deleted at once.")
    with timezone.override(_viewer_zone(request)):
        if ids and request.POST.get("confirm") != "1":
            traces = Trace.objects.filter(trace_id__in=ids).order_by("-start_ns")
            context = {"traces": traces, "back": back, "nav": "traces"}
            return render(request, "studio/trace_delete.html", context)
        deleted = Trace.objects.filter(trace_id__in=ids).delete_with_spans() if ids else 0
        if deleted:
            live.traces_deleted(ids)
        if not request.htmx:
            return redirect(back)
        notice = f"Deleted {deleted} trace{pluralize(deleted)}." if ids else "Select traces first."
        trace_filter = TraceFilter.from_query(QueryDict(urlsplit(back).query))
        context = _overview_context(request, trace_filter, full_page=False, notice=notice)
        return render(request, "studio/trace_list.html#results", context)


def _overview_context(
    request: HttpRequest, trace_filter: TraceFilter, *, full_page: bool, notice: str = ""
) -> dict[str, Any]:
    """One query for the rows and one for the cards (plus the services for the whole page, and
    an existence check only when a filter matched nothing)."""
    traces = trace_filter.traces()
    page = traces.keyset_page(
        trace_filter.sort_field,
        descending=trace_filter.descending,
        after=trace_filter.after,
        before=trace_filter.before,
        size=PAGE_SIZE,
    )
    stats = traces.stats()
    empty_studio = stats.traces == 0 and not (trace_filter.narrows and Trace.objects.exists())
    context: dict[str, Any] = {
        "nav": "traces",
        "filter": trace_filter,
        "page": page,
        "stats": stats,
        "notice": notice,
        "page_size": PAGE_SIZE,
        "max_duration": max((trace.duration_ns for trace in page.rows), default=0),
        # New traces go on top only where the top is shown and newest-first.
        "live_top": trace_filter.is_newest_first and page.previous is None,
        "first_url": trace_filter.first_page_url(),
        "newer_url": trace_filter.url(before=page.previous, after=None) if page.previous else "",
        "older_url": trace_filter.url(after=page.next, before=None) if page.next else "",
        "sort_links": {key: trace_filter.sort_url(key) for key in SORT_FIELDS},
        "aria_sort": {key: trace_filter.aria_sort(key) for key in SORT_FIELDS},
        "empty_studio": empty_studio,
        "connect": _connect_info(request) if empty_studio else None,
    }
    if full_page:
        context["services"] = Trace.objects.service_names()
        context["ranges"] = {key: label for key, (label, _) in RANGES.items()}
        context["sorts"] = SORTS
        context["statuses"] = list(STATUS_CODES)
        context["without_conversation_url"] = trace_filter.url(
            conversation="", after=None, before=None
        )
    return context


def _viewer_zone(request: HttpRequest) -> tzinfo:
    return zone_from_cookie(request.COOKIES.get("tz")) or UTC


def _overview_url(url: str) -> str:
    """`url` if it is this Studio's overview (with any filter), else the plain overview."""
    home = reverse("trace_list")
    if url.startswith(home) and url_has_allowed_host_and_scheme(url, allowed_hosts=None):
        return url
    return home


def _connect_info(request: HttpRequest) -> dict[str, str]:
    """Where applications send traces: this server's real addresses, for the empty state."""
    http_url = runtime.http_url or request.build_absolute_uri("/").rstrip("/")
    host = urlsplit(http_url).hostname or "localhost"
    grpc_address = runtime.grpc_address or f"http://{host}:{settings.OTEL_GRPC_PORT}"
    now_ns = time.time_ns()
    span = {
        "traceId": secrets.token_hex(16),
        "spanId": secrets.token_hex(8),
        "name": "hello from curl",
        "kind": 1,
        "startTimeUnixNano": str(now_ns),
        "endTimeUnixNano": str(now_ns + 25_000_000),
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "curl-test"}}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
    test_command = (
        f"curl -sS {http_url}/v1/traces -H 'Content-Type: application/json' "
        f"-d '{json.dumps(body, separators=(',', ':'))}'"
    )
    return {"http_url": http_url, "grpc_address": grpc_address, "test_command": test_command}


def trace_detail(request: HttpRequest, trace_id: str) -> HttpResponse:
    """The call tree of a trace with its timeline; `?span=<span_id>` opens with that span's panel
    (without it, the first span's)."""
    trace = get_object_or_404(
        Trace.objects.annotate(run_name=selectors.run_name()), trace_id=trace_id
    )
    tree = selectors.trace_tree(trace.trace_id)
    span_id = request.GET.get("span", "").lower() or (tree.rows[0].span_id if tree.rows else "")
    detail = _span_detail(trace, span_id) if span_id else None
    context = {
        "trace": trace,
        "tree": tree,
        "rows": trace_page.render_rows(tree, selected=span_id if detail else ""),
        "rows_cut": len(tree.rows) > trace_page.HTML_ROWS,
        "rows_shown": trace_page.HTML_ROWS,
        "tree_data": trace_page.tree_data(tree),
        "ticks": trace_page.axis_ticks(tree.duration_ns),
        "detail": detail,
        "missing_span": span_id if span_id and detail is None else "",
        # trace.js puts the selected span's id in place of the all-zero one, which no span has.
        "panel_url": reverse("span_panel", args=[trace.trace_id, "0" * 16]),
        "nav": "traces",
    }
    return render(request, "studio/trace_detail.html", context)


def span_panel(request: HttpRequest, trace_id: str, span_id: str) -> HttpResponse:
    """The span panel alone, for htmx; anyone else gets the page with the span selected."""
    trace = get_object_or_404(Trace, trace_id=trace_id)
    if not request.htmx:
        url = reverse("trace_detail", args=[trace.trace_id])
        return redirect(f"{url}?{urlencode({'span': span_id})}")
    detail = _span_detail(trace, span_id)
    if detail is None:
        raise Http404("no such span in this trace")
    return render(
        request, "studio/trace_detail.html#span-panel", {"trace": trace, "detail": detail}
    )


def _span_detail(trace: Trace, span_id: str) -> selectors.SpanDetail | None:
    span = selectors.find_span(trace.trace_id, span_id)
    if span is None:
        return None
    return selectors.span_detail(span, trace.start_ns)


def span_json(request: HttpRequest, trace_id: str, span_id: str) -> JsonResponse:
    """One span as the API shapes it: the panel's raw JSON, loaded when it is opened."""
    span = selectors.find_span(trace_id, span_id)
    if span is None:
        raise Http404("no such span")
    return JsonResponse(span_to_dict(span), json_dumps_params={"indent": 2, "ensure_ascii": False})


def trace_otlp_json(request: HttpRequest, trace_id: str) -> HttpResponse:
    """The trace as an OTLP/JSON export request: what Studio ingests, so it can be replayed."""
    trace = get_object_or_404(Trace, trace_id=trace_id)
    spans = Span.objects.for_trace(trace.trace_id).iterator(chunk_size=1000)
    body = json.dumps(otlp_json.export_request(spans), ensure_ascii=False, separators=(",", ":"))
    response = HttpResponse(body, content_type="application/json")
    filename = f"trace-{trace.trace_id}.otlp.json"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# Runs: AgentScope applications that registered with `init(studio_url=...)`, and conversations:
# the traces sharing a `gen_ai.conversation.id`, whoever emitted them.

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
    template = "studio/run_list.html#run-table" if request.htmx else "studio/run_list.html"
    return render(request, template, context)


def project_runs(request: HttpRequest, project: str) -> HttpResponse:
    # AgentScope logs "View the run at: {studio_url}/projects/{project}".
    return redirect(f"{reverse('run_list')}?{urlencode({'project': project})}")


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
    traces = list(selectors.conversation_traces(run.id).reverse()[:RUN_TRACES_SHOWN])
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
        "usage": selectors.model_usage(run.id),
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
    template = f"studio/run_detail.html#{fragment}" if fragment else "studio/run_detail.html"
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
    elif not sockets.is_connected(run_id):
        error = "This run is not connected to Studio: its application stopped or lost the link."
        status = 409
    else:
        text, structured = form.cleaned_data["text"], form.structured_input()
        if await sync_to_async(runs.answer_user_input)(pending, text, structured):
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
        "truncated": len(traces) > selectors.MAX_TURNS,
        "usage": selectors.model_usage(conversation_id),
        "run": Run.objects.filter(id=conversation_id).first(),
        "nav": "runs",
    }
    return render(request, "studio/conversation.html", context)
