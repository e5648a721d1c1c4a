"""Role checks for views: `@requires_role(Role.MEMBER)` on a view that changes things."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from accounts.models import Role


def allowed(user: Any, role: str) -> bool:
    """With STUDIO_AUTH=none everyone may do everything, as before sign-in existed."""
    if settings.STUDIO_AUTH != "login":
        return True
    return bool(getattr(user, "is_authenticated", False)) and user.has_role(role)


def requires_role(role: str) -> Callable[[Callable], Callable]:
    """403 unless the request's user has `role` or a higher one. Works on sync and async views."""

    def decorate(view: Callable) -> Callable:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                # The mode first: without sign-in, no session is read.
                if settings.STUDIO_AUTH == "login" and not allowed(await request.auser(), role):
                    raise PermissionDenied(f"this needs the {role} role")
                return await view(request, *args, **kwargs)

            return async_view

        @functools.wraps(view)
        def sync_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not allowed(request.user, role):
                raise PermissionDenied(f"this needs the {role} role")
            return view(request, *args, **kwargs)

        return sync_view

    return decorate


requires_member = requires_role(Role.MEMBER)
requires_admin = requires_role(Role.ADMIN)
