"""The message reader never raises on client-supplied attributes (issue 11): one bad span must
not 500 its panel, its conversation and its run page. Hypothesis generates attribute maps, events
and nesting; the two inputs that used to raise are pinned by name."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tracing import conventions, messages
from tracing.reprs import parse_repr

KEYS = [
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.response.finish_reasons",
    "agentscope.function.input",
    "agentscope.function.output",
    "input.value",
    "output.value",
    "tool.parameters",
]
PREFIXES = [
    "gen_ai.prompt",
    "gen_ai.completion",
    "llm.input_messages",
    "llm.output_messages",
    "llm.tools",
    "llm.request.functions",
]
SEGMENTS = ["0", "1", "10", "²", "٣", "007", "role", "content", "tool_calls", "message"]
SEGMENTS += ["contents", "message_content", "type", "text", "name", "arguments", "tool", ""]
FIELDS = ["role", "content", "parts", "type", "text", "tool_calls", "function", "name", "id"]
FIELDS += ["message", "source", "data", "url", "image_url", "input_audio", "function_call"]
FIELDS += ["response", "result", "output", "contents", "message_content", "args", "kwargs"]
FIELDS += ["tool_call", "json_schema", "tool", "inline_data", "file_data", "finish_reason"]
TYPES = ["text", "reasoning", "thinking", "tool_call", "tool_use", "server_tool_use", "uri"]
TYPES += ["server_tool_call", "function_call", "tool_result", "tool_call_response", "blob"]
TYPES += ["file", "image", "audio", "document", "image_url", "input_audio", "refusal", "chat"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(TYPES),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=25,
)
reprs = st.builds(
    lambda name, value: f"{name}(content={value!r}, id='x')",
    st.sampled_from(["ToolResponse", "Msg", "TextBlock", "x.y"]),
    json_values,
)
# Stored attribute values: OTLP structures, or the JSON strings and reprs emitters write.
attribute_values = json_values | json_values.map(json.dumps) | reprs
attribute_keys = (
    st.sampled_from(KEYS)
    | st.builds(
        lambda prefix, segments: ".".join([prefix, *segments]),
        st.sampled_from(PREFIXES),
        st.lists(st.sampled_from(SEGMENTS) | st.text(max_size=3), min_size=1, max_size=5),
    )
    | st.text(max_size=12)
)
attribute_maps = st.dictionaries(attribute_keys, attribute_values, max_size=8)
events = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(
                [
                    "gen_ai.user.message",
                    "gen_ai.system.message",
                    "gen_ai.assistant.message",
                    "gen_ai.tool.message",
                    "gen_ai.choice",
                    "gen_ai.client.inference.operation.details",
                    "exception",
                ]
            ),
            "attributes": attribute_maps | json_values,
        }
    ),
    max_size=3,
)


def read_everything(attributes: dict[str, Any], span_events: list[Any] = ()) -> None:
    """Everything a page does with a span's attributes, including the Parts' properties."""
    for span_type in conventions.SPAN_TYPES:
        for section in messages.span_sections(span_type, attributes, span_events):
            if section is None:
                continue
            conversation = section.conversation
            found = list(section.parts)
            if conversation is not None:
                found += conversation.system
                for message in conversation.messages:
                    assert message.role_class
                    found += message.parts
            for part in found:
                assert isinstance((part.media, part.src, part.link, part.size), tuple)
    messages.finish_reasons(attributes)
    for value in attributes.values():
        messages.display(value)
        messages.value_type(value)


@settings(deadline=None, max_examples=100)
@given(attributes=attribute_maps, span_events=events)
def test_the_reader_never_raises_on_any_attributes(
    attributes: dict[str, Any], span_events: list[Any]
) -> None:
    read_everything(attributes, span_events)


BRACKETS = [("[", "]"), ("(", ")"), ('{"a":', "}"), ("f(", ")"), ("[{'k':", "}]")]


def nested(depth: int, open_: str, close: str) -> str:
    return open_ * depth + close * depth


@settings(deadline=None, max_examples=12)
@given(
    depth=st.integers(min_value=1, max_value=3000),
    brackets=st.sampled_from(BRACKETS),
    key=st.sampled_from([*KEYS, "gen_ai.prompt.0.content", "llm.input_messages.0.message.content"]),
)
def test_the_reader_never_raises_on_any_nesting(
    depth: int, brackets: tuple[str, str], key: str
) -> None:
    text = nested(depth, *brackets)
    read_everything({key: text})
    read_everything({key: json.dumps([{"role": "user", "content": text}])})
    structure: Any = "leaf"
    for level in range(depth):
        structure = {"message": structure} if level % 2 else [structure, {"content": "x"}]
    read_everything({key: structure})
    flat_key = "gen_ai.prompt.0." + ".".join(["message"] * min(depth, 2000)) + ".content"
    read_everything({flat_key: "x"})


@settings(deadline=None, max_examples=150)
@given(text=st.text() | st.text(alphabet="()[]{}<>'\",:=.*-+ abc019_\\\n", max_size=60) | reprs)
def test_the_repr_parser_never_raises(text: str) -> None:
    parse_repr(text)
    parse_repr("<" + text + ">")


def test_a_unicode_digit_in_an_indexed_key_is_read_as_a_name_not_an_index() -> None:
    # `"²".isdigit()` is true but int("²") raises: this 500'd the span panel.
    attributes = {
        "gen_ai.prompt.².content": "superscript",
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "hello",
    }
    read_everything(attributes)
    conversation = messages.input_messages(attributes)
    assert conversation is not None
    assert [(m.role, m.parts[0].text) for m in conversation.messages] == [("user", "hello")]


def test_a_thousand_nested_brackets_are_shown_not_raised() -> None:
    text = nested(1000, "[", "]")
    for key in ("gen_ai.input.messages", "agentscope.function.output", "input.value"):
        read_everything({key: text})
    section_in, _ = messages.span_sections("tool", {"gen_ai.tool.call.arguments": text})
    assert section_in is not None and section_in.value.startswith("[[[")
    assert messages.display(text).startswith("[[[")
