"""The trace page: header, call tree, span panel, OTLP/JSON download."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests
from django.conf import settings
from django.test import Client

from ingest.otlp import decode_json, decode_protobuf
from ingest.writer import write_batch
from studio import formatting
from tests.conftest import fixture_bytes
from tracing.models import Span, Trace
from tracing.otlp_json import key_values

pytestmark = pytest.mark.django_db

TRACE = "5b8efff798038103d269b633813fc60c"
AS1_TRACE = "ad27a918a7ce11d08dc80c6ec77cd536"
AS1_AGENT = "fa0f6dfb4a6e6fe7"
AS1_CHAT_2 = "88ec42cb9eb37c08"
AS1_CHAT_3 = "401830cadf7e290c"
AS1_TOOL = "88f5645e5bd6a4ce"
AS1_FORMAT = "fab758bd9da9749b"
PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
STACK = 'Traceback (most recent call last):\n  File "x.py"'
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def span(
    span_id: str,
    name: str,
    parent: str = "",
    start: int = 0,
    end: int = 1_000_000,
    attributes: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    base = 1_700_000_000_000_000_000
    document = {
        "traceId": extra.pop("trace_id", TRACE),
        "spanId": span_id,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(base + start),
        "endTimeUnixNano": str(base + end),
        "attributes": key_values(attributes or {}),
        **extra,
    }
    if parent:
        document["parentSpanId"] = parent
    return document


def payload(spans: list[dict[str, Any]], resource: dict[str, Any] | None = None) -> bytes:
    resource = {"service.name": "svc", **(resource or {})}
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": key_values(resource)},
                    "scopeSpans": [{"scope": {"name": "tests", "version": "1"}, "spans": spans}],
                }
            ]
        }
    ).encode()


def store(body: bytes) -> None:
    batch = decode_json(body)
    assert not batch.rejected, batch.messages
    write_batch(batch.records)


@pytest.fixture
def agentscope_1() -> str:
    write_batch(decode_protobuf(fixture_bytes("agentscope-1.0.21-react-agent.pb")).records)
    return AS1_TRACE


def rows(html: str) -> list[tuple[str, int, str]]:
    """(span id, aria-level, classes) of each tree row, in order."""
    return [
        (match[2], int(match[3]), match[1])
        for match in re.finditer(
            r'<div class="(r [^"]*)" id="s-([0-9a-f]+)" role="treeitem" aria-level="(\d+)"', html
        )
    ]


def panel(client: Client, trace_id: str, span_id: str) -> str:
    response = client.get(f"/traces/{trace_id}/spans/{span_id}/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return response.content.decode()


def chat_panel(client: Client, parts: list[dict[str, Any]], **attributes: Any) -> str:
    """The panel of a lone chat span whose user message has these parts."""
    messages = json.dumps([{"role": "user", "parts": parts}])
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.input.messages": messages, **attributes}
    store(payload([span("0000000000000001", "chat m", attributes=attributes)]))
    return panel(client, TRACE, "0000000000000001")


# -- The page ------------------------------------------------------------------------------


def test_header_shows_the_trace_summary(client: Client, agentscope_1: str) -> None:
    html = client.get(f"/traces/{agentscope_1}/").content.decode()
    assert '<h1 title="invoke_agent Treasurer">Treasurer</h1>' in html
    assert f'data-copy="{AS1_TRACE}"' in html
    assert "unknown_service:python" in html
    assert "<dd>9</dd>" in html  # spans
    assert "126 in · 27 out" in html
    assert 'href="/conversations/FBR8Y7LSqV7pXo8fzTZ8TV/"' in html
    assert f'href="/traces/{AS1_TRACE}/otlp.json"' in html


def test_tree_rows_are_nested_by_parent_with_kind_label_tokens_and_bar(
    client: Client, agentscope_1: str
) -> None:
    html = client.get(f"/traces/{agentscope_1}/").content.decode()
    found = rows(html)
    assert len(found) == 9
    assert found[0][:2] == (AS1_AGENT, 1)
    assert all(level == 2 for _, level, _ in found[1:])
    assert re.search(
        rf'id="s-{AS1_CHAT_2}".*?<b class="badge badge-llm">llm</b> qwen-max</a>.*?'
        r'<span class="tk">42 → 9</span>.*?<rect x="44\.\d\d%" width="0\.\d\d%"',
        html,
    )
    assert f'<a href="?span={AS1_TOOL}" tabindex="-1" title="execute_tool convert">' in html
    assert '<b class="badge badge-tool">tool</b> convert</a>' in html
    assert '<b class="badge badge-formatter">formatter</b> openai</a>' in html
    assert '<b class="badge badge-agent">agent</b> Treasurer</a>' in html


def test_tree_order_is_depth_first_with_siblings_by_start(client: Client) -> None:
    store(
        payload(
            [
                span("000000000000000b", "b", parent="000000000000000a", start=50, end=90),
                span("000000000000000c", "c", parent="000000000000000a", start=10, end=40),
                span("000000000000000d", "d", parent="000000000000000c", start=20, end=30),
                span("000000000000000a", "a", start=0, end=100),
            ]
        )
    )
    html = client.get(f"/traces/{TRACE}/").content.decode()
    assert [(span_id[-1], level) for span_id, level, _ in rows(html)] == [
        ("a", 1),
        ("c", 2),
        ("d", 3),
        ("b", 2),
    ]


def test_spans_whose_parent_never_arrived_are_top_level_and_marked(client: Client) -> None:
    store(
        payload(
            [
                span("00000000000000a1", "child", parent="00000000000000ff", start=10),
                span("00000000000000a2", "grandchild", parent="00000000000000a1", start=20),
                span("00000000000000b1", "loop one", parent="00000000000000b2", start=30),
                span("00000000000000b2", "loop two", parent="00000000000000b1", start=40),
            ]
        )
    )
    html = client.get(f"/traces/{TRACE}/").content.decode()
    found = rows(html)
    assert [(span_id, level, " o" in classes) for span_id, level, classes in found] == [
        ("00000000000000a1", 1, True),
        ("00000000000000a2", 2, False),
        ("00000000000000b1", 1, True),
        ("00000000000000b2", 2, False),
    ]
    assert "parent not received" in html
    assert "root span not received" in html


def test_error_spans_are_marked(client: Client) -> None:
    store(
        payload(
            [
                span("0000000000000001", "root", end=10),
                span(
                    "0000000000000002",
                    "boom",
                    parent="0000000000000001",
                    status={"code": 2, "message": "it broke"},
                ),
            ]
        )
    )
    html = client.get(f"/traces/{TRACE}/?span=0000000000000002").content.decode()
    # `cp`: on the critical path (the root's only child).
    assert re.search(r'class="r d1 k-other e cp" id="s-0000000000000002"', html)
    assert '<span class="err" title="Status ERROR">error</span>' in html
    assert '<span class="status-message">it broke</span>' in html


def test_page_reads_narrow_columns_and_one_span_body(
    client: Client, agentscope_1: str, django_assert_num_queries: Any
) -> None:
    # The trace, the tree's narrow columns, the analysis (where the time went: narrow columns
    # and a model call's token counts), the selected span.
    with django_assert_num_queries(4) as captured:
        response = client.get(f"/traces/{agentscope_1}/")
    assert response.status_code == 200
    tree_query = captured.captured_queries[1]["sql"]
    assert "attributes_json" not in tree_query and "events_json" not in tree_query
    # The analysis reads only a few numbers out of the attributes, never the bodies.
    analysis_query = captured.captured_queries[2]["sql"]
    assert "json_extract" in analysis_query or "jsonb" in analysis_query


def test_span_panel_fragment_costs_three_queries(
    client: Client, agentscope_1: str, django_assert_num_queries: Any
) -> None:
    # The trace, the span, its children's times (its self time).
    with django_assert_num_queries(3):
        html = panel(client, agentscope_1, AS1_CHAT_2)
    assert "<html" not in html
    assert html.strip().startswith('<article class="span-detail"')


def test_the_first_span_is_selected_without_a_span_parameter(
    client: Client, agentscope_1: str
) -> None:
    html = client.get(f"/traces/{agentscope_1}/").content.decode()
    assert (
        f'id="s-{AS1_AGENT}" role="treeitem" aria-level="1" '
        'aria-expanded="true" aria-selected="true"' in html
    )
    assert f'data-span-id="{AS1_AGENT}"' in html


def test_deep_link_opens_with_the_span_selected(client: Client, agentscope_1: str) -> None:
    html = client.get(f"/traces/{agentscope_1}/?span={AS1_TOOL}").content.decode()
    assert f'id="s-{AS1_TOOL}" role="treeitem" aria-level="2" aria-selected="true"' in html
    assert html.count('aria-selected="true"') == 1
    assert f'<article class="span-detail" data-span-id="{AS1_TOOL}">' in html


def test_deep_link_to_an_unknown_span_says_so(client: Client, agentscope_1: str) -> None:
    response = client.get(f"/traces/{agentscope_1}/?span=00000000deadbeef")
    assert response.status_code == 200
    html = response.content.decode()
    assert "This trace has no span <code>00000000deadbeef</code>" in html
    assert 'aria-selected="true"' not in html


def test_panel_url_without_htmx_redirects_to_the_page(client: Client, agentscope_1: str) -> None:
    response = client.get(f"/traces/{agentscope_1}/spans/{AS1_TOOL}/")
    assert response.status_code == 302
    assert response["Location"] == f"/traces/{agentscope_1}/?span={AS1_TOOL}"


def test_unknown_trace_and_span_are_404(client: Client, agentscope_1: str) -> None:
    assert client.get("/traces/" + "0" * 31 + "1/").status_code == 404
    assert client.get("/traces/not-hex/").status_code == 404
    missing = client.get(f"/traces/{agentscope_1}/spans/00000000deadbeef/", HTTP_HX_REQUEST="true")
    assert missing.status_code == 404


def test_csp_allows_scripts_only_from_static(client: Client, agentscope_1: str) -> None:
    response = client.get(f"/traces/{agentscope_1}/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    html = response.content.decode()
    # Only scripts from static/, and the data blocks of the tree and the critical path (JSON,
    # never executed).
    inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert inline == [
        '<script id="critical-path" type="application/json">',
        '<script id="tree-data" type="application/json">',
    ]
    assert " style=" not in html
    assert re.search(r"\son[a-z]+=", html) is None


def span_of_root_start() -> int:
    return Span.objects.get(span_id=AS1_AGENT).start_ns


def tree_json(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="tree-data" type="application/json">(.*?)</script>', html, re.S)
    assert found is not None
    return json.loads(found[1])


def test_every_row_is_sent_as_compact_json_for_the_virtual_list(
    client: Client, agentscope_1: str
) -> None:
    data = tree_json(client.get(f"/traces/{agentscope_1}/").content.decode())
    assert len(data["rows"]) == 9
    span_id, depth, kind, flags, name, label, duration, tokens, x, width = data["rows"][5]
    assert (span_id, depth, flags) == (AS1_CHAT_2, 1, 0)
    strings = data["strings"]
    assert (data["types"][kind], strings[name], strings[label], strings[tokens]) == (
        "llm",
        "chat qwen-max",
        "qwen-max",
        "42 → 9",
    )
    # Texts come formatted by the server (trace.js has no copy of the format), bars placed.
    chat = Span.objects.get(span_id=AS1_CHAT_2)
    assert strings[duration] == formatting.duration(chat.end_ns - chat.start_ns)
    total = Trace.objects.get(trace_id=agentscope_1).duration_ns
    assert x == pytest.approx((chat.start_ns - span_of_root_start()) * 100 / total, abs=0.01)
    assert width == pytest.approx((chat.end_ns - chat.start_ns) * 100 / total, abs=0.01)
    # Names repeat in agent traces: each is sent once.
    assert strings.count("format openai") == 1


def test_trace_js_clones_the_servers_row_and_formats_nothing(
    client: Client, agentscope_1: str
) -> None:
    html = client.get(f"/traces/{agentscope_1}/").content.decode()
    blank = re.search(r'<template id="tree-row">(.*?)</template>', html, re.S)
    assert blank is not None and blank[1].startswith('<div class="r d0 ')
    script = (settings.BASE_DIR / "static" / "studio" / "trace.js").read_text()
    for copy in ("createElement", "µs", "toLocaleString", "1e9"):
        assert copy not in script


def test_json_rows_are_escaped_for_the_script_element(client: Client) -> None:
    store(payload([span("0000000000000001", "</script><script>alert(1)</script>")]))
    html = client.get(f"/traces/{TRACE}/").content.decode()
    assert "</script><script>alert(1)" not in html
    assert tree_json(html)["strings"][0] == "</script><script>alert(1)</script>"


def test_only_the_first_rows_are_html(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio import trace_page

    monkeypatch.setattr(trace_page, "HTML_ROWS", 2)
    store(payload([span(f"{i:016x}", f"s{i}", start=i) for i in range(1, 6)]))
    html = client.get(f"/traces/{TRACE}/?span=0000000000000005").content.decode()
    assert [span_id[-1] for span_id, _, _ in rows(html)] == ["1", "2"]
    assert len(tree_json(html)["rows"]) == 5
    assert "only the first 2 of 5 spans are listed" in html
    assert 'data-selected="0000000000000005"' in html
    assert 'data-span-id="0000000000000005"' in html


# -- The span panel ----------------------------------------------------------------------------


def test_llm_panel_reads_as_a_conversation_with_tool_calls(
    client: Client, agentscope_1: str
) -> None:
    html = panel(client, agentscope_1, AS1_CHAT_3)
    assert "from <code>agentscope.function.input</code>" in html
    assert re.search(r'<div class="msg role-system">.*?You handle money questions\.', html, re.S)
    assert re.search(r'<div class="msg role-user">.*?How much is 120 EUR in JPY\?', html, re.S)
    assert re.search(
        r"Calls tool <b>convert</b> <code>call_fx1</code></div><pre>\{\n  &quot;amount&quot;: 120,",
        html,
    )
    assert re.search(
        r"Tool result <b>convert</b> <code>call_fx1</code></div><pre>120 EUR = 19500 JPY</pre>",
        html,
    )
    # The final answer, and the call's facts.
    assert re.search(
        r'io-output.*?<div class="msg role-assistant">.*?finish: stop.*?'
        r"<pre>120 EUR is about 19,500 JPY\.</pre>",
        html,
        re.S,
    )
    assert "<dd>qwen-max</dd>" in html and "<dd>unknown</dd>" in html
    assert "<dd>43 in · 9 out</dd>" in html
    assert "Tools available" in html and "<b>search_web</b>" in html


def test_tool_panel_shows_arguments_and_result(client: Client, agentscope_1: str) -> None:
    html = panel(client, agentscope_1, AS1_TOOL)
    assert ">Arguments</h3>" in html and ">Result</h3>" in html
    assert "<pre>{\n  &quot;amount&quot;: 120,\n  &quot;src&quot;: &quot;EUR&quot;" in html
    assert "(a Python repr)" in html
    assert '<div class="part text"><pre>120 EUR = 19500 JPY</pre></div>' in html
    assert "As recorded" in html
    assert "<dd>convert · <code>call_fx1</code>" in html


def test_formatter_panel_shows_function_input_and_output(client: Client, agentscope_1: str) -> None:
    html = panel(client, agentscope_1, AS1_FORMAT)
    assert "from <code>agentscope.function.input</code>" in html
    assert "from <code>agentscope.function.output</code>" in html
    assert "Msg(id=" in html
    assert 'class="msg' not in html


def test_attributes_resource_scope_and_raw_json(client: Client, agentscope_1: str) -> None:
    html = panel(client, agentscope_1, AS1_CHAT_2)
    # Names may wrap after their dots and underscores only; the whole name is the title.
    assert (
        '<th scope="row" title="gen_ai.usage.input_tokens">'
        "<code>gen_<wbr>ai.<wbr>usage.<wbr>input_<wbr>tokens</code></th>"
        '<td class="type">int</td><td class="value"><pre>42</pre>'
    ) in html
    assert (
        '<code>gen_<wbr>ai.<wbr>request.<wbr>model</code></th><td class="type">string</td>' in html
    )
    assert "<code>service.<wbr>instance.<wbr>id</code>" in html  # resource
    assert '<code>agentscope</code> <span class="muted">version</span> <code>1.0.21</code>' in html
    json_url = f"/traces/{agentscope_1}/spans/{AS1_CHAT_2}/json"
    assert f'<pre id="raw-{AS1_CHAT_2}" class="raw-json" hx-get="{json_url}"' in html
    raw = client.get(json_url)
    assert raw["Content-Type"] == "application/json"
    api = json.loads(b"".join(client.get(f"/api/traces/{agentscope_1}/").streaming_content))
    assert raw.json() == next(s for s in api["spans"] if s["span_id"] == AS1_CHAT_2)
    assert client.get(f"/traces/{agentscope_1}/spans/00000000deadbeef/json").status_code == 404


def test_events_put_exceptions_first_and_links_are_links(client: Client) -> None:
    other_trace = "0af7651916cd43dd8448eb211c80319c"
    store(
        payload(
            [
                span("0000000000000001", "root", end=100),
                span(
                    "0000000000000002",
                    "failing",
                    parent="0000000000000001",
                    start=10,
                    end=90,
                    events=[
                        {
                            "timeUnixNano": str(1_700_000_000_000_000_000 + 20),
                            "name": "retry",
                            "attributes": key_values({"attempt": 2}),
                        },
                        {
                            "timeUnixNano": str(1_700_000_000_000_000_000 + 30),
                            "name": "exception",
                            "attributes": key_values(
                                {
                                    "exception.type": "ValueError",
                                    "exception.message": "bad <input>",
                                    "exception.stacktrace": STACK,
                                }
                            ),
                        },
                    ],
                    links=[
                        {
                            "traceId": other_trace,
                            "spanId": "00f067aa0ba902b7",
                            "attributes": key_values({"link.kind": "follows"}),
                        },
                        {"traceId": TRACE, "spanId": "0000000000000001"},
                    ],
                ),
            ]
        )
    )
    html = panel(Client(), TRACE, "0000000000000002")
    exception = html.index('class="event exception"')
    retry = html.index("<b>retry</b>")
    assert exception < retry
    assert "<b>ValueError</b>" in html
    assert '<p class="exception-message">bad &lt;input&gt;</p>' in html
    assert (
        '<pre class="stacktrace">Traceback (most recent call last):\n  File &quot;x.py&quot;</pre>'
        in html
    )
    assert '<b>retry</b> <span class="muted">+10 ns</span>' in html
    assert f'href="/traces/{other_trace}/?span=00f067aa0ba902b7"' in html
    assert 'href="?span=0000000000000001" data-span-link="0000000000000001">span' in html
    assert "<code>link.<wbr>kind</code>"  # an attribute name, wrapping at its dot in html


def test_media_parts_are_shown_only_when_safe(client: Client) -> None:
    parts = [
        {"type": "blob", "modality": "image", "mime_type": "image/png", "content": PNG},
        {"type": "blob", "modality": "image", "mime_type": "image/svg+xml", "content": PNG},
        {"type": "uri", "modality": "image", "uri": "https://example.test/cat.png"},
        {"type": "uri", "modality": "image", "uri": "javascript:alert(1)"},
        {"type": "reasoning", "content": "secret thoughts"},
    ]
    html = chat_panel(client, parts)
    assert f'<img src="data:image/png;base64,{PNG}"' in html
    assert html.count("<img ") == 1
    assert 'image data <span class="muted">image/svg+xml</span>' in html
    assert '<a href="https://example.test/cat.png" rel="noopener noreferrer nofollow"' in html
    assert 'href="javascript:' not in html
    assert "<code>javascript:alert(1)</code>" in html
    assert re.search(r'<details class="part reasoning"><summary>Reasoning', html)


def test_long_values_are_folded(client: Client) -> None:
    long_text = "word " * 2000
    html = chat_panel(client, [{"type": "text", "content": long_text}], note=long_text)
    assert html.count('<details class="fold">') >= 2
    assert "show all 10,000 characters" in html


def test_span_content_is_escaped_everywhere(client: Client) -> None:
    store(
        payload(
            [
                span(
                    "0000000000000001",
                    XSS,
                    attributes={
                        "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.agent.name": XSS,
                        XSS: XSS,
                        "gen_ai.input.messages": json.dumps(
                            [
                                {
                                    "role": XSS,
                                    "name": XSS,
                                    "parts": [
                                        {"type": "text", "content": XSS},
                                        {
                                            "type": "tool_call",
                                            "name": XSS,
                                            "id": XSS,
                                            "arguments": XSS,
                                        },
                                        {"type": "tool_call_response", "id": XSS, "response": XSS},
                                        {"type": "uri", "uri": XSS, "mime_type": XSS},
                                        {"type": XSS, "x": XSS},
                                    ],
                                }
                            ]
                        ),
                        "gen_ai.conversation.id": XSS,
                    },
                    status={"code": 2, "message": XSS},
                    events=[
                        {
                            "timeUnixNano": "1700000000000000001",
                            "name": XSS,
                            "attributes": key_values({XSS: XSS}),
                        }
                    ],
                ),
            ],
            resource={XSS: XSS, "service.name": XSS},
        )
    )
    for html in (
        Client().get(f"/traces/{TRACE}/").content.decode(),
        panel(Client(), TRACE, "0000000000000001"),
    ):
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    page = Client().get(f"/traces/{TRACE}/").content.decode()
    assert (
        'title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'
        '&lt;img src=x onerror=alert(1)&gt;"' in page
    )


# -- OTLP/JSON download --------------------------------------------------------------------------


def test_download_is_an_otlp_json_export_request(client: Client, agentscope_1: str) -> None:
    response = client.get(f"/traces/{agentscope_1}/otlp.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="trace-{AS1_TRACE}.otlp.json"'
    document = json.loads(response.content)
    [resource_spans] = document["resourceSpans"]
    [scope_spans] = resource_spans["scopeSpans"]
    assert scope_spans["scope"] == {"name": "agentscope", "version": "1.0.21"}
    spans = {s["spanId"]: s for s in scope_spans["spans"]}
    chat = spans[AS1_CHAT_2]
    assert chat["traceId"] == AS1_TRACE and chat["parentSpanId"] == AS1_AGENT
    assert isinstance(chat["startTimeUnixNano"], str)
    attributes = {kv["key"]: kv["value"] for kv in chat["attributes"]}
    assert attributes["gen_ai.usage.input_tokens"] == {"intValue": "42"}
    assert attributes["gen_ai.request.model"] == {"stringValue": "qwen-max"}
    assert chat["status"] == {"code": 1}


def test_download_round_trips_through_ingest(client: Client) -> None:
    original = payload(
        [
            span(
                "0000000000000001",
                "root",
                end=100,
                attributes={
                    "i": 7,
                    "f": 1.0,
                    "b": False,
                    "s": "x",
                    "a": [1, "two", 3.5],
                    "m": {"k": {"n": [True]}},
                    "empty": [],
                },
                traceState="vendor=1",
                flags=257,
                status={"code": 2, "message": "why"},
                events=[
                    {
                        "timeUnixNano": "1700000000000000005",
                        "name": "e",
                        "attributes": key_values({"x": 1}),
                        "droppedAttributesCount": 2,
                    }
                ],
                links=[
                    {
                        "traceId": "0af7651916cd43dd8448eb211c80319c",
                        "spanId": "00f067aa0ba902b7",
                        "traceState": "t=1",
                        "attributes": key_values({"l": 1.5}),
                    }
                ],
                droppedAttributesCount=1,
                droppedEventsCount=3,
                droppedLinksCount=4,
            ),
            span("0000000000000002", "child", parent="0000000000000001", start=5, end=6),
        ],
        resource={"deployment.environment": "test", "r.int": 3},
    )
    before = decode_json(original).records
    write_batch(before)
    exported = client.get(f"/traces/{TRACE}/otlp.json").content
    after = decode_json(exported).records
    key = lambda record: record.span_id  # noqa: E731
    assert sorted(after, key=key) == sorted(before, key=key)


@pytest.mark.server
def test_download_replays_into_a_fresh_studio(studio_server: Any, fresh_studio: Any) -> None:
    body = fixture_bytes("agentscope-1.0.21-react-agent.pb")
    sent = requests.post(
        f"{studio_server.url}/v1/traces",
        data=body,
        headers={"Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    assert sent.status_code == 200
    original = studio_server.wait_for_trace(AS1_TRACE, 9)
    exported = requests.get(f"{studio_server.url}/traces/{AS1_TRACE}/otlp.json", timeout=30)
    assert exported.status_code == 200
    fresh = fresh_studio()
    replayed = requests.post(
        f"{fresh.url}/v1/traces",
        data=exported.content,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert replayed.status_code == 200
    assert fresh.wait_for_trace(AS1_TRACE, 9)["spans"] == original["spans"]
