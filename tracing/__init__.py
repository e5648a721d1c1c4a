from typing import Any

# The SDK's names, imported on first access so that Django's app loading (which imports this
# package) does not import OpenTelemetry.
_SDK_NAMES = frozenset(
    {
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
    }
)


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        from tracing import sdk

        value = getattr(sdk, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
