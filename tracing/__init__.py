from typing import Any

# The SDK's names (the studio_sdk distribution, sdk/), kept importable from here for programs
# written before the SDK had a distribution of its own. Imported on first access so that Django's
# app loading (which imports this package) does not import OpenTelemetry. A copy of
# studio_sdk.__all__ (a test keeps them equal): reading that lazily would import the SDK on every
# `from tracing import <module>`, which asks this module for the name first.
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
        import studio_sdk

        value = getattr(studio_sdk, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
