"""The real agentscope 1.0.21 application against a `runstudio` with STUDIO_AUTH=login, changed
only in its `studio_url`: `http://studio:<key>@127.0.0.1:<port>`. Its registration, messages,
traces and Socket.IO connection all carry the key (requests sends URL credentials as HTTP Basic,
the Socket.IO client's long-polling handshake included); the run lands in the key's project.
A wrong key: registerRun gets 401, the application stops, and nothing is stored."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.agentscope_support import App, running_apps, wait_for
from tests.conftest import StudioServer, start_studio
from tests.test_keys_e2e import manage

pytest.importorskip("agentscope", minversion="1.0.21")

pytestmark = pytest.mark.server

PROJECT = "team-a"


def secured_studio(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A signed-in Studio with an ingest key for PROJECT, a read key and a member, made with the
    management commands as an operator makes them."""
    server, cleanup = start_studio(tmp_path, {"STUDIO_AUTH": "login"})
    try:
        users = (("mia", "member", "pw-mia-9!"), ("reader", "viewer", "pw-reader-9!"))
        for name, role, password in users:
            password_in = password + "\n"
            manage(server, "adduser", name, "--role", role, "--password-stdin", stdin=password_in)
        yield {
            "server": server,
            "ingest": manage(server, "apikey", "create", "--project", PROJECT, "--name", "app"),
            "read": manage(server, "apikey", "create", "--user", "reader"),
            "member": ("mia", "pw-mia-9!"),
        }
    finally:
        server.stop()
        cleanup()


def keyed_url(server: StudioServer, key: str) -> str:
    return f"http://studio:{key}@127.0.0.1:{server.port}"


def read(secured: dict[str, Any], path: str) -> requests.Response:
    server: StudioServer = secured["server"]
    return requests.get(
        f"{server.url}{path}", headers={"Authorization": f"Bearer {secured['read']}"}, timeout=30
    )


def finished_run_with_traces(secured: dict[str, Any], run_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        response = read(secured, f"/api/runs/{run_id}/")
        run = response.json() if response.status_code == 200 else None
        return run if run and run["trace_ids"] and run["status"] == "finished" else None

    return wait_for(check, "the run to finish with its traces")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield from secured_studio(tmp_path_factory.mktemp("login"))


@pytest.fixture
def app(secured: dict[str, Any]) -> Iterator[Callable[..., App]]:
    yield from running_apps(secured["server"])


def assert_the_react_run_is_the_keys(secured: dict[str, Any], run_id: str) -> None:
    run = finished_run_with_traces(secured, run_id)
    assert (run["project"], run["app_project"], run["name"]) == (PROJECT, "studio-tests", "react")
    assert [m["name"] for m in run["messages"]] == ["Treasurer", "system", "Treasurer"]
    (trace_id,) = run["trace_ids"]
    trace = read(secured, f"/api/traces/{trace_id}/").json()
    assert trace["conversation_id"] == run_id and len(trace["spans"]) >= 3
    listed = read(secured, "/api/runs/?project=" + PROJECT).json()["results"]
    assert run_id in [each["id"] for each in listed]


def test_the_app_with_its_key_in_the_url_lands_in_the_keys_project(
    secured: dict[str, Any], app: Callable[..., App]
) -> None:
    agent = app("react", url=keyed_url(secured["server"], secured["ingest"]))
    assert agent.wait() == 0, "".join(agent.output)
    assert_the_react_run_is_the_keys(secured, agent.json_line("run_id")["run_id"])


def test_the_key_may_stay_out_of_the_url_in_a_netrc_file(
    secured: dict[str, Any], app: Callable[..., App], tmp_path: Path
) -> None:
    # agentscope logs its studio_url ("View the run at: ..."): requests, which makes every one
    # of its calls, also reads credentials for a host from ~/.netrc (or $NETRC).
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login studio password {secured['ingest']}\n")
    netrc.chmod(0o600)
    agent = app("react", env={"NETRC": str(netrc)})
    assert agent.wait() == 0, "".join(agent.output)
    assert secured["ingest"] not in "".join(agent.output)
    assert_the_react_run_is_the_keys(secured, agent.json_line("run_id")["run_id"])


@pytest.mark.parametrize("key", ["studio_wrong", "revoked", None])
def test_a_wrong_key_stops_the_app_at_registration_and_stores_nothing(
    secured: dict[str, Any], app: Callable[..., App], key: str | None
) -> None:
    server: StudioServer = secured["server"]
    if key == "revoked":
        key = manage(server, "apikey", "create", "--project", PROJECT)
        manage(server, "apikey", "revoke", key[:12])
    before = read(secured, "/api/runs/").json()["count"]
    traces_before = read(secured, "/api/traces/").json()["count"]
    agent = app("react", url=keyed_url(server, key) if key else server.url)
    assert agent.wait() != 0
    output = "".join(agent.output)
    assert "401" in output and "/trpc/registerRun" in output, output
    assert read(secured, "/api/runs/").json()["count"] == before
    assert read(secured, "/api/traces/").json()["count"] == traces_before


def test_a_socket_without_the_key_is_refused(secured: dict[str, Any]) -> None:
    import socketio

    server: StudioServer = secured["server"]
    run_id = f"bare-{os.getpid()}"
    registered = requests.post(
        f"{keyed_url(server, secured['ingest'])}/trpc/registerRun",
        json={"id": run_id, "project": "p", "name": "bare"},
        timeout=10,
    )
    assert registered.status_code == 200
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(server.url, namespaces=["/python"], auth={"run_id": run_id}, wait_timeout=5)
    client.disconnect()
    # The same client with the key in its URL, as agentscope's StudioUserInput connects.
    keyed = socketio.Client(reconnection=False)
    keyed.connect(
        keyed_url(server, secured["ingest"]), namespaces=["/python"], auth={"run_id": run_id}
    )
    try:
        wait_for(
            lambda: read(secured, f"/api/runs/{run_id}/").json()["connected"], "the connection"
        )
    finally:
        keyed.disconnect()
