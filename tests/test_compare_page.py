"""The compare page `/traces/compare/?a=&b=` and the ways to get there: the overview's ticked
rows, the trace page's "Compare with…", a conversation's turns."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from django.test import Client

from studio import compare_page
from tests.test_compare import MS, TRACE_A, TRACE_B, _trace
from tests.test_trace_page import payload, span, store

pytestmark = pytest.mark.django_db

PAGE = f"/traces/compare/?a={TRACE_A}&b={TRACE_B}"


@pytest.fixture
def two_traces() -> None:
    # B: the answer changed, the temperature too, and a tool call was added.
    store(payload(_trace(TRACE_A, "4", False) + _trace(TRACE_B, "5", True)))


def summary(html: str) -> dict[str, list[str]]:
    table = html[html.index('<table class="summary">') :]
    table = table[: table.index("</table>")]
    return {
        row[0]: [unescape(cell) for cell in row[1:]]
        for row in re.findall(
            r'<tr><th scope="row">([^<]*)</th><td class="num">([^<]*)</td>'
            r'<td class="num">([^<]*)</td><td class="num delta[^"]*">([^<]*)</td></tr>',
            table,
        )
    }


def row_states(html: str) -> list[tuple[str, str]]:
    return [
        (unescape(name), state)
        for state, name in re.findall(
            r'<li class="crow state-(\w+) d\d+" id="row-\d+">.*?<span class="name" title="[^"]*">'
            r"([^<]*)</span>",
            html,
            re.S,
        )
    ]


def test_the_page_shows_the_summary_the_biggest_changes_and_the_rows(
    client: Client, two_traces: None, django_assert_num_queries
) -> None:
    # The two traces, the facts of each, and the message texts of the pairs shown.
    with django_assert_num_queries(4):
        response = client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    lines = summary(html)
    assert lines["Spans"] == ["2", "3", "+1 (+50%)"]
    assert lines["Errors"] == ["0", "0", "="]
    assert lines["Input tokens"] == ["100", "100", "="]
    assert lines["Duration"] == ["100 ms", "100 ms", "="]
    assert lines["Cost"] == ["$0.0004", "$0.0004", "="]
    assert "1 added" in html and "0 removed" in html
    assert row_states(html) == [
        ("invoke_agent", "same"),
        ("chat gpt-4o", "changed"),
        ("execute_tool calc", "added"),
    ]
    biggest = html[html.index('<ol class="biggest">') :]
    biggest = unescape(biggest[: biggest.index("</ol>")])
    assert biggest.index("chat gpt-4o</a>: parameters") < biggest.index(
        "execute_tool calc</a>: added (10 ms)"
    )
    # The changed pair: its parameters and the diff of its answer, each side linked to its span.
    chat = html[html.index('id="row-1"') : html.index('id="row-2"')]
    assert '<span class="chip">parameters</span>' in chat
    assert re.search(r"<th scope=\"row\">temperature</th><td>0.2</td><td>0.5</td>", chat)
    assert '<span class="dl dl-del">-[assistant] 4</span>' in chat
    assert '<span class="dl dl-add">+[assistant] 5</span>' in chat
    assert "Input messages" not in chat  # the questions were the same
    assert f'href="/traces/{TRACE_A}/?span=c000000000000002"' in chat
    assert f'href="/traces/{TRACE_B}/?span=c000000000000002"' in chat


def test_hostile_names_and_messages_are_escaped(client: Client) -> None:
    hostile = '<script>alert("x")</script>'
    spans = []
    for trace_id, answer in ((TRACE_A, "fine"), (TRACE_B, '<img src=x onerror="alert(1)">')):
        spans += [
            span("d000000000000001", hostile, end=10 * MS, trace_id=trace_id,
                 attributes={"gen_ai.operation.name": "invoke_agent"}),
            span("d000000000000002", "chat", "d000000000000001", 0, 5 * MS, trace_id=trace_id,
                 attributes={
                     "gen_ai.operation.name": "chat",
                     "gen_ai.request.model": "</span><b>model</b>",
                     "gen_ai.output.messages": json.dumps(
                         [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]
                     ),
                 }),
        ]  # fmt: skip
    store(payload(spans))
    html = client.get(PAGE).content.decode()
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>model" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "+[assistant] &lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_bad_ids_are_a_400_page_and_missing_traces_a_404_page(
    client: Client, two_traces: None
) -> None:
    for query in ("", "?b=" + TRACE_B, f"?a=xyz&b={TRACE_B}", f"?a={TRACE_A}&b=12"):
        response = client.get("/traces/compare/" + query)
        assert response.status_code == 400, query
        assert b"is not a trace id" in response.content and b'name="b"' in response.content
    missing = "f" * 32
    response = client.get(f"/traces/compare/?a={TRACE_A}&b={missing}")
    assert response.status_code == 404
    assert f"no trace &lt;{missing}&gt;".encode() in response.content
    assert client.get(f"/traces/compare/?a={missing}").status_code == 404
    # Any case, dashes or 0x, as other tools print ids.
    assert client.get(f"/traces/compare/?a=0x{TRACE_A.upper()}&b={TRACE_B}").status_code == 200


def test_two_ticked_traces_go_to_the_comparison_earlier_first(
    client: Client, two_traces: None
) -> None:
    from tracing.models import Trace

    Trace.objects.filter(trace_id=TRACE_A).update(start_ns=2_000_000_000_000_000_000)
    canonical = f"/traces/compare/?a={TRACE_B}&b={TRACE_A}"
    posted = client.post("/traces/compare/", {"trace_id": [TRACE_A, TRACE_B]})
    assert posted.status_code == 303 and posted["Location"] == canonical
    got = client.get("/traces/compare/", {"trace_id": [TRACE_A, TRACE_B]})
    assert got.status_code == 303 and got["Location"] == canonical
    one = client.post("/traces/compare/", {"trace_id": [TRACE_A]})
    assert one.status_code == 400 and b"Tick exactly two traces" in one.content


def test_the_overview_posts_the_ticked_rows_to_the_comparison(
    client: Client, two_traces: None
) -> None:
    html = client.get("/traces/").content.decode()
    form = html[html.index('<form id="trace-table"') :]
    form = form[: form.index("</form>")]
    button = re.search(r'<button type="submit" id="compare-selected"[^>]*>', form)
    assert button and 'formaction="/traces/compare/"' in button[0]
    assert form.count('name="trace_id"') == 2


def test_a_big_comparison_shows_a_window_of_rows_and_more_on_demand(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compare_page, "ROWS_SHOWN", 4)
    spans = []
    for trace_id in (TRACE_A, TRACE_B):
        spans.append(span("e000000000000000", "root", end=100 * MS, trace_id=trace_id))
        tools = 10 if trace_id == TRACE_A else 12
        spans += [
            span(f"e0000000000000{i + 1:02x}", "step", "e000000000000000", i * MS, (i + 1) * MS,
                 trace_id=trace_id)
            for i in range(tools)
        ]  # fmt: skip
    store(payload(spans))
    html = client.get(PAGE).content.decode()
    assert len(row_states(html)) == 4 and "Rows 1 to 4 of 13" in html
    more = re.search(r'<li class="crow-more" id="rows-more"><a href="([^"]+)" hx-get', html)
    assert more is not None
    url = unescape(more[1])
    fragment = client.get(url, headers={"HX-Request": "true", "HX-Target": "rows-more"})
    part = fragment.content.decode()
    assert "<html" not in part and len(row_states(part)) == 4 and 'id="row-4"' in part
    # Changes only: the two added steps.
    changed = client.get(PAGE + "&changes=1").content.decode()
    assert row_states(changed) == [("step", "added"), ("step", "added")]
    assert "<strong>Changes only</strong>" in changed


def test_the_trace_page_offers_compare_with_traces_of_the_same_name(
    client: Client, two_traces: None
) -> None:
    html = client.get(f"/traces/{TRACE_A}/").content.decode()
    block = html[html.index('<details class="compare-with"') :]
    block = block[: block.index("</details>")]
    assert f'hx-get="/traces/compare/?a={TRACE_A}"' in block
    assert f'<input type="hidden" name="a" value="{TRACE_A}">' in block
    menu = client.get(
        f"/traces/compare/?a={TRACE_A}", headers={"HX-Request": "true", "HX-Target": "compare-with"}
    ).content.decode()
    assert "<html" not in menu
    assert f"/traces/compare/?a={TRACE_A}&amp;b={TRACE_B}" in menu
    # Without JavaScript, the same list as a page.
    page = client.get(f"/traces/compare/?a={TRACE_A}").content.decode()
    assert "Compare <a" in page and f"b={TRACE_B}" in page


def test_a_conversation_compares_two_turns(client: Client) -> None:
    spans = []
    for n, trace_id in enumerate((TRACE_A, TRACE_B)):
        spans.append(
            span("f000000000000001", "turn", start=n * 1000 * MS, end=(n * 1000 + 10) * MS,
                 trace_id=trace_id, attributes={"gen_ai.conversation.id": "conv-1"})
        )  # fmt: skip
    store(payload(spans))
    html = client.get("/conversations/conv-1/").content.decode()
    form = html[html.index('<form class="compare-turns"') :]
    form = form[: form.index("</form>")]
    assert 'method="get" action="/traces/compare/"' in form
    assert form.count('name="trace_id"') == 2
    assert f"/traces/compare/?a={TRACE_A}&amp;b={TRACE_B}" in form  # with the previous turn
