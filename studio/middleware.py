from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

# Span content is untrusted text: besides escaping it everywhere, forbid inline and foreign
# scripts so a mistake in one template cannot become script execution.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


@sync_and_async_middleware
def content_security_policy(get_response: Callable) -> Callable:
    # Async-capable so that the async ingest views stay on the event loop.
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            response = await get_response(request)
            response.headers.setdefault("Content-Security-Policy", CSP)
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        return response

    return middleware


# The pages scoped to a project (`?project=` or `/projects/<name>/`): visiting one remembers
# its project for `/` and the header; visiting the first two without one means "all projects".
SCOPED_PAGES = frozenset({"trace_list", "run_list", "project_home"})
ALL_PROJECTS_PAGES = frozenset({"trace_list", "run_list"})


def page_project(request: HttpRequest) -> str | None:
    """The project a scoped page shows ("" for all), or None on any other page."""
    match = request.resolver_match
    if match is None or match.url_name not in SCOPED_PAGES:
        return None
    return match.kwargs.get("project") or request.GET.get("project", "")


def _remember(request: HttpRequest, response: HttpResponse) -> None:
    if request.method != "GET" or response.status_code != 200:
        return
    project = page_project(request)
    if project is None:
        return
    from studio import projects  # models: not at import time, before apps are ready

    if project and project != projects.remembered(request):
        projects.remember(response, project)
    elif not project and projects.remembered(request):
        projects.forget(response)


@sync_and_async_middleware
def remember_project(get_response: Callable) -> Callable:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            response = await get_response(request)
            _remember(request, response)
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        _remember(request, response)
        return response

    return middleware
