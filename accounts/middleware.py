"""Sign-in for every route, in one place: with STUDIO_AUTH=login a request needs a session or an
API key unless its path is on the allow-list below, so a new route is protected by default."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils.decorators import sync_and_async_middleware

from accounts.keys import find_key, key_from_headers
from accounts.models import ApiKey

# Open without sign-in. The OTLP receivers check ingest keys themselves (their errors are OTLP's).
OPEN_PATHS = frozenset({"/healthz", "/accounts/login/", "/v1/traces", "/v1/traces/"})
# `POST /` is an OTLP receiver too (AgentScope's guide points exporters at the bare URL).
OPEN_POSTS = frozenset({"/"})
# The application side of AgentScope Studio: its receivers want an ingest key, not a session,
# and check it themselves, so that a refusal has tRPC's error shape and the key its project.
INGEST_PREFIXES = ("/trpc/",)


def is_open(request: HttpRequest) -> bool:
    path = request.path_info
    return (
        path in OPEN_PATHS
        or (request.method == "POST" and path in OPEN_POSTS)
        or path.startswith((settings.STATIC_URL, *INGEST_PREFIXES))
    )


def _key_user(request: HttpRequest) -> bool:
    """Lets an API read in on a read key, which acts as its user. Sets request.api_key and
    request.user. Only reads of the API: a key is not a session, and a leaked admin key must not
    open the settings page (mint keys, add users) or delete traces."""
    if not request.path_info.startswith("/api/") or request.method not in ("GET", "HEAD"):
        return False
    raw = key_from_headers(request.headers)
    if raw is None:
        return False
    key = find_key(raw, ApiKey.Kind.READ)
    if key is None:
        return False
    request.api_key = key
    request.user = key.user
    user = key.user

    async def auser() -> object:
        return user

    request.auser = auser
    return True


def unauthenticated(request: HttpRequest) -> HttpResponse:
    if request.path_info.startswith("/api/"):
        response = JsonResponse({"detail": "Sign in or send an API key."}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="studio"'
        return response
    login = f"{settings.LOGIN_URL}?{urlencode({'next': request.get_full_path()})}"
    if getattr(request, "htmx", False):
        # htmx would swap a redirected sign-in page into a fragment; send the whole page there.
        current = request.htmx.current_url_abs_path or "/"
        response = HttpResponse(status=401)
        response["HX-Redirect"] = f"{settings.LOGIN_URL}?{urlencode({'next': current})}"
        return response
    return redirect(login)


def _check(request: HttpRequest, user: object) -> HttpResponse | None:
    if getattr(user, "is_authenticated", False) or _key_user(request):
        return None
    return unauthenticated(request)


@sync_and_async_middleware
def require_sign_in(get_response: Callable) -> Callable:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            if settings.STUDIO_AUTH == "login" and not is_open(request):
                user = await request.auser()
                if not user.is_authenticated:
                    denied = await sync_to_async(_check)(request, AnonymousUser())
                    if denied is not None:
                        return denied
            return await get_response(request)

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        if settings.STUDIO_AUTH == "login" and not is_open(request):
            denied = _check(request, request.user)
            if denied is not None:
                return denied
        return get_response(request)

    return middleware
