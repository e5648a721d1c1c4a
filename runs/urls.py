from django.urls import path

import studio.converters  # noqa: F401  (registers `any_text` and `segment`)
from runs import api, trpc, views

urlpatterns = [
    path("api/runs/", api.RunList.as_view(), name="api_run_list"),
    path("api/runs/<str:run_id>/", api.RunDetail.as_view(), name="api_run_detail"),
    path("runs/", views.run_list, name="run_list"),
    path("runs/<segment:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<segment:run_id>/input/<segment:request_id>/", views.run_answer, name="run_answer"),
    path(
        "conversations/<any_text:conversation_id>/",
        views.conversation_detail,
        name="conversation_detail",
    ),
    path("trpc/registerRun", trpc.register_run, name="trpc_register_run"),
    path("trpc/pushMessage", trpc.push_message, name="trpc_push_message"),
    path("trpc/requestUserInput", trpc.request_user_input, name="trpc_request_user_input"),
]
