"""The tracing SDK end to end: `manage.py demo` into a running Studio over HTTP and gRPC."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from studio_sdk.demo import (
    EXPECTED_ERROR_SPAN,
    EXPECTED_INPUT_TOKENS,
    EXPECTED_OUTPUT_TOKENS,
    EXPECTED_SPANS,
)
from tests.conftest import ROOT, StudioServer

pytestmark = pytest.mark.server


def run_demo_command(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "manage.py", "demo", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    match = re.search(r"/traces/([0-9a-f]{32})/", result.stdout)
    assert match, result.stdout
    return match.group(1)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_demo_arrives_whole(studio_server: StudioServer, protocol: str) -> None:
    if protocol == "http":
        trace_id = run_demo_command("--studio-url", studio_server.url)
    else:
        trace_id = run_demo_command(
            "--studio-url", studio_server.url, "--grpc", f"http://{studio_server.grpc_endpoint}"
        )
    trace = studio_server.wait_for_trace(trace_id, len(EXPECTED_SPANS))
    assert trace["name"] == "invoke_agent Planner"
    assert trace["service_name"] == "studio-demo"
    assert trace["error_count"] == 1 and trace["status"] == "ERROR"
    assert (trace["input_tokens"], trace["output_tokens"]) == (
        EXPECTED_INPUT_TOKENS,
        EXPECTED_OUTPUT_TOKENS,
    )
    by_id = {span["span_id"]: span for span in trace["spans"]}
    shape = [
        (span["name"], by_id[span["parent_span_id"]]["name"] if span["parent_span_id"] else None)
        for span in trace["spans"]
    ]
    assert shape == list(EXPECTED_SPANS)
    failed = next(s for s in trace["spans"] if s["status"]["code"] == "ERROR")
    assert failed["name"] == EXPECTED_ERROR_SPAN
    assert any(event["name"] == "exception" for event in failed["events"])
    chat = next(s for s in trace["spans"] if s["operation"] == "chat")
    assert chat["kind"] == "CLIENT"
    assert isinstance(chat["attributes"]["gen_ai.usage.input_tokens"], int)


def test_the_demo_says_what_is_wrong_when_studio_is_not_there() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "demo", "--studio-url", "http://127.0.0.1:9"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Is Studio running" in result.stderr
