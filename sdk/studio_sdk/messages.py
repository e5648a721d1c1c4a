"""What a chat span records about a response: provider responses and streams read into GenAI
output messages, finish reasons, ids and token usage.

Responses come as OpenAI (chat and Responses API), Anthropic, Gemini, Ollama, AgentScope
``ChatResponse``-like objects or dicts, or strings; the message and part shapes themselves are
read by ``studio_sdk.genai``, which Studio's reader shares. Everything is duck-typed (dict keys or
attributes) so no provider SDK needs to be installed.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from studio_sdk.genai import (
    Message,
    Part,
    as_int,
    as_str,
    content_part,
    content_parts,
    get,
    json_text,
    looks_like_message,
    parse_json,
    repr_text,
    text_part,
    to_message,
)

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


def normalize_finish_reason(raw: str | None, has_tool_calls: bool) -> str:
    if raw is None:
        return "tool_call" if has_tool_calls else "stop"
    return _FINISH_REASONS.get(raw.lower(), raw)


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
                parts.append(part)
    details = get(response, "incomplete_details")
    raw = as_str(get(details, "reason")) or as_str(get(response, "status"))
    _add_output(result, {"role": "assistant", "parts": parts}, raw)


def _parse_candidates(candidates: list[Any], result: LLMResult) -> None:
    for candidate in candidates:
        content = get(candidate, "content")
        parts = content_parts(get(content, "parts") or [])
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
    elif message is not None and looks_like_message(message):
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
        text = json_text(response) if isinstance(response, Mapping) else None
        _add_output(result, _assistant_text(text or repr_text(response)), None)
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
