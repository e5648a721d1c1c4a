from django.urls import include, path

from studio import api, views

api_patterns = [
    path("traces/", api.TraceList.as_view(), name="api_trace_list"),
    path("traces/<str:trace_id>/", api.TraceDetail.as_view(), name="api_trace_detail"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("api/", include(api_patterns)),
    path("traces/", views.trace_list, name="trace_list"),
    path("traces/<str:trace_id>/", views.trace_detail, name="trace_detail"),
    path("", include("ingest.urls")),
]
