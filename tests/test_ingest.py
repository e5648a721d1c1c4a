"""End to end against a real `runstudio`: official OTel exporters, raw OTLP bodies, bad input."""

from __future__ import annotations

import functools
import gzip
import json
import random
import socket
import threading
from collections.abc import Iterator

import grpc
import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tests.conftest import StudioServer, fixture_bytes

pytestmark = pytest.mark.server

PB = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def new_trace_id() -> str:
    return f"{random.getrandbits(128):032x}"


def emit_agent_trace(provider: TracerProvider, name: str = "run") -> str:
    """An agent span with an LLM call and a failing tool; returns the trace id."""
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span(f"invoke_agent {name}") as root:
        root.set_attribute("gen_ai.operation.name", "invoke_agent")
        root.set_attribute("gen_ai.agent.name", name)
        with tracer.start_as_current_span("chat gpt-4o") as chat:
            chat.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 10,
                    "gen_ai.usage.output_tokens": 4,
                    "score": 0.5,
                    "tags": ["a", "b"],
                }
            )
        with tracer.start_as_current_span("execute_tool lookup") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_status(Status(StatusCode.ERROR, "lookup failed"))
    return f"{root.get_span_context().trace_id:032x}"


@pytest.fixture
def provider_factory() -> Iterator:
    providers: list[TracerProvider] = []

    def make(exporter: object, batch: bool = False) -> TracerProvider:
        provider = TracerProvider(resource=Resource.create({"service.name": "e2e"}))
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)  # type: ignore[arg-type]
        provider.add_span_processor(processor)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        provider.shutdown()


@pytest.mark.parametrize(
    ("path", "compression"),
    [
        ("/v1/traces", HttpCompression.NoCompression),
        ("/v1/traces", HttpCompression.Gzip),
        ("/", HttpCompression.NoCompression),
        ("/", HttpCompression.Gzip),
    ],
)
def test_the_official_http_exporter_delivers_every_span(
    studio_server: StudioServer, provider_factory, path: str, compression: HttpCompression
) -> None:
    exporter = HttpExporter(endpoint=f"{studio_server.url}{path}", compression=compression)
    provider = provider_factory(exporter, batch=True)
    trace_id = emit_agent_trace(provider)
    assert provider.force_flush(10_000)
    trace = studio_server.wait_for_trace(trace_id, 3)
    assert trace["name"] == "invoke_agent run"
    assert trace["service_name"] == "e2e"
    assert (trace["span_count"], trace["error_count"], trace["status"]) == (3, 1, "ERROR")
    assert (trace["input_tokens"], trace["output_tokens"]) == (10, 4)
    chat = next(s for s in trace["spans"] if s["name"] == "chat gpt-4o")
    assert chat["attributes"]["score"] == 0.5 and chat["attributes"]["tags"] == ["a", "b"]
    assert chat["attributes"]["gen_ai.usage.input_tokens"] == 10
    assert chat["kind"] == "INTERNAL" and chat["operation"] == "chat"
    assert chat["scope"]["name"] == "tests"
    assert chat["resource"]["attributes"]["service.name"] == "e2e"


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
def test_the_official_grpc_exporter_delivers_every_span(
    studio_server: StudioServer, provider_factory, compression: grpc.Compression
) -> None:
    exporter = GrpcExporter(
        endpoint=studio_server.grpc_endpoint, insecure=True, compression=compression
    )
    provider = provider_factory(exporter)
    trace_id = emit_agent_trace(provider, "grpc")
    trace = studio_server.wait_for_trace(trace_id, 3)
    assert trace["name"] == "invoke_agent grpc"
    assert trace["error_count"] == 1


def test_otlp_json_bodies_are_stored_and_answered_in_json(studio_server: StudioServer) -> None:
    body = fixture_bytes("agentscope-2.0.10-agent.otlp.json")
    response = requests.post(f"{studio_server.url}/v1/traces", data=body, headers=JSON, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {}
    trace_id = json.loads(body)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
    trace = studio_server.trace(trace_id)
    assert trace["name"] == "invoke_agent Librarian"
    assert trace["span_count"] == 4


def test_a_gzip_body_of_two_members_stores_the_spans_of_both(studio_server: StudioServer) -> None:
    # pigz and streaming compressors write several gzip members; each carries a part of one
    # protobuf body, and protobuf merges the parts' repeated fields into one request.
    trace_id = new_trace_id()
    parts = []
    for part in range(2):
        request = trace_service_pb2.ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add()
        span.trace_id = bytes.fromhex(trace_id)
        span.span_id = (part + 1).to_bytes(8, "big")
        span.name = f"member {part}"
        span.start_time_unix_nano = span.end_time_unix_nano = 1_700_000_000_000_000_000
        parts.append(gzip.compress(request.SerializeToString()))
    response = requests.post(
        f"{studio_server.url}/v1/traces",
        data=b"".join(parts),
        headers={**PB, "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 200
    names = sorted(s["name"] for s in studio_server.trace(trace_id)["spans"])
    assert names == ["member 0", "member 1"]


def test_children_before_parents_across_requests_converge(studio_server: StudioServer) -> None:
    # The SDK's SimpleSpanProcessor sends children first, one request each.
    bodies = [fixture_bytes(f"otel-sdk-http-{i}.pb") for i in range(3)]
    trace_id = None
    for index, body in enumerate(bodies):
        response = requests.post(
            f"{studio_server.url}/v1/traces", data=body, headers=PB, timeout=10
        )
        assert response.status_code == 200
        if index == 0:
            from ingest.otlp import decode_protobuf

            trace_id = decode_protobuf(body).records[0].trace_id
            before_root = studio_server.trace(trace_id)
            # Until the root arrives, the earliest span names the trace.
            assert before_root["name"] == "chat gpt-4o"
    assert trace_id is not None
    trace = studio_server.trace(trace_id)
    assert trace["name"] == "invoke_agent Planner"
    assert trace["span_count"] == 3
    assert [s["parent_span_id"] is None for s in trace["spans"]].count(True) == 1


def test_the_same_batch_twice_stores_it_once(studio_server: StudioServer) -> None:
    body = fixture_bytes("agentscope-1.0.21-react-agent.pb")
    for _ in range(2):
        response = requests.post(
            f"{studio_server.url}/v1/traces", data=body, headers=PB, timeout=10
        )
        assert response.status_code == 200
    trace = studio_server.trace("ad27a918a7ce11d08dc80c6ec77cd536")
    assert trace["span_count"] == 9 and len(trace["spans"]) == 9
    assert (trace["input_tokens"], trace["output_tokens"]) == (126, 27)


def test_eight_concurrent_senders_lose_and_duplicate_nothing(studio_server: StudioServer) -> None:

    trace_ids = [new_trace_id() for _ in range(8)]
    errors: list[BaseException] = []

    def send(trace_id: str, use_grpc: bool) -> None:
        try:
            channel = grpc.insecure_channel(studio_server.grpc_endpoint) if use_grpc else None
            for request_no in range(10):
                request = trace_service_pb2.ExportTraceServiceRequest()
                scope_spans = request.resource_spans.add().scope_spans.add()
                for n in range(25):
                    span = scope_spans.spans.add()
                    span.trace_id = bytes.fromhex(trace_id)
                    span.span_id = (request_no * 100 + n + 1).to_bytes(8, "big")
                    span.name = f"span {request_no}.{n}"
                    span.start_time_unix_nano = 1_700_000_000_000_000_000 + request_no * 1000 + n
                    span.end_time_unix_nano = span.start_time_unix_nano + 10
                if channel is not None:
                    trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=30)
                else:
                    response = requests.post(
                        f"{studio_server.url}/v1/traces",
                        data=request.SerializeToString(),
                        headers=PB,
                        timeout=30,
                    )
                    assert response.status_code == 200, response.text
            if channel is not None:
                channel.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=send, args=(tid, i % 2 == 1)) for i, tid in enumerate(trace_ids)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for trace_id in trace_ids:
        trace = studio_server.trace(trace_id)
        assert trace["span_count"] == 250
        assert len({s["span_id"] for s in trace["spans"]}) == 250


def test_bad_span_ids_beside_good_spans_get_partial_success(studio_server: StudioServer) -> None:
    trace_id = new_trace_id()
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": "1" * 16,
                                "name": "good",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000000000001",
                            },
                            {
                                "traceId": trace_id,
                                "spanId": "0" * 16,
                                "name": "zero",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000000000001",
                            },
                            {
                                "traceId": trace_id[:10],
                                "spanId": "2" * 16,
                                "name": "short",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000000000001",
                            },
                        ]
                    }
                ]
            }
        ]
    }
    response = requests.post(f"{studio_server.url}/v1/traces", json=body, timeout=10)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "'zero'" in partial["errorMessage"] and "'short'" in partial["errorMessage"]
    assert [s["name"] for s in studio_server.trace(trace_id)["spans"]] == ["good"]


# 80 MB of zeros, past the default 64 MB limit once inflated; made only when the test runs.
GZIP_BOMB = b"<gzip bomb>"


@functools.cache
def gzip_bomb() -> bytes:
    return gzip.compress(b"\0" * (80 * 1024 * 1024))


def count_traces(server: StudioServer) -> int:
    return server.api("/api/traces/", limit=1)["count"]


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        (PB, b"\x0a\xff\xff\xff\xff\x0f garbage", 400),
        ({"Content-Type": "text/plain"}, b"hello", 415),
        ({"Content-Type": "application/xml"}, b"<a/>", 415),
        (JSON, b'{"resourceSpans": [', 400),
        (JSON, b'{"resourceSpans": {"not": "a list"}}', 400),
        (JSON, b"[1, 2, 3]", 400),
        ({**PB, "Content-Encoding": "gzip"}, b"\x1f\x8b\x08\x00corrupt", 400),
        ({**PB, "Content-Encoding": "br"}, b"whatever", 415),
        ({**PB, "Content-Encoding": "gzip"}, GZIP_BOMB, 413),
        ({**PB, "Content-Encoding": "gzip"}, gzip.compress(b"") + b"not a gzip member", 400),
        (JSON, b'{"\\ud800": 1}', 400),
    ],
    ids=[
        "garbage-protobuf",
        "text-plain",
        "xml",
        "broken-json",
        "wrong-shape-json",
        "json-array",
        "corrupt-gzip",
        "brotli",
        "gzip-bomb",
        "garbage-after-gzip",
        "json-lone-surrogate",
    ],
)
def test_bad_input_gets_its_status_and_stores_nothing(
    studio_server: StudioServer, headers: dict, body: bytes, status: int
) -> None:
    before = count_traces(studio_server)
    if body is GZIP_BOMB:
        body = gzip_bomb()
    response = requests.post(
        f"{studio_server.url}/v1/traces", data=body, headers=headers, timeout=30
    )
    assert response.status_code == status, response.text
    assert response.content  # a google.rpc.Status explaining why
    assert count_traces(studio_server) == before
    assert requests.get(f"{studio_server.url}/healthz", timeout=5).status_code == 200


def test_error_bodies_are_a_status_in_the_request_encoding(studio_server: StudioServer) -> None:
    from google.rpc import status_pb2

    response = requests.post(
        f"{studio_server.url}/v1/traces", data=b"\xff\xff", headers=PB, timeout=10
    )
    assert response.status_code == 400
    assert "protobuf" in status_pb2.Status.FromString(response.content).message
    response = requests.post(f"{studio_server.url}/v1/traces", data=b"{", headers=JSON, timeout=10)
    assert "not valid JSON" in response.json()["message"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_methods_get_405(studio_server: StudioServer, method: str) -> None:
    response = requests.request(method, f"{studio_server.url}/v1/traces", timeout=10)
    assert response.status_code == 405


def test_a_body_over_the_limit_gets_413(fresh_studio) -> None:
    server = fresh_studio(STUDIO_MAX_BODY_BYTES="2048")
    response = requests.post(f"{server.url}/v1/traces", data=b"\0" * 4096, headers=PB, timeout=10)
    assert response.status_code == 413
    response = requests.post(
        f"{server.url}/v1/traces",
        data=gzip.compress(b"\0" * 4096),
        headers={**PB, "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 413


def test_grpc_rejects_garbage_with_invalid_argument(studio_server: StudioServer) -> None:
    with grpc.insecure_channel(studio_server.grpc_endpoint) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as failure:
            export(b"\x0a\xff\xff\xff\xff\x0f garbage", timeout=10)
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_reports_partial_success(studio_server: StudioServer) -> None:
    request = trace_service_pb2.ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    good, bad = spans.add(), spans.add()
    trace_id = new_trace_id()
    for span, span_id in ((good, b"\x01" * 8), (bad, b"\x00" * 8)):
        span.trace_id = bytes.fromhex(trace_id)
        span.span_id = span_id
        span.name = "g"
        span.start_time_unix_nano = span.end_time_unix_nano = 1_700_000_000_000_000_000
    with grpc.insecure_channel(studio_server.grpc_endpoint) as channel:
        response = trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10)
    assert response.partial_success.rejected_spans == 1
    assert studio_server.trace(trace_id)["span_count"] == 1


def test_an_announced_body_over_the_limit_is_refused_before_it_is_read(
    studio_server: StudioServer,
) -> None:
    with socket.create_connection(("127.0.0.1", studio_server.port), timeout=10) as conn:
        conn.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/x-protobuf\r\n"
            b"Content-Length: 10000000000\r\n\r\n"
        )
        reply = conn.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def test_a_chunked_body_over_the_limit_gets_413(fresh_studio) -> None:
    server = fresh_studio(STUDIO_MAX_BODY_BYTES="4096")

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"\0" * 1024

    response = requests.post(f"{server.url}/v1/traces", data=chunks(), headers=PB, timeout=30)
    assert response.status_code == 413
