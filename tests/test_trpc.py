"""The AgentScope Studio calls besides traces: `/trpc/registerRun`, `/trpc/pushMessage`,
`/trpc/requestUserInput`, replayed from a real agentscope 1.0.21 application's requests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from runs.models import RUN_RUNNING, Message, Run, UserInputRequest
from tests.conftest import FIXTURES

RUN_ID = "Tfqf3ZKfi6yWWzkT5QXsgg"


def captured_requests() -> list[dict[str, Any]]:
    lines = (FIXTURES / "agentscope-1.0.21-studio-requests.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def post(client: Client, path: str, body: Any) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


@pytest.fixture
def replayed(db: None, client: Client) -> None:
    for request in captured_requests():
        if "path" in request:
            response = post(client, request["path"], request["json"])
            assert response.status_code == 200, response.content


def test_it_registers_a_run_as_the_client_sends_it(replayed: None) -> None:
    run = Run.objects.get()
    assert (run.id, run.project, run.name, run.status, run.pid) == (
        RUN_ID,
        "fixtures",
        "capture",
        RUN_RUNNING,
        17757,
    )
    assert run.client_timestamp == "2026-11-21 23:32:26.384"
    assert run.started_at is not None and run.finished_at is None


def test_it_stores_every_pushed_message_in_order(replayed: None) -> None:
    rows = list(Message.objects.order_by("id"))
    assert [(m.name, m.role) for m in rows] == [
        ("Treasurer", "assistant"),
        ("system", "system"),
        ("Treasurer", "assistant"),
        ("system", "system"),
        ("Treasurer", "assistant"),
    ]
    first = rows[0]
    assert first.msg_id == "bvdZcuprzKseFFc55xMdE8"
    assert first.reply_id == "Ws8SyiKmDQDcnMozjgGyPg" and first.reply_role == "assistant"
    assert first.content[1] == {
        "type": "tool_use",
        "id": "call_fx1",
        "name": "convert",
        "input": {"amount": 120, "src": "EUR", "dst": "JPY"},
    }
    assert rows[-1].content == [{"type": "text", "text": "120 EUR is about 19,500 JPY."}]


def test_streamed_chunks_update_one_message(db: None, client: Client) -> None:
    post(client, "/trpc/registerRun", {"id": "r1", "project": "p", "name": "n"})
    for text in ("12", "120 EUR", "120 EUR is about 19,500 JPY."):
        body = {
            "runId": "r1",
            "replyId": "reply",
            "replyName": "Treasurer",
            "replyRole": "assistant",
            "msg": {
                "id": "m1",
                "name": "Treasurer",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
                "metadata": {},
                "timestamp": "2026-11-21 23:32:28.438",
            },
        }
        assert post(client, "/trpc/pushMessage", body).json() == {"result": {"data": {"id": "m1"}}}
    message = Message.objects.get()
    assert message.content == [{"type": "text", "text": "120 EUR is about 19,500 JPY."}]


def test_it_answers_in_trpc_shape(db: None, client: Client) -> None:
    response = post(client, "/trpc/registerRun", {"id": "r2", "project": "p", "name": "n"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"result": {"data": {"id": "r2", "status": "running"}}}


def test_re_registering_a_run_id_makes_it_running_again(db: None, client: Client) -> None:
    post(client, "/trpc/registerRun", {"id": "r3", "project": "p", "name": "first"})
    Run.objects.filter(id="r3").update(finished_at=timezone.now())
    post(client, "/trpc/registerRun", {"id": "r3", "project": "p", "name": "second"})
    run = Run.objects.get(id="r3")
    assert (run.name, run.status, run.finished_at) == ("second", RUN_RUNNING, None)


def test_messages_of_an_unknown_run_are_kept_under_a_bare_run(db: None, client: Client) -> None:
    body = {"runId": "ghost", "msg": {"id": "m", "name": "a", "role": "user", "content": "hi"}}
    assert post(client, "/trpc/pushMessage", body).status_code == 200
    assert Run.objects.get(id="ghost").messages.get().content == "hi"


def test_it_stores_a_user_input_request(db: None, client: Client) -> None:
    post(client, "/trpc/registerRun", {"id": "r4", "project": "p", "name": "n"})
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    body = {
        "requestId": "q1",
        "runId": "r4",
        "agentId": "a1",
        "agentName": "Alice",
        "structuredInput": schema,
    }
    response = post(client, "/trpc/requestUserInput", body)
    assert response.json() == {"result": {"data": {"requestId": "q1"}}}
    request = UserInputRequest.objects.get()
    assert (request.run_id, request.agent_name, request.structured_schema) == (
        "r4",
        "Alice",
        schema,
    )
    assert request.is_pending


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/trpc/registerRun", b"{not json", "the body is not JSON"),
        ("/trpc/registerRun", b"[1, 2]", "the body must be a JSON object"),
        ("/trpc/registerRun", b"\xff\xfe", "the body is not JSON"),
        ("/trpc/registerRun", {"project": "p", "name": "n"}, "id is required"),
        ("/trpc/registerRun", {"id": "", "project": "p", "name": "n"}, "id must be 1 to 64"),
        ("/trpc/registerRun", {"id": "x" * 65, "project": "p", "name": "n"}, "id must be 1 to 64"),
        ("/trpc/registerRun", {"id": 7, "project": "p", "name": "n"}, "id must be a string"),
        ("/trpc/registerRun", {"id": "r", "name": "n"}, "project is required"),
        ("/trpc/registerRun", {"id": "r", "project": "p", "name": "n", "pid": "1"}, "pid must"),
        ("/trpc/pushMessage", {"runId": "r"}, "msg is required"),
        ("/trpc/pushMessage", {"runId": "r", "msg": []}, "msg is required"),
        (
            "/trpc/pushMessage",
            {"runId": "r", "msg": {"name": "a", "role": "user", "content": "x"}},
            "msg.id is required",
        ),
        (
            "/trpc/pushMessage",
            {"runId": "r", "msg": {"id": "m", "name": "a", "role": "user", "content": 3}},
            "msg.content must be a string or a list",
        ),
        (
            "/trpc/pushMessage",
            {"msg": {"id": "m", "name": "a", "role": "user", "content": "x"}},
            "runId is required",
        ),
        ("/trpc/requestUserInput", {"runId": "r"}, "requestId is required"),
        (
            "/trpc/requestUserInput",
            {"requestId": "q", "runId": "r", "structuredInput": "a string"},
            "structuredInput must be",
        ),
    ],
)
def test_it_rejects_malformed_calls(
    db: None, client: Client, path: str, body: Any, message: str
) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body)
    response = client.post(path, data, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BAD_REQUEST" and message in error["message"]
    assert not Run.objects.exists()


@pytest.mark.parametrize("path", ["/trpc/registerRun", "/trpc/pushMessage"])
def test_it_only_accepts_post(db: None, client: Client, path: str) -> None:
    assert client.get(path).status_code == 405


def test_it_needs_no_csrf_token(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    response = post(client, "/trpc/registerRun", {"id": "r5", "project": "p", "name": "n"})
    assert response.status_code == 200
