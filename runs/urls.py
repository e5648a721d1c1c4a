import re

from django.urls import path, register_converter

from runs import api, trpc, views


class AnyText:
    """A client-supplied id in a path: any characters, slashes and newlines included, so that
    reversing a URL for a stored id can never fail; `reverse` percent-encodes what needs it."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class Segment(AnyText):
    """A client-supplied id as one path segment: its "/" and "%" are escaped (and `reverse`
    percent-encodes the rest), so `runs/<id>/input/<id>/` stays unambiguous for any id."""

    regex = r"[^/]+"
    _ESCAPED = re.compile("%(25|2F)")

    def to_python(self, value: str) -> str:
        return self._ESCAPED.sub(lambda m: "%" if m[1] == "25" else "/", value)

    def to_url(self, value: str) -> str:
        return value.replace("%", "%25").replace("/", "%2F")


register_converter(AnyText, "any_text")
register_converter(Segment, "segment")

urlpatterns = [
    path("api/runs/", api.RunList.as_view(), name="api_run_list"),
    path("api/runs/<str:run_id>/", api.RunDetail.as_view(), name="api_run_detail"),
    path("runs/", views.run_list, name="run_list"),
    path("runs/<segment:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<segment:run_id>/input/<segment:request_id>/", views.run_answer, name="run_answer"),
    # What AgentScope prints is `/projects/<project>`, without the slash.
    path("projects/<any_text:project>", views.project_runs, name="project_runs"),
    path(
        "conversations/<any_text:conversation_id>/",
        views.conversation_detail,
        name="conversation_detail",
    ),
    path("trpc/registerRun", trpc.register_run, name="trpc_register_run"),
    path("trpc/pushMessage", trpc.push_message, name="trpc_push_message"),
    path("trpc/requestUserInput", trpc.request_user_input, name="trpc_request_user_input"),
]
