"""Sign-in, roles and API keys (STUDIO_AUTH=login), in process: every route, the roles on the
actions that change things, read keys on the API, the websocket, the settings page and commands."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import AsyncClient, Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts import keys
from accounts.middleware import OPEN_PATHS
from accounts.models import ApiKey, Role
from studio import settings as studio_settings
from tests.test_live import WebsocketCommunicator
from tracing.models import Trace

pytestmark = pytest.mark.django_db

TRACE_ID = "ab" * 16
SPAN_ID = "cd" * 8
SAMPLES = {
    "trace_id": TRACE_ID,
    "span_id": SPAN_ID,
    "str": "x",
    "int": "1",
    "path": "x/y",
    "segment": "x",
    "any_text": "x",
}


@pytest.fixture
def login_mode(settings: Any) -> None:
    settings.STUDIO_AUTH = "login"


def make_user(name: str, role: str = Role.VIEWER, **extra: Any) -> Any:
    return get_user_model().objects.create_user(name, password="pw-" + name, role=role, **extra)


def signed_in(role: str) -> Client:
    client = Client()
    client.force_login(make_user(f"user-{role}", role))
    return client


def all_paths() -> list[tuple[str, str]]:
    """(name, example path) for every URL pattern in the urlconf, converters filled in."""
    found: list[tuple[str, str]] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                path = re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLES[m.group(1) or "str"], route)
                found.append((pattern.name or route, "/" + path))

    walk(get_resolver().url_patterns, "")
    return found


# Settings and start-up


def test_studio_auth_takes_none_or_login_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_AUTH", "Login")
    assert studio_settings.env_choice("STUDIO_AUTH", "none", ("none", "login")) == "login"
    monkeypatch.setenv("STUDIO_AUTH", "off")
    with pytest.raises(ImproperlyConfigured, match="STUDIO_AUTH must be one of none, login"):
        studio_settings.env_choice("STUDIO_AUTH", "none", ("none", "login"))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("studio.example", False),
    ],
)
def test_only_loopback_addresses_default_to_no_sign_in(host: str, loopback: bool) -> None:
    assert studio_settings.is_loopback(host) is loopback


def test_the_tests_run_without_sign_in() -> None:
    assert settings.STUDIO_AUTH == "none"


# Every route


def test_the_walk_finds_the_routes_that_matter() -> None:
    names = {name for name, _ in all_paths()}
    assert {"trace_list", "api_trace_list", "trace_delete", "run_answer", "settings"} <= names
    assert {"trace_compare", "api_trace_compare"} <= names
    assert "api_trace_stats" in names  # the overview's charts
    assert {"healthz", "login", "otlp_traces", "trpc_register_run"} <= names


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_anonymous_client_reads_no_route_but_the_allow_list(
    login_mode: None, method: str
) -> None:
    client = Client()
    for name, path in all_paths():
        response = getattr(client, method)(path)
        if path in OPEN_PATHS or (method == "post" and path == "/"):
            # Open routes: health, sign-in, and the OTLP receivers, which want an ingest key.
            if name in ("otlp_traces", None, "home") or path.startswith("/v1/"):
                assert response.status_code in (401, 405), (path, response.status_code)
            else:
                assert response.status_code in (200, 503), (path, response.status_code)
            continue
        if path.startswith("/trpc/"):
            # The AgentScope receivers want an ingest key and say so in tRPC's error shape.
            assert response.status_code == (401 if method == "post" else 405), path
            if method == "post":
                assert response.json()["error"]["code"] == "UNAUTHORIZED"
        elif path.startswith("/api/"):
            assert response.status_code == 401, (path, response.status_code)
            assert response.json() == {"detail": "Sign in or send an API key."}
        else:
            assert response.status_code == 302, (path, response.status_code)
            assert response["Location"].startswith("/accounts/login/?next="), path


def test_the_same_routes_are_open_without_sign_in_mode() -> None:
    # STUDIO_AUTH=none: the overview and the API answer anyone, as before.
    assert Client().get("/traces/").status_code == 200
    assert Client().get("/api/traces/").status_code == 200


def test_an_anonymous_htmx_request_is_sent_to_sign_in_whole(login_mode: None) -> None:
    response = Client().get(
        "/traces/",
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/traces/?q=a"},
    )
    assert response.status_code == 401
    assert response["HX-Redirect"] == "/accounts/login/?next=%2Ftraces%2F%3Fq%3Da"


def test_the_async_middleware_path_guards_too(login_mode: None) -> None:
    async def main() -> None:
        client = AsyncClient()
        assert (await client.get("/api/traces/")).status_code == 401
        assert (await client.get("/traces/")).status_code == 302
        assert (await client.get("/healthz")).status_code in (200, 503)

    async_to_sync(main)()


def test_static_files_need_no_sign_in(login_mode: None) -> None:
    assert Client().get("/static/studio/studio.css").status_code == 200


# Sign-in


def test_the_sign_in_page_is_styled_and_has_no_inline_script_or_style(login_mode: None) -> None:
    response = Client().get("/accounts/login/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "studio/studio.css" in html and "studio/accounts.css" in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "<style" not in html and " style=" not in html
    assert response["Content-Security-Policy"].startswith("default-src 'self'")


def test_a_user_signs_in_reads_pages_and_signs_out(login_mode: None) -> None:
    make_user("ada", Role.VIEWER)
    client = Client()
    wrong = client.post("/accounts/login/", {"username": "ada", "password": "nope"})
    assert wrong.status_code == 200 and b"correct username and password" in wrong.content
    response = client.post(
        "/accounts/login/", {"username": "ada", "password": "pw-ada", "next": "/runs/"}
    )
    assert response.status_code == 302 and response["Location"] == "/runs/"
    page = client.get("/traces/")
    assert page.status_code == 200
    assert b"ada \xc2\xb7 viewer" in page.content and b"Sign out" in page.content
    assert client.get("/api/traces/").status_code == 200
    assert client.get("/accounts/logout/").status_code == 405  # sign-out is a POST
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/traces/").status_code == 302


def test_a_disabled_user_is_signed_out(login_mode: None) -> None:
    client = signed_in(Role.MEMBER)
    get_user_model().objects.filter(username="user-member").update(is_active=False)
    assert client.get("/traces/").status_code == 302


# Roles


@pytest.mark.parametrize(
    ("role", "status"), [(Role.VIEWER, 403), (Role.MEMBER, 302), (Role.ADMIN, 302)]
)
def test_only_members_and_admins_delete_traces(login_mode: None, role: str, status: int) -> None:
    Trace.objects.create(trace_id=TRACE_ID, name="t", start_ns=1, end_ns=2, duration_ns=1)
    response = signed_in(role).post(
        "/traces/delete/", {"trace_id": TRACE_ID, "confirm": "1", "next": "/traces/"}
    )
    assert response.status_code == status
    assert Trace.objects.filter(trace_id=TRACE_ID).exists() is (status == 403)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MEMBER, Role.ADMIN])
def test_every_role_compares_traces_and_an_outsider_none(login_mode: None, role: str) -> None:
    other = "ef" * 16
    for trace_id in (TRACE_ID, other):
        Trace.objects.create(trace_id=trace_id, name="t", start_ns=1, end_ns=2, duration_ns=1)
    page = f"/traces/compare/?a={TRACE_ID}&b={other}"
    client = signed_in(role)
    assert client.get(page).status_code == 200
    ticked = client.post("/traces/compare/", {"trace_id": [TRACE_ID, other]})
    assert ticked.status_code == 303
    assert client.get(f"/api/traces/compare/?a={TRACE_ID}&b={other}").status_code == 200
    outsider = Client()
    for response in (
        outsider.get(page),
        outsider.post("/traces/compare/", {"trace_id": [TRACE_ID, other]}),
        outsider.get(f"/traces/compare/?a={TRACE_ID}", headers={"HX-Request": "true"}),
    ):
        assert response.status_code in (302, 401), response.status_code
        assert b"<table" not in response.content
    assert outsider.get(f"/api/traces/compare/?a={TRACE_ID}&b={other}").status_code == 401


def test_a_superuser_is_an_admin(login_mode: None) -> None:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="pw"))
    assert client.get("/settings/").status_code == 200


@pytest.mark.parametrize(
    ("role", "status"), [(Role.VIEWER, 403), (Role.MEMBER, 404), (Role.ADMIN, 404)]
)
def test_only_members_and_admins_answer_input_requests(
    login_mode: None, role: str, status: int
) -> None:
    # 404: past the role check, the (unknown) request is looked up.
    response = signed_in(role).post("/runs/run-1/input/req-1/", {"text": "yes"})
    assert response.status_code == status


def test_without_sign_in_mode_anyone_deletes_as_before() -> None:
    Trace.objects.create(trace_id=TRACE_ID, name="t", start_ns=1, end_ns=2, duration_ns=1)
    response = Client().post("/traces/delete/", {"trace_id": TRACE_ID, "confirm": "1"})
    assert response.status_code == 302 and not Trace.objects.exists()


# Read keys


def test_a_read_key_reads_the_api_as_its_user_until_revoked(login_mode: None) -> None:
    viewer = make_user("reader", Role.VIEWER)
    key, raw = keys.create_key(ApiKey.Kind.READ, user=viewer)
    basic = base64.b64encode(f"studio:{raw}".encode()).decode()
    for headers in (
        {"Authorization": f"Bearer {raw}"},
        {"X-API-Key": raw},
        {"Authorization": f"Basic {basic}"},
    ):
        assert Client().get("/api/traces/", headers=headers).status_code == 200, headers
    assert Client().get("/api/traces/stats/", headers={"X-API-Key": raw}).status_code == 200
    keys.revoke(key)
    assert Client().get("/api/traces/", headers={"X-API-Key": raw}).status_code == 401


def test_a_read_key_opens_only_reads_of_the_api(login_mode: None) -> None:
    # Not a session: even an admin's leaked key must not open the settings page (keys, users),
    # delete traces, or write through the API.
    admin = make_user("key-admin", Role.ADMIN)
    _, raw = keys.create_key(ApiKey.Kind.READ, user=admin)
    headers = {"Authorization": f"Bearer {raw}"}
    assert Client().get("/settings/", headers=headers).status_code == 302
    assert Client().get("/traces/", headers=headers).status_code == 302
    delete = Client().post(
        "/traces/delete/", {"trace_id": TRACE_ID, "confirm": "1"}, headers=headers
    )
    assert delete.status_code == 302 and delete["Location"].startswith("/accounts/login/")
    assert Client().post("/api/traces/", {}, headers=headers).status_code == 401


def test_an_ingest_key_or_a_made_up_key_does_not_read(login_mode: None) -> None:
    _, ingest = keys.create_key(ApiKey.Kind.INGEST, project="p")
    for raw in (ingest, "studio_made-up", ""):
        response = Client().get("/api/traces/", headers={"Authorization": f"Bearer {raw}"})
        assert response.status_code == 401, raw


def test_keys_are_stored_hashed() -> None:
    key, raw = keys.create_key(ApiKey.Kind.INGEST, project="p")
    stored = ApiKey.objects.get(pk=key.pk)
    assert raw not in (stored.digest, stored.prefix) and stored.digest == keys.digest(raw)
    assert len(raw) > 40 and raw.startswith(stored.prefix)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": "Bearer k1"}, "k1"),
        ({"authorization": "bearer   k1 "}, "k1"),
        ({"x-api-key": "k2"}, "k2"),
        ({"authorization": "Basic " + base64.b64encode(b"studio:k3").decode()}, "k3"),
        ({"authorization": "Basic " + base64.b64encode(b"studio:").decode()}, None),
        ({"authorization": "Basic !!!"}, None),
        ({"authorization": "Token k4"}, None),
        ({}, None),
    ],
)
def test_a_key_comes_from_bearer_x_api_key_or_basic(headers: dict, expected: str | None) -> None:
    assert keys.key_from_headers(headers) == expected


def test_the_ingest_check_is_one_call() -> None:
    _, raw = keys.create_key(ApiKey.Kind.INGEST, project="team-a")
    assert keys.ingest_project({"x-api-key": raw}) == "team-a"
    # Without sign-in a key is optional, and a bad one is ignored rather than refused.
    assert keys.ingest_project({}) is None
    assert keys.ingest_project({"x-api-key": "wrong"}) is None


def test_the_ingest_check_refuses_without_a_good_key_in_login_mode(login_mode: None) -> None:
    key, raw = keys.create_key(ApiKey.Kind.INGEST, project="team-a")
    _, read = keys.create_key(ApiKey.Kind.READ, user=make_user("r"))
    for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": read}):
        with pytest.raises(keys.KeyDenied):
            keys.ingest_project(headers)
    keys.revoke(key)
    with pytest.raises(keys.KeyDenied):
        keys.ingest_project({"x-api-key": raw})


@pytest.mark.django_db(transaction=True)
def test_the_keys_project_reaches_the_writer(
    login_mode: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest import writer
    from ingest.writer import Unavailable

    seen: list[str | None] = []

    class Writer:
        queued_bytes = 0

        def submit(self, records: list) -> Any:
            raise Unavailable("test")

    def decode(body: bytes, content_type: str) -> Any:
        batch = real_decode(body, content_type)
        seen.append(batch)
        return batch

    real_decode = writer.decode
    monkeypatch.setattr(writer, "decode", decode)
    monkeypatch.setattr(writer, "get_writer", Writer)
    _, raw = keys.create_key(ApiKey.Kind.INGEST, project="team-b")
    response = Client().post(
        "/v1/traces", b"{}", content_type="application/json", headers={"X-API-Key": raw}
    )
    assert response.status_code == 503 and [batch.project for batch in seen] == ["team-b"]
    # A wrong key outranks a bad body: 401, not 415 or 400.
    for content_type, body in (("text/plain", b"hi"), ("application/json", b"{")):
        refused = Client().post(
            "/v1/traces", body, content_type=content_type, headers={"X-API-Key": "studio_no"}
        )
        assert refused.status_code == 401, content_type
    # The lookup thread keeps its connection; PostgreSQL would not drop the test database.
    from django.db import connection

    keys._lookups.submit(lambda: connection.close()).result()


# Websocket


@pytest.mark.django_db(transaction=True)
def test_the_live_overview_socket_needs_a_session(login_mode: None) -> None:
    client = signed_in(Role.VIEWER)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def main() -> None:
        anonymous = WebsocketCommunicator("/ws/traces/")
        assert await anonymous.connect() == "websocket.close"
        member = WebsocketCommunicator("/ws/traces/", headers=[(b"cookie", cookie)])
        assert await member.connect() == "websocket.accept"
        await member.disconnect()

    async_to_sync(main)()


# The settings page


def test_the_settings_page_is_for_admins_only(login_mode: None) -> None:
    assert signed_in(Role.MEMBER).get("/settings/").status_code == 403
    assert signed_in(Role.VIEWER).post("/settings/keys/", {"kind": "ingest"}).status_code == 403
    assert signed_in(Role.ADMIN).get("/settings/").status_code == 200


def test_an_admin_makes_and_revokes_keys_and_users_on_the_settings_page(login_mode: None) -> None:
    admin = signed_in(Role.ADMIN)
    response = admin.post("/settings/keys/", {"kind": "ingest", "project": "team-a", "name": "ci"})
    assert response.status_code == 200
    raw = re.search(r'<code id="new-key">([^<]+)</code>', response.content.decode()).group(1)
    key = ApiKey.objects.get()
    assert key.digest == keys.digest(raw) and key.project == "team-a"
    # Shown once: the next visit lists the key by its prefix only.
    again = admin.get("/settings/").content.decode()
    assert raw not in again and key.prefix in again
    assert admin.post(f"/settings/keys/{key.id}/revoke/").status_code == 302
    assert keys.find_key(raw, ApiKey.Kind.INGEST) is None

    created = admin.post(
        "/settings/users/",
        {
            "username": "bo",
            "role": "member",
            "password1": "a-long-pass-9",
            "password2": "a-long-pass-9",
        },
    )
    assert created.status_code == 302
    bo = get_user_model().objects.get(username="bo")
    assert bo.role == Role.MEMBER and bo.check_password("a-long-pass-9")
    admin.post(f"/settings/users/{bo.id}/", {"role": "viewer"})
    admin.post(f"/settings/users/{bo.id}/", {"active": "0"})
    bo.refresh_from_db()
    assert bo.role == Role.VIEWER and not bo.is_active
    # An admin cannot demote or disable themselves.
    me = get_user_model().objects.get(username="user-admin")
    admin.post(f"/settings/users/{me.id}/", {"role": "viewer"})
    admin.post(f"/settings/users/{me.id}/", {"active": "0"})
    me.refresh_from_db()
    assert me.role == Role.ADMIN and me.is_active


def test_a_read_key_needs_a_user_and_an_ingest_key_a_project(login_mode: None) -> None:
    admin = signed_in(Role.ADMIN)
    assert admin.post("/settings/keys/", {"kind": "read"}).status_code == 400
    assert admin.post("/settings/keys/", {"kind": "ingest", "project": ""}).status_code == 400
    assert not ApiKey.objects.exists()


# Commands


def test_adduser_takes_the_password_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-pass-9\n"))
    call_command("adduser", "cy", "--role", "member", "--password-stdin", stdout=io.StringIO())
    cy = get_user_model().objects.get(username="cy")
    assert cy.role == Role.MEMBER and cy.check_password("a-long-pass-9")


def test_apikey_creates_lists_and_revokes() -> None:
    make_user("dee")
    out = io.StringIO()
    call_command(
        "apikey", "create", "--project", "p1", "--name", "ci", stdout=out, stderr=io.StringIO()
    )
    ingest = out.getvalue().strip().splitlines()[-1]
    assert keys.find_key(ingest, ApiKey.Kind.INGEST).project == "p1"
    out = io.StringIO()
    call_command("apikey", "create", "--user", "dee", stdout=out, stderr=io.StringIO())
    read = out.getvalue().strip().splitlines()[-1]
    assert keys.find_key(read, ApiKey.Kind.READ).user.username == "dee"
    listing = io.StringIO()
    call_command("apikey", "list", stdout=listing)
    assert "project p1" in listing.getvalue() and "user dee" in listing.getvalue()
    assert ingest not in listing.getvalue() and read not in listing.getvalue()
    key = ApiKey.objects.get(project="p1")
    call_command("apikey", "revoke", key.prefix, stdout=io.StringIO())
    assert keys.find_key(ingest, ApiKey.Kind.INGEST) is None
    assert keys.find_key(read, ApiKey.Kind.READ) is not None


def test_runstudio_turns_sign_in_on_for_a_public_host_unless_told(settings: Any) -> None:
    from django.core.management.base import CommandError

    from studio.management.commands.runstudio import Command

    settings.STUDIO_AUTH_SET, settings.STUDIO_AUTH = False, "none"
    Command().check_auth("0.0.0.0", insecure=False)
    assert settings.STUDIO_AUTH == "login"
    Command().check_auth("127.0.0.1", insecure=False)
    assert settings.STUDIO_AUTH == "none"

    settings.STUDIO_AUTH_SET, settings.STUDIO_AUTH = True, "none"
    with pytest.raises(CommandError, match="--insecure") as refused:
        Command().check_auth("0.0.0.0", insecure=False)
    assert refused.value.returncode == 2
    err = io.StringIO()
    Command(stderr=err).check_auth("0.0.0.0", insecure=True)
    assert settings.STUDIO_AUTH == "none" and "WARNING: sign-in is off" in err.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_live_socket_stops_once_its_read_key_is_revoked(login_mode: None) -> None:
    from tests.test_live import commit, has, receive_until, spans, subscribe

    key, raw = keys.create_key(ApiKey.Kind.READ, user=make_user("watcher", Role.VIEWER))
    headers = [(b"authorization", f"Bearer {raw}".encode())]

    async def main() -> None:
        socket = WebsocketCommunicator("/ws/traces/", headers=headers)
        assert await socket.connect() == "websocket.accept"
        await subscribe(socket)
        await commit(spans(901))
        await receive_until(socket, has("trace-row"))
        await sync_to_async(keys.revoke)(key)
        await commit(spans(902))
        # The next push finds the key gone: the socket closes instead of sending the row.
        message = await socket.app.receive_output(10)
        while message["type"] == "websocket.send":
            assert f"{902:032x}" not in message["text"]
            message = await socket.app.receive_output(10)
        assert message == {"type": "websocket.close", "code": 4001}

    async_to_sync(main)()
    keys._lookups.submit(lambda: connection.close()).result()


def test_a_key_lookup_the_database_cannot_answer_is_a_503_not_a_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db import OperationalError

    from ingest import grpc as ingest_grpc

    def unavailable(raw: str) -> str | None:
        raise OperationalError("the database system is starting up")

    monkeypatch.setattr(keys, "_ingest_key_project", unavailable)
    response = Client().post(
        "/v1/traces", b"{}", content_type="application/json", headers={"X-API-Key": "studio_x"}
    )
    assert response.status_code == 503 and response["Retry-After"]

    class Context:
        code = None

        def invocation_metadata(self) -> list[tuple[str, str]]:
            return [("authorization", "Bearer studio_x")]

        def abort(self, code: Any, details: str) -> None:
            self.code = code
            raise RuntimeError(details)

    context = Context()
    with pytest.raises(RuntimeError):
        ingest_grpc.export(b"", context)
    assert context.code == ingest_grpc.grpc.StatusCode.UNAVAILABLE
