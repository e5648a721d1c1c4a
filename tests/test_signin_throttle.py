"""Password guessing at /accounts/login/ is throttled per client address (django-axes, counted in
the database so that every worker and host shares the counts); see studio/settings.py."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import Role

pytestmark = pytest.mark.django_db(transaction=True)

ATTACKER, USER = "203.0.113.7", "198.51.100.20"


@pytest.fixture(autouse=True)
def login_mode(settings: Any) -> None:
    settings.STUDIO_AUTH = "login"
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(seconds=2)
    # A real hasher takes seconds a sign-in on this busy machine, longer than the cool-off.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ada() -> Any:
    return get_user_model().objects.create_user("ada", password="right-pw-1", role=Role.VIEWER)


def sign_in(password: str, address: str = ATTACKER, username: str = "ada") -> Any:
    return Client(REMOTE_ADDR=address).post(
        "/accounts/login/", {"username": username, "password": password}
    )


def test_too_many_failures_from_an_address_get_429_saying_when_to_try_again(ada: Any) -> None:
    assert [sign_in("guess").status_code for _ in range(2)] == [200, 200]  # the form again
    third = sign_in("guess")
    assert third.status_code == 429
    assert "Too many failed sign-ins from your address. Try again in 2 seconds." in (
        third.content.decode()
    )
    assert third["Retry-After"] == "2"
    # Locked out: even the right password is refused from there, and does not sign in.
    right = sign_in("right-pw-1")
    assert right.status_code == 429
    assert "_auth_user_id" not in right.client.session


def test_the_right_password_works_once_the_lockout_has_passed(ada: Any) -> None:
    for _ in range(3):
        sign_in("guess")
    assert sign_in("right-pw-1").status_code == 429
    time.sleep(2.2)
    response = sign_in("right-pw-1")
    assert response.status_code == 302
    assert response.client.session["_auth_user_id"] == str(ada.pk)


def test_guessing_while_locked_out_does_not_prolong_the_lockout(ada: Any) -> None:
    for _ in range(3):
        sign_in("guess")
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert sign_in("guess").status_code == 429
        time.sleep(0.1)
    time.sleep(0.8)  # 2.3 s after the third failure, 0.7 s after the last refused guess
    assert sign_in("right-pw-1").status_code == 302


def test_an_attacker_elsewhere_cannot_lock_a_user_out(ada: Any) -> None:
    """By address only: whatever one address guesses, ada signs in from hers."""
    for _ in range(10):
        sign_in("guess", ATTACKER)
    assert sign_in("right-pw-1", ATTACKER).status_code == 429
    assert sign_in("right-pw-1", USER).status_code == 302


def test_failures_for_many_usernames_from_one_address_count_together(ada: Any) -> None:
    for name in ("bob", "carol"):
        assert sign_in("guess", username=name).status_code == 200
    assert sign_in("guess", username="dave").status_code == 429


def test_a_success_does_not_forgive_an_addresss_failures(ada: Any) -> None:
    """An attacker with an account of their own cannot sign in between guesses to reset."""
    get_user_model().objects.create_user("mallory", password="mallory-pw", role=Role.VIEWER)
    sign_in("guess")
    sign_in("guess")
    assert sign_in("mallory-pw", username="mallory").status_code == 302
    assert sign_in("guess").status_code == 429


def test_the_async_middleware_path_throttles_too(ada: Any) -> None:
    """runstudio serves ASGI, where django-axes' middleware takes its async path."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    client = AsyncClient(REMOTE_ADDR=ATTACKER)

    async def attempts() -> list[Any]:
        return [
            await client.post("/accounts/login/", {"username": "ada", "password": password})
            for password in ("guess", "guess", "guess", "right-pw-1")
        ]

    responses = async_to_sync(attempts)()
    assert [r.status_code for r in responses] == [200, 200, 429, 429]
    assert "Try again in" in responses[-1].content.decode()
