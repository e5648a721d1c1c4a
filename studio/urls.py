from django.urls import include, path, register_converter

import studio.converters  # noqa: F401  (registers `any_text` and `segment`)
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
    path("traces/compare/", api.TraceCompare.as_view(), name="api_trace_compare"),
    path("traces/stats/", api.TraceTimeline.as_view(), name="api_trace_stats"),
    path("traces/<str:trace_id>/", api.TraceDetail.as_view(), name="api_trace_detail"),
    path("traces/<str:trace_id>/spans/", api.TraceSpans.as_view(), name="api_trace_spans"),
    path("projects/", api.ProjectList.as_view(), name="api_project_list"),
    path("traces/<str:trace_id>/analysis/", api.TraceAnalysis.as_view(), name="api_trace_analysis"),
    path("attributes/keys/", views.attribute_keys, name="api_attribute_keys"),
    path("attributes/values/", views.attribute_values, name="api_attribute_values"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("api/", include(api_patterns)),
    path("traces/", views.trace_list, name="trace_list"),
    path("traces/delete/", views.trace_delete, name="trace_delete"),
    path("traces/compare/", views.trace_compare, name="trace_compare"),
    path("prices/", views.prices, name="prices"),
    path("traces/<trace_id:trace_id>/", views.trace_detail, name="trace_detail"),
    path("traces/<trace_id:trace_id>/tree/", views.trace_tree_data, name="trace_tree_data"),
    path("traces/<trace_id:trace_id>/analysis/", views.trace_analysis, name="trace_analysis"),
    path("traces/<trace_id:trace_id>/flame/", views.trace_flame, name="trace_flame"),
    path("traces/<trace_id:trace_id>/otlp.json", views.trace_otlp_json, name="trace_otlp_json"),
    path("traces/<trace_id:trace_id>/find", views.trace_find, name="trace_find"),
    path(
        "traces/<trace_id:trace_id>/spans/<span_id:span_id>/", views.span_panel, name="span_panel"
    ),
    path(
        "traces/<trace_id:trace_id>/spans/<span_id:span_id>/json", views.span_json, name="span_json"
    ),
    path("projects/", views.project_list, name="project_list"),
    path("projects/<segment:project>/", views.project_home, name="project_home"),
    path("projects/<segment:project>/delete/", views.project_delete, name="project_delete"),
    path(
        "projects/<segment:project>/retention/",
        views.project_retention,
        name="project_retention",
    ),
    # What AgentScope prints is `/projects/<project>`, without the slash and with the name as
    # the user wrote it (slashes and all); earlier Studios' links ended in one.
    path("projects/<any_text:project>", views.project_redirect, name="project_redirect"),
    path("", include("ingest.urls")),
    path("", include("runs.urls")),
    path("", include("accounts.urls")),
]

handler404 = "studio.views.page_not_found"
