"""What a span said and heard: its messages, tool calls and results, found wherever the emitting
instrumentation put them and normalised to one shape the trace page renders.

Plain Python, no Django. The sources and their order are those of
shared/reference/conventions.md ("Where to find the messages of a span, first hit wins"); the
message and part shapes found there are read by studio_sdk.genai, which the SDK shares. Every
function here takes untrusted data and must never raise on a strange shape: anything it does not
understand comes back as data to show, not an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from studio_sdk import genai
from tracing import conventions
from tracing.reprs import parse_repr

# Pretty-printing JSON goes through the pure-Python encoder (indent disables the C one): above
# this many characters a value is shown compact, which is as readable folded and much cheaper.
PRETTY_LIMIT = 200_000

# Media shown inline. The mime type comes from the span, so only types a browser renders
# without running anything are allowed (no SVG, no HTML).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp"})
AUDIO_TYPES = frozenset(
    {"audio/mpeg", "audio/mp3", "audio/wav", "audio/x-wav", "audio/ogg", "audio/webm", "audio/flac"}
)
VIDEO_TYPES = frozenset({"video/mp4", "video/webm", "video/ogg"})
_BASE64 = re.compile(r"[A-Za-z0-9+/=_\-\s]*")

KNOWN_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})

# Older GenAI conventions (and some instrumentations today) record messages as span events.
INPUT_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
OUTPUT_EVENT = "gen_ai.choice"
DETAILS_EVENT = "gen_ai.client.inference.operation.details"


@dataclass(slots=True)
class Part:
    """One part of a message, after normalisation.

    `type` is one of text, reasoning, tool_call, tool_call_response, blob, uri, file, or the
    emitter's own type (shown as data).
    """

    type: str
    text: str = ""
    name: str = ""
    id: str = ""
    # Arguments, response or unknown data, already pretty-printed for display.
    data: str = ""
    modality: str = ""
    mime_type: str = ""
    content: str = ""  # base64, for blobs
    uri: str = ""
    file_id: str = ""

    @property
    def media(self) -> str:
        """'image', 'audio' or 'video' when the part can be shown inline, else ''."""
        mime = self.mime_type.lower()
        if mime in IMAGE_TYPES:
            kind = "image"
        elif mime in AUDIO_TYPES:
            kind = "audio"
        elif mime in VIDEO_TYPES:
            kind = "video"
        else:
            return ""
        if self.type == "blob":
            return kind if self.content and _BASE64.fullmatch(self.content) else ""
        if self.type == "uri":
            return kind if _data_uri_mime(self.uri) == mime else ""
        return ""

    @property
    def src(self) -> str:
        """A data: URI for inline media; '' when the part is not shown inline."""
        if not self.media:
            return ""
        if self.type == "uri":
            return self.uri
        content = "".join(self.content.split()).replace("-", "+").replace("_", "/")
        return f"data:{self.mime_type.lower()};base64,{content}"

    @property
    def link(self) -> str:
        """The URI when it is safe to link to (http or https), else ''."""
        lowered = self.uri.strip().lower()
        if lowered.startswith(("http://", "https://")):
            return self.uri.strip()
        return ""

    @property
    def size(self) -> int:
        """The decoded size of a blob, in bytes (approximately, for invalid base64)."""
        stripped = "".join(self.content.split())
        return len(stripped) * 3 // 4 - stripped[-2:].count("=")


@dataclass(slots=True)
class Message:
    role: str
    parts: list[Part]
    name: str = ""
    finish_reason: str = ""

    @property
    def role_class(self) -> str:
        role = self.role.lower()
        return role if role in KNOWN_ROLES else "other"


@dataclass(slots=True)
class ToolDefinition:
    name: str
    description: str = ""
    type: str = ""
    parameters: str = ""


@dataclass(slots=True)
class Conversation:
    """Messages, with where they were found (an attribute key or an event name)."""

    source: str
    messages: list[Message]
    system: list[Part] = field(default_factory=list)
    tools: list[ToolDefinition] = field(default_factory=list)


@dataclass(slots=True)
class Section:
    """One side (input or output) of a span as the panel shows it: a conversation, or a value
    (pretty JSON or text), optionally with the parts a tool result carried."""

    source: str
    conversation: Conversation | None = None
    value: str = ""
    parts: list[Part] = field(default_factory=list)
    is_repr: bool = False


# ---------------------------------------------------------------------------------------------
# Values


def pretty(value: Any) -> str:
    """A value as a person reads it: strings as they are (JSON strings pretty-printed),
    everything else as JSON."""
    text = None
    if isinstance(value, str):
        parsed = conventions.structured(value)
        if isinstance(parsed, str):
            return parsed
        if len(value) > PRETTY_LIMIT:
            return value
        text, value = value, parsed
    try:
        compact = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        # Nested deeper than the encoder goes: the text it came as, if any, is still readable.
        return text if text is not None else _text(value)
    if len(compact) > PRETTY_LIMIT or not isinstance(value, (dict, list)):
        return compact
    try:
        return json.dumps(value, ensure_ascii=False, indent=2, default=str)
    except RecursionError:
        # The indenting encoder is pure Python and recurses deeper than the compact one.
        return compact


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # RecursionError on a structure nested deeper than repr goes
        return f"({type(value).__name__} nested too deeply to show)"


def value_type(value: Any) -> str:
    """The OTLP type of a stored attribute value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "map"
    return "empty"


def display(value: Any) -> str:
    """An attribute value as text: scalars as OTLP would print them, structures as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        return ""
    return pretty(value)


def _decoded(value: Any) -> Any:
    """A JSON string decoded, a repr parsed; anything else as it is."""
    value = conventions.structured(value)
    if isinstance(value, str):
        parsed = parse_repr(value)
        if isinstance(parsed, dict):
            return parsed
    return value


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    return pretty(value)


def _data_uri_mime(uri: str) -> str:
    if not uri.startswith("data:"):
        return ""
    header, _, payload = uri[5:].partition(",")
    mime, _, encoding = header.partition(";")
    if encoding.lower() != "base64" or not _BASE64.fullmatch(payload):
        return ""
    return mime.lower()


# ---------------------------------------------------------------------------------------------
# Parts and messages: studio_sdk.genai reads every emitter's shapes (the SDK emits with the same
# module); what follows is how the panel shows the GenAI parts it returns.


def _blocks_text(value: Any) -> str | None:
    """The text of a list of text blocks (a tool result's content), or None if it is not one."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not value:
        return None
    texts = []
    for block in value:
        if isinstance(block, str):
            parsed = parse_repr(block) if block[:1].isalpha() else None
            if isinstance(parsed, Mapping) and parsed.get("type") == "text":
                block = parsed  # a block's repr, as AgentScope 2.x records tool results
            else:
                texts.append(block)
                continue
        if isinstance(block, Mapping) and block.get("type") == "text":
            text = block.get("text", block.get("content"))
            if not isinstance(text, str):
                return None
            texts.append(text)
        else:
            return None
    return "\n".join(texts)


def _response_text(value: Any) -> str:
    value = _decoded(value)
    if isinstance(value, Mapping) and isinstance(value.get("content"), list):
        # A ToolResponse(content=[...]) repr, or a result object carrying content blocks.
        text = _blocks_text(value["content"])
        if text is not None:
            return text
    text = _blocks_text(value)
    return text if text is not None else pretty(value)


def _uri_part(uri: str, modality: str, mime_type: str) -> Part:
    mime = mime_type or _data_uri_mime(uri)
    return Part("uri", modality=modality, mime_type=mime, uri=uri)


def view_part(part: Mapping[str, Any]) -> Part:
    """A GenAI part (as studio_sdk.genai makes it) as the panel shows it."""
    kind = _str(part.get("type")) or "data"
    if kind in ("text", "reasoning"):
        return Part(kind, text=_str(part.get("content")))
    if kind == "tool_call":
        arguments = part.get("arguments")
        return Part(
            "tool_call",
            name=_str(part.get("name")),
            id=_str(part.get("id")),
            data=pretty(arguments) if arguments is not None else "",
        )
    if kind == "tool_call_response":
        return Part(
            "tool_call_response",
            name=_str(part.get("name")),
            id=_str(part.get("id")),
            data=_response_text(part.get("response")),
        )
    if kind == "blob":
        return Part(
            "blob",
            modality=_str(part.get("modality")),
            mime_type=_str(part.get("mime_type")),
            content=_str(part.get("content")),
        )
    if kind == "uri":
        return _uri_part(
            _str(part.get("uri")), _str(part.get("modality")), _str(part.get("mime_type"))
        )
    if kind == "file":
        return Part(
            "file",
            modality=_str(part.get("modality")),
            mime_type=_str(part.get("mime_type")),
            file_id=_str(part.get("file_id")),
        )
    return Part(kind, data=pretty(dict(part)))


def to_part(raw: Any) -> Part:
    """Any part or content block (GenAI, OpenAI, Anthropic, Gemini, AgentScope) as a Part."""
    part = genai.content_part(raw)
    return view_part(part) if part is not None else Part("text")


def view_message(message: Mapping[str, Any]) -> Message:
    return Message(
        role=_str(message.get("role")),
        parts=[view_part(part) for part in message.get("parts", ())],
        name=_str(message.get("name")),
        finish_reason=_str(message.get("finish_reason")),
    )


def _as_list(value: Any) -> list[Any]:
    return genai.as_list(value)


def to_message(raw: Any, default_role: str = "") -> Message | None:
    """A message of any known shape (GenAI, OpenAI, Anthropic, Gemini, AgentScope Msg)."""
    raw = _decoded(raw)
    if not isinstance(raw, (str, Mapping)):
        return None
    return view_message(genai.to_message(raw, default_role, conventions.structured))


def to_messages(raw: Any, default_role: str = "") -> list[Message]:
    items = _decoded(raw)
    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, list):
        return []
    messages = []
    for item in items:
        message = to_message(item, default_role)
        if message is not None:
            messages.append(message)
    return messages


# ---------------------------------------------------------------------------------------------
# Flattened attributes (OpenLLMetry, OpenInference)


def unflatten(attributes: Mapping[str, Any], prefix: str) -> dict[Any, Any]:
    """`{prefix}.0.role`, `{prefix}.0.tool_calls.1.name` ... as nested dicts, numeric segments
    as int keys."""
    start = prefix + "."
    tree: dict[Any, Any] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not key.startswith(start):
            continue
        node = tree
        # isdigit() alone admits digits int() rejects (`²`); only ASCII ones are indexes.
        segments = [
            int(s) if s.isascii() and s.isdigit() else s for s in key[len(start) :].split(".")
        ]
        for segment in segments[:-1]:
            child = node.get(segment)
            if not isinstance(child, dict):
                child = node[segment] = {}
            node = child
        node[segments[-1]] = value
    return tree


def _flat_messages(attributes: Mapping[str, Any], prefix: str) -> list[Message]:
    tree = unflatten(attributes, prefix)
    if not any(isinstance(key, int) for key in tree):
        return []
    indexed = sorted((key, item) for key, item in tree.items() if isinstance(key, int))
    return to_messages([_flat_message(item) for _, item in indexed])


def _flat_message(item: Any, depth: int = 0) -> Any:
    """One unflattened message, with its indexed lists turned back into lists."""
    if not isinstance(item, dict) or depth > genai.MAX_NESTING:
        return item
    result = dict(item)
    if isinstance(result.get("message"), dict):
        result["message"] = _flat_message(result["message"], depth + 1)
    for key in ("tool_calls", "contents"):
        if isinstance(result.get(key), dict):
            result[key] = _as_list(result[key])
    return result


# ---------------------------------------------------------------------------------------------
# System instructions and tool definitions


def system_instructions(attributes: Mapping[str, Any]) -> list[Part]:
    value = conventions.structured(attributes.get("gen_ai.system_instructions"))
    if value is None or value == "":
        return []
    return [view_part(part) for part in genai.system_instructions(value)]


def _tool_definition(raw: Any) -> ToolDefinition | None:
    definition = genai.tool_definition(raw, conventions.structured)
    if not isinstance(definition, Mapping):
        return None
    parameters = definition.get("parameters")
    return ToolDefinition(
        name=_str(definition.get("name")),
        description=_str(definition.get("description")),
        type=_str(definition.get("type")),
        parameters=pretty(parameters) if parameters is not None else "",
    )


def tool_definitions(attributes: Mapping[str, Any]) -> list[ToolDefinition]:
    raw: Any = conventions.structured(attributes.get("gen_ai.tool.definitions"))
    if not isinstance(raw, list):
        raw = _as_list(unflatten(attributes, "llm.tools")) or _as_list(
            unflatten(attributes, "llm.request.functions")
        )
    if not raw:
        function_input = conventions.structured(attributes.get("agentscope.function.input"))
        if isinstance(function_input, Mapping) and isinstance(
            function_input.get("kwargs"), Mapping
        ):
            raw = function_input["kwargs"].get("tools")
    definitions = [_tool_definition(item) for item in raw] if isinstance(raw, list) else []
    return [definition for definition in definitions if definition is not None]


# ---------------------------------------------------------------------------------------------
# The fallbacks, first hit wins


Events = Iterable[Mapping[str, Any]]


def _event_attributes(event: Mapping[str, Any]) -> dict[str, Any]:
    attributes = event.get("attributes")
    attributes = dict(attributes) if isinstance(attributes, Mapping) else {}
    for key in ("body", "event.body", "gen_ai.event.content"):
        body = conventions.structured(attributes.get(key))
        if isinstance(body, Mapping):
            attributes = {**attributes, **body}
    return attributes


def _from_event_details(events: Events, key: str) -> tuple[str, list[Message], list[Part]] | None:
    for event in events:
        if event.get("name") != DETAILS_EVENT:
            continue
        attributes = _event_attributes(event)
        messages = to_messages(attributes.get(key))
        if messages:
            return f"event {DETAILS_EVENT}", messages, system_instructions(attributes)
    return None


def _from_message_events(events: Events) -> list[Message]:
    messages = []
    for event in events:
        role = INPUT_EVENTS.get(_str(event.get("name")))
        if role is None:
            continue
        message = to_message(_event_attributes(event), role)
        if message is not None:
            message.role = message.role or role
            messages.append(message)
    return messages


def _from_choice_events(events: Events) -> list[Message]:
    messages = []
    for event in events:
        if event.get("name") != OUTPUT_EVENT:
            continue
        attributes = _event_attributes(event)
        message = to_message(attributes, "assistant")
        if message is not None:
            messages.append(message)
    return messages


def _agentscope_input(attributes: Mapping[str, Any]) -> list[Message]:
    """The messages of an AgentScope 1.0.x call: provider-formatted messages as the first
    positional argument (model calls) or a `msg`/`msgs` keyword (agents, formatters)."""
    value = conventions.structured(attributes.get("agentscope.function.input"))
    if not isinstance(value, Mapping):
        return []
    candidates: list[Any] = []
    args = value.get("args")
    if isinstance(args, list) and args:
        candidates.append(args[0])
    kwargs = value.get("kwargs")
    if isinstance(kwargs, Mapping):
        candidates.extend(kwargs.get(key) for key in ("messages", "msgs", "msg", "x"))
    for candidate in candidates:
        candidate = _decoded(candidate)
        if isinstance(candidate, Mapping) and _looks_like_message(candidate):
            candidate = [candidate]
        if (
            isinstance(candidate, list)
            and candidate
            and all(_looks_like_message(_decoded(item)) for item in candidate)
        ):
            return to_messages(candidate)
    return []


def _looks_like_message(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and "role" in value
        and ("content" in value or "parts" in value or "tool_calls" in value)
    )


def _agentscope_output(attributes: Mapping[str, Any]) -> list[Message]:
    value = _decoded(attributes.get("agentscope.function.output"))
    if isinstance(value, Mapping):
        if _looks_like_message(value):
            return to_messages([value])
        if isinstance(value.get("content"), list) and value.get("type") in ("chat", None):
            # A ChatResponse: the assistant's content blocks.
            return to_messages([{"role": "assistant", "content": value["content"]}])
    return []


def _value_messages(attributes: Mapping[str, Any], key: str) -> list[Message]:
    """OpenInference `input.value` / `output.value` when it is a request or response document."""
    value = conventions.structured(attributes.get(key))
    if not isinstance(value, Mapping):
        return []
    if isinstance(value.get("messages"), list):
        return to_messages(value["messages"])
    if isinstance(value.get("choices"), list):
        return to_messages(value["choices"], "assistant")
    if _looks_like_message(value):
        return to_messages([value])
    return []


def input_messages(attributes: Mapping[str, Any], events: Events = ()) -> Conversation | None:
    """What the span was sent, from the first source that has it."""
    events = list(events)
    system = system_instructions(attributes)
    source = ""
    messages = to_messages(attributes.get("gen_ai.input.messages"))
    if messages:
        source = "gen_ai.input.messages"
    if not messages and (messages := _flat_messages(attributes, "gen_ai.prompt")):
        source = "gen_ai.prompt"
    if not messages and (messages := _flat_messages(attributes, "llm.input_messages")):
        source = "llm.input_messages"
    if not messages and (found := _from_event_details(events, "gen_ai.input.messages")):
        source, messages, event_system = found
        system = system or event_system
    if not messages and (messages := _from_message_events(events)):
        source = "events"
    if not messages and (messages := _agentscope_input(attributes)):
        source = "agentscope.function.input"
    if not messages and (messages := _value_messages(attributes, "input.value")):
        source = "input.value"
    if not messages and not system:
        return None
    return Conversation(
        source=source or "gen_ai.system_instructions",
        messages=messages,
        system=system,
        tools=tool_definitions(attributes),
    )


def output_messages(attributes: Mapping[str, Any], events: Events = ()) -> Conversation | None:
    """What the span answered, from the first source that has it."""
    events = list(events)
    source = ""
    messages = to_messages(attributes.get("gen_ai.output.messages"), "assistant")
    if messages:
        source = "gen_ai.output.messages"
    if not messages and (messages := _flat_messages(attributes, "gen_ai.completion")):
        source = "gen_ai.completion"
    if not messages and (messages := _flat_messages(attributes, "llm.output_messages")):
        source = "llm.output_messages"
    if not messages and (found := _from_event_details(events, "gen_ai.output.messages")):
        source, messages, _ = found
    if not messages and (messages := _from_choice_events(events)):
        source = "events"
    if not messages and (messages := _agentscope_output(attributes)):
        source = "agentscope.function.output"
    if not messages and (messages := _value_messages(attributes, "output.value")):
        source = "output.value"
    if not messages:
        return None
    for message in messages:
        message.role = message.role or "assistant"
    return Conversation(source=source, messages=messages)


# ---------------------------------------------------------------------------------------------
# Sections: what the panel shows as a span's input and output


def _value_section(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> Section | None:
    for key in keys:
        if key not in attributes:
            continue
        raw = conventions.structured(attributes[key])
        if isinstance(raw, str):
            return Section(source=key, value=raw, is_repr=parse_repr(raw) is not None)
        # The stored value, not `raw`: pretty() falls back to its text when it nests too deep.
        return Section(source=key, value=pretty(attributes[key]))
    return None


def _tool_input(attributes: Mapping[str, Any]) -> Section | None:
    section = _value_section(attributes, ("gen_ai.tool.call.arguments", "tool.parameters"))
    if section is not None:
        return section
    function_input = conventions.structured(attributes.get("agentscope.function.input"))
    if isinstance(function_input, Mapping) and isinstance(function_input.get("tool_call"), Mapping):
        call = function_input["tool_call"]
        arguments = call.get("input", call.get("arguments"))
        return Section(source="agentscope.function.input", value=pretty(arguments))
    return _value_section(attributes, ("agentscope.function.input", "input.value"))


def _tool_output(attributes: Mapping[str, Any]) -> Section | None:
    section = _value_section(
        attributes, ("gen_ai.tool.call.result", "agentscope.function.output", "output.value")
    )
    if section is None or not section.is_repr:
        return section
    parsed = parse_repr(section.value)
    if isinstance(parsed, Mapping) and isinstance(parsed.get("content"), list):
        # AgentScope's ToolResponse(content=[blocks], ...): show the blocks, keep the repr.
        section.parts = [to_part(_block(block)) for block in parsed["content"]]
    return section


def _block(block: Any) -> Any:
    # Parsed reprs of blocks (TextBlock(type='text', text=...)) carry their class as __type__.
    if isinstance(block, Mapping) and "__type__" in block:
        return {key: value for key, value in block.items() if key != "__type__"}
    return block


def span_sections(
    span_type: str, attributes: Mapping[str, Any], events: Events = ()
) -> tuple[Section | None, Section | None]:
    """The input and output of a span as the panel shows them, by the kind of span.

    Tools show arguments and result; formatters and functions their recorded input and output;
    every other span a conversation when any source has messages, else its raw input/output.
    """
    if span_type == conventions.TOOL:
        return _tool_input(attributes), _tool_output(attributes)
    raw_input = ("agentscope.function.input", "input.value")
    raw_output = ("agentscope.function.output", "output.value")
    if span_type in (conventions.FORMATTER, conventions.FUNCTION):
        return _value_section(attributes, raw_input), _value_section(attributes, raw_output)
    events = list(events)
    conversation_in = input_messages(attributes, events)
    conversation_out = output_messages(attributes, events)
    section_in = (
        Section(source=conversation_in.source, conversation=conversation_in)
        if conversation_in
        else _value_section(attributes, raw_input)
    )
    section_out = (
        Section(source=conversation_out.source, conversation=conversation_out)
        if conversation_out
        else _value_section(attributes, raw_output)
    )
    return section_in, section_out


def finish_reasons(attributes: Mapping[str, Any]) -> list[str]:
    value = conventions.structured(attributes.get("gen_ai.response.finish_reasons"))
    if isinstance(value, list):
        return [_str(item) for item in value]
    if isinstance(value, str) and value:
        return [value]
    return []


# ---------------------------------------------------------------------------------------------
# Texts: what a turn asked and answered, for conversations and the overview's Output column


def message_text(conversation: Conversation | None, role: str) -> str:
    """The text of the last message with `role` that has any (a question, or a final answer)."""
    if conversation is None:
        return ""
    for message in reversed(conversation.messages):
        if message.role == role:
            text = "\n".join(part.text for part in message.parts if part.type == "text")
            if text.strip():
                return text
    return ""


def final_answer(attributes: Mapping[str, Any], events: Events = ()) -> str:
    """What a span finally answered (its last assistant message's text): for a root span, the
    trace's answer."""
    return message_text(output_messages(attributes, events), "assistant")
