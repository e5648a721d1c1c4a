"""Sign-in pages, and the admin page for users and keys (`/settings/`)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import keys
from accounts.forms import NewKeyForm, NewUserForm, RoleForm
from accounts.models import ApiKey, Role
from accounts.roles import requires_admin


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


logout = auth_views.LogoutView.as_view()


def client_address(request: HttpRequest) -> str | None:
    """The address sign-in failures are counted against (settings.AXES_CLIENT_IP_CALLABLE):
    the connection's, which uvicorn takes from X-Forwarded-For only when the peer is a trusted
    proxy (FORWARDED_ALLOW_IPS, default 127.0.0.1), so a client cannot choose its own."""
    return request.META.get("REMOTE_ADDR")


def lockout_remaining(address: str | None) -> timedelta:
    """How long `address` stays locked out: the cool-off from its last counted failure."""
    last = (
        AccessAttempt.objects.filter(ip_address=address)
        .order_by("-attempt_time")
        .values_list("attempt_time", flat=True)
        .first()
    )
    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    if last is None:
        return cool_off
    return max(last + cool_off - timezone.now(), timedelta(seconds=1))


def locked_out(request: HttpRequest, *args: Any) -> HttpResponse:
    """django-axes' answer to a sign-in from an address with too many failures (its
    AXES_LOCKOUT_CALLABLE): the sign-in page, saying when to try again, as 429 + Retry-After."""
    seconds = math.ceil(
        lockout_remaining(getattr(request, "axes_ip_address", None)).total_seconds()
    )
    wait = f"{seconds} seconds" if seconds < 120 else f"{math.ceil(seconds / 60)} minutes"
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    response = render(
        request,
        "accounts/login.html",
        {
            "form": form,
            "next": request.POST.get("next", ""),
            "throttled": f"Too many failed sign-ins from your address. Try again in {wait}.",
        },
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response


def _settings_page(request: HttpRequest, *, status: int = 200, **context: object) -> HttpResponse:
    context.setdefault("user_form", NewUserForm())
    context.setdefault("key_form", NewKeyForm())
    context["users"] = get_user_model().objects.order_by("username")
    context["keys"] = ApiKey.objects.select_related("user")
    context["nav"] = "settings"
    context["roles"] = Role.choices
    return render(request, "accounts/settings.html", context, status=status)


@requires_admin
def settings_page(request: HttpRequest) -> HttpResponse:
    return _settings_page(request)


@require_POST
@requires_admin
def user_create(request: HttpRequest) -> HttpResponse:
    form = NewUserForm(request.POST)
    if not form.is_valid():
        return _settings_page(request, user_form=form, status=400)
    user = form.save(commit=False)
    user.role = form.cleaned_data["role"]
    user.save()
    return redirect("settings")


@require_POST
@requires_admin
def user_update(request: HttpRequest, user_id: int) -> HttpResponse:
    user = get_object_or_404(get_user_model(), pk=user_id)
    if user == request.user:
        # An admin cannot lock themselves out (disable or demote themselves).
        pass
    elif "active" in request.POST:
        user.is_active = request.POST["active"] == "1"
        user.save(update_fields=["is_active"])
    else:
        form = RoleForm(request.POST)
        if form.is_valid():
            user.role = form.cleaned_data["role"]
            user.save(update_fields=["role"])
    return redirect("settings")


@require_POST
@requires_admin
def key_create(request: HttpRequest) -> HttpResponse:
    form = NewKeyForm(request.POST)
    if not form.is_valid():
        return _settings_page(request, key_form=form, status=400)
    data = form.cleaned_data
    ingest = data["kind"] == ApiKey.Kind.INGEST
    key, raw = keys.create_key(
        data["kind"],
        project=data["project"] if ingest else "",
        user=None if ingest else data["user"],
        name=data["name"],
    )
    # Shown once, in this response only; never stored or redirected with.
    return _settings_page(request, new_key=raw, new_key_obj=key)


@require_POST
@requires_admin
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    keys.revoke(get_object_or_404(ApiKey, pk=key_id))
    return redirect("settings")
