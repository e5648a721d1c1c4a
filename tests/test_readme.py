"""What the README tells a newcomer to run works as it says."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime

from tests.conftest import ROOT, StudioServer

README = (ROOT / "README.md").read_text()


def shell_block_after(heading: str) -> str:
    start = README.index(heading)
    return re.search(r"```sh\n(.*?)```", README[start:], re.S)[1]


def test_the_curl_example_sends_a_trace_of_now(studio_server: StudioServer) -> None:
    command = shell_block_after("A quick test that sends one trace from the shell")
    assert "http://localhost:3000" in command
    before = time.time() - 1
    since = datetime.fromtimestamp(before, UTC).isoformat()

    def hellos() -> list[dict]:
        return studio_server.api("/api/traces/", q="hello", since=since, limit=100)["results"]

    assert hellos() == []
    result = subprocess.run(
        ["bash", "-euc", command.replace("http://localhost:3000", studio_server.url)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # A trace of now: on top of the overview, inside "Last 15 minutes".
    [trace] = hellos()
    started = datetime.fromisoformat(trace["start_time"]).timestamp()
    assert before <= started <= time.time() + 1
    # Run again, it is another trace, not a duplicate silently ignored.
    subprocess.run(
        ["bash", "-euc", command.replace("http://localhost:3000", studio_server.url)], check=True
    )
    assert len(hellos()) == 2


def test_the_loongsuite_section_shows_the_endpoint_form_that_stores_traces() -> None:
    # tests/test_loongsuite.py shows why: without a scheme the gRPC exporter tries TLS.
    section = README[README.index("**LoongSuite**") :]
    command = shell_block_after("**LoongSuite**")
    assert "--exporter_otlp_endpoint http://localhost:4317" in command
    assert "OTEL_EXPORTER_OTLP_INSECURE=true" in command
    assert section.index("**LoongSuite**") < section.index("**OpenTelemetry Python SDK**")


def test_git_ignores_what_an_editable_install_leaves_behind() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "sdk/tracing.egg-info/PKG-INFO"],
        cwd=ROOT,
    )
    assert ignored.returncode == 0
