"""Messages found through every source in conventions.md, normalised to one shape.

Real AgentScope payloads (tests/fixtures) for what AgentScope sends; hand-written attributes, in
the shapes those instrumentations emit, for OpenLLMetry, OpenInference and span events.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ingest.otlp import decode_json
from tests.conftest import fixture_bytes
from tracing import messages
from tracing.messages import input_messages, output_messages, span_sections

PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def spans_of(fixture: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Span name -> [(span_type, attributes)], in the order the fixture has them."""
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for record in decode_json(fixture_bytes(fixture)).records:
        found.setdefault(record.name, []).append(
            (record.span_type, json.loads(record.attributes_json))
        )
    return found


@pytest.fixture(scope="module")
def agentscope_1() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    return spans_of("agentscope-1.0.21-react-agent.otlp.json")


@pytest.fixture(scope="module")
def agentscope_2() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    return spans_of("agentscope-2.0.10-agent.otlp.json")


def summary(conversation: messages.Conversation | None) -> list[tuple[str, list[str]]]:
    """Each message as (role, ["type:text-or-name", ...]) for compact assertions."""
    assert conversation is not None
    return [
        (
            message.role,
            [f"{part.type}:{part.text or part.name or part.data}" for part in message.parts],
        )
        for message in conversation.messages
    ]


# -- Real payloads ---------------------------------------------------------------------------


def test_agentscope_1_chat_input_is_read_from_the_provider_formatted_function_input(
    agentscope_1: dict,
) -> None:
    _, attributes = agentscope_1["chat qwen-max"][2]
    conversation = input_messages(attributes)
    assert conversation is not None
    assert conversation.source == "agentscope.function.input"
    roles = [message.role for message in conversation.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool"]
    call = conversation.messages[2].parts[1]
    assert (call.type, call.name, call.id) == ("tool_call", "convert", "call_fx1")
    assert json.loads(call.data) == {"amount": 120, "src": "EUR", "dst": "JPY"}
    assert "\n" in call.data  # pretty-printed
    result = conversation.messages[3].parts[0]
    assert (result.type, result.id, result.data) == (
        "tool_call_response",
        "call_fx1",
        "120 EUR = 19500 JPY",
    )
    assert [tool.name for tool in conversation.tools] == ["convert", "search_web"]
    assert conversation.tools[0].description == "Convert money between currencies."


def test_agentscope_1_chat_output_comes_from_gen_ai_output_messages(agentscope_1: dict) -> None:
    _, attributes = agentscope_1["chat qwen-max"][0]
    conversation = output_messages(attributes)
    assert conversation is not None and conversation.source == "gen_ai.output.messages"
    assert summary(conversation) == [
        ("assistant", ["text:I will convert the currency.", "tool_call:convert"])
    ]
    assert conversation.messages[0].finish_reason == "stop"


def test_agentscope_1_final_answer_of_the_agent(agentscope_1: dict) -> None:
    span_type, attributes = agentscope_1["invoke_agent Treasurer"][0]
    section_in, section_out = span_sections(span_type, attributes)
    assert section_in is not None and section_out is not None
    assert summary(section_in.conversation) == [("user", ["text:How much is 120 EUR in JPY?"])]
    assert summary(section_out.conversation) == [
        ("assistant", ["text:120 EUR is about 19,500 JPY."])
    ]
    assert section_out.conversation.messages[0].name == "Treasurer"


def test_agentscope_1_tool_span_shows_arguments_and_the_tool_response_repr(
    agentscope_1: dict,
) -> None:
    span_type, attributes = agentscope_1["execute_tool convert"][0]
    arguments, result = span_sections(span_type, attributes)
    assert arguments is not None and result is not None
    assert arguments.source == "gen_ai.tool.call.arguments"
    assert json.loads(arguments.value) == {"amount": 120, "src": "EUR", "dst": "JPY"}
    assert result.source == "gen_ai.tool.call.result"
    assert result.is_repr
    assert result.value.startswith("ToolResponse(content=")
    assert [(part.type, part.text) for part in result.parts] == [("text", "120 EUR = 19500 JPY")]


def test_agentscope_1_formatter_shows_its_function_input_and_output(agentscope_1: dict) -> None:
    span_type, attributes = agentscope_1["format openai"][0]
    section_in, section_out = span_sections(span_type, attributes)
    assert section_in is not None and section_out is not None
    assert section_in.source == "agentscope.function.input"
    assert section_in.conversation is None
    assert json.loads(section_in.value)["kwargs"]["msgs"][0].startswith("Msg(id=")
    assert section_out.source == "agentscope.function.output"
    assert json.loads(section_out.value)[1]["content"][0]["text"] == "How much is 120 EUR in JPY?"


def test_agentscope_2_chat_reads_gen_ai_attributes_only(agentscope_2: dict) -> None:
    span_type, attributes = agentscope_2["chat glm-4-plus"][1]
    section_in, section_out = span_sections(span_type, attributes)
    assert section_in.source == "gen_ai.input.messages"
    assert [m.role for m in section_in.conversation.messages] == ["system", "user", "assistant"]
    response = section_in.conversation.messages[2].parts[2]
    assert response.type == "tool_call_response"
    # AgentScope 2.x records the result as a list of block reprs: their text is shown.
    assert response.data.startswith("content=[TextBlock(type='text', text='Dune: shelf B-12")
    assert [tool.name for tool in section_in.conversation.tools] == ["find_book"]
    assert summary(section_out.conversation) == [("assistant", ["text:Dune is on shelf B-12."])]


def test_agentscope_2_tool_result_with_enum_reprs_is_still_parsed(agentscope_2: dict) -> None:
    span_type, attributes = agentscope_2["execute_tool find_book"][0]
    _, result = span_sections(span_type, attributes)
    assert result is not None and result.is_repr
    assert len(result.parts) == 1 and "Dune: shelf B-12, available" in result.parts[0].text


# -- Every other source -----------------------------------------------------------------------


def test_gen_ai_messages_as_otlp_structures_not_json_strings() -> None:
    attributes = {
        "gen_ai.input.messages": [
            {"role": "user", "parts": [{"type": "text", "content": "Hi"}]},
        ],
        "gen_ai.system_instructions": [{"type": "text", "content": "Be brief."}],
        "gen_ai.tool.definitions": [
            {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
        ],
    }
    conversation = input_messages(attributes)
    assert summary(conversation) == [("user", ["text:Hi"])]
    assert [part.text for part in conversation.system] == ["Be brief."]
    assert conversation.tools[0].name == "get_weather"
    assert json.loads(conversation.tools[0].parameters) == {"type": "object"}


def test_system_instructions_as_a_json_string_or_plain_text() -> None:
    as_json = {"gen_ai.system_instructions": '[{"type": "text", "content": "Be kind."}]'}
    as_text = {"gen_ai.system_instructions": "Be kind."}
    for attributes in (as_json, as_text):
        conversation = input_messages(attributes)
        assert conversation is not None
        assert [part.text for part in conversation.system] == ["Be kind."]
        assert conversation.messages == []


def test_every_part_type() -> None:
    parts = [
        {"type": "text", "content": "look"},
        {"type": "reasoning", "content": "thinking hard"},
        {"type": "tool_call", "id": "c1", "name": "lookup", "arguments": {"q": 1}},
        {"type": "tool_call_response", "id": "c1", "response": {"found": True}},
        {"type": "tool_call_response", "id": "c2", "result": "legacy field"},
        {"type": "blob", "modality": "image", "mime_type": "image/png", "content": PNG},
        {
            "type": "uri",
            "modality": "image",
            "mime_type": "image/jpeg",
            "uri": "https://x.test/a.jpg",
        },
        {
            "type": "file",
            "modality": "document",
            "file_id": "file-123",
            "mime_type": "application/pdf",
        },
        {"type": "server_side_widget", "size": 3},
    ]
    conversation = input_messages({"gen_ai.input.messages": [{"role": "user", "parts": parts}]})
    got = conversation.messages[0].parts
    assert [part.type for part in got] == [
        "text",
        "reasoning",
        "tool_call",
        "tool_call_response",
        "tool_call_response",
        "blob",
        "uri",
        "file",
        "server_side_widget",
    ]
    assert got[1].text == "thinking hard"
    assert (got[2].name, got[2].id, json.loads(got[2].data)) == ("lookup", "c1", {"q": 1})
    assert json.loads(got[3].data) == {"found": True}
    assert got[4].data == "legacy field"
    assert got[5].media == "image" and got[5].src == f"data:image/png;base64,{PNG}"
    assert got[6].media == "" and got[6].link == "https://x.test/a.jpg"
    assert (got[7].file_id, got[7].mime_type) == ("file-123", "application/pdf")
    assert json.loads(got[8].data) == {"type": "server_side_widget", "size": 3}


@pytest.mark.parametrize(
    ("part", "media", "link"),
    [
        ({"type": "blob", "mime_type": "image/svg+xml", "content": PNG}, "", ""),
        ({"type": "blob", "mime_type": "text/html", "content": PNG}, "", ""),
        ({"type": "blob", "mime_type": "image/png", "content": '"><script>x</script>'}, "", ""),
        ({"type": "blob", "mime_type": "audio/wav", "content": "UklGRg=="}, "audio", ""),
        ({"type": "uri", "mime_type": "image/png", "uri": "javascript:alert(1)"}, "", ""),
        ({"type": "uri", "uri": f"data:image/png;base64,{PNG}"}, "image", ""),
        ({"type": "uri", "uri": "data:text/html;base64,PGI+"}, "", ""),
        ({"type": "uri", "uri": " HTTPS://example.test/x.png"}, "", "HTTPS://example.test/x.png"),
    ],
)
def test_media_is_shown_inline_only_for_safe_types(part: dict, media: str, link: str) -> None:
    normalised = messages.to_part(part)
    assert normalised.media == media
    assert normalised.link == link
    if not media:
        assert normalised.src == ""


def test_openllmetry_indexed_prompt_and_completion() -> None:
    attributes = {
        "gen_ai.prompt.0.role": "system",
        "gen_ai.prompt.0.content": "You are terse.",
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": "Weather in Paris?",
        "gen_ai.prompt.2.role": "assistant",
        "gen_ai.prompt.2.tool_calls.0.id": "call_9",
        "gen_ai.prompt.2.tool_calls.0.name": "weather",
        "gen_ai.prompt.2.tool_calls.0.arguments": '{"city": "Paris"}',
        "gen_ai.prompt.3.role": "tool",
        "gen_ai.prompt.3.tool_call_id": "call_9",
        "gen_ai.prompt.3.content": "18°C",
        "gen_ai.prompt.10.role": "user",
        "gen_ai.prompt.10.content": "tenth, sorted numerically",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "18°C and sunny.",
        "gen_ai.completion.0.finish_reason": "stop",
        "llm.request.functions.0.name": "weather",
        "llm.request.functions.0.description": "Current weather",
    }
    conversation = input_messages(attributes)
    assert conversation.source == "gen_ai.prompt"
    assert summary(conversation) == [
        ("system", ["text:You are terse."]),
        ("user", ["text:Weather in Paris?"]),
        ("assistant", ["tool_call:weather"]),
        ("tool", ["tool_call_response:18°C"]),
        ("user", ["text:tenth, sorted numerically"]),
    ]
    assert json.loads(conversation.messages[2].parts[0].data) == {"city": "Paris"}
    assert conversation.tools[0].name == "weather"
    output = output_messages(attributes)
    assert output.source == "gen_ai.completion"
    assert summary(output) == [("assistant", ["text:18°C and sunny."])]
    assert output.messages[0].finish_reason == "stop"


def test_openllmetry_multimodal_content_as_a_json_string() -> None:
    content = json.dumps(
        [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ]
    )
    attributes = {"gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": content}
    parts = input_messages(attributes).messages[0].parts
    assert [(part.type, part.media) for part in parts] == [("text", ""), ("uri", "image")]


def test_openinference_flattened_messages_and_tools() -> None:
    attributes = {
        "openinference.span.kind": "LLM",
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.contents.0.message_content.type": "text",
        "llm.input_messages.0.message.contents.0.message_content.text": "Describe",
        "llm.input_messages.0.message.contents.1.message_content.type": "image",
        "llm.input_messages.0.message.contents.1.message_content.image.image.url": "https://i.test/c.png",
        "llm.input_messages.1.message.role": "assistant",
        "llm.input_messages.1.message.tool_calls.0.tool_call.id": "t1",
        "llm.input_messages.1.message.tool_calls.0.tool_call.function.name": "describe",
        "llm.input_messages.1.message.tool_calls.0.tool_call.function.arguments": '{"x": 1}',
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "A cat.",
        "llm.tools.0.tool.json_schema": json.dumps(
            {"type": "function", "function": {"name": "describe", "description": "Say it"}}
        ),
        "input.value": '{"messages": [{"role": "user", "content": "ignored: later source"}]}',
    }
    conversation = input_messages(attributes)
    assert conversation.source == "llm.input_messages"
    assert summary(conversation) == [
        ("user", ["text:Describe", "uri:"]),
        ("assistant", ["tool_call:describe"]),
    ]
    assert conversation.messages[0].parts[1].link == "https://i.test/c.png"
    assert (conversation.tools[0].name, conversation.tools[0].description) == ("describe", "Say it")
    assert summary(output_messages(attributes)) == [("assistant", ["text:A cat."])]


def test_openinference_input_value_request_document() -> None:
    attributes = {
        "input.value": json.dumps({"model": "m", "messages": [{"role": "user", "content": "Q?"}]}),
        "input.mime_type": "application/json",
        "output.value": json.dumps(
            {
                "choices": [
                    {"message": {"role": "assistant", "content": "A."}, "finish_reason": "stop"}
                ]
            }
        ),
    }
    conversation = input_messages(attributes)
    assert conversation.source == "input.value"
    assert summary(conversation) == [("user", ["text:Q?"])]
    output = output_messages(attributes)
    assert output.source == "output.value"
    assert summary(output) == [("assistant", ["text:A."])]
    assert output.messages[0].finish_reason == "stop"


def test_plain_input_value_is_shown_as_text() -> None:
    attributes = {"input.value": "just a question", "output.value": "just an answer"}
    section_in, section_out = span_sections("chain", attributes)
    assert (section_in.conversation, section_in.value) == (None, "just a question")
    assert (section_out.source, section_out.value) == ("output.value", "just an answer")


def test_older_conventions_message_events() -> None:
    events = [
        {"name": "gen_ai.system.message", "time_ns": 1, "attributes": {"content": "Sys"}},
        {"name": "gen_ai.user.message", "time_ns": 2, "attributes": {"content": "Hello"}},
        {
            "name": "gen_ai.assistant.message",
            "time_ns": 3,
            "attributes": {
                "tool_calls": json.dumps(
                    [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
                )
            },
        },
        {"name": "gen_ai.tool.message", "time_ns": 4, "attributes": {"content": "42", "id": "a"}},
        {
            "name": "gen_ai.choice",
            "time_ns": 5,
            "attributes": {
                "index": 0,
                "finish_reason": "stop",
                "message": json.dumps({"role": "assistant", "content": "It is 42."}),
            },
        },
        {"name": "something.else", "time_ns": 6, "attributes": {"content": "not a message"}},
    ]
    conversation = input_messages({}, events)
    assert conversation.source == "events"
    assert summary(conversation) == [
        ("system", ["text:Sys"]),
        ("user", ["text:Hello"]),
        ("assistant", ["tool_call:f"]),
        ("tool", ["tool_call_response:42"]),
    ]
    output = output_messages({}, events)
    assert summary(output) == [("assistant", ["text:It is 42."])]
    assert output.messages[0].finish_reason == "stop"


def test_event_body_as_json_attribute() -> None:
    events = [
        {
            "name": "gen_ai.user.message",
            "attributes": {"gen_ai.event.content": json.dumps({"content": "from body"})},
        }
    ]
    assert summary(input_messages({}, events)) == [("user", ["text:from body"])]


def test_inference_details_event() -> None:
    events = [
        {
            "name": "gen_ai.client.inference.operation.details",
            "attributes": {
                "gen_ai.input.messages": [
                    {"role": "user", "parts": [{"type": "text", "content": "Q"}]}
                ],
                "gen_ai.output.messages": [
                    {"role": "assistant", "parts": [{"type": "text", "content": "A"}]}
                ],
                "gen_ai.system_instructions": [{"type": "text", "content": "S"}],
            },
        }
    ]
    conversation = input_messages({}, events)
    assert summary(conversation) == [("user", ["text:Q"])]
    assert [part.text for part in conversation.system] == ["S"]
    assert summary(output_messages({}, events)) == [("assistant", ["text:A"])]


def test_first_source_wins() -> None:
    attributes = {
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": "new"}]}]
        ),
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "old",
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "older",
    }
    events = [{"name": "gen_ai.user.message", "attributes": {"content": "oldest"}}]
    conversation = input_messages(attributes, events)
    assert conversation.source == "gen_ai.input.messages"
    assert summary(conversation) == [("user", ["text:new"])]


def test_provider_shapes_anthropic_gemini_and_agentscope_blocks() -> None:
    attributes = {
        "agentscope.function.input": json.dumps(
            {
                "args": [
                    [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "hi"},
                                {
                                    "type": "image",
                                    "source": {
                                        "type": "base64",
                                        "media_type": "image/png",
                                        "data": PNG,
                                    },
                                },
                            ],
                        },
                        {
                            "role": "assistant",
                            "content": [
                                {"type": "thinking", "thinking": "hmm"},
                                {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
                            ],
                        },
                        {
                            "role": "user",
                            "content": [
                                {"type": "tool_result", "tool_use_id": "t", "content": "ok"}
                            ],
                        },
                        {
                            "role": "model",
                            "parts": [
                                {"text": "gemini"},
                                {"function_call": {"name": "g", "args": {}}},
                            ],
                        },
                    ]
                ],
                "kwargs": {},
            }
        )
    }
    assert summary(input_messages(attributes)) == [
        ("user", ["text:hi", "blob:"]),
        ("assistant", ["reasoning:hmm", "tool_call:f"]),
        ("user", ["tool_call_response:ok"]),
        ("model", ["text:gemini", "tool_call:g"]),
    ]


def test_agentscope_msg_repr_is_read_as_a_message() -> None:
    attributes = {
        "agentscope.function.output": json.dumps(
            "Msg(id='x', name='Bot', content=[{'type': 'text', 'text': 'Done.'}], "
            "role='assistant', "
            "metadata=None, timestamp='t')"
        )
    }
    output = output_messages(attributes)
    assert output.source == "agentscope.function.output"
    assert summary(output) == [("assistant", ["text:Done."])]
    assert output.messages[0].name == "Bot"


def test_reprs_are_parsed_never_evaluated() -> None:
    assert messages.parse_repr("__import__('os').system('touch /tmp/pwned-by-repr')") == {
        "__type__": "system",
        "args": ["touch /tmp/pwned-by-repr"],
    }
    assert messages.parse_repr("[x for x in y]") is None
    assert messages.parse_repr("A(" * 500 + ")" * 500) is None
    assert messages.parse_repr("no call here") is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        0,
        1.5,
        True,
        "",
        "[",
        "{]",
        "[1, 2]",
        '"str"',
        [None, 3, {"role": 5}],
        {"parts": "x"},
        {"role": ["x"], "content": {"a": 1}},
        [{"role": "user", "parts": [None, 1, [], {"type": 9}]}],
    ],
)
def test_strange_shapes_never_raise(value: Any) -> None:
    for key in (
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "agentscope.function.input",
        "agentscope.function.output",
        "gen_ai.prompt.0.content",
        "input.value",
        "gen_ai.tool.definitions",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.result",
    ):
        attributes = {key: value}
        events = [{"name": "gen_ai.user.message", "attributes": {"content": value}}]
        for span_type in ("llm", "tool", "formatter", "agent", "other"):
            span_sections(span_type, attributes, events)


def test_values_keep_their_types() -> None:
    assert [messages.value_type(v) for v in ("s", 1, 1.0, True, [1], {"a": 1}, None)] == [
        "string",
        "int",
        "double",
        "bool",
        "array",
        "map",
        "empty",
    ]
    assert messages.display(True) == "true"
    assert messages.display(1.0) == "1.0"
    assert messages.display('{"a": 1}') == '{\n  "a": 1\n}'


def test_huge_values_are_not_pretty_printed() -> None:
    big = {"items": list(range(100_000))}
    text = messages.pretty(big)
    assert "\n" not in text and json.loads(text) == big


# -- Shapes the reader shares with the SDK (studio_sdk.genai) -------------------------------


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        # Before the shared module only the SDK read these.
        ({"type": "server_tool_use", "id": "s1", "name": "search"}, ("tool_call", "search")),
        ({"type": "refusal", "refusal": "I can't."}, ("text", "I can't.")),
        ({"type": "input_image", "image_url": "https://x.test/i.png"}, ("uri", "image")),
        (
            {"type": "document", "source": {"media_type": "application/pdf", "data": "JVBE"}},
            ("blob", "document"),
        ),
        ({"type": "document", "source": {"type": "file", "file_id": "f"}}, ("file", "document")),
        ({"type": "reasoning", "summary": [{"text": "short"}]}, ("reasoning", "short")),
        ({"type": "function_call_output", "output": "4"}, ("tool_call_response", "4")),
        # Before the shared module only the reader read these.
        ({"type": "server_tool_call", "id": "s2", "name": "code"}, ("tool_call", "code")),
        ({"functionCall": {"name": "g", "args": {}}}, ("tool_call", "g")),
        ({"function_response": {"name": "g", "response": "r"}}, ("tool_call_response", "g")),
        ({"inline_data": {"mime_type": "image/png", "data": PNG}}, ("blob", "image")),
        ({"file_data": {"mime_type": "video/mp4", "file_uri": "gs://v"}}, ("uri", "video")),
        ({"text": "maybe", "thought": True}, ("reasoning", "maybe")),
    ],
)
def test_the_reader_handles_every_shape_the_sdk_handles(
    block: dict[str, Any], expected: tuple[str, str]
) -> None:
    part = messages.to_part(block)
    assert (part.type, part.text or part.name or part.data or part.modality) == expected


def test_message_level_shapes_the_sdk_read_first() -> None:
    attributes = {
        "gen_ai.input.messages": json.dumps(
            [
                {"role": "assistant", "content": "", "reasoning_content": "because"},
                {"role": "function", "name": "legacy", "content": "old result"},
            ]
        )
    }
    assert summary(input_messages(attributes)) == [
        ("assistant", ["reasoning:because"]),
        ("function", ["tool_call_response:legacy"]),
    ]
