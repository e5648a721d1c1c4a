from django.urls import include, path

from studio import api, views

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
    path("traces/<str:trace_id>/", views.trace_detail, name="trace_detail"),
    path("traces/<str:trace_id>/otlp.json", views.trace_otlp_json, name="trace_otlp_json"),
    path("traces/<str:trace_id>/spans/<str:span_id>/", views.span_panel, name="span_panel"),
    path("traces/<str:trace_id>/spans/<str:span_id>/json", views.span_json, name="span_json"),
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
]
