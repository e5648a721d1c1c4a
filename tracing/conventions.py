"""The semantic conventions Studio reads: OpenTelemetry GenAI (v1.38.0), AgentScope's extensions,
and the fallbacks of other instrumentations (OpenInference, OpenLLMetry).

Plain Python, no Django: the ingest decoder calls it for every span, and the pages use it to label
and render spans. See shared/reference/conventions.md for the sources of every rule here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson

Attributes = Mapping[str, Any]

# Span types: the badge a person sees.
LLM = "llm"
AGENT = "agent"
TOOL = "tool"
FORMATTER = "formatter"
FUNCTION = "function"
EMBEDDING = "embedding"
RETRIEVER = "retriever"
CHAIN = "chain"
# One Reasoning-Acting iteration of an agent (LoongSuite: `gen_ai.operation.name` `react`,
# `gen_ai.span.kind` `STEP`), the parent of that round's model and tool calls.
STEP = "step"
OTHER = "other"

SPAN_TYPES = (AGENT, STEP, LLM, TOOL, FORMATTER, FUNCTION, EMBEDDING, RETRIEVER, CHAIN, OTHER)

_OPERATION_TYPES = {
    "chat": LLM,
    "generate_content": LLM,
    "text_completion": LLM,
    "chat_model": LLM,  # AgentScope 1.0.x before it adopted `chat`
    "embeddings": EMBEDDING,
    "create_agent": AGENT,
    "invoke_agent": AGENT,
    "execute_tool": TOOL,
    "format": FORMATTER,
    "invoke_generic_function": FUNCTION,
    "react": STEP,  # LoongSuite
}

_OPENINFERENCE_TYPES = {
    "LLM": LLM,
    "EMBEDDING": EMBEDDING,
    "CHAIN": CHAIN,
    "RETRIEVER": RETRIEVER,
    "RERANKER": RETRIEVER,
    "TOOL": TOOL,
    "AGENT": AGENT,
    "GUARDRAIL": OTHER,
    "EVALUATOR": OTHER,
}

# LoongSuite's `gen_ai.span.kind`: OpenInference's kinds, and a few of its own.
_LOONGSUITE_TYPES = {**_OPENINFERENCE_TYPES, "STEP": STEP, "TASK": FUNCTION}

_TRACELOOP_TYPES = {
    "workflow": CHAIN,
    "task": FUNCTION,
    "agent": AGENT,
    "tool": TOOL,
    "llm": LLM,
    "chat": LLM,
    "completion": LLM,
    "embedding": EMBEDDING,
    "rerank": RETRIEVER,
}

INPUT_TOKEN_KEYS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
)
OUTPUT_TOKEN_KEYS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
)
MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
AGENT_NAME_KEYS = ("gen_ai.agent.name",)
TOOL_NAME_KEYS = ("gen_ai.tool.name", "tool.name")
# The project a trace belongs to when no ingest key names it: Studio's own resource attribute,
# then the one Phoenix users already set.
PROJECT_KEYS = ("studio.project", "openinference.project.name")
DEFAULT_PROJECT = "default"
# Longer names are cut: a project is a path segment and a menu entry.
MAX_PROJECT_LENGTH = 200


_HEX = re.compile("[0-9a-f]*")


def is_hex_id(value: str, length: int) -> bool:
    """A trace (32) or span (16) id as Studio stores it: lowercase hex of that length. (A
    regular expression: the overview checks each row's id, and a loop over the characters cost
    several times as much.)"""
    return len(value) == length and _HEX.fullmatch(value) is not None


def operation(attributes: Attributes) -> str:
    """The span's operation as the instrumentation named it, or the best fallback we know."""
    op = attributes.get("gen_ai.operation.name")
    if isinstance(op, str) and op:
        return op
    for key in ("openinference.span.kind", "traceloop.span.kind", "llm.request.type"):
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value.lower()
    return ""


def span_type(attributes: Attributes) -> str:
    """Classify a span by `gen_ai.operation.name`, then the other instrumentations' markers.

    Never by parsing the span name: names are free text.
    """
    op = attributes.get("gen_ai.operation.name")
    if isinstance(op, str) and op in _OPERATION_TYPES:
        return _OPERATION_TYPES[op]
    kind = attributes.get("gen_ai.span.kind")
    if isinstance(kind, str) and kind.upper() in _LOONGSUITE_TYPES:
        return _LOONGSUITE_TYPES[kind.upper()]
    if isinstance(op, str) and op:
        return OTHER
    kind = attributes.get("openinference.span.kind")
    if isinstance(kind, str) and kind.upper() in _OPENINFERENCE_TYPES:
        return _OPENINFERENCE_TYPES[kind.upper()]
    for key in ("traceloop.span.kind", "llm.request.type"):
        value = attributes.get(key)
        if isinstance(value, str) and value.lower() in _TRACELOOP_TYPES:
            return _TRACELOOP_TYPES[value.lower()]
    if any(
        key in attributes for key in ("gen_ai.provider.name", "gen_ai.system", "llm.model_name")
    ):
        return LLM
    return OTHER


def first_str(attributes: Attributes, keys: tuple[str, ...]) -> str:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def first_int(attributes: Attributes, keys: tuple[str, ...]) -> int:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return int(value)
        # isdigit() admits "²" and other digits int() refuses; 18 digits always fit in int64.
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
            return int(value)
    return 0


def project(resource_attributes: Attributes) -> str:
    """The project a resource names, or "" when it names none."""
    return first_str(resource_attributes, PROJECT_KEYS).strip()[:MAX_PROJECT_LENGTH]


def model(attributes: Attributes) -> str:
    return first_str(attributes, MODEL_KEYS)


def provider(attributes: Attributes) -> str:
    return first_str(attributes, PROVIDER_KEYS)


def input_tokens(attributes: Attributes) -> int:
    return first_int(attributes, INPUT_TOKEN_KEYS)


def output_tokens(attributes: Attributes) -> int:
    return first_int(attributes, OUTPUT_TOKEN_KEYS)


def conversation_id(attributes: Attributes) -> str:
    """`gen_ai.conversation.id`, with AgentScope 1.0.x's JSON quoting removed so runs match."""
    value = attributes.get("gen_ai.conversation.id")
    if value is None:
        value = attributes.get("session.id")
    if value is None:
        return ""
    text = str(value).strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = text[1:-1]
        text = str(decoded)
    # JSON escapes can spell lone surrogates, which no database stores.
    return text.encode("utf-8", "replace").decode("utf-8")


# Where each kind of span says what it is: agent name, model, tool name, function name.
_LABEL_KEYS: dict[str, tuple[str, ...]] = {
    AGENT: AGENT_NAME_KEYS,
    LLM: MODEL_KEYS,
    EMBEDDING: MODEL_KEYS,
    TOOL: TOOL_NAME_KEYS,
    FORMATTER: ("agentscope.format.target",),
    FUNCTION: ("agentscope.function.name",),
}


def label(name: str, kind: str, attributes: Attributes) -> str:
    """What a span of this kind (see span_type) is, in a few words; its name failing that."""
    if kind == STEP:
        round_number = first_int(attributes, ("gen_ai.react.round",))
        return f"round {round_number}" if round_number else name
    return first_str(attributes, _LABEL_KEYS.get(kind, ())) or name


def display_name(name: str, label: str) -> str:
    """What a person sees a span, or a trace (its root span), called: the same in the overview,
    the call tree, the page header and the API. The label (stored at ingest) says what the span
    is; rows stored before labels existed fall back to the span name."""
    return label or name


def structured(value: Any) -> Any:
    """Structured attributes arrive as OTLP kvlist/array values or as JSON strings: accept both."""
    if isinstance(value, str):
        stripped = value.lstrip()
        if stripped[:1] in ("[", "{", '"'):
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError:
                return value
    return value


def _text_of_parts(parts: Any) -> str:
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list):
        return ""
    texts = []
    for part in parts:
        if isinstance(part, Mapping):
            if part.get("type") == "text":
                content = part.get("content", part.get("text"))
                if isinstance(content, str):
                    texts.append(content)
        elif isinstance(part, str):
            texts.append(part)
    return " ".join(texts)


def input_preview(attributes: Attributes, limit: int = 200) -> str:
    """The first user input of a span, on one line, cut: what the overview shows beside a trace."""
    text = ""
    messages = structured(attributes.get("gen_ai.input.messages"))
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, Mapping) and message.get("role") == "user":
                text = _text_of_parts(message.get("parts", message.get("content")))
                if text:
                    break
    if not text:
        for key in ("gen_ai.prompt.0.content", "llm.input_messages.0.message.content"):
            value = attributes.get(key)
            if isinstance(value, str) and value:
                text = value
                break
    if not text:
        value = attributes.get("input.value")
        if isinstance(value, str):
            text = value
    return one_line(text, limit)


def one_line(text: str, limit: int = 200) -> str:
    """`text` folded onto one line and cut to `limit` characters: a preview beside a trace."""
    # Cut before folding white space: the preview is short, the text may be megabytes.
    text = " ".join(text[: limit * 4].split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text
