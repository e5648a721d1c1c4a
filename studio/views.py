from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, tzinfo
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import aget_object_or_404, get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.roles import requires_admin, requires_member
from ingest.views import export_traces
from studio import compare_page, extensions, live, projects, trace_page, tree_cache
from studio.api import span_to_dict
from studio.filters import (
    PAGE_SIZE,
    RANGES,
    SORTS,
    TraceFilter,
    as_trace_id,
    zone_from_cookie,
)
from studio.runtime import runtime
from tracing import analysis, clauses, conventions, otlp_json, retention, search, selectors
from tracing.models import STATUS_CODES, Span, Trace


@csrf_exempt
async def home(request: HttpRequest) -> HttpResponse:
    # AgentScope's guide points the OTLP exporter at the bare Studio URL, so `/` is also a receiver.
    if request.method == "POST":
        return await export_traces(request)
    if request.method in ("GET", "HEAD"):
        # Back to the project the reader last looked at (see studio.projects).
        last = projects.remembered(request)
        return redirect("project_home", project=last) if last else redirect("trace_list")
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


# Errors. 500.html is rendered by Django's own handler500, with an empty context: it needs no
# request, no context processor and no database, which may be what failed.

API_PREFIX = "/api/"
TRACE_VIEWS = frozenset(
    {"trace_detail", "trace_otlp_json", "span_panel", "span_json", "trace_analysis", "trace_flame"}
)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The 404 page inside the layout, with a way back and a search; the API answers JSON as
    DRF does for its own 404s."""
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found."}, status=404)
    match = request.resolver_match
    trace_id = match.kwargs.get("trace_id", "") if match and match.url_name in TRACE_VIEWS else ""
    context = {"trace_id": trace_id, "nav": "traces" if trace_id else ""}
    return render(request, "404.html", context, status=404)


# The trace overview: a filterable, keyset-paginated list of trace summaries, kept live over a
# websocket by studio.consumers.TraceListConsumer.

MAX_DELETE = 500
# The columns whose header sorts the table (the page's sort menu offers the same).
TABLE_SORTS = tuple(dict.fromkeys(key.lstrip("-") for key in SORTS))


def trace_list(request: HttpRequest) -> HttpResponse:
    """`/traces/` (every project's traces, or `?project=`'s). An htmx request aimed at
    `#results` gets just that region (cards, table, pager); everything else, history restores
    included, gets the whole page."""
    return _overview(request, request.GET)


def project_home(request: HttpRequest, project: str) -> HttpResponse:
    """`/projects/<name>/`: the project's home, its overview (with a link to its runs)."""
    query = request.GET.copy()
    query["project"] = project
    return _overview(request, query)


def project_redirect(request: HttpRequest, project: str) -> HttpResponse:
    """`/projects/<name>`, as AgentScope prints it: the name as the application wrote it."""
    project = project.removesuffix("/")
    for alias in extensions.project_aliases:
        if real := alias(project):
            project = real
            break
    return redirect("project_home", project=project)


def project_list(request: HttpRequest) -> HttpResponse:
    """`/projects/`: every project with its counts. The header's switcher loads just its menu
    (`#project-menu`): the names alone, a seek per project."""
    if request.htmx and request.htmx.target == "project-menu":
        nav = request.GET.get("nav", "")
        context = {"names": projects.names(), "menu_nav": nav}
        response = render(request, "studio/projects.html#project-menu", context)
    else:
        context = {"projects": projects.summaries(), "nav": "projects"}
        response = render(request, "studio/projects.html", context)
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


@requires_admin
def project_delete(request: HttpRequest, project: str) -> HttpResponse:
    """Delete a project's traces (with their spans) and runs, once confirmed: GET asks, POST
    deletes."""
    if request.method == "POST":
        gone = projects.delete(project)
        if gone:
            live.traces_deleted(gone)
        response = redirect("project_list")
        if projects.remembered(request) == project:
            projects.forget(response)
        return response
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    summary = next((p for p in projects.summaries() if p.name == project), None)
    if summary is None:
        raise Http404("no such project")
    return render(request, "studio/project_delete.html", {"project": summary, "nav": "projects"})


@requires_admin
@require_POST
def project_retention(request: HttpRequest, project: str) -> HttpResponse:
    """Set the project's own retention (days, max spans; blank: the global default)."""
    form = projects.RetentionForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(f"{field}: {' '.join(e)}" for field, e in form.errors.items())
        return HttpResponseBadRequest(f"Retention not changed: {errors}", content_type="text/plain")
    retention.set_policy(project, form.cleaned_data["days"], form.cleaned_data["max_spans"])
    return redirect("project_home", project=project)


def _overview(request: HttpRequest, query: QueryDict) -> HttpResponse:
    htmx = request.htmx
    fragment = bool(htmx and htmx.target == "results" and not htmx.history_restore_request)
    with timezone.override(_viewer_zone(request)):
        trace_filter = TraceFilter.from_query(query)
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
        trace_filter = _filter_of_url(back)
        context = _overview_context(request, trace_filter, full_page=False, notice=notice)
        return render(request, "studio/trace_list.html#results", context)


def _filter_of_url(url: str) -> TraceFilter:
    """The filter of an overview URL, a project's home included."""
    parts = urlsplit(url)
    query = QueryDict(parts.query, mutable=True)
    try:
        match = resolve(unquote(parts.path))
    except Resolver404:
        match = None
    if match is not None and match.url_name == "project_home":
        query["project"] = match.kwargs["project"]
    return TraceFilter.from_query(query)


def _overview_context(
    request: HttpRequest, trace_filter: TraceFilter, *, full_page: bool, notice: str = ""
) -> dict[str, Any]:
    """One query for the rows and one for the cards (plus the services for the whole page, and
    an existence check only when a filter matched nothing)."""
    traces = trace_filter.traces()
    page = trace_filter.page(PAGE_SIZE, traces)
    if trace_filter.q and not trace_filter.trace_id:
        # Where each row matched: one query over the spans of this page's traces only.
        found = search.snippets([trace.trace_id for trace in page.rows], trace_filter.q)
        for trace in page.rows:
            trace.snippet = found.get(trace.trace_id)
    stats = trace_filter.stats(traces, page)
    empty_studio = stats.traces == 0 and not (trace_filter.narrows and Trace.objects.exists())
    context: dict[str, Any] = {
        "nav": "traces",
        "filter": trace_filter,
        "page": page,
        "stats": stats,
        "notice": notice,
        "max_duration": max((trace.duration_ns for trace in page.rows), default=0),
        # The rows the live subscription says are shown (studio.consumers reads them back).
        "shown": [f"{trace.start_ns}_{trace.trace_id}" for trace in page.rows],
        # New traces go on top only where the top is shown and newest-first.
        "live_top": trace_filter.is_newest_first and page.previous is None,
        # Names this rendering for the live pushes (studio.consumers), which target only it.
        "live_key": secrets.token_hex(8),
        "first_url": trace_filter.first_page_url(),
        "newer_url": trace_filter.url(before=page.previous, after=None) if page.previous else "",
        "older_url": trace_filter.url(after=page.next, before=None) if page.next else "",
        # The table's sortable columns only: a URL each is a reverse() and an urlencode.
        "sort_links": {key: trace_filter.sort_url(key) for key in TABLE_SORTS},
        "aria_sort": {key: trace_filter.aria_sort(key) for key in TABLE_SORTS},
        "empty_studio": empty_studio,
        "connect": _connect_info(request) if empty_studio else None,
    }
    if full_page:
        if trace_filter.project:
            # The project's own retention, if an admin set one (one query).
            context["retention"] = retention.project_policy(trace_filter.project)
        context["services"] = Trace.objects.service_names()
        context["ranges"] = {key: label for key, (label, _) in RANGES.items()}
        context["sorts"] = SORTS
        context["statuses"] = list(STATUS_CODES)
        context["span_types"] = conventions.SPAN_TYPES
        context["without_conversation_url"] = trace_filter.url(
            conversation="", after=None, before=None
        )
    return context


def _viewer_zone(request: HttpRequest) -> tzinfo:
    return zone_from_cookie(request.COOKIES.get("tz")) or UTC


def _overview_url(url: str) -> str:
    """`url` if it is this Studio's overview (with any filter, or a project's), else the plain
    overview."""
    home = reverse("trace_list")
    projects_prefix = reverse("project_list")
    if url.startswith((home, projects_prefix)) and url_has_allowed_host_and_scheme(
        url, allowed_hosts=None
    ):
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
    # LoongSuite's guide shows `--exporter_otlp_endpoint host:4317`: without a scheme the gRPC
    # exporter speaks TLS, which this port does not, and the application exits 0 having stored
    # nothing. The `http://` of grpc_address is what makes it plaintext.
    loongsuite_command = (
        "loongsuite-instrument --traces_exporter otlp --service_name my-app \\\n"
        f"    --exporter_otlp_endpoint {grpc_address} python app.py"
    )
    return {
        "http_url": http_url,
        "grpc_address": grpc_address,
        "test_command": test_command,
        "loongsuite_command": loongsuite_command,
    }


def trace_detail(request: HttpRequest, trace_id: str) -> HttpResponse:
    """The call tree of a trace with its timeline; `?span=<span_id>` opens with that span's panel
    (without it, the first span's); `?critical=1` lists only the critical path's rows (what the
    "Critical path only" toggle shows, for reading without JavaScript)."""
    annotations = {name: make() for name, make in extensions.trace_annotations.items()}
    trace = get_object_or_404(Trace.objects.annotate(**annotations), trace_id=trace_id)
    if trace.span_count > trace_page.INLINE_SPANS:
        return _big_trace_detail(request, trace)
    tree = selectors.trace_tree(trace.trace_id)
    result = selectors.trace_analysis(trace.trace_id)
    critical_only = request.GET.get("critical") == "1"
    span_id = request.GET.get("span", "").lower() or (tree.rows[0].span_id if tree.rows else "")
    detail = _span_detail(trace, span_id, result) if span_id else None
    context = {
        "trace": trace,
        "tree": tree,
        "rows": trace_page.render_rows(
            tree,
            selected=span_id if detail else "",
            critical=frozenset(result.critical_path),
            critical_only=critical_only,
        ),
        "rows_cut": len(tree.rows) > trace_page.HTML_ROWS,
        "rows_shown": trace_page.HTML_ROWS,
        "tree_data": trace_page.tree_data(tree),
        "blank_row": trace_page.blank_row(),
        "ticks": trace_page.axis_ticks(tree.duration_ns),
        "detail": detail,
        "missing_span": span_id if span_id and detail is None else "",
        "first_error": next(
            (row.span_id for row in tree.rows if row.status_code == selectors.STATUS_ERROR), ""
        ),
        # trace.js puts the selected span's id in place of the all-zero one, which no span has.
        "panel_url": reverse("span_panel", args=[trace.trace_id, "0" * 16]),
        "fact_templates": extensions.trace_fact_templates,
        "split": trace_page.time_split(result),
        "critical_only": critical_only,
        "nav": "traces",
    }
    with timezone.override(_viewer_zone(request)):  # times in the reader's zone, as the overview
        return render(request, "studio/trace_detail.html", context)


def _big_trace_detail(request: HttpRequest, trace: Trace) -> HttpResponse:
    """The trace page of a trace too big to put in the page: no span rows at all (trace.js
    streams them from `trace_tree_data`), the first span by start when none is asked for. Where
    the time went is loaded after the page (`trace_analysis`), unless `?analysis=1` asks for it
    in the page (the link shown without JavaScript)."""
    span_id = request.GET.get("span", "").lower()
    if not span_id:
        first = Span.objects.for_trace(trace.trace_id).values_list("span_id", flat=True)[:1]
        span_id = next(iter(first), "")
    result = selectors.trace_analysis(trace.trace_id) if request.GET.get("analysis") else None
    detail = _span_detail(trace, span_id, result) if span_id else None
    tree = selectors.TraceTree(
        rows=[],
        services=selectors.trace_services(trace.trace_id),
        start_ns=trace.start_ns,
        end_ns=trace.end_ns,
    )
    context = {
        "trace": trace,
        "tree": tree,
        "tree_url": reverse("trace_tree_data", args=[trace.trace_id]),
        # The earliest error by start: its place in the call tree would need the whole tree.
        "first_error": selectors.first_error(trace.trace_id) if trace.error_count else "",
        "blank_row": trace_page.blank_row(),
        "ticks": trace_page.axis_ticks(tree.duration_ns),
        "detail": detail,
        "missing_span": span_id if span_id and detail is None else "",
        "panel_url": reverse("span_panel", args=[trace.trace_id, "0" * 16]),
        "fact_templates": extensions.trace_fact_templates,
        "split": trace_page.time_split(result) if result else None,
        "analysis_url": reverse("trace_analysis", args=[trace.trace_id]),
        "critical_only": request.GET.get("critical") == "1",
        "nav": "traces",
    }
    with timezone.override(_viewer_zone(request)):
        return render(request, "studio/trace_detail.html", context)


def trace_analysis(request: HttpRequest, trace_id: str) -> HttpResponse:
    """`/traces/<id>/analysis/`: where the time went (the time split, its tables, the critical
    path's span ids) as the trace page's fragment, with the header's cost out of band: what a
    big trace's page loads after itself. Anyone but htmx gets the page with it inside."""
    trace = get_object_or_404(Trace.objects.only("trace_id"), trace_id=trace_id)
    if not request.htmx:
        return redirect(reverse("trace_detail", args=[trace.trace_id]) + "?analysis=1")
    context = {
        "trace": trace,
        "split": trace_page.time_split(selectors.trace_analysis(trace.trace_id)),
        "cost_out_of_band": True,
    }
    return render(request, "studio/trace_detail.html#time-split", context)


def trace_flame(request: HttpRequest, trace_id: str) -> HttpResponse:
    """`/traces/<id>/flame/`: the flame graph's data (trace_page.flame_data), in columns."""
    trace = get_object_or_404(Trace.objects.only("trace_id"), trace_id=trace_id)
    with selectors.collector_paused():
        data = trace_page.flame_data(selectors.tree_facts(trace.trace_id))
    response = HttpResponse(orjson.dumps(data), content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


async def trace_tree_data(request: HttpRequest, trace_id: str) -> StreamingHttpResponse:
    """The call tree of a trace as NDJSON chunks (trace_page.tree_chunks), streamed: the page
    of a big trace fetches it. Each chunk is read in the sync thread as it is sent, so that a
    response holds one chunk, not the whole tree (Django would first collect a sync iterator
    into a list under ASGI)."""
    trace = await aget_object_or_404(
        Trace.objects.only("trace_id", "start_ns", "end_ns", "span_count", "error_count"),
        trace_id=trace_id,
    )
    # Readers of one trace share one computation of its order and chunks (studio.tree_cache).
    chunks = tree_cache.tree_lines(trace)
    read = sync_to_async(next)

    async def stream() -> AsyncIterator[bytes]:
        while (part := await read(chunks, None)) is not None:
            yield part

    response = StreamingHttpResponse(stream(), content_type="application/x-ndjson")
    response.headers["Cache-Control"] = "no-store"
    return response


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


def _span_detail(
    trace: Trace, span_id: str, result: analysis.Analysis | None = None
) -> selectors.SpanDetail | None:
    """The panel's span; its self time from the trace's analysis when the page has one, else
    from a query of its children."""
    span = selectors.find_span(trace.trace_id, span_id)
    if span is None:
        return None
    detail = selectors.span_detail(span, trace.start_ns)
    found = result.self_ns.get(span.span_id) if result is not None else None
    detail.self_ns = found if found is not None else selectors.span_self_ns(span)
    return detail


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


def trace_compare(request: HttpRequest) -> HttpResponse:
    """`/traces/compare/?a=<id>&b=<id>`: two traces side by side (studio.compare_page).
    Two ticked `trace_id`s (the overview's table form POSTs them, a conversation's GET form
    sends them) go to the canonical URL, the earlier trace as A; `?a=` alone picks B. Bad ids
    are a 400 page, missing traces a 404 page."""
    if request.method == "POST" or ("a" not in request.GET and "trace_id" in request.GET):
        query = request.POST if request.method == "POST" else request.GET
        ticked = [tid for raw in query.getlist("trace_id") if (tid := as_trace_id(raw))]
        return _compare_ticked(request, ticked)
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    raw_a, raw_b = request.GET.get("a", ""), request.GET.get("b", "")
    a, b = as_trace_id(raw_a), as_trace_id(raw_b)
    if not a or (raw_b.strip() and not b):
        bad = "A" if not a else "B"
        return _compare_error(
            request,
            400,
            f"Trace {bad} is not a trace id",
            "A trace id is 32 hexadecimal characters.",
        )
    # Tens of thousands of small objects and no cycles: the collector would only slow it down.
    with timezone.override(_viewer_zone(request)), selectors.collector_paused():
        if not b:
            return _compare_pick(request, a)
        traces = {trace.trace_id: trace for trace in Trace.objects.filter(trace_id__in={a, b})}
        if a not in traces or b not in traces:
            missing = " and ".join(f"<{tid}>" for tid in dict.fromkeys((a, b)) if tid not in traces)
            return _compare_error(
                request, 404, "Trace not found", f"This Studio has no trace {missing}."
            )
        start = request.GET.get("start", "")
        page = compare_page.build(
            traces[a],
            traces[b],
            start=int(start) if start.isdecimal() and len(start) < 10 else 0,
            changes_only=request.GET.get("changes") == "1",
        )
        context = {"page": page, "nav": "traces"}
        if request.htmx and request.htmx.target == "rows-more":
            response = render(request, "studio/trace_compare.html#rows", context)
        else:
            response = render(request, "studio/trace_compare.html", context)
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


def _compare_ticked(request: HttpRequest, ticked: list[str]) -> HttpResponse:
    ticked = list(dict.fromkeys(ticked))
    if len(ticked) != 2:
        return _compare_error(
            request,
            400,
            "Pick two traces",
            f"Tick exactly two traces to compare ({len(ticked)} ticked).",
        )
    found = list(
        Trace.objects.filter(trace_id__in=ticked)
        .order_by("start_ns", "trace_id")
        .values_list("trace_id", flat=True)
    )
    if len(found) != 2:
        return _compare_error(request, 404, "Trace not found", "One of the ticked traces is gone.")
    # 303: after the overview's POST, the browser GETs the comparison.
    response = redirect(compare_page.page_url(found[0], found[1]))
    response.status_code = 303
    return response


def _compare_pick(request: HttpRequest, trace_id: str) -> HttpResponse:
    """Trace A chosen, B to pick: recent traces of the same name, or any id pasted."""
    trace = Trace.objects.filter(trace_id=trace_id).first()
    if trace is None:
        return _compare_error(
            request, 404, "Trace not found", f"This Studio has no trace <{trace_id}>."
        )
    context = {"picking": trace, "suggestions": compare_page.suggestions(trace), "nav": "traces"}
    if request.htmx and request.htmx.target == "compare-with":
        return render(request, "studio/trace_compare.html#suggestions", context)
    return render(request, "studio/trace_compare.html", context)


def _compare_error(request: HttpRequest, status: int, title: str, error: str) -> HttpResponse:
    context = {
        "error_title": title,
        "error": error,
        "a_value": request.GET.get("a", "")[:100],
        "b_value": request.GET.get("b", "")[:100],
        "nav": "traces",
    }
    return render(request, "studio/trace_compare.html", context, status=status)


def prices(request: HttpRequest) -> HttpResponse:
    """`/prices/`: the price table costs are computed with, the user's rows marked."""
    table = selectors.price_table()
    context = {
        "rows": table.sorted_rows(),
        "checked": table.checked,
        "note": table.note,
        "overrides_file": settings.STUDIO_PRICES_FILE if settings.STUDIO_PRICES else "",
        "nav": "prices",
    }
    return render(request, "studio/prices.html", context)


def trace_find(request: HttpRequest, trace_id: str) -> JsonResponse:
    """`/traces/<id>/find?q=`: the trace page's span finder. The spans whose names, ids, kind,
    type, model, status message, attributes or message text hold every word of `q`, in call-tree
    order, and the error spans, in the same order."""
    trace = get_object_or_404(Trace, trace_id=trace_id)
    q = request.GET.get("q", "")[:500]
    found = selectors.find_in_trace(trace.trace_id, q)
    return JsonResponse(
        {"q": q, "matches": found.matches, "errors": found.errors, "span_count": found.span_count}
    )


def attribute_keys(request: HttpRequest) -> HttpResponse:
    """`/api/attributes/keys/?prefix=`: attribute keys seen on the newest spans (JSON), or, for
    htmx, the `<option>`s of the search form's datalist."""
    keys = search.attribute_keys(request.GET.get("prefix", "")[:200])
    if request.htmx:
        return render(request, "studio/trace_list.html#attribute-options", {"values": keys})
    return JsonResponse({"keys": keys})


def attribute_values(request: HttpRequest) -> JsonResponse:
    """`/api/attributes/values/?key=&prefix=`: short values of one key on the newest spans."""
    key = request.GET.get("key", "")
    if not key:
        return JsonResponse({"detail": "key is required"}, status=400)
    try:
        clause = clauses.parse(f"{key} exists")
    except clauses.ClauseError as exc:
        return JsonResponse({"detail": str(exc)}, status=400)
    values = search.attribute_values(clause.key, request.GET.get("prefix", "")[:200])
    return JsonResponse({"key": clause.key, "values": values})
