"""studio_sdk.genai: provider message shapes as GenAI parts and messages, the module the SDK and
Studio's reader share. Runs without Django."""

import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio_sdk import genai

PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

# Every block shape either side read before they shared this module, with the GenAI part it is.
SHAPES: list[tuple[str, Any, dict[str, Any]]] = [
    ("genai text", {"type": "text", "content": "hi"}, {"type": "text", "content": "hi"}),
    ("openai text", {"type": "text", "text": "hi"}, {"type": "text", "content": "hi"}),
    ("responses input_text", {"type": "input_text", "text": "q"}, {"content": "q"}),
    ("responses output_text", {"type": "output_text", "text": "a"}, {"content": "a"}),
    ("gemini text", {"text": "hola"}, {"type": "text", "content": "hola"}),
    ("gemini thought", {"text": "hmm", "thought": True}, {"type": "reasoning", "content": "hmm"}),
    ("genai reasoning", {"type": "reasoning", "content": "r"}, {"type": "reasoning"}),
    ("anthropic thinking", {"type": "thinking", "thinking": "t"}, {"content": "t"}),
    (
        "responses reasoning summary",
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}]},
        {"type": "reasoning", "content": "s"},
    ),
    (
        "openai refusal",
        {"type": "refusal", "refusal": "I can't help with that."},
        {"type": "text", "content": "I can't help with that."},
    ),
    (
        "genai tool_call",
        {"type": "tool_call", "id": "c1", "name": "f", "arguments": {"a": 1}},
        {"type": "tool_call", "id": "c1", "name": "f", "arguments": {"a": 1}},
    ),
    (
        "anthropic tool_use",
        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
        {"type": "tool_call", "id": "t1", "name": "f", "arguments": {"a": 1}},
    ),
    (
        "anthropic server_tool_use",
        {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"q": "x"}},
        {"type": "tool_call", "id": "s1", "name": "web_search", "arguments": {"q": "x"}},
    ),
    (
        "genai server_tool_call",
        {"type": "server_tool_call", "id": "s2", "name": "code", "arguments": {"c": "1"}},
        {"type": "tool_call", "id": "s2", "name": "code", "arguments": {"c": "1"}},
    ),
    (
        "responses function_call",
        {"type": "function_call", "id": "fc_9", "call_id": "call_1", "name": "f", "arguments": ""},
        {"type": "tool_call", "id": "call_1", "name": "f", "arguments": ""},
    ),
    (
        "gemini function_call",
        {"function_call": {"name": "g", "args": {"x": 1}}},
        {"type": "tool_call", "name": "g", "arguments": {"x": 1}},
    ),
    (
        "gemini functionCall (REST)",
        {"functionCall": {"name": "g", "args": {}}},
        {"type": "tool_call", "name": "g"},
    ),
    (
        "genai tool_call_response",
        {"type": "tool_call_response", "id": "c1", "response": {"ok": True}},
        {"type": "tool_call_response", "id": "c1", "response": {"ok": True}},
    ),
    (
        "legacy result field",
        {"type": "tool_call_response", "id": "c2", "result": "r"},
        {"type": "tool_call_response", "response": "r"},
    ),
    (
        "anthropic tool_result of text blocks",
        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "ok"}]},
        {"type": "tool_call_response", "id": "t1", "response": "ok"},
    ),
    (
        "responses function_call_output",
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        {"type": "tool_call_response", "id": "call_1", "response": "42"},
    ),
    (
        "gemini function_response",
        {"function_response": {"name": "g", "response": {"v": 1}}},
        {"type": "tool_call_response", "name": "g", "response": {"v": 1}},
    ),
    (
        "openai image_url",
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
        {"type": "uri", "modality": "image", "uri": "https://x.test/a.png"},
    ),
    (
        "openai image_url as data URL",
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "uri", "modality": "image", "mime_type": "image/png"},
    ),
    (
        "responses input_image",
        {"type": "input_image", "image_url": "https://x.test/b.png"},
        {"type": "uri", "modality": "image", "uri": "https://x.test/b.png"},
    ),
    (
        "responses input_image by file id",
        {"type": "input_image", "file_id": "file-1"},
        {"type": "file", "modality": "image", "file_id": "file-1"},
    ),
    (
        "openai input_audio",
        {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
        {"type": "blob", "modality": "audio", "content": "UklG", "mime_type": "audio/wav"},
    ),
    (
        "anthropic base64 image",
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "blob", "modality": "image", "mime_type": "image/png", "content": PNG},
    ),
    (
        "agentscope url image",
        {"type": "image", "source": {"type": "url", "url": "https://x.test/c.png"}},
        {"type": "uri", "modality": "image", "uri": "https://x.test/c.png"},
    ),
    (
        "agentscope audio",
        {"type": "audio", "source": {"type": "base64", "media_type": "audio/wav", "data": "UklG"}},
        {"type": "blob", "modality": "audio"},
    ),
    (
        "agentscope video url",
        {"type": "video", "source": {"type": "url", "url": "https://x.test/v.mp4"}},
        {"type": "uri", "modality": "video"},
    ),
    (
        "anthropic pdf document",
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        },
        {"type": "blob", "modality": "document", "mime_type": "application/pdf"},
    ),
    (
        "anthropic document by file id",
        {"type": "document", "source": {"type": "file", "file_id": "file_9"}},
        {"type": "file", "modality": "document", "file_id": "file_9"},
    ),
    (
        "openinference nested image",
        {"type": "image", "image": {"image": {"url": "https://x.test/d.png"}}},
        {"type": "uri", "modality": "image", "uri": "https://x.test/d.png"},
    ),
    (
        "gemini inline_data",
        {"inline_data": {"mime_type": "image/png", "data": PNG}},
        {"type": "blob", "modality": "image", "mime_type": "image/png"},
    ),
    (
        "gemini fileData (REST)",
        {"fileData": {"mimeType": "video/mp4", "fileUri": "gs://b/v.mp4"}},
        {"type": "uri", "modality": "video", "uri": "gs://b/v.mp4"},
    ),
    (
        "genai blob",
        {"type": "blob", "modality": "image", "mime_type": "image/png", "content": PNG},
        {"type": "blob", "modality": "image", "mime_type": "image/png", "content": PNG},
    ),
    (
        "genai uri",
        {"type": "uri", "modality": "image", "uri": "https://x.test/e.jpg"},
        {"type": "uri", "uri": "https://x.test/e.jpg"},
    ),
    (
        "genai file",
        {"type": "file", "modality": "document", "file_id": "f-1", "mime_type": "application/pdf"},
        {"type": "file", "modality": "document", "file_id": "f-1", "mime_type": "application/pdf"},
    ),
    (
        "a part type nobody knows",
        {"type": "server_side_widget", "size": 3},
        {"type": "server_side_widget", "size": 3},
    ),
]


@pytest.mark.parametrize(("shape", "block", "expected"), SHAPES, ids=[s[0] for s in SHAPES])
def test_every_block_shape_becomes_its_genai_part(
    shape: str, block: Any, expected: dict[str, Any]
) -> None:
    part = genai.content_part(block)
    assert part is not None
    assert {key: part.get(key) for key in expected} == expected


def test_blocks_may_be_objects_as_provider_sdks_return_them() -> None:
    block = SimpleNamespace(type="server_tool_use", id="s", name="web_search", input={"q": 1})
    assert genai.content_part(block) == {
        "type": "tool_call",
        "id": "s",
        "name": "web_search",
        "arguments": {"q": 1},
    }
    gemini_part = SimpleNamespace(text=None, function_call=SimpleNamespace(name="g", args={}))
    assert genai.content_part(gemini_part)["type"] == "tool_call"


def test_messages_of_every_family() -> None:
    messages = genai.to_messages(
        [
            {"role": "user", "parts": [{"type": "text", "content": "genai"}]},
            {"role": "model", "parts": [{"text": "gemini"}]},
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "why",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": "done"},
            {"role": "function", "name": "legacy", "content": "old"},
            {"message": {"role": "assistant", "content": "wrapped"}, "finish_reason": "stop"},
            {"role": "user", "contents": {"0": {"message_content": {"type": "text", "text": "o"}}}},
            {
                "role": "assistant",
                "tool_calls": [{"tool_call": {"id": "t", "function": {"name": "g"}}}],
            },
        ]
    )
    assert [(m["role"], [p["type"] for p in m["parts"]]) for m in messages] == [
        ("user", ["text"]),
        ("model", ["text"]),
        ("assistant", ["reasoning", "tool_call"]),
        ("tool", ["tool_call_response"]),
        ("function", ["tool_call_response"]),
        ("assistant", ["text"]),
        ("user", ["text"]),
        ("assistant", ["tool_call"]),
    ]
    assert messages[4]["parts"][0]["name"] == "legacy"
    assert messages[5]["finish_reason"] == "stop"
    assert messages[7]["parts"][0]["name"] == "g"


def test_tool_definitions_of_every_family() -> None:
    tools = [
        {"type": "function", "function": {"name": "a", "description": "A", "parameters": {}}},
        {"name": "b", "input_schema": {"type": "object"}},
        {"type": "function", "name": "c", "parameters": {}},
        {"tool": {"json_schema": json.dumps({"type": "function", "function": {"name": "d"}})}},
    ]
    definitions = genai.tool_definitions(tools, genai.parse_json)
    assert [d["name"] for d in definitions] == ["a", "b", "c", "d"]
    assert definitions[1]["parameters"] == {"type": "object"}


def test_lists_nested_deeper_than_anyone_writes_do_not_recurse() -> None:
    value: Any = "bottom"
    for _ in range(5000):
        value = [value]
    assert len(genai.to_messages(value)) == 1
    wrapped: Any = {"role": "user", "content": "x"}
    for _ in range(5000):
        wrapped = {"message": wrapped}
    assert len(genai.to_messages([wrapped])) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    *("role", "content", "parts", "type", "text", "tool_calls", "function", "name"),
                    *("id", "message", "source", "data", "url", "image_url", "input_audio"),
                    *("function_call", "response", "result", "output", "contents", "summary"),
                    *("message_content", "inline_data", "file_data", "thought", "tool_call"),
                    *("json_schema", "tool"),
                ]
            )
            | st.text(max_size=8),
            children | st.sampled_from(sorted(genai.TOOL_CALL_TYPES | genai.MEDIA_TYPES)),
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(deadline=None, max_examples=300)
@given(value=json_values, role=st.text(max_size=5))
def test_it_never_raises_on_any_json_shape(value: Any, role: str) -> None:
    for message in genai.to_messages(value, role, genai.parse_json):
        assert isinstance(message["parts"], list)
    genai.content_parts(value)
    genai.system_instructions(value)
    genai.tool_definitions(value, genai.parse_json)
    json.dumps(genai.to_messages(value, role), default=str)
