"""Sign-in for websockets, which Django's middleware never sees."""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib import auth
from django.http.cookie import parse_cookie

from accounts.keys import find_key, key_from_headers
from accounts.models import ApiKey


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}


def scope_user(scope: dict[str, Any]) -> Any:
    """The user a websocket's session cookie or read key belongs to (AnonymousUser if none)."""
    headers = _headers(scope)
    cookies = parse_cookie(headers.get("cookie", ""))
    engine = import_module(settings.SESSION_ENGINE)
    request = SimpleNamespace(
        session=engine.SessionStore(cookies.get(settings.SESSION_COOKIE_NAME))
    )
    user = auth.get_user(request)
    if not user.is_authenticated:
        key = find_key(key_from_headers(headers), ApiKey.Kind.READ)
        if key is not None:
            user = key.user
    return user


async def websocket_allowed(scope: dict[str, Any]) -> bool:
    if settings.STUDIO_AUTH != "login":
        return True
    user = await database_sync_to_async(scope_user)(scope)
    return bool(user.is_authenticated)
