"""Run pages, the conversation view and the runs API, on real payloads stored in-process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from ingest import otlp, writer
from runs import sockets, views, writes
from runs.models import RUN_FINISHED, RUN_RUNNING, Run, UserInputRequest
from studio.filters import TraceFilter
from tests.conftest import fixture_bytes
from tracing.models import Trace

# The run id the agentscope 1.0.21 fixture's spans carry (JSON-quoted) as conversation id.
RUN_ID = "FBR8Y7LSqV7pXo8fzTZ8TV"
TRACE_ID = "ad27a918a7ce11d08dc80c6ec77cd536"
CONVERSATION_2X = "c2ff82069e9843a9b95320ad8f326e79"


def push(run_id: str, msg_id: str, name: str, role: str, content: Any) -> None:
    writes.push_message(
        writes.PushedMessage(
            run_id=run_id, msg_id=msg_id, name=name, role=role, content=content, metadata={}
        )
    )


@pytest.fixture
def run(db: None) -> Run:
    run = writes.register_run(run_id=RUN_ID, project="fixtures", name="capture", pid=42)
    writer.write_batch(
        otlp.decode_protobuf(fixture_bytes("agentscope-1.0.21-react-agent.pb")).records
    )
    push(RUN_ID, "m1", "Treasurer", "assistant", [
        {"type": "text", "text": "I will convert the currency."},
        {"type": "tool_use", "id": "c1", "name": "convert", "input": {"amount": 120}},
    ])  # fmt: skip
    push(RUN_ID, "m2", "system", "system", [
        {"type": "tool_result", "id": "c1", "name": "convert",
         "output": [{"type": "text", "text": "120 EUR = 19500 JPY"}]},
    ])  # fmt: skip
    push(RUN_ID, "m3", "Treasurer", "assistant", "<b>120 EUR</b> is about 19,500 JPY.")
    return run


@pytest.fixture
def connected() -> Iterator[list[tuple[str, str, str, Any]]]:
    """Pretends the run's socket is connected, and records what would be emitted on it."""
    emitted: list[tuple[str, str, str, Any]] = []

    async def forward(run_id: str, request_id: str, text: str, structured: Any) -> bool:
        emitted.append((run_id, request_id, text, structured))
        return True

    assert sockets.registry.claim(RUN_ID, "sid-1")
    original = sockets.forward_user_input
    sockets.forward_user_input = forward  # type: ignore[assignment]
    yield emitted
    sockets.forward_user_input = original  # type: ignore[assignment]
    sockets.registry.release(RUN_ID, "sid-1")


def test_the_run_list_shows_runs_newest_first_with_their_totals(
    client: Client, run: Run, django_assert_num_queries: Any
) -> None:
    writes.register_run(run_id="later", project="other", name="second run")
    with django_assert_num_queries(3):  # page count, the page, the projects
        response = client.get("/runs/")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.index("second run") < html.index("capture")
    page_runs = list(response.context["page"].object_list)
    assert [(r.id, r.trace_count, r.token_count) for r in page_runs] == [
        ("later", 0, 0),
        (RUN_ID, 1, 153),
    ]
    assert 'href="/runs/FBR8Y7LSqV7pXo8fzTZ8TV/"' in html
    assert 'hx-trigger="every 3s"' in html


def test_the_run_list_filters_by_project(client: Client, run: Run) -> None:
    writes.register_run(run_id="later", project="other", name="second run")
    html = client.get("/runs/", {"project": "other"}).content.decode()
    assert "second run" in html and ">capture<" not in html


def test_the_run_list_polls_only_its_table(client: Client, run: Run) -> None:
    response = client.get("/runs/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="run-table"')
    assert "<html" not in html


def test_an_empty_run_list_says_how_to_get_runs(client: Client, db: None) -> None:
    html = client.get("/runs/").content.decode()
    assert "No runs yet" in html and "agentscope.init(" in html


def test_the_agentscope_project_link_leads_to_its_runs(client: Client, db: None) -> None:
    # What AgentScope prints (no slash) lands on the project's home, which links to its runs.
    response = client.get("/projects/my%20project")
    assert response.status_code == 302 and response["Location"] == "/projects/my%20project/"
    html = client.get(response["Location"]).content.decode()
    assert 'href="/runs/?project=my%20project"' in html


def test_the_run_page_shows_the_transcript_beside_the_traces(
    client: Client, run: Run, django_assert_num_queries: Any
) -> None:
    # run, messages, traces, model usage, pending input requests
    with django_assert_num_queries(5):
        response = client.get(f"/runs/{RUN_ID}/")
    html = response.content.decode()
    assert "I will convert the currency." in html
    assert "120 EUR = 19500 JPY" in html
    assert "&lt;b&gt;120 EUR&lt;/b&gt;" in html and "<b>120 EUR</b>" not in html
    assert f'href="/traces/{TRACE_ID}/"' in html
    assert f'href="/conversations/{RUN_ID}/"' in html
    assert f'href="/traces/?run={RUN_ID}"' in html
    usage = response.context["usage"]
    assert [(u.model, u.calls, u.input_tokens, u.output_tokens) for u in usage] == [
        ("qwen-max", 3, 126, 27)
    ]
    assert 'hx-trigger="every 2s"' in html  # running: the live region polls


def test_a_finished_run_page_stops_polling(client: Client, run: Run) -> None:
    writes.mark_finished(RUN_ID)
    html = client.get(f"/runs/{RUN_ID}/").content.decode()
    assert "every 2s" not in html and "finished" in html


def test_the_run_page_polls_its_live_region(client: Client, run: Run) -> None:
    response = client.get(f"/runs/{RUN_ID}/", {"fragment": "live"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="run-live"') and "I will convert" in html


def test_the_input_region_polls_without_the_transcript(
    client: Client, run: Run, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(2):  # the run, its pending input requests
        response = client.get(
            f"/runs/{RUN_ID}/", {"fragment": "input"}, headers={"HX-Request": "true"}
        )
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="run-input"') and "I will convert" not in html


def test_the_run_page_shows_only_the_newest_traces(
    client: Client, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "RUN_TRACES_SHOWN", 1)
    later = Trace.objects.get(trace_id=TRACE_ID)
    later.trace_id, later.name, later.start_ns = "f" * 32, "the later turn", later.start_ns + 1
    later.save(force_insert=True)
    response = client.get(f"/runs/{RUN_ID}/")
    html = response.content.decode()
    assert [t.trace_id for t in response.context["traces"]] == ["f" * 32]
    assert "2 traces" in html and "3 messages" in html
    assert "Only the newest 1 of 2 traces are shown" in html


def test_an_unknown_run_is_404(client: Client, db: None) -> None:
    assert client.get("/runs/nope/").status_code == 404
    assert client.get("/api/runs/nope/").status_code == 404


def test_a_pending_input_request_shows_a_form(client: Client, run: Run) -> None:
    writes.request_user_input(
        request_id="q1", run_id=RUN_ID, agent_id="a", agent_name="Alice", structured_schema=None
    )
    html = client.get(f"/runs/{RUN_ID}/").content.decode()
    assert "Alice is waiting for your input" in html
    assert f'action="/runs/{RUN_ID}/input/q1/"' in html
    assert 'name="text"' in html
    # Not connected (no socket in this process): the answer could not reach the agent.
    assert "not connected" in html


def test_answering_emits_to_the_runs_socket(client: Client, run: Run, connected: list[Any]) -> None:
    writes.request_user_input(
        request_id="q1", run_id=RUN_ID, agent_id="a", agent_name="Alice", structured_schema=None
    )
    response = client.post(f"/runs/{RUN_ID}/input/q1/", {"text": "Hello there"})
    assert response.status_code == 302 and response["Location"] == f"/runs/{RUN_ID}/"
    assert connected == [(RUN_ID, "q1", "Hello there", None)]
    request = UserInputRequest.objects.get()
    assert request.answer_text == "Hello there" and not request.is_pending
    # A second submission (another tab) is not sent again.
    client.post(f"/runs/{RUN_ID}/input/q1/", {"text": "again"})
    assert len(connected) == 1


def test_an_empty_answer_is_refused(client: Client, run: Run, connected: list[Any]) -> None:
    writes.request_user_input(
        request_id="q1", run_id=RUN_ID, agent_id="a", agent_name="Alice", structured_schema=None
    )
    response = client.post(f"/runs/{RUN_ID}/input/q1/", {"text": ""})
    assert response.status_code == 400 and connected == []
    assert "This field is required." in response.content.decode()


def test_an_answer_to_a_disconnected_run_is_refused(client: Client, run: Run) -> None:
    writes.request_user_input(
        request_id="q1", run_id=RUN_ID, agent_id="a", agent_name="Alice", structured_schema=None
    )
    response = client.post(f"/runs/{RUN_ID}/input/q1/", {"text": "hi"})
    assert response.status_code == 409
    assert UserInputRequest.objects.get().is_pending


def test_the_answer_form_needs_a_csrf_token(run: Run) -> None:
    writes.request_user_input(
        request_id="q1", run_id=RUN_ID, agent_id="a", agent_name="Alice", structured_schema=None
    )
    response = Client(enforce_csrf_checks=True).post(f"/runs/{RUN_ID}/input/q1/", {"text": "x"})
    assert response.status_code == 403


# What pydantic's model_json_schema() gives for a model with an enum, a bool and an optional int.
SCHEMA = {
    "$defs": {"Size": {"enum": ["small", "large"], "title": "Size", "type": "string"}},
    "properties": {
        "city": {"description": "Where to", "title": "City", "type": "string"},
        "size": {"$ref": "#/$defs/Size"},
        "nights": {
            "anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}],
            "default": None,
            "title": "Nights",
        },
        "breakfast": {"default": False, "title": "Breakfast", "type": "boolean"},
        "extras": {"type": "object", "title": "Extras"},
    },
    "required": ["city", "size"],
    "title": "Booking",
    "type": "object",
}


def test_structured_input_is_a_form_of_its_schema(
    client: Client, run: Run, connected: list[Any]
) -> None:
    writes.request_user_input(
        request_id="q2", run_id=RUN_ID, agent_id="a", agent_name="Alice", structured_schema=SCHEMA
    )
    html = client.get(f"/runs/{RUN_ID}/").content.decode()
    for name in ("field__city", "field__size", "field__nights", "field__breakfast"):
        assert f'name="{name}"' in html
    assert "Where to" in html and ">large</option>" in html

    bad = client.post(f"/runs/{RUN_ID}/input/q2/", {"field__size": '"huge"', "field__nights": "0"})
    assert bad.status_code == 400 and connected == []

    response = client.post(
        f"/runs/{RUN_ID}/input/q2/",
        {
            "text": "",
            "field__city": "Kyoto",
            "field__size": '"large"',
            "field__nights": "3",
            "field__breakfast": "on",
            "field__extras": '{"view": "garden"}',
        },
    )
    assert response.status_code == 302
    assert connected == [
        (
            RUN_ID,
            "q2",
            "",
            {
                "city": "Kyoto",
                "size": "large",
                "nights": 3,
                "breakfast": True,
                "extras": {"view": "garden"},
            },
        )
    ]


def test_the_api_lists_runs(client: Client, run: Run) -> None:
    body = client.get("/api/runs/").json()
    assert body["count"] == 1
    (item,) = body["results"]
    assert item["id"] == RUN_ID and item["status"] == RUN_RUNNING
    assert (item["project"], item["name"], item["pid"]) == ("fixtures", "capture", 42)
    assert (item["trace_count"], item["total_tokens"]) == (1, 153)
    assert item["started_at"].endswith("Z") and item["finished_at"] is None
    assert client.get("/api/runs/", {"project": "nope"}).json()["count"] == 0
    assert client.get("/api/runs/", {"status": "finished"}).json()["count"] == 0
    assert client.get("/api/runs/", {"status": "bogus"}).status_code == 400


def test_the_api_gives_a_run_with_its_traces_and_messages(client: Client, run: Run) -> None:
    body = client.get(f"/api/runs/{RUN_ID}/").json()
    assert body["trace_ids"] == [TRACE_ID]
    assert [m["id"] for m in body["messages"]] == ["m1", "m2", "m3"]
    assert body["messages"][2]["content"] == "<b>120 EUR</b> is about 19,500 JPY."
    assert body["models"] == [
        {
            "model": "qwen-max",
            "calls": 3,
            "input_tokens": 126,
            "output_tokens": 27,
            "duration_ms": pytest.approx(body["models"][0]["duration_ms"]),
            "cost_usd": pytest.approx(body["models"][0]["cost_usd"]),
            "unpriced_calls": 0,
        }
    ]
    assert body["connected"] is False and body["input_requests"] == []


def test_the_conversation_view_shows_each_turn(
    client: Client, db: None, django_assert_num_queries: Any
) -> None:
    writer.write_batch(otlp.decode_protobuf(fixture_bytes("agentscope-2.0.10-agent.pb")).records)
    # traces, root spans, model usage, the run of that id
    with django_assert_num_queries(4):
        response = client.get(f"/conversations/{CONVERSATION_2X}/")
    html = response.content.decode()
    assert response.status_code == 200
    (turn,) = response.context["turns"]
    assert turn.user_input == "Where can I find Dune?"
    assert turn.answer == "Dune is on shelf B-12."
    assert "Where can I find Dune?" in html and "Dune is on shelf B-12." in html
    assert f'href="/traces/{turn.trace.trace_id}/"' in html


def test_a_runs_conversation_links_back_to_the_run(client: Client, run: Run) -> None:
    response = client.get(f"/conversations/{RUN_ID}/")
    (turn,) = response.context["turns"]
    assert (turn.user_input, turn.answer) == (
        "How much is 120 EUR in JPY?",
        "120 EUR is about 19,500 JPY.",
    )
    assert f'href="/runs/{RUN_ID}/"' in response.content.decode()


def test_an_unknown_conversation_is_404(client: Client, db: None) -> None:
    assert client.get("/conversations/nothing-here/").status_code == 404


def test_socket_events_track_the_runs_status(db: None) -> None:
    writes.register_run(run_id="r1", project="p", name="n")
    writes.mark_finished("r1")
    writes.mark_connected("r1")  # a reconnect after a restart
    assert Run.objects.get(id="r1").status == RUN_RUNNING
    writes.mark_finished("r1")
    run = Run.objects.get(id="r1")
    assert run.status == RUN_FINISHED and run.finished_at is not None


def test_a_restarted_studio_finishes_runs_left_running(db: None) -> None:
    writes.register_run(run_id="r1", project="p", name="n")
    writes.register_run(run_id="r2", project="p", name="n")
    writes.mark_finished("r2")
    assert writes.finish_orphaned_runs(sockets.live_runs) == 1
    assert {run.status for run in Run.objects.all()} == {RUN_FINISHED}


def test_a_restarting_studio_leaves_runs_another_process_holds_running(db: None) -> None:
    writes.register_run(run_id="r1", project="p", name="n")
    writes.register_run(run_id="r2", project="p", name="n")
    assert writes.finish_orphaned_runs(lambda run_ids: {"r2"} & set(run_ids)) == 1
    assert Run.objects.get(id="r1").status == RUN_FINISHED
    assert Run.objects.get(id="r2").status == RUN_RUNNING


def test_messages_render_every_block_kind(client: Client, run: Run) -> None:
    push(RUN_ID, "m4", "Treasurer", "assistant", [
        {"type": "thinking", "thinking": "Let me think"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "mystery", "payload": {"x": 1}},
    ])  # fmt: skip
    html = client.get(f"/runs/{RUN_ID}/").content.decode()
    assert "Let me think" in html
    assert 'href="https://example.com/a.png"' in html
    assert "mystery" in html and "&quot;payload&quot;" in html


def test_the_trace_page_links_to_its_run_and_conversation(client: Client, run: Run) -> None:
    html = client.get(f"/traces/{TRACE_ID}/").content.decode()
    assert f'href="/runs/{RUN_ID}/"' in html
    assert f'href="/conversations/{RUN_ID}/"' in html


def test_a_trace_of_no_run_links_to_no_run(client: Client, db: None) -> None:
    writer.write_batch(otlp.decode_protobuf(fixture_bytes("agentscope-2.0.10-agent.pb")).records)
    trace_id = client.get("/api/traces/").json()["results"][0]["trace_id"]
    html = client.get(f"/traces/{trace_id}/").content.decode()
    assert f'href="/conversations/{CONVERSATION_2X}/"' in html
    assert f'href="/runs/{CONVERSATION_2X}/"' not in html


@pytest.mark.parametrize("param", ["run", "conversation"])
def test_the_overview_filters_by_run_and_conversation(client: Client, run: Run, param: str) -> None:
    writer.write_batch(otlp.decode_protobuf(fixture_bytes("agentscope-2.0.10-agent.pb")).records)
    trace_filter = TraceFilter.from_query({param: RUN_ID})
    assert [t.trace_id for t in trace_filter.traces()] == [TRACE_ID]
    assert trace_filter.url() == f"/traces/?conversation={RUN_ID}"
    assert client.get("/traces/", {param: RUN_ID}).status_code == 200


def test_the_conversation_page_highlights_traces_as_its_breadcrumb_says(
    client: Client, run: Run
) -> None:
    html = client.get(f"/conversations/{RUN_ID}/").content.decode()
    assert '<a href="/traces/" aria-current="page">Traces</a>' in html
    assert '<a href="/runs/" aria-current="page">' not in html


@pytest.mark.parametrize(
    ("project", "path"),
    [
        ("fixtures", "/projects/fixtures"),
        ("my project", "/projects/my%20project"),
        ("Ünïcødé 项目", "/projects/%C3%9Cn%C3%AFc%C3%B8d%C3%A9%20%E9%A1%B9%E7%9B%AE"),
        ("team/app", "/projects/team/app"),
        ("my project", "/projects/my%20project/"),
    ],
)
def test_the_link_agentscope_prints_shows_that_projects_runs(
    client: Client, db: None, project: str, path: str
) -> None:
    # agentscope logs "View the run at: {studio_url}/projects/{project}", no trailing slash.
    writes.register_run(run_id="mine", project=project, name="the run of this project")
    writes.register_run(run_id="other", project="elsewhere", name="another project's run")
    # It lands on the project's home (its overview), whose link leads to the project's runs.
    response = client.get(path, follow=True)
    assert response.status_code == 200
    assert response.request["PATH_INFO"].startswith("/projects/")
    assert response.context["filter"].project == project
    runs_link = re.search(r'class="project-runs" href="([^"]+)"', response.content.decode())
    assert runs_link and runs_link[1].startswith("/runs/?project=")
    html = client.get(runs_link[1]).content.decode()
    assert "the run of this project" in html and "another project's run" not in html


@pytest.mark.parametrize("bad", ["a/b", "a\nb", "../x", "..", "a b", "a?b", "a#b", "x" * 65, ""])
def test_run_ids_with_unsafe_characters_are_refused(client: Client, db: None, bad: str) -> None:
    for path, body in [
        ("/trpc/registerRun", {"id": bad, "project": "p", "name": "n"}),
        ("/trpc/pushMessage", {"runId": bad, "msg": {"id": "m", "name": "a", "role": "user",
                                                     "content": "hi"}}),
        ("/trpc/requestUserInput", {"requestId": "q", "runId": bad, "agentId": "a"}),
        ("/trpc/requestUserInput", {"requestId": bad, "runId": "r", "agentId": "a"}),
    ]:  # fmt: skip
        response = client.post(path, body, content_type="application/json")
        assert response.status_code == 400, path
        assert "letters, digits" in response.json()["error"]["message"]
    assert not Run.objects.exists()


def test_a_socket_with_an_unsafe_run_id_is_refused(db: None) -> None:
    import asyncio

    import socketio

    with pytest.raises(socketio.exceptions.ConnectionRefusedError):
        asyncio.run(sockets.connect("sid-x", {}, {"run_id": "a/b"}))
    assert not Run.objects.exists()


@pytest.mark.parametrize("run_id", ["a/b", "a\nb", "with space", "100%", "x/input/y"])
def test_a_stored_run_id_of_any_shape_breaks_no_page(client: Client, db: None, run_id: str) -> None:
    # Runs stored before ids were checked (or by another client) still list and open.
    writes.register_run(run_id=run_id, project="p", name="odd")
    writes.request_user_input(
        request_id="q1", run_id=run_id, agent_id="a", agent_name="User", structured_schema=None
    )
    listing = client.get("/runs/")
    assert listing.status_code == 200
    (link,) = re.findall(r'href="(/runs/[^"?]+/)"', listing.content.decode())
    detail = client.get(link)
    assert detail.status_code == 200 and detail.context["run"].id == run_id
    (action,) = re.findall(r'action="(/runs/[^"]+/input/[^"]+/)"', detail.content.decode())
    # Not connected: the answer reaches the view of that run and request, which says so.
    assert client.post(action, {"text": "hi"}).status_code == 409


def test_a_conversation_id_of_any_shape_breaks_no_page(client: Client, db: None) -> None:
    from tests.test_trace_page import TRACE, payload, span, store

    conversation = 'line one\nline two / "quoted" %20 #frag?x=1'
    store(payload([span("0000000000000001", "chat", attributes={
        "gen_ai.conversation.id": conversation})]))  # fmt: skip
    trace_page = client.get(f"/traces/{TRACE}/")
    assert trace_page.status_code == 200
    html = trace_page.content.decode()
    href = html.split('<dt>Conversation</dt><dd><a href="', 1)[1].split('"', 1)[0]
    assert "\n" not in href
    response = client.get(href.replace("&amp;", "&"))
    assert response.status_code == 200 and response.context["conversation_id"] == conversation


def test_studio_tracing_and_ingest_never_import_runs() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    offenders = []
    for package in ("studio", "tracing", "ingest"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom) and not node.level
                    else []
                )
                if any(name == "runs" or name.startswith("runs.") for name in names):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []


def test_runstudio_serving_finishes_the_runs_the_last_studio_left_running(db: None) -> None:
    from studio import extensions
    from tracing import search

    writes.register_run(run_id="r1", project="p", name="n")
    # Without the search indexer's receiver: it would start an indexing thread in the test
    # process for the tests after this one (which count index rows, or memory).
    extensions.serving.disconnect(dispatch_uid="studio.search_indexer")
    try:
        extensions.serving.send(sender=None)
    finally:
        extensions.serving.connect(search.indexer.start, dispatch_uid="studio.search_indexer")
    assert Run.objects.get(id="r1").status == RUN_FINISHED
