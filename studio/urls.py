from django.urls import include, path, register_converter

from studio import api, views


class TraceId:
    """A trace id in a page's path, in any case; views get it as stored, lowercase."""

    regex = "[0-9a-fA-F]{32}"

    def to_python(self, value: str) -> str:
        return value.lower()

    def to_url(self, value: str) -> str:
        return value


class SpanId(TraceId):
    regex = "[0-9a-fA-F]{16}"


register_converter(TraceId, "trace_id")
register_converter(SpanId, "span_id")

api_patterns = [
    path("traces/", api.TraceList.as_view(), name="api_trace_list"),
    path("traces/<str:trace_id>/", api.TraceDetail.as_view(), name="api_trace_detail"),
    path("runs/", api.RunList.as_view(), name="api_run_list"),
    path("runs/<str:run_id>/", api.RunDetail.as_view(), name="api_run_detail"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("api/", include(api_patterns)),
    path("traces/", views.trace_list, name="trace_list"),
    path("traces/delete/", views.trace_delete, name="trace_delete"),
    path("traces/<trace_id:trace_id>/", views.trace_detail, name="trace_detail"),
    path("traces/<trace_id:trace_id>/otlp.json", views.trace_otlp_json, name="trace_otlp_json"),
    path(
        "traces/<trace_id:trace_id>/spans/<span_id:span_id>/", views.span_panel, name="span_panel"
    ),
    path(
        "traces/<trace_id:trace_id>/spans/<span_id:span_id>/json", views.span_json, name="span_json"
    ),
    path("runs/", views.run_list, name="run_list"),
    path("runs/<str:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<str:run_id>/input/<str:request_id>/", views.run_answer, name="run_answer"),
    path("projects/<str:project>/", views.project_runs, name="project_runs"),
    path(
        "conversations/<path:conversation_id>/",
        views.conversation_detail,
        name="conversation_detail",
    ),
    path("", include("ingest.urls")),
    path("", include("accounts.urls")),
]
