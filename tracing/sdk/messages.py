"""Conversion of provider payloads to the OpenTelemetry GenAI message format.

A message is ``{"role", "parts": [...], "name"?}`` (plus ``finish_reason`` on output messages);
parts are ``text``, ``reasoning``, ``tool_call``, ``tool_call_response``, ``blob`` and ``uri``.
Inputs come as OpenAI-style dicts, Anthropic-style content blocks, AgentScope ``Msg``-like
objects or plain strings; responses as OpenAI, Anthropic, Gemini, Ollama, AgentScope
``ChatResponse``-like objects or dicts, or strings. Everything is duck-typed (dict keys or
attributes) so no provider SDK needs to be installed.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tracing.sdk.serialize import safe_repr

Message = dict[str, Any]
Part = dict[str, Any]

# Provider finish reasons mapped to the GenAI values used in a message's ``finish_reason``.
# ``gen_ai.response.finish_reasons`` keeps the raw provider values.
_FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "completed": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "tool_calls": "tool_call",
    "tool_use": "tool_call",
    "function_call": "tool_call",
    "tool_call": "tool_call",
    "content_filter": "content_filter",
    "safety": "content_filter",
    "recitation": "content_filter",
    "error": "error",
}

_TEXT_TYPES = frozenset({"text", "input_text", "output_text"})
_TOOL_CALL_TYPES = frozenset({"tool_use", "tool_call", "function_call", "server_tool_use"})
_TOOL_RESULT_TYPES = frozenset({"tool_result", "tool_call_response", "function_call_output"})
_MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "file"})


def get(obj: Any, key: str) -> Any:
    """``obj[key]`` for mappings, ``obj.key`` otherwise, ``None`` when absent."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    try:
        return getattr(obj, key, None)
    except Exception:
        # Properties of foreign objects may raise; a missing value is the honest answer.
        return None


# Content is truncated again when serialised; this only bounds a pathological repr.
_REPR_LIMIT = 1 << 20


def _repr(value: Any) -> str:
    return safe_repr(value, _REPR_LIMIT)


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, default=_repr, ensure_ascii=False)
    except (TypeError, ValueError):
        return _repr(value)


def as_str(value: Any) -> str | None:
    if isinstance(value, Enum):
        value = value.value if isinstance(value.value, str) else value.name
    return value if isinstance(value, str) else None


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_json(value: Any) -> Any:
    """Tool-call arguments arrive JSON-encoded from OpenAI; keep them as data when they parse."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def normalize_finish_reason(raw: str | None, has_tool_calls: bool) -> str:
    if raw is None:
        return "tool_call" if has_tool_calls else "stop"
    return _FINISH_REASONS.get(raw.lower(), raw)


def text_part(content: str) -> Part:
    return {"type": "text", "content": content}


def _uri_part(url: str, modality: str, mime_type: str | None = None) -> Part:
    if url.startswith("data:") and "," in url:
        header, data = url[5:].split(",", 1)
        mime = header.split(";", 1)[0] or mime_type
        part: Part = {"type": "blob", "modality": modality, "content": data}
        if mime:
            part["mime_type"] = mime
        return part
    part = {"type": "uri", "modality": modality, "uri": url}
    if mime_type:
        part["mime_type"] = mime_type
    return part


def _media_part(block: Any, modality: str) -> Part:
    source = get(block, "source")
    if source is not None:
        kind = as_str(get(source, "type"))
        mime = as_str(get(source, "media_type")) or as_str(get(source, "mime_type"))
        url = as_str(get(source, "url"))
        if kind == "url" and url:
            return _uri_part(url, modality, mime)
        data = get(source, "data")
        if isinstance(data, str):
            part: Part = {"type": "blob", "modality": modality, "content": data}
            if mime:
                part["mime_type"] = mime
            return part
        if kind == "file" or get(source, "file_id") is not None:
            return {"type": "file", "modality": modality, "file_id": get(source, "file_id")}
    url = as_str(get(block, "url")) or as_str(get(block, "image_url"))
    if url:
        return _uri_part(url, modality)
    file_id = get(block, "file_id")
    if file_id is not None:
        return {"type": "file", "modality": modality, "file_id": file_id}
    return {"type": modality}


def tool_call_part(call: Any) -> Part:
    function = get(call, "function")
    if function is not None:
        name, arguments = get(function, "name"), get(function, "arguments")
    else:
        name = get(call, "name")
        arguments = get(call, "input")
        if arguments is None:
            arguments = get(call, "arguments")
        if arguments is None:
            arguments = get(call, "args")
    call_id = get(call, "id")
    if call_id is None:
        call_id = get(call, "call_id")
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": parse_json(arguments)}


def _response_value(content: Any) -> Any:
    # A list of text blocks (AgentScope ToolResponse, Anthropic tool_result) reads best as text.
    if isinstance(content, (list, tuple)) and content:
        texts = [get(block, "text") for block in content]
        if all(as_str(get(block, "type")) == "text" for block in content) and all(
            isinstance(t, str) for t in texts
        ):
            return "\n".join(texts)
    return content


def _tool_result_part(block: Any) -> Part:
    call_id = get(block, "tool_use_id")
    for key in ("id", "call_id"):
        if call_id is None:
            call_id = get(block, key)
    response = get(block, "output")
    if response is None:
        response = get(block, "content")
    if response is None:
        response = get(block, "response")
    return {"type": "tool_call_response", "id": call_id, "response": _response_value(response)}


def content_part(block: Any) -> Part | None:
    """One GenAI part for a provider content block; ``None`` for empty text."""
    if isinstance(block, str):
        return text_part(block) if block else None
    kind = as_str(get(block, "type"))
    if kind in _TEXT_TYPES:
        text = get(block, "text")
        if text is None:
            text = get(block, "content")
        return text_part(text if isinstance(text, str) else _json_text(text))
    if kind == "thinking":
        return {"type": "reasoning", "content": get(block, "thinking")}
    if kind == "reasoning":
        content = get(block, "content")
        if content is None:
            content = get(block, "text")
        if content is None:
            summary = get(block, "summary")
            if isinstance(summary, list):
                content = "\n".join(str(get(s, "text") or "") for s in summary)
        return {"type": "reasoning", "content": content}
    if kind in _TOOL_CALL_TYPES:
        return tool_call_part(block)
    if kind in _TOOL_RESULT_TYPES:
        return _tool_result_part(block)
    if kind == "image_url":
        image = get(block, "image_url")
        url = image if isinstance(image, str) else as_str(get(image, "url"))
        return _uri_part(url, "image") if url else {"type": "image"}
    if kind in ("input_image",):
        return _media_part(block, "image")
    if kind == "input_audio":
        audio = get(block, "input_audio")
        fmt = as_str(get(audio, "format"))
        part: Part = {"type": "blob", "modality": "audio", "content": get(audio, "data")}
        if fmt:
            part["mime_type"] = f"audio/{fmt}"
        return part
    if kind in _MEDIA_TYPES:
        return _media_part(block, "image" if kind == "document" else kind)
    if kind == "refusal":
        return text_part(str(get(block, "refusal") or ""))
    if isinstance(block, Mapping):
        return dict(block) if kind else text_part(_json_text(block))
    if kind:
        return {"type": kind, "content": _repr(block)}
    try:
        return text_part(str(block))
    except Exception:
        return text_part(_repr(block))


def content_parts(content: Any) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, (list, tuple)):
        blocks = content
    else:
        blocks = [content]
    parts = []
    for block in blocks:
        part = content_part(block)
        if part is not None:
            parts.append(part)
    return parts


def _looks_like_message(obj: Any) -> bool:
    if isinstance(obj, Mapping):
        return "role" in obj or "content" in obj or "tool_calls" in obj
    return get(obj, "role") is not None and hasattr(obj, "content")


def to_message(obj: Any, default_role: str) -> Message:
    """One GenAI message for one OpenAI/Anthropic/AgentScope message or any other value."""
    if isinstance(obj, str):
        return {"role": default_role, "parts": [text_part(obj)]}
    if not _looks_like_message(obj):
        part = content_part(obj) if get(obj, "type") is not None else None
        if part is None:
            text = _json_text(obj) if isinstance(obj, Mapping) else _repr(obj)
            part = text_part(text)
        return {"role": default_role, "parts": [part]}

    role = as_str(get(obj, "role")) or default_role
    content = get(obj, "content")
    parts: list[Part] = []
    reasoning = get(obj, "reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        parts.append({"type": "reasoning", "content": reasoning})
    if role in ("tool", "function"):
        call_id = get(obj, "tool_call_id")
        parts.append(
            {"type": "tool_call_response", "id": call_id, "response": _response_value(content)}
        )
    else:
        parts.extend(content_parts(content))
    for call in get(obj, "tool_calls") or ():
        parts.append(tool_call_part(call))
    legacy_call = get(obj, "function_call")
    if legacy_call is not None:
        parts.append(tool_call_part(legacy_call))
    message: Message = {"role": role, "parts": parts}
    name = get(obj, "name")
    if isinstance(name, str) and name:
        message["name"] = name
    return message


def to_messages(value: Any, default_role: str = "user") -> list[Message]:
    """GenAI messages for a prompt: a string, a message, or a list of them."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        out: list[Message] = []
        for item in value:
            if isinstance(item, (list, tuple)):
                out.extend(to_messages(item, default_role))
            elif item is not None:
                out.append(to_message(item, default_role))
        return out
    return [to_message(value, default_role)]


def system_instructions(value: Any) -> list[Part]:
    """``gen_ai.system_instructions`` is a list of parts, e.g. from Anthropic's ``system``."""
    return content_parts(value)


def tool_definitions(tools: Any) -> list[Any]:
    """OpenAI ``{"type":"function","function":{...}}`` and Anthropic tools, flattened."""
    if not isinstance(tools, (list, tuple)):
        return []
    out: list[Any] = []
    for tool in tools:
        function = get(tool, "function")
        source = function if function is not None else tool
        name = get(source, "name")
        if name is None:
            out.append(tool)
            continue
        definition: dict[str, Any] = {"type": as_str(get(tool, "type")) or "function"}
        definition["name"] = name
        description = get(source, "description")
        if description is not None:
            definition["description"] = description
        parameters = get(source, "parameters")
        if parameters is None:
            parameters = get(source, "input_schema")
        if parameters is not None:
            definition["parameters"] = parameters
        out.append(definition)
    return out


@dataclass
class LLMResult:
    """What a chat span records about a response."""

    response_id: str | None = None
    model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None


def first_int(obj: Any, *keys: str) -> int | None:
    for key in keys:
        value = as_int(get(obj, key))
        if value is not None:
            return value
    return None


def _read_usage(response: Any, result: LLMResult) -> None:
    usage = get(response, "usage")
    if usage is not None:
        result.input_tokens = first_int(usage, "input_tokens", "prompt_tokens")
        result.output_tokens = first_int(usage, "output_tokens", "completion_tokens")
        return
    metadata = get(response, "usage_metadata")
    if metadata is not None:
        result.input_tokens = first_int(metadata, "prompt_token_count")
        result.output_tokens = first_int(metadata, "candidates_token_count")
        return
    result.input_tokens = as_int(get(response, "prompt_eval_count"))
    result.output_tokens = as_int(get(response, "eval_count"))


def _add_output(result: LLMResult, message: Message, raw_reason: Any) -> None:
    raw = as_str(raw_reason)
    if raw is None and isinstance(raw_reason, Enum):
        raw = raw_reason.name
    has_calls = any(part.get("type") == "tool_call" for part in message["parts"])
    reason = normalize_finish_reason(raw, has_calls)
    message["finish_reason"] = reason
    result.messages.append(message)
    result.finish_reasons.append(raw if raw is not None else reason)


def _parse_choices(choices: list[Any], result: LLMResult) -> None:
    for choice in choices:
        message = get(choice, "message")
        if message is not None:
            converted = to_message(message, "assistant")
        else:
            text = get(choice, "text")
            converted = {
                "role": "assistant",
                "parts": [text_part(text)] if isinstance(text, str) else [],
            }
        _add_output(result, converted, get(choice, "finish_reason"))


def _parse_responses_api(output: list[Any], response: Any, result: LLMResult) -> None:
    parts: list[Part] = []
    for item in output:
        kind = as_str(get(item, "type"))
        if kind == "message":
            parts.extend(content_parts(get(item, "content")))
        else:
            part = content_part(item)
            if part is not None:
                if kind == "function_call":
                    part["id"] = get(item, "call_id") or get(item, "id")
                parts.append(part)
    details = get(response, "incomplete_details")
    raw = as_str(get(details, "reason")) or as_str(get(response, "status"))
    _add_output(result, {"role": "assistant", "parts": parts}, raw)


def _parse_candidates(candidates: list[Any], result: LLMResult) -> None:
    for candidate in candidates:
        content = get(candidate, "content")
        parts: list[Part] = []
        for part in get(content, "parts") or ():
            text = get(part, "text")
            call = get(part, "function_call")
            if isinstance(text, str) and text:
                kind = "reasoning" if get(part, "thought") is True else "text"
                parts.append({"type": kind, "content": text})
            elif call is not None:
                parts.append(tool_call_part(call))
        role = as_str(get(content, "role"))
        message = {"role": "assistant" if role in (None, "model") else role, "parts": parts}
        _add_output(result, message, get(candidate, "finish_reason"))


def parse_response(response: Any) -> LLMResult:
    """Everything a chat span records, from any common response shape."""
    result = LLMResult()
    if response is None:
        return result
    if isinstance(response, LLMResult):
        return response
    if isinstance(response, str):
        _add_output(result, _assistant_text(response), None)
        return result
    result.response_id = as_str(get(response, "id")) or as_str(get(response, "response_id"))
    result.model = as_str(get(response, "model")) or as_str(get(response, "model_version"))
    _read_usage(response, result)

    choices = get(response, "choices")
    output = get(response, "output")
    candidates = get(response, "candidates")
    message = get(response, "message")
    content = get(response, "content")
    if isinstance(choices, (list, tuple)) and choices:
        _parse_choices(list(choices), result)
    elif isinstance(output, (list, tuple)) and get(response, "object") == "response":
        _parse_responses_api(list(output), response, result)
    elif isinstance(candidates, (list, tuple)) and candidates:
        _parse_candidates(list(candidates), result)
    elif message is not None and _looks_like_message(message):
        _add_output(result, to_message(message, "assistant"), get(response, "done_reason"))
    elif content is not None:
        role = as_str(get(response, "role")) or "assistant"
        raw = get(response, "stop_reason")
        if raw is None:
            raw = get(response, "finish_reason")
        _add_output(result, {"role": role, "parts": content_parts(content)}, raw)
    elif isinstance(get(response, "text"), str):
        _add_output(result, _assistant_text(get(response, "text")), None)
    elif not isinstance(choices, (list, tuple)):
        text = _json_text(response) if isinstance(response, Mapping) else None
        _add_output(result, _assistant_text(text or _repr(response)), None)
    return result


def _assistant_text(text: str) -> Message:
    return {"role": "assistant", "parts": [text_part(text)]}


_ANTHROPIC_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
)


class StreamAccumulator:
    """Folds a stream of response chunks into one response.

    The rule: OpenAI ``chat.completion.chunk`` deltas are concatenated (content, reasoning and
    tool-call argument fragments, per choice and per tool-call index); Anthropic stream events
    are folded the same way; plain string chunks are concatenated. Any other chunk (AgentScope
    ``ChatResponse``, which is cumulative, or an unknown shape) replaces the previous one: the
    last chunk wins. Only the state needed for the final response is kept.
    """

    def __init__(self, capture_content: bool = True) -> None:
        self.capture = capture_content
        self.mode: str | None = None
        self.last: Any = None
        self.texts: list[str] = []
        self.response_id: str | None = None
        self.model: str | None = None
        self.usage: Any = None
        self.choices: dict[int, dict[str, Any]] = {}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.stop_reason: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None

    def _classify(self, chunk: Any) -> str:
        if isinstance(chunk, str):
            return "text"
        if isinstance(get(chunk, "choices"), (list, tuple)) and (
            get(chunk, "object") == "chat.completion.chunk"
            or any(get(c, "delta") is not None for c in get(chunk, "choices"))
            or (self.mode == "openai" and not get(chunk, "choices"))
        ):
            return "openai"
        if as_str(get(chunk, "type")) in _ANTHROPIC_EVENTS:
            return "anthropic"
        return "last"

    def add(self, chunk: Any) -> None:
        mode = self._classify(chunk)
        # The first recognised shape decides how the stream is folded.
        if self.mode in (None, "last"):
            self.mode = mode
        if mode == "text":
            if self.capture:
                self.texts.append(chunk)
        elif mode == "openai":
            self._add_openai(chunk)
        elif mode == "anthropic":
            self._add_anthropic(chunk)
        else:
            self.last = chunk

    def _add_openai(self, chunk: Any) -> None:
        self.response_id = self.response_id or as_str(get(chunk, "id"))
        self.model = self.model or as_str(get(chunk, "model"))
        if get(chunk, "usage") is not None:
            self.usage = get(chunk, "usage")
        for choice in get(chunk, "choices") or ():
            index = as_int(get(choice, "index")) or 0
            state = self.choices.setdefault(
                index, {"content": [], "reasoning": [], "calls": {}, "finish": None, "role": None}
            )
            finish = get(choice, "finish_reason")
            if finish is not None:
                state["finish"] = finish
            delta = get(choice, "delta")
            if delta is None:
                continue
            state["role"] = state["role"] or as_str(get(delta, "role"))
            if not self.capture:
                continue
            content = get(delta, "content")
            if isinstance(content, str):
                state["content"].append(content)
            reasoning = get(delta, "reasoning_content")
            if isinstance(reasoning, str):
                state["reasoning"].append(reasoning)
            for call in get(delta, "tool_calls") or ():
                call_index = as_int(get(call, "index")) or 0
                slot = state["calls"].setdefault(call_index, {"id": None, "name": None, "args": []})
                slot["id"] = slot["id"] or get(call, "id")
                function = get(call, "function")
                slot["name"] = slot["name"] or get(function, "name")
                fragment = get(function, "arguments")
                if isinstance(fragment, str):
                    slot["args"].append(fragment)

    def _add_anthropic(self, event: Any) -> None:
        kind = as_str(get(event, "type"))
        if kind == "message_start":
            message = get(event, "message")
            self.response_id = as_str(get(message, "id"))
            self.model = as_str(get(message, "model"))
            usage = get(message, "usage")
            self.input_tokens = first_int(usage, "input_tokens")
            self.output_tokens = first_int(usage, "output_tokens")
        elif kind == "content_block_start":
            block = get(event, "content_block")
            index = as_int(get(event, "index")) or 0
            self.blocks[index] = {
                "type": as_str(get(block, "type")),
                "id": get(block, "id"),
                "name": get(block, "name"),
                "text": [get(block, "text") or get(block, "thinking") or ""],
                "json": [],
            }
        elif kind == "content_block_delta" and self.capture:
            index = as_int(get(event, "index")) or 0
            slot = self.blocks.setdefault(
                index, {"type": "text", "id": None, "name": None, "text": [], "json": []}
            )
            delta = get(event, "delta")
            for key in ("text", "thinking"):
                piece = get(delta, key)
                if isinstance(piece, str):
                    slot["text"].append(piece)
            partial = get(delta, "partial_json")
            if isinstance(partial, str):
                slot["json"].append(partial)
        elif kind == "message_delta":
            self.stop_reason = as_str(get(get(event, "delta"), "stop_reason")) or self.stop_reason
            output = first_int(get(event, "usage"), "output_tokens")
            if output is not None:
                self.output_tokens = output

    def result(self) -> LLMResult:
        if self.mode == "openai":
            choices = []
            for index in sorted(self.choices):
                state = self.choices[index]
                message: dict[str, Any] = {
                    "role": state["role"] or "assistant",
                    "content": "".join(state["content"]),
                }
                if state["reasoning"]:
                    message["reasoning_content"] = "".join(state["reasoning"])
                if state["calls"]:
                    message["tool_calls"] = [
                        {
                            "id": slot["id"],
                            "type": "function",
                            "function": {"name": slot["name"], "arguments": "".join(slot["args"])},
                        }
                        for _, slot in sorted(state["calls"].items())
                    ]
                choices.append(
                    {"index": index, "message": message, "finish_reason": state["finish"]}
                )
            return parse_response(
                {
                    "id": self.response_id,
                    "model": self.model,
                    "choices": choices,
                    "usage": self.usage,
                }
            )
        if self.mode == "anthropic":
            content = []
            for index in sorted(self.blocks):
                slot = self.blocks[index]
                if slot["type"] == "tool_use":
                    args = "".join(slot["json"])
                    content.append(
                        {
                            "type": "tool_use",
                            "id": slot["id"],
                            "name": slot["name"],
                            "input": parse_json(args) if args else {},
                        }
                    )
                elif slot["type"] == "thinking":
                    content.append({"type": "thinking", "thinking": "".join(slot["text"])})
                else:
                    content.append({"type": "text", "text": "".join(slot["text"])})
            result = parse_response(
                {"id": self.response_id, "model": self.model, "content": content}
            )
            if self.stop_reason is not None and result.messages:
                result.finish_reasons = [self.stop_reason]
                has_calls = any(p["type"] == "tool_call" for p in result.messages[0]["parts"])
                result.messages[0]["finish_reason"] = normalize_finish_reason(
                    self.stop_reason, has_calls
                )
            result.input_tokens = self.input_tokens
            result.output_tokens = self.output_tokens
            return result
        if self.mode == "text":
            return parse_response("".join(self.texts))
        return parse_response(self.last)
