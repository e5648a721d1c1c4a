"""Issue 10's keys on the AgentScope paths, in process: `/trpc/*` and the application side of
Socket.IO take ingest keys with STUDIO_AUTH=login, runs land in the key's project, and viewers
are not shown the controls that would answer them 403. The real agentscope application drives
the same paths end to end in tests/test_agentscope_keys_e2e.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import socketio
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import Client

from accounts import keys
from accounts.models import ApiKey, Role
from runs import sockets
from runs.models import Message, Run, UserInputRequest
from tests.test_accounts import make_user, signed_in
from tracing.models import Trace

pytestmark = pytest.mark.django_db

REGISTER = {"id": "run-k1", "project": "studio-tests", "name": "keyed", "pid": 7}
MESSAGE = {
    "runId": "run-k1",
    "replyId": "r1",
    "replyName": "Friday",
    "replyRole": "assistant",
    "msg": {"id": "m1", "name": "Friday", "role": "assistant", "content": "hi", "metadata": {}},
}
INPUT = {"requestId": "req-k1", "runId": "run-k1", "agentId": "a", "agentName": "Alice"}


@pytest.fixture
def login_mode(settings: Any) -> None:
    settings.STUDIO_AUTH = "login"


def ingest_key(project: str = "team-a") -> tuple[ApiKey, str]:
    return keys.create_key(ApiKey.Kind.INGEST, project=project)


def post(path: str, body: dict[str, Any], **headers: str) -> Any:
    return Client().post(
        f"/trpc/{path}", json.dumps(body), content_type="application/json", headers=headers
    )


def register(run_id: str, raw: str) -> int:
    return post("registerRun", {**REGISTER, "id": run_id}, **{"X-API-Key": raw}).status_code


def basic(raw: str) -> str:
    return "Basic " + base64.b64encode(f"studio:{raw}".encode()).decode()


# /trpc


@pytest.mark.parametrize("form", ["bearer", "x-api-key", "basic"])
def test_each_form_of_the_key_registers_the_run_in_the_keys_project(
    login_mode: None, form: str
) -> None:
    _, raw = ingest_key()
    headers = {
        "bearer": {"Authorization": f"Bearer {raw}"},
        "x-api-key": {"X-API-Key": raw},
        "basic": {"Authorization": basic(raw)},
    }[form]
    response = post("registerRun", REGISTER, **headers)
    assert response.status_code == 200, response.content
    run = Run.objects.get(id="run-k1")
    # The key's project is the one it is good for; the application's name stays visible.
    assert (run.project, run.app_project) == ("team-a", "studio-tests")
    assert post("pushMessage", MESSAGE, **headers).status_code == 200
    assert post("requestUserInput", INPUT, **headers).status_code == 200
    assert Message.objects.get(run=run).name == "Friday"
    assert UserInputRequest.objects.get(run=run).agent_name == "Alice"
    api = signed_in(Role.VIEWER).get("/api/runs/run-k1/").json()
    assert (api["project"], api["app_project"]) == ("team-a", "studio-tests")
    member = signed_in(Role.MEMBER)
    page = member.get("/runs/run-k1/").content.decode()
    assert "the application calls it “studio-tests”" in page
    # agentscope prints "View the run at: {studio_url}/projects/{its project name}".
    assert member.get("/projects/studio-tests")["Location"] == "/projects/team-a/"


@pytest.mark.parametrize("key", [None, "studio_wrong", "revoked", "read"])
def test_without_a_good_ingest_key_trpc_is_401_and_stores_nothing(
    login_mode: None, key: str | None
) -> None:
    revoked, revoked_raw = ingest_key()
    keys.revoke(revoked)
    _, read = keys.create_key(ApiKey.Kind.READ, user=make_user("reader", Role.ADMIN))
    raw = {"revoked": revoked_raw, "read": read}.get(key or "", key)
    for path, body in (
        ("registerRun", REGISTER),
        ("pushMessage", MESSAGE),
        ("requestUserInput", INPUT),
    ):
        for headers in ({"X-API-Key": raw}, {"Authorization": basic(raw)}) if raw else ({},):
            response = post(path, body, **headers)
            assert response.status_code == 401, (path, headers)
            error = response.json()["error"]
            assert error["code"] == "UNAUTHORIZED" and error["message"], error
    assert not Run.objects.exists() and not Message.objects.exists()
    assert not UserInputRequest.objects.exists()


def test_a_signed_in_session_is_no_ingest_key(login_mode: None) -> None:
    client = signed_in(Role.ADMIN)
    response = client.post(
        "/trpc/registerRun", json.dumps(REGISTER), content_type="application/json"
    )
    assert response.status_code == 401 and not Run.objects.exists()


def test_a_wrong_key_outranks_a_wrong_content_type(login_mode: None) -> None:
    response = Client().post("/trpc/registerRun", "{}", content_type="text/plain")
    assert response.status_code == 401
    _, raw = ingest_key()
    response = Client().post(
        "/trpc/registerRun", "{}", content_type="text/plain", headers={"X-API-Key": raw}
    )
    assert response.status_code == 415


def test_a_key_cannot_write_to_another_projects_run(login_mode: None) -> None:
    _, mine = ingest_key("team-a")
    _, theirs = ingest_key("team-b")
    assert post("registerRun", REGISTER, **{"X-API-Key": mine}).status_code == 200
    assert post("pushMessage", MESSAGE, **{"X-API-Key": mine}).status_code == 200
    assert post("requestUserInput", INPUT, **{"X-API-Key": mine}).status_code == 200
    chunk = {**MESSAGE, "msg": {**MESSAGE["msg"], "content": "overwritten"}}
    other_run = {**INPUT, "runId": "run-b"}
    for path, body in (
        ("registerRun", {**REGISTER, "name": "taken over"}),
        ("pushMessage", chunk),
        ("pushMessage", {**chunk, "msg": {**chunk["msg"], "id": "m2"}}),
        ("requestUserInput", {**INPUT, "agentName": "Mallory"}),
        # Its own run, but another run's request id: that would move the request.
        ("requestUserInput", other_run),
    ):
        response = post(path, body, **{"X-API-Key": theirs})
        assert response.status_code == 403, (path, response.content)
        assert response.json()["error"]["code"] == "FORBIDDEN"
    run = Run.objects.get(id="run-k1")
    assert (run.project, run.name) == ("team-a", "keyed")
    assert [m.content for m in Message.objects.all()] == ["hi"]
    request = UserInputRequest.objects.get()
    assert (request.run_id, request.agent_name) == ("run-k1", "Alice")


def test_messages_for_a_run_never_registered_land_in_the_keys_project(login_mode: None) -> None:
    _, raw = ingest_key("team-c")
    assert post("pushMessage", MESSAGE, **{"X-API-Key": raw}).status_code == 200
    assert Run.objects.get(id="run-k1").project == "team-c"


def test_without_sign_in_the_applications_project_stands() -> None:
    assert post("registerRun", REGISTER).status_code == 200
    run = Run.objects.get(id="run-k1")
    assert (run.project, run.app_project) == ("studio-tests", "")
    # A valid key still names the project, as it does for traces.
    _, raw = ingest_key("team-d")
    assert register("run-k2", raw) == 200
    assert Run.objects.get(id="run-k2").project == "team-d"


# Socket.IO, the application's side


@pytest.fixture
def sockets_cleared() -> Iterator[None]:
    yield
    for sid in list(sockets._run_of_socket):
        async_to_sync(sockets.disconnect)(sid)
    # The key lookups' thread keeps its connection; PostgreSQL would not drop the test database.
    keys._lookups.submit(lambda: connection.close()).result()


def connect(run_id: str, *, sid: str = "sid-1", auth: dict | None = None, **environ: str) -> None:
    async_to_sync(sockets.connect)(sid, environ, {"run_id": run_id, **(auth or {})})


@pytest.mark.django_db(transaction=True)
def test_a_socket_without_a_good_key_is_refused(login_mode: None, sockets_cleared: None) -> None:
    revoked, revoked_raw = ingest_key()
    keys.revoke(revoked)
    Run.objects.create(id="run-s1", project="team-a", started_at="2026-01-01T00:00Z")
    for environ in (
        {},
        {"HTTP_AUTHORIZATION": basic("studio_wrong")},
        {"HTTP_X_API_KEY": revoked_raw},
    ):
        with pytest.raises(socketio.exceptions.ConnectionRefusedError):
            connect("run-s1", **environ)
    assert not sockets.is_connected("run-s1")


@pytest.mark.django_db(transaction=True)
def test_a_socket_with_the_runs_key_connects(login_mode: None, sockets_cleared: None) -> None:
    _, raw = ingest_key()
    assert register("run-s2", raw) == 200
    Run.objects.filter(id="run-s2").update(finished_at="2026-01-01T00:00Z")
    # What the agentscope client's handshake carries for http://studio:<key>@host.
    connect("run-s2", HTTP_AUTHORIZATION=basic(raw))
    assert sockets.is_connected("run-s2") and Run.objects.get(id="run-s2").is_running
    # A client that cannot send headers puts the key in its auth.
    assert register("run-s3", raw) == 200
    connect("run-s3", sid="sid-2", auth={"api_key": raw})
    assert sockets.is_connected("run-s3")


@pytest.mark.django_db(transaction=True)
def test_a_socket_cannot_claim_another_projects_run(
    login_mode: None, sockets_cleared: None
) -> None:
    _, mine = ingest_key("team-a")
    _, theirs = ingest_key("team-b")
    assert register("run-s4", mine) == 200
    with pytest.raises(socketio.exceptions.ConnectionRefusedError):
        connect("run-s4", HTTP_X_API_KEY=theirs)
    # The refusal left no claim behind: the run's own application still connects.
    assert not sockets.is_connected("run-s4")
    connect("run-s4", sid="sid-2", HTTP_X_API_KEY=mine)
    assert sockets.registry.socket_of("run-s4") == "sid-2"


@pytest.mark.django_db(transaction=True)
def test_without_sign_in_a_socket_needs_no_key(sockets_cleared: None) -> None:
    connect("run-s5")
    assert sockets.is_connected("run-s5")


def test_only_the_applications_namespace_is_served() -> None:
    # python-socketio accepts anyone on `/` unless told otherwise; no page of Studio uses it.
    assert sockets.sio.namespaces == [sockets.NAMESPACE]


# Viewers see no controls they would get 403 from


def pending_run() -> None:
    run = Run.objects.create(id="run-v", project="p", name="v", started_at="2026-01-01T00:00Z")
    UserInputRequest.objects.create(
        request_id="req-v", run=run, agent_name="Alice", created_at="2026-01-01T00:00Z"
    )


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MEMBER, Role.ADMIN])
def test_the_answer_form_is_for_members(login_mode: None, role: str) -> None:
    pending_run()
    client = signed_in(role)
    html = client.get("/runs/run-v/").content.decode()
    member = role != Role.VIEWER
    assert ('action="/runs/run-v/input/req-v/"' in html) is member
    assert ("Alice is waiting for input" in html) is not member
    assert ("your role, viewer, can only watch" in html) is not member
    fragment = client.get("/runs/run-v/", {"fragment": "input"}, headers={"HX-Request": "true"})
    assert ("<form" in fragment.content.decode()) is member


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MEMBER])
def test_the_delete_controls_are_for_members(login_mode: None, role: str) -> None:
    Trace.objects.create(trace_id="ab" * 16, name="t", start_ns=1, end_ns=2, duration_ns=1)
    html = signed_in(role).get("/traces/").content.decode()
    member = role == Role.MEMBER
    assert ('id="delete-selected"' in html) is member
    assert ('id="read-only-note"' in html) is not member
    assert ("trace-table-form read-only" in html) is not member


def test_without_sign_in_everyone_keeps_the_controls() -> None:
    pending_run()
    Trace.objects.create(trace_id="ab" * 16, name="t", start_ns=1, end_ns=2, duration_ns=1)
    assert 'id="delete-selected"' in Client().get("/traces/").content.decode()
    assert 'action="/runs/run-v/input/req-v/"' in Client().get("/runs/run-v/").content.decode()
