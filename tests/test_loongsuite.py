"""LoongSuite against Studio: the gRPC endpoint form that stores traces, and its ReAct step spans.

LoongSuite's guide runs `loongsuite-instrument --traces_exporter otlp --exporter_otlp_endpoint
host:4317 python app.py`. Like `opentelemetry-instrument`, it turns `--exporter_otlp_endpoint` into
OTEL_EXPORTER_OTLP_ENDPOINT and exports with the OpenTelemetry gRPC exporter, which is what the app
below runs, with the span shapes LoongSuite's instrumentations emit.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html import unescape

import pytest
import requests
from django.test import Client

from studio.runtime import runtime
from tests.conftest import ROOT, StudioServer
from tracing import conventions

APP = """
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

provider = TracerProvider(resource=Resource.create({"service.name": "loongsuite-app"}))
# No arguments: the endpoint comes from OTEL_EXPORTER_OTLP_ENDPOINT, as under loongsuite-instrument.
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
tracer = provider.get_tracer("loongsuite-instrumentation-agentscope")
agent_attributes = {
    "gen_ai.operation.name": "invoke_agent",
    "gen_ai.span.kind": "AGENT",
    "gen_ai.agent.name": "Friday",
}
with tracer.start_as_current_span("invoke_agent Friday", attributes=agent_attributes) as agent:
    for round_number, reason in ((1, "tool_call"), (2, "stop")):
        step_attributes = {
            "gen_ai.operation.name": "react",
            "gen_ai.span.kind": "STEP",
            "gen_ai.react.round": round_number,
            "gen_ai.react.finish_reason": reason,
        }
        with tracer.start_as_current_span("react step", attributes=step_attributes):
            chat_attributes = {
                "gen_ai.operation.name": "chat",
                "gen_ai.span.kind": "LLM",
                "gen_ai.request.model": "qwen-max",
            }
            with tracer.start_as_current_span("chat qwen-max", attributes=chat_attributes):
                pass
provider.shutdown()
print(format(agent.get_span_context().trace_id, "032x"))
"""


def run_app(studio: StudioServer, endpoint: str, **variables: str) -> tuple[str, str]:
    env = {**os.environ, **variables}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    # Seconds: how long the exporter keeps retrying before it gives a batch up.
    env["OTEL_EXPORTER_OTLP_TIMEOUT"] = "3"
    result = subprocess.run(
        [sys.executable, "-c", APP], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    # The app ends as if all went well either way: that is what makes the wrong form a trap.
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), result.stderr


def test_a_grpc_endpoint_without_scheme_stores_nothing(studio_server: StudioServer) -> None:
    trace_id, log = run_app(studio_server, f"127.0.0.1:{studio_server.grpc_port}")
    # The exporter spoke TLS to a plain-text port and gave up; every span it had is lost.
    assert "Transient error" in log or "Failed to export" in log, log
    response = requests.get(f"{studio_server.url}/api/traces/{trace_id}/", timeout=30)
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("endpoint", "variables"),
    [
        ("http://127.0.0.1:{port}", {}),
        ("127.0.0.1:{port}", {"OTEL_EXPORTER_OTLP_INSECURE": "true"}),
    ],
    ids=["http-scheme", "insecure-variable"],
)
def test_the_form_the_readme_shows_stores_the_trace_with_its_react_steps(
    studio_server: StudioServer, endpoint: str, variables: dict[str, str]
) -> None:
    trace_id, _ = run_app(studio_server, endpoint.format(port=studio_server.grpc_port), **variables)
    trace = studio_server.wait_for_trace(trace_id, spans=5)
    steps = [span for span in trace["spans"] if span["operation"] == "react"]
    assert [span["span_type"] for span in steps] == ["step", "step"]
    assert trace["span_type"] == "agent"

    html = requests.get(f"{studio_server.url}/traces/{trace_id}/", timeout=30).text
    step_rows = re.findall(r'<div class="r [^"]*\bk-step\b[^>]*>.*?</div>', html, re.S)
    assert len(step_rows) == 2
    links = [re.search(r"<a [^>]*>(.*?)</a>", row, re.S)[1] for row in step_rows]
    assert [unescape(re.sub(r"<[^>]+>", " ", link)).split() for link in links] == [
        ["step", "round", "1"],
        ["step", "round", "2"],
    ]


def test_react_steps_are_a_kind_of_their_own_labelled_by_round() -> None:
    step = {"gen_ai.operation.name": "react", "gen_ai.span.kind": "STEP", "gen_ai.react.round": 3}
    assert conventions.span_type(step) == conventions.STEP
    assert conventions.label("react step", conventions.STEP, step) == "round 3"
    assert conventions.label("react step", conventions.STEP, {}) == "react step"
    # LoongSuite's span kind alone says as much, for operations Studio does not know.
    assert conventions.span_type({"gen_ai.span.kind": "STEP"}) == conventions.STEP
    assert conventions.span_type({"gen_ai.operation.name": "x", "gen_ai.span.kind": "LLM"}) == (
        conventions.LLM
    )
    # What was classified before stays as it was.
    assert conventions.span_type({"gen_ai.operation.name": "custom"}) == conventions.OTHER
    assert conventions.span_type(
        {"gen_ai.operation.name": "chat", "gen_ai.span.kind": "AGENT"}
    ) == (conventions.LLM)


def test_the_empty_overview_shows_the_loongsuite_form_that_works(
    client: Client, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "http_url", "http://localhost:3999")
    monkeypatch.setattr(runtime, "grpc_address", "http://localhost:4999")
    html = unescape(client.get("/traces/").content.decode())
    assert "loongsuite-instrument --traces_exporter otlp" in html
    assert "--exporter_otlp_endpoint http://localhost:4999 python app.py" in html
    assert "OTEL_EXPORTER_OTLP_INSECURE=true" in html
