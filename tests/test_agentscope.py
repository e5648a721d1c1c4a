"""A real, unmodified AgentScope 1.0.x application against a running Studio with `studio_url`:
registration, Socket.IO, printed messages, traces linked to the run, and a person's answer sent
from the run page through the real Socket.IO connection."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.agentscope_support import App, pending_request, run_of, running_apps, wait_for
from tests.conftest import StudioServer

pytest.importorskip("agentscope", minversion="1.0")
socketio = pytest.importorskip("socketio")

pytestmark = pytest.mark.server


@pytest.fixture
def app(studio_server: StudioServer) -> Iterator[Callable[[str], App]]:
    yield from running_apps(studio_server)


def test_a_react_agent_runs_unchanged_against_studio(
    studio_server: StudioServer, app: Callable[[str], App]
) -> None:
    agent = app("react")
    assert agent.wait() == 0, "".join(agent.output)
    run_id = agent.json_line("run_id")["run_id"]

    # The exporter flushes at exit and the socket closes: both arrive shortly after.
    run = wait_for(
        lambda: (
            (r := run_of(studio_server, run_id))["trace_ids"] and r["status"] == "finished" and r
        ),
        "the run to finish with its trace",
    )
    assert (run["project"], run["name"]) == ("studio-tests", "react")
    assert run["pid"] == agent.process.pid
    # Streamed chunks of one message are one message, with the final content.
    assert [(m["name"], m["role"]) for m in run["messages"]] == [
        ("Treasurer", "assistant"),
        ("system", "system"),
        ("Treasurer", "assistant"),
    ]
    first, result, final = (m["content"] for m in run["messages"])
    assert first[0] == {"type": "text", "text": "I will convert the currency."}
    assert first[1]["type"] == "tool_use" and first[1]["name"] == "convert"
    assert result[0]["output"] == [{"type": "text", "text": "120 EUR = 19500 JPY"}]
    assert final == [{"type": "text", "text": "120 EUR is about 19,500 JPY."}]

    (trace_id,) = run["trace_ids"]
    trace = studio_server.trace(trace_id)
    assert trace["name"] == "invoke_agent Treasurer"
    assert trace["conversation_id"] == run_id
    # The run's traces take its project, and the project's home lists them.
    assert trace["project"] == "studio-tests"
    listed = studio_server.api("/api/traces/", project="studio-tests")["results"]
    assert trace_id in {t["trace_id"] for t in listed}
    assert run["models"][0]["model"] == "scripted-model" and run["models"][0]["calls"] == 2
    assert run["total_tokens"] == 36 and run["trace_count"] == 1

    page = requests.get(f"{studio_server.url}/runs/{run_id}/", timeout=10).text
    assert "120 EUR is about 19,500 JPY." in page and f"/traces/{trace_id}/" in page
    listing = requests.get(f"{studio_server.url}/runs/", timeout=10).text
    assert f"/runs/{run_id}/" in listing


def answer_from_the_run_page(
    studio: StudioServer, run_id: str, request_id: str, **fields: str
) -> None:
    session = requests.Session()
    page = session.get(f"{studio.url}/runs/{run_id}/", timeout=10).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, "the run page shows no answer form"
    action = f"/runs/{run_id}/input/{request_id}/"
    assert f'action="{action}"' in page
    response = session.post(
        f"{studio.url}{action}",
        data={"csrfmiddlewaretoken": token.group(1), **fields},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text


def test_a_user_agent_is_answered_from_the_run_page(
    studio_server: StudioServer, app: Callable[[str], App]
) -> None:
    user = app("user")
    run_id = user.json_line("run_id")["run_id"]
    request = wait_for(lambda: pending_request(studio_server, run_id), "the input request")
    assert request["agent_name"] == "Alice" and request["structured_input"] is None
    assert run_of(studio_server, run_id)["connected"] is True

    answer_from_the_run_page(studio_server, run_id, request["request_id"], text="Kyoto, please")

    assert user.json_line("answer") == {"answer": "Kyoto, please"}
    assert user.wait() == 0
    run = wait_for(
        lambda: (r := run_of(studio_server, run_id))["status"] == "finished" and r,
        "the run to finish",
    )
    assert [(m["name"], m["reply_role"], m["content"]) for m in run["messages"]] == [
        ("Alice", "user", "Kyoto, please")
    ]
    assert run["input_requests"][0]["answer"] == "Kyoto, please"


def test_a_run_whose_application_dies_is_finished(
    studio_server: StudioServer, app: Callable[[str], App]
) -> None:
    user = app("user")
    run_id = user.json_line("run_id")["run_id"]
    wait_for(lambda: pending_request(studio_server, run_id), "the input request")
    assert run_of(studio_server, run_id)["status"] == "running"

    user.process.send_signal(signal.SIGKILL)
    user.process.wait()
    run = wait_for(
        lambda: (r := run_of(studio_server, run_id))["status"] == "finished" and r,
        "the run to be marked finished",
    )
    assert run["connected"] is False and run["finished_at"] is not None
    # Its unanswered request stays visible, but the page says it cannot be answered any more.
    page = requests.get(f"{studio_server.url}/runs/{run_id}/", timeout=10).text
    assert "not connected to Studio any more" in page


def test_a_socket_that_disconnects_finishes_its_run(studio_server: StudioServer) -> None:
    run_id = f"sock-{time.monotonic_ns()}"
    registered = requests.post(
        f"{studio_server.url}/trpc/registerRun",
        json={"id": run_id, "project": "studio-tests", "name": "socket", "pid": 1},
        timeout=10,
    )
    assert registered.status_code == 200
    client = socketio.Client(reconnection=False)
    client.connect(studio_server.url, namespaces=["/python"], auth={"run_id": run_id})
    try:
        assert wait_for(lambda: run_of(studio_server, run_id)["connected"], "the connection")
        assert run_of(studio_server, run_id)["status"] == "running"
    finally:
        client.disconnect()
    wait_for(lambda: run_of(studio_server, run_id)["status"] == "finished", "the run to finish")


def test_a_socket_without_a_run_id_is_refused(studio_server: StudioServer) -> None:
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(studio_server.url, namespaces=["/python"], auth={}, wait_timeout=5)
    client.disconnect()


def test_other_websockets_still_reach_channels(studio_server: StudioServer) -> None:
    from websockets.sync.client import connect

    # Mounted in front of Channels, python-socketio takes only /socket.io/.
    with connect(f"ws://127.0.0.1:{studio_server.port}/ws/traces/", open_timeout=10) as ws:
        assert ws.protocol.state.name == "OPEN"
