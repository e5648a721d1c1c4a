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
