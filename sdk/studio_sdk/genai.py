"""Provider message shapes as OpenTelemetry GenAI messages and parts: the one place that knows them.

The SDK emits what it returns; Studio's reader turns stored attributes into the same parts before
rendering them. A message is ``{"role", "parts": [...], "name"?, "finish_reason"?}``; part types
are those of the GenAI conventions (v1.38): ``text``, ``reasoning``, ``tool_call``,
``tool_call_response``, ``blob``, ``uri`` and ``file``, or a part of another type kept as it is.

Inputs are OpenAI (chat and Responses API), Anthropic, Gemini, Ollama, OpenInference, OpenLLMetry
and AgentScope shapes, as dicts or as objects (duck-typed: no provider SDK needs to be installed),
or plain strings. Provider names are mapped to the conventions' names: Anthropic's
``tool_use``/``server_tool_use``, OpenAI's ``function_call``, the later GenAI ``server_tool_call``
all become ``tool_call``; ``thinking`` becomes ``reasoning``; a ``refusal`` is text.

Plain Python, no OpenTelemetry and no Django. Every function takes untrusted data (a stored
attribute, a foreign object) and never raises on a strange shape: what it does not understand
comes back as a part to show. ``decode`` turns a stored JSON string into data (the reader passes
its decoder; the SDK has live objects and passes nothing).
"""

import json
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from studio_sdk.serialize import safe_repr

Message = dict[str, Any]
Part = dict[str, Any]
Decode = Callable[[Any], Any]

TEXT_TYPES = frozenset({"text", "input_text", "output_text"})
REASONING_TYPES = frozenset({"reasoning", "thinking"})
TOOL_CALL_TYPES = frozenset(
    {"tool_call", "tool_use", "function_call", "server_tool_call", "server_tool_use"}
)
TOOL_RESULT_TYPES = frozenset(
    {"tool_call_response", "tool_result", "function_call_output", "server_tool_call_response"}
)
# Media blocks with a `source` (Anthropic, AgentScope) or a url (OpenInference).
MEDIA_TYPES = frozenset({"image", "audio", "video", "document"})
# GenAI parts already in the conventions' shape: kept as they are.
GENAI_MEDIA_TYPES = frozenset({"blob", "uri", "file"})

# Content is truncated again when serialised; this only bounds a pathological repr.
REPR_LIMIT = 1 << 20
# Lists of lists of messages are flattened this deep; deeper ones are shown as text.
MAX_NESTING = 8
# Builtins answer getattr with their methods (`"x".format`, `[].index`), never with data.
_PLAIN = (str, bytes, bytearray, int, float, bool, list, tuple, set, frozenset)


def _same(value: Any) -> Any:
    return value


def get(obj: Any, key: str) -> Any:
    """``obj[key]`` for mappings, ``obj.key`` for other objects, ``None`` when absent."""
    if obj is None or isinstance(obj, _PLAIN):
        return None
    try:
        if isinstance(obj, Mapping):
            return obj.get(key)
        return getattr(obj, key, None)
    except Exception:
        # Properties of foreign objects may raise; a missing value is the honest answer.
        return None


def first(obj: Any, *keys: str) -> Any:
    """The first of ``keys`` that ``obj`` has a value (not None) for."""
    for key in keys:
        value = get(obj, key)
        if value is not None:
            return value
    return None


def as_str(value: Any) -> str | None:
    if isinstance(value, Enum):
        value = value.value if isinstance(value.value, str) else value.name
    return value if isinstance(value, str) else None


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_list(value: Any) -> list[Any]:
    """A list, or the values of a dict keyed by index (what unflattening attributes produces)."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, Mapping):
        return [value[key] for key in sorted(value, key=_index_key)]
    return []


def _index_key(key: Any) -> tuple[int, str]:
    return (key, "") if isinstance(key, int) else (1 << 62, str(key))


def repr_text(value: Any) -> str:
    return safe_repr(value, REPR_LIMIT)


def json_text(value: Any) -> str:
    try:
        return json.dumps(value, default=repr_text, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr_text(value)


def parse_json(value: Any) -> Any:
    """Tool-call arguments arrive JSON-encoded from OpenAI; keep them as data when they parse."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def text_part(content: str) -> Part:
    return {"type": "text", "content": content}


def data_uri_mime(uri: str) -> str:
    """The mime type of a base64 ``data:`` URI, else ''."""
    if not uri.startswith("data:"):
        return ""
    header, _, _ = uri[5:].partition(",")
    mime, _, encoding = header.partition(";")
    return mime.lower() if encoding.lower() == "base64" else ""


def uri_part(uri: str, modality: str, mime_type: str | None = None) -> Part:
    part: Part = {"type": "uri", "modality": modality, "uri": uri}
    mime = mime_type or data_uri_mime(uri)
    if mime:
        part["mime_type"] = mime
    return part


def _blob_part(content: Any, modality: str, mime_type: str | None) -> Part:
    part: Part = {"type": "blob", "modality": modality, "content": content}
    if mime_type:
        part["mime_type"] = mime_type
    return part


def _file_part(file_id: Any, modality: str, mime_type: str | None = None) -> Part:
    part: Part = {"type": "file", "modality": modality, "file_id": file_id}
    if mime_type:
        part["mime_type"] = mime_type
    return part


def _media_part(block: Any, kind: str) -> Part:
    """Anthropic/AgentScope ``{"source": ...}``, OpenAI Responses ``input_image``, OpenInference
    ``{"image": {"image": {"url"}}}`` blocks."""
    modality = "image" if kind == "input_image" else kind
    source = get(block, "source")
    if source is not None:
        source_type = as_str(get(source, "type"))
        mime = as_str(get(source, "media_type")) or as_str(get(source, "mime_type"))
        url = as_str(get(source, "url"))
        if url:
            return uri_part(url, modality, mime)
        data = get(source, "data")
        if isinstance(data, str):
            return _blob_part(data, modality, mime)
        if source_type == "file" or get(source, "file_id") is not None:
            return _file_part(get(source, "file_id"), modality, mime)
    image_url = get(block, "image_url")
    url = (
        as_str(get(block, "url"))
        or as_str(get(block, "uri"))
        or as_str(image_url)
        or as_str(get(image_url, "url"))
    )
    if url:
        return uri_part(url, modality, as_str(get(block, "mime_type")))
    nested = get(block, modality)
    for _ in range(MAX_NESTING):
        if nested is None:
            break
        url = as_str(get(nested, "url"))
        if url:
            return uri_part(url, modality)
        nested = get(nested, modality)
    file_id = get(block, "file_id")
    if file_id is not None:
        return _file_part(file_id, modality)
    return dict(block) if isinstance(block, Mapping) else {"type": kind}


def tool_call_part(call: Any, decode: Decode = _same) -> Part:
    """OpenAI ``tool_calls[i]`` and ``function_call``, Anthropic ``tool_use``, Gemini
    ``function_call``, OpenInference ``{"tool_call": ...}``, GenAI ``tool_call``."""
    call = decode(call)
    wrapped = decode(get(call, "tool_call"))
    if wrapped is not None and not isinstance(wrapped, _PLAIN):
        call = wrapped
    function = decode(get(call, "function"))
    source = function if function is not None and not isinstance(function, _PLAIN) else call
    arguments = first(source, "arguments", "input", "args")
    # The Responses API's function_call has an item `id` and the `call_id` results refer to.
    if as_str(get(call, "type")) == "function_call":
        call_id = first(call, "call_id", "id")
    else:
        call_id = first(call, "id", "call_id")
    return {
        "type": "tool_call",
        "id": call_id,
        "name": get(source, "name"),
        "arguments": parse_json(arguments),
    }


def response_value(content: Any) -> Any:
    """A tool's result; a list of text blocks (AgentScope ToolResponse, Anthropic tool_result)
    reads best as its text."""
    if isinstance(content, (list, tuple)) and content:
        texts = [get(block, "text") for block in content]
        if all(as_str(get(block, "type")) == "text" for block in content) and all(
            isinstance(text, str) for text in texts
        ):
            return "\n".join(texts)
    return content


def tool_result_part(block: Any) -> Part:
    part: Part = {
        "type": "tool_call_response",
        "id": first(block, "tool_use_id", "id", "call_id"),
        # `result` is what some emitters write for the conventions' `response`.
        "response": response_value(first(block, "response", "result", "output", "content")),
    }
    name = as_str(get(block, "name"))
    if name:
        part["name"] = name
    return part


def _reasoning_part(block: Any) -> Part:
    content = first(block, "content", "thinking", "text")
    if content is None:
        summary = get(block, "summary")  # OpenAI Responses reasoning items
        if isinstance(summary, (list, tuple)):
            content = "\n".join(str(get(item, "text") or "") for item in summary)
    if content is not None and not isinstance(content, str):
        content = json_text(content)
    return {"type": "reasoning", "content": content}


def _untyped_part(block: Any) -> Part | None:
    """Gemini parts have no type, only the field that says what they are."""
    call = first(block, "function_call", "functionCall")
    if call is not None and not isinstance(call, _PLAIN):
        return tool_call_part(call)
    response = first(block, "function_response", "functionResponse")
    if response is not None and not isinstance(response, _PLAIN):
        part = tool_result_part(response)
        if part["response"] is None:
            part["response"] = response_value(get(response, "response"))
        return part
    inline = first(block, "inline_data", "inlineData")
    if inline is not None and not isinstance(inline, _PLAIN):
        mime = as_str(first(inline, "mime_type", "mimeType")) or ""
        return _blob_part(get(inline, "data"), mime.partition("/")[0], mime)
    file_data = first(block, "file_data", "fileData")
    if file_data is not None and not isinstance(file_data, _PLAIN):
        mime = as_str(first(file_data, "mime_type", "mimeType")) or ""
        uri = as_str(first(file_data, "file_uri", "fileUri")) or ""
        return uri_part(uri, mime.partition("/")[0], mime)
    text = get(block, "text")
    if isinstance(text, str):
        return {"type": "reasoning" if get(block, "thought") is True else "text", "content": text}
    return None


def content_part(block: Any) -> Part | None:
    """One GenAI part for a part or content block of any known shape; ``None`` for nothing
    (an empty string, None)."""
    if block is None:
        return None
    if isinstance(block, str):
        return text_part(block) if block else None
    if isinstance(block, (int, float, list, tuple)):
        return text_part(json_text(block))
    kind = as_str(get(block, "type")) or ""
    if kind in TEXT_TYPES:
        text = first(block, "text", "content")
        return text_part(text if isinstance(text, str) else json_text(text))
    if kind in REASONING_TYPES:
        return _reasoning_part(block)
    if kind in TOOL_CALL_TYPES:
        return tool_call_part(block)
    if kind in TOOL_RESULT_TYPES:
        return tool_result_part(block)
    if kind == "refusal":  # OpenAI: the model declined; what it said is text.
        return text_part(str(first(block, "refusal", "content", "text") or ""))
    if kind == "image_url":
        image = get(block, "image_url")
        url = as_str(image) or as_str(get(image, "url"))
        return uri_part(url, "image") if url else {"type": "image"}
    if kind == "input_audio":
        audio = get(block, "input_audio")
        fmt = as_str(get(audio, "format"))
        return _blob_part(get(audio, "data"), "audio", f"audio/{fmt}" if fmt else None)
    if kind in MEDIA_TYPES or kind == "input_image":
        return _media_part(block, kind)
    if kind in GENAI_MEDIA_TYPES and get(block, "source") is not None:
        return _media_part(block, "document" if kind == "file" else kind)
    if not kind:
        part = _untyped_part(block)
        if part is not None:
            return part
    if isinstance(block, Mapping):
        return dict(block) if kind else text_part(json_text(block))
    if kind:
        return {"type": kind, "content": repr_text(block)}
    return text_part(repr_text(block))


def content_parts(content: Any) -> list[Part]:
    blocks = content if isinstance(content, (list, tuple)) else [content]
    parts = []
    for block in blocks:
        # OpenInference wraps each block: `contents.{i}.message_content.{type,text,image}`.
        inner = get(block, "message_content")
        part = content_part(inner if isinstance(inner, Mapping) else block)
        if part is not None:
            parts.append(part)
    return parts


def looks_like_message(obj: Any) -> bool:
    if isinstance(obj, Mapping):
        return any(key in obj for key in ("role", "content", "parts", "tool_calls", "contents"))
    return get(obj, "role") is not None and (
        hasattr(obj, "content") or hasattr(obj, "parts") or hasattr(obj, "tool_calls")
    )


def to_message(obj: Any, default_role: str, decode: Decode = _same) -> Message:
    """One GenAI message for a message of any known shape, or for any other value."""
    obj = decode(obj)
    finish_reason = None
    # OpenInference `{"message": {...}}`, OpenAI choices `{"message": ..., "finish_reason"}`.
    for _ in range(MAX_NESTING):
        inner = decode(obj.get("message")) if isinstance(obj, Mapping) else None
        if not isinstance(inner, Mapping):
            break
        finish_reason = finish_reason or obj.get("finish_reason")
        obj = inner
    if isinstance(obj, str):
        return {"role": default_role, "parts": [text_part(obj)]}
    if not looks_like_message(obj):
        if isinstance(obj, Mapping) or get(obj, "type") is not None:
            part = content_part(obj)
        else:
            part = text_part(repr_text(obj))
        return {"role": default_role, "parts": [part] if part is not None else []}

    role = as_str(get(obj, "role")) or default_role
    parts: list[Part] = []
    reasoning = get(obj, "reasoning_content")  # DeepSeek, Qwen
    if isinstance(reasoning, str) and reasoning:
        parts.append({"type": "reasoning", "content": reasoning})
    raw_parts = get(obj, "parts")  # GenAI messages, Gemini contents
    if isinstance(raw_parts, (list, tuple)):
        parts.extend(content_parts(raw_parts))
    content = get(obj, "content")
    if content is None and isinstance(obj, Mapping) and "contents" in obj:
        content = as_list(obj["contents"])  # OpenInference
    if isinstance(content, str):
        content = decode(content)
    if role in ("tool", "function") and content is not None:
        # OpenAI's tool message: the whole content is the result of one call (`id` in the
        # older conventions' events).
        call_id = first(obj, "tool_call_id", "tool_use_id")
        if call_id is None and raw_parts is None:
            call_id = get(obj, "id")
        part: Part = {"type": "tool_call_response", "id": call_id}
        part["response"] = response_value(content)
        name = as_str(get(obj, "name"))
        if name:
            part["name"] = name
        parts.append(part)
    elif content is not None:
        parts.extend(content_parts(content))
    for call in as_list(decode(get(obj, "tool_calls"))):
        parts.append(tool_call_part(call, decode))
    legacy_call = decode(get(obj, "function_call"))
    if legacy_call is not None and not isinstance(legacy_call, _PLAIN):
        parts.append(tool_call_part(legacy_call, decode))
    message: Message = {"role": role, "parts": parts}
    name = get(obj, "name")
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)
    if isinstance(name, str) and name:
        message["name"] = name
    finish_reason = as_str(get(obj, "finish_reason")) or as_str(finish_reason)
    if finish_reason:
        message["finish_reason"] = finish_reason
    return message


def to_messages(value: Any, default_role: str = "user", decode: Decode = _same) -> list[Message]:
    """GenAI messages for a prompt: a string, a message, or a list of them (lists of lists
    flattened)."""
    value = decode(value)
    if value is None:
        return []
    out: list[Message] = []
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, tuple)) and depth < MAX_NESTING:
            stack.extend((child, depth + 1) for child in reversed(item) if child is not None)
        elif item is not None:
            out.append(to_message(item, default_role, decode))
    return out


def system_instructions(value: Any) -> list[Part]:
    """``gen_ai.system_instructions`` is a list of parts, e.g. from Anthropic's ``system``."""
    return content_parts(value) if value is not None else []


def tool_definition(tool: Any, decode: Decode = _same) -> Any:
    """OpenAI ``{"type": "function", "function": {...}}``, Anthropic and GenAI tools as one flat
    ``{"type", "name", "description"?, "parameters"?}``; anything else as it is."""
    tool = decode(tool)
    wrapped = decode(get(tool, "tool"))  # OpenInference llm.tools.{i}.tool.json_schema
    if wrapped is not None and not isinstance(wrapped, _PLAIN):
        tool = wrapped
    schema = decode(get(tool, "json_schema"))
    if schema is not None and not isinstance(schema, _PLAIN):
        tool = schema
    function = decode(get(tool, "function"))
    source = function if function is not None and not isinstance(function, _PLAIN) else tool
    name = get(source, "name")
    if name is None:
        return tool
    definition: dict[str, Any] = {"type": as_str(get(tool, "type")) or "function", "name": name}
    description = get(source, "description")
    if description is not None:
        definition["description"] = description
    parameters = first(source, "parameters", "input_schema")
    if parameters is not None:
        definition["parameters"] = parameters
    return definition


def tool_definitions(tools: Any, decode: Decode = _same) -> list[Any]:
    return [tool_definition(tool, decode) for tool in as_list(decode(tools))]
