from django.urls import path

from ingest import views

urlpatterns = [
    path("v1/traces", views.export_traces, name="otlp_traces"),
    path("v1/traces/", views.export_traces),
]
