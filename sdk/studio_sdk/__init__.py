"""Studio's tracing SDK: decorators that emit OpenTelemetry spans in the GenAI conventions.

Plain Python and OpenTelemetry only (no Django). Typical use::

    from studio_sdk import init, trace_llm, trace_reply

    init(studio_url="http://localhost:3000")

Until ``init`` is called the decorators only call the function they wrap.
"""

from studio_sdk.decorators import (
    conversation,
    trace,
    trace_embedding,
    trace_format,
    trace_llm,
    trace_reply,
    trace_tool,
)
from studio_sdk.setup import flush, init, shutdown

__all__ = [
    "conversation",
    "flush",
    "init",
    "shutdown",
    "trace",
    "trace_embedding",
    "trace_format",
    "trace_llm",
    "trace_reply",
    "trace_tool",
]
