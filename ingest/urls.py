from django.urls import path

from ingest import trpc, views

urlpatterns = [
    path("v1/traces", views.export_traces, name="otlp_traces"),
    path("v1/traces/", views.export_traces),
    path("trpc/registerRun", trpc.register_run, name="trpc_register_run"),
    path("trpc/pushMessage", trpc.push_message, name="trpc_push_message"),
    path("trpc/requestUserInput", trpc.request_user_input, name="trpc_request_user_input"),
]
