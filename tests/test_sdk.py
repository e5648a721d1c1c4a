"""`from tracing import init, ...`: the compatibility alias of the SDK (studio_sdk) for programs
written before the SDK had its own distribution. The SDK's own tests are in sdk/tests."""

import subprocess
import sys

import pytest

import studio_sdk
import tracing
from tests.conftest import ROOT


def test_the_package_exposes_the_sdk_lazily() -> None:
    code = (
        "import sys, tracing\n"
        "assert 'opentelemetry' not in sys.modules\n"
        "from tracing import init, trace, trace_llm, trace_reply, trace_format, trace_tool\n"
        "from tracing import trace_embedding, flush, shutdown, conversation\n"
        "assert 'opentelemetry' in sys.modules\n"
        "import studio_sdk\n"
        "assert trace_llm is studio_sdk.trace_llm\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert tracing.trace is studio_sdk.trace
    # The list is written twice because it cannot be read lazily from studio_sdk:
    # `from tracing import conventions` asks tracing for the name before importing it.
    assert tracing._SDK_NAMES == set(studio_sdk.__all__)
    with pytest.raises(AttributeError):
        _ = tracing.no_such_name
