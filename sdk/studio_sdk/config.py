"""Settings of the tracing SDK, from ``init()`` arguments and the environment.

They are read once, by ``init()``, so that a bad value fails there, loudly, rather than in the
middle of a traced call.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass

CAPTURE_CONTENT_ENV = "STUDIO_CAPTURE_CONTENT"
GENAI_CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
MAX_ATTRIBUTE_CHARS_ENV = "STUDIO_MAX_ATTRIBUTE_CHARS"

DEFAULT_MAX_ATTRIBUTE_CHARS = 65536
# Below this a truncation marker would not fit next to any content.
MIN_MAX_ATTRIBUTE_CHARS = 64

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# The GenAI instrumentations also accept these modes; only span content matters to us.
_GENAI_MODES = {
    "span_only": True,
    "span_and_event": True,
    "event_only": False,
    "no_content": False,
}


@dataclass(frozen=True, slots=True)
class Settings:
    capture_content: bool = True
    max_attribute_chars: int = DEFAULT_MAX_ATTRIBUTE_CHARS


def _parse_bool(name: str, raw: str, extra: Mapping[str, bool] | None = None) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if extra and value in extra:
        return extra[value]
    allowed = sorted(_TRUE | _FALSE | set(extra or ()))
    raise ValueError(f"{name}={raw!r} is not a valid boolean; use one of {', '.join(allowed)}")


def _check_max_chars(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < MIN_MAX_ATTRIBUTE_CHARS:
        raise ValueError(f"{name} must be at least {MIN_MAX_ATTRIBUTE_CHARS}, got {value}")
    return value


def load_settings(
    capture_content: bool | None = None,
    max_attribute_chars: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Explicit arguments win over the environment; ``STUDIO_*`` wins over the OTel variable."""
    env = os.environ if environ is None else environ

    if capture_content is None:
        studio_raw = env.get(CAPTURE_CONTENT_ENV, "").strip()
        genai_raw = env.get(GENAI_CAPTURE_ENV, "").strip()
        if studio_raw:
            capture_content = _parse_bool(CAPTURE_CONTENT_ENV, studio_raw)
        elif genai_raw:
            capture_content = _parse_bool(GENAI_CAPTURE_ENV, genai_raw, _GENAI_MODES)
        else:
            capture_content = True
    elif not isinstance(capture_content, bool):
        raise ValueError(f"capture_content must be a bool, got {capture_content!r}")

    if max_attribute_chars is None:
        raw = env.get(MAX_ATTRIBUTE_CHARS_ENV, "").strip()
        if raw:
            try:
                parsed = int(raw)
            except ValueError:
                raise ValueError(f"{MAX_ATTRIBUTE_CHARS_ENV}={raw!r} is not an integer") from None
            max_attribute_chars = _check_max_chars(MAX_ATTRIBUTE_CHARS_ENV, parsed)
        else:
            max_attribute_chars = DEFAULT_MAX_ATTRIBUTE_CHARS
    else:
        max_attribute_chars = _check_max_chars("max_attribute_chars", max_attribute_chars)

    return Settings(capture_content=capture_content, max_attribute_chars=max_attribute_chars)
