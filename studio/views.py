from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.csrf import csrf_exempt

from ingest.views import export_traces
from studio.runtime import runtime


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


def trace_list(request: HttpRequest) -> HttpResponse:
    # Placeholder until the overview page lands (issue 3).
    from django.shortcuts import render

    from tracing.models import Trace

    traces = Trace.objects.order_by("-start_ns")[:50]
    return render(request, "studio/trace_list.html", {"traces": traces, "nav": "traces"})


def trace_detail(request: HttpRequest, trace_id: str) -> HttpResponse:
    # Placeholder until the trace page lands (issue 4).
    from django.shortcuts import get_object_or_404, render

    from tracing.models import Span, Trace

    trace = get_object_or_404(Trace, trace_id=trace_id.lower())
    spans = Span.objects.for_trace(trace.trace_id)
    return render(
        request, "studio/trace_detail.html", {"trace": trace, "spans": spans, "nav": "traces"}
    )
