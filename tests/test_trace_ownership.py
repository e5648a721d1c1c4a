"""A trace belongs to one project: an ingest key of another project cannot add spans to it
(ingest/ownership.py). In the writer, with races, and against a real runstudio with sign-in on,
attacked as an outsider holding a key of their own project would."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
import requests
from django.db import connection
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from ingest import otlp, writer
from ingest.otlp import SpanRecord
from tests.conftest import StudioServer, export_one_span, fixture_bytes, start_studio
from tests.test_keys_e2e import manage
from tracing.models import Span, Trace

AGENTSCOPE_TRACE = "ad27a918a7ce11d08dc80c6ec77cd536"


def keyed(records: list[SpanRecord], project: str | None) -> list[SpanRecord]:
    """Copies of `records` as a request with `project`'s key (None: no key) makes them."""
    batch = otlp.Batch(records=[replace(record) for record in records])
    batch.set_project(project)
    return batch.records


def agentscope(project: str | None) -> list[SpanRecord]:
    records = otlp.decode_protobuf(fixture_bytes("agentscope-1.0.21-react-agent.pb")).records
    return keyed(records, project)


def forged(trace_id: str, span_id: str, project: str | None, **changes: Any) -> SpanRecord:
    """An attacker's span: `trace_id` is another project's trace."""
    template = agentscope(project)[0]
    return replace(template, trace_id=trace_id, span_id=span_id, **changes)


@pytest.mark.django_db
def test_a_key_cannot_add_spans_to_another_projects_trace() -> None:
    writer.write_batch(agentscope("team-b"))
    before = Trace.objects.values().get(trace_id=AGENTSCOPE_TRACE)
    assert before["project"] == "team-b"
    root = next(r for r in agentscope("team-b") if not r.parent_span_id)

    attack = [
        forged(AGENTSCOPE_TRACE, "a" * 16, "team-a", name="injected", parent_span_id=""),
        # A root of the same id, whose answer would become B's output preview.
        replace(
            root,
            project="team-a",
            attributes_json='{"gen_ai.output.messages": "[{\\"role\\": \\"assistant\\", '
            '\\"parts\\": [{\\"type\\": \\"text\\", \\"content\\": \\"pwned\\"}]}]"}',
        ),
        # The attacker's own new trace, in the same request: stored.
        forged("f" * 32, "b" * 16, "team-a"),
    ]
    writer.write_batch(attack)

    assert [r.refused for r in attack] == [True, True, False]
    assert not Span.objects.filter(trace_id=AGENTSCOPE_TRACE, project="team-a").exists()
    assert Trace.objects.values().get(trace_id=AGENTSCOPE_TRACE) == before
    assert Trace.objects.get(trace_id="f" * 32).project == "team-a"

    batch = otlp.Batch()
    batch.count_refused(writer.refused_in(attack))
    assert batch.rejected == 2
    assert "belongs to another project" in batch.error_message
    assert "team-b" not in batch.error_message  # another key's business


@pytest.mark.django_db
def test_a_request_whose_every_span_is_refused_is_answered_not_failed() -> None:
    # PostgreSQL's insert of no rows had no result to read: the request failed with a 500.
    writer.write_batch(agentscope("team-b"))
    before = Trace.objects.values().get(trace_id=AGENTSCOPE_TRACE)
    attack = [
        forged(AGENTSCOPE_TRACE, "a" * 16, "team-a"),
        forged(AGENTSCOPE_TRACE, "b" * 16, "team-a"),
    ]

    assert writer.write_batch(attack) == {AGENTSCOPE_TRACE}

    assert [r.refused for r in attack] == [True, True]
    assert Trace.objects.values().get(trace_id=AGENTSCOPE_TRACE) == before


@pytest.mark.django_db
def test_the_owning_key_and_keyless_senders_still_add_spans() -> None:
    records = agentscope("team-b")
    writer.write_batch(records[:3])
    writer.write_batch(records[3:])  # the same key, later: appended
    assert Trace.objects.get(trace_id=AGENTSCOPE_TRACE).span_count == 9
    # Without a key (STUDIO_AUTH=none) nothing guards a project, as before: spans join any trace.
    keyless = forged(AGENTSCOPE_TRACE, "c" * 16, None)
    writer.write_batch([keyless])
    assert not keyless.refused
    assert Trace.objects.get(trace_id=AGENTSCOPE_TRACE).span_count == 10


@pytest.mark.django_db
def test_two_keys_creating_a_trace_in_one_commit_leave_it_to_the_root() -> None:
    records = agentscope("team-b")
    children = keyed([r for r in records if r.parent_span_id], "team-a")
    roots = [r for r in records if not r.parent_span_id]
    writer.write_batch(children + roots)  # one group commit of two requests
    assert Trace.objects.get(trace_id=AGENTSCOPE_TRACE).project == "team-b"
    assert all(r.refused for r in children)
    assert set(
        Span.objects.filter(trace_id=AGENTSCOPE_TRACE).values_list("project", flat=True)
    ) == {"team-b"}


@pytest.mark.django_db
def test_a_retried_commit_decides_afresh() -> None:
    record = forged("e" * 32, "d" * 16, "team-a")
    record.refused = True  # as a failed attempt against another state might have left it
    writer.write_batch([record])
    assert not record.refused
    assert Span.objects.filter(trace_id="e" * 32).count() == 1


def _create(trace_id: str, project: str, barrier: threading.Barrier) -> list[SpanRecord]:
    records = [
        forged(trace_id, f"{project[-1]}{i:015x}", project, parent_span_id="") for i in range(20)
    ]

    def write() -> None:
        try:
            barrier.wait(5)
            writer.write_batch(records)
        finally:
            connection.close()

    thread = threading.Thread(target=write)
    thread.start()
    _threads.append(thread)
    return records


_threads: list[threading.Thread] = []


@pytest.mark.django_db(transaction=True)
def test_two_keys_racing_to_create_one_trace_never_share_it() -> None:
    """Two writers (two processes, on PostgreSQL) create the same trace with keys of different
    projects at the same moment: one owns it, the other's spans are all refused."""
    rounds = 12 if connection.vendor == "postgresql" else 4
    for n in range(rounds):
        trace_id = f"{n:032x}"
        barrier = threading.Barrier(2)
        sent = {project: _create(trace_id, project, barrier) for project in ("team-a", "team-b")}
        while _threads:
            _threads.pop().join()
        owner = Trace.objects.get(trace_id=trace_id).project
        stored = set(Span.objects.filter(trace_id=trace_id).values_list("project", flat=True))
        assert stored == {owner}
        loser = "team-a" if owner == "team-b" else "team-b"
        assert all(r.refused for r in sent[loser])
        assert not any(r.refused for r in sent[owner])
        assert Trace.objects.get(trace_id=trace_id).span_count == 20


@pytest.mark.django_db
def test_another_projects_trace_naming_a_run_is_not_on_the_runs_page(client: Any) -> None:
    from django.utils import timezone

    from runs.models import Run

    run = Run.objects.create(
        id="run-b", project="team-b", name="bee-run", started_at=timezone.now()
    )
    own = forged("1" * 32, "1" * 16, "team-b", conversation_id="run-b", parent_span_id="")
    alien = forged("2" * 32, "2" * 16, "team-a", conversation_id="run-b", parent_span_id="")
    writer.write_batch([own, alien])  # alien is the attacker's own new trace: stored, in A
    assert Trace.objects.get(trace_id="2" * 32).project == "team-a"
    detail = client.get(f"/api/runs/{run.id}/").json()
    assert detail["trace_ids"] == ["1" * 32]
    listed = client.get("/api/runs/").json()
    assert [r["trace_count"] for r in listed["results"] if r["id"] == "run-b"] == [1]
    assert "2" * 32 not in client.get(f"/runs/{run.id}/").content.decode()
    assert "bee-run" not in client.get(f"/traces/{'2' * 32}/").content.decode()
    assert "bee-run" in client.get(f"/traces/{'1' * 32}/").content.decode()


# ---------------------------------------------------------------------------------------------
# Against a real runstudio with sign-in on, as an outsider with a key of their own project.


@pytest.fixture(scope="module")
def two_teams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    server, cleanup = start_studio(tmp_path_factory.mktemp("teams"), {"STUDIO_AUTH": "login"})
    try:
        manage(
            server, "adduser", "reader", "--role", "viewer", "--password-stdin", stdin="pw-9x!\n"
        )
        yield {
            "server": server,
            "a": manage(server, "apikey", "create", "--project", "team-a"),
            "b": manage(server, "apikey", "create", "--project", "team-b"),
            "read": manage(server, "apikey", "create", "--user", "reader"),
        }
    finally:
        server.stop()
        cleanup()


def spans_of(teams: dict[str, Any], trace_id: str) -> dict[str, Any]:
    server: StudioServer = teams["server"]
    headers = {"Authorization": f"Bearer {teams['read']}"}
    deadline = time.monotonic() + 10
    while True:
        response = requests.get(f"{server.url}/api/traces/{trace_id}/", headers=headers, timeout=30)
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200
            return response.json()
        time.sleep(0.05)


def victims_trace(teams: dict[str, Any]) -> str:
    """Team B's app sends a trace with the official HTTP exporter."""
    server: StudioServer = teams["server"]
    exporter = HttpExporter(
        endpoint=f"{server.url}/v1/traces", headers={"Authorization": f"Bearer {teams['b']}"}
    )
    trace_id = export_one_span(exporter, "victim", "b's agent")
    assert spans_of(teams, trace_id)["project"] == "team-b"
    return trace_id


def attack_with(exporter: Any, trace_id: str) -> None:
    """The attacker's own app, under their key, continues the victim's trace id."""
    provider = TracerProvider(resource=Resource.create({"service.name": "attacker"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    parent = otel_trace.NonRecordingSpan(
        otel_trace.SpanContext(
            trace_id=int(trace_id, 16),
            span_id=random.getrandbits(64),
            is_remote=True,
            trace_flags=otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED),
        )
    )
    ctx = otel_trace.set_span_in_context(parent, otel_context.Context())
    with provider.get_tracer("t").start_as_current_span("ignore previous instructions", ctx):
        pass
    provider.shutdown()


def forged_body(trace_id: str) -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for n, target in enumerate([trace_id, f"{random.getrandbits(128):032x}"]):
        span = scope.spans.add()
        span.trace_id = bytes.fromhex(target)
        span.span_id = random.getrandbits(64).to_bytes(8, "big")
        span.name = f"forged {n}"
        span.start_time_unix_nano = time.time_ns()
        span.end_time_unix_nano = span.start_time_unix_nano + 1000
    return request.SerializeToString()


@pytest.mark.server
@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_an_outsiders_exporter_cannot_add_to_another_projects_trace(
    two_teams: dict[str, Any], transport: str
) -> None:
    server: StudioServer = two_teams["server"]
    trace_id = victims_trace(two_teams)
    header = {"authorization": f"Bearer {two_teams['a']}"}
    if transport == "http":
        exporter: Any = HttpExporter(endpoint=f"{server.url}/v1/traces", headers=header)
    else:
        exporter = GrpcExporter(endpoint=server.grpc_endpoint, insecure=True, headers=header)
    attack_with(exporter, trace_id)
    spans = spans_of(two_teams, trace_id)["spans"]
    assert [span["name"] for span in spans] == ["b's agent"]


@pytest.mark.server
def test_http_answers_partial_success_naming_the_refused_spans(two_teams: dict[str, Any]) -> None:
    server: StudioServer = two_teams["server"]
    trace_id = victims_trace(two_teams)
    response = requests.post(
        f"{server.url}/v1/traces",
        data=forged_body(trace_id),
        headers={"Content-Type": otlp.PROTOBUF, "Authorization": f"Bearer {two_teams['a']}"},
        timeout=30,
    )
    assert response.status_code == 200
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert f"trace {trace_id} belongs to another project" in answer.partial_success.error_message
    assert "team-b" not in answer.partial_success.error_message
    assert [span["name"] for span in spans_of(two_teams, trace_id)["spans"]] == ["b's agent"]


@pytest.mark.server
def test_grpc_answers_partial_success_too(two_teams: dict[str, Any]) -> None:
    server: StudioServer = two_teams["server"]
    trace_id = victims_trace(two_teams)
    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
        )
        answer = export(
            forged_body(trace_id),
            metadata=[("authorization", f"Bearer {two_teams['a']}")],
            timeout=30,
        )
    assert answer.partial_success.rejected_spans == 1
    assert "belongs to another project" in answer.partial_success.error_message
    assert [span["name"] for span in spans_of(two_teams, trace_id)["spans"]] == ["b's agent"]
