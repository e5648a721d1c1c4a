"""Cost on the run pages, the conversation page, the projects page and their API rows: a run
with a priced model call (and an unpriced one), a run whose only model has no price, and a run
without model calls."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from runs import writes
from tests.test_trace_page import payload, span, store

PROJECT = "costs"


def turn(trace_id: str, run_id: str, model: str | None) -> list[dict[str, Any]]:
    """A trace of the run: an agent span and, unless `model` is None, one chat call of 1M
    input tokens (gpt-4o's $2.50)."""
    spans = [
        span("e000000000000001", "agent", trace_id=trace_id,
             attributes={"gen_ai.operation.name": "invoke_agent",
                         "gen_ai.conversation.id": run_id}),
    ]  # fmt: skip
    if model is not None:
        spans.append(
            span("e000000000000002", "chat", "e000000000000001", trace_id=trace_id,
                 attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                             "gen_ai.usage.input_tokens": 1_000_000,
                             "gen_ai.usage.output_tokens": 0})
        )  # fmt: skip
    return spans


@pytest.fixture
def runs(db: None) -> None:
    for run_id in ("mixed", "unpriced", "plain"):
        writes.register_run(run_id=run_id, project=PROJECT, name=f"{run_id} run")
    spans = (
        turn("1" * 32, "mixed", "gpt-4o")
        + turn("2" * 32, "mixed", "my-local-llama")
        + turn("3" * 32, "unpriced", "my-local-llama")
        + turn("4" * 32, "plain", None)
    )
    store(payload(spans, {"studio.project": PROJECT}))


def cells(html: str, row_text: str) -> list[str]:
    """The text of the cells of the table row that contains `row_text`."""
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        if row_text in row:
            return [
                re.sub(r"<[^>]+>", "", cell).strip()
                for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
            ]
    raise AssertionError(f"no row with {row_text!r}")


def test_the_run_list_shows_each_runs_cost(
    client: Client, runs: None, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(3):  # page count, the page, the projects
        html = client.get("/runs/").content.decode()
    assert cells(html, "mixed run")[-1] == "$2.50 + 1 without a price"
    assert cells(html, "unpriced run")[-1] == "no price"
    assert cells(html, "plain run")[-1] == "—"


def test_the_run_page_shows_the_cost_per_model_per_trace_and_in_total(
    client: Client, runs: None, django_assert_num_queries: Any
) -> None:
    # run, messages, traces, model usage, pending input requests
    with django_assert_num_queries(5):
        html = client.get("/runs/mixed/").content.decode()
    assert "Cost $2.50 <span" in html and "+ 1 without a price" in html
    assert cells(html, "<code>gpt-4o</code>")[-1] == "$2.50"
    assert cells(html, "<code>my-local-llama</code>")[-1] == "no price"
    assert cells(html, f"/traces/{'1' * 32}/")[-1] == "$2.50"
    assert cells(html, f"/traces/{'2' * 32}/")[-1] == "no price"


def test_a_run_without_a_price_says_so_and_one_without_model_calls_shows_no_cost(
    client: Client, runs: None
) -> None:
    html = client.get("/runs/unpriced/").content.decode()
    assert 'class="run-cost">Cost <span class="muted no-price"' in html
    assert "$0" not in html
    html = client.get("/runs/plain/").content.decode()
    assert "run-cost" not in html and "$" not in html


def test_the_conversation_page_shows_its_cost_and_each_turns(
    client: Client, runs: None, django_assert_num_queries: Any
) -> None:
    # traces, root spans, model usage, the run of that id
    with django_assert_num_queries(4):
        html = client.get("/conversations/mixed/").content.decode()
    assert re.search(
        r'class="conversation-cost">Cost: \$2.50 <span[^>]*>\+ 1 without a price', html
    )
    assert "· $2.50" in html and '· <span class="muted no-price"' in html
    assert cells(html, "<code>my-local-llama</code>")[-1] == "no price"
    html = client.get("/conversations/plain/").content.decode()
    assert "conversation-cost" not in html and "$" not in html


def test_the_runs_api_gives_each_runs_cost(
    client: Client, runs: None, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(2):  # the page's rows and the count
        rows = client.get("/api/runs/").json()["results"]
    by_id = {row["id"]: row for row in rows}
    assert by_id["mixed"]["cost_usd"] == pytest.approx(2.50)
    assert by_id["mixed"]["unpriced_spans"] == 1
    assert (by_id["unpriced"]["cost_usd"], by_id["unpriced"]["unpriced_spans"]) == (None, 1)
    assert (by_id["plain"]["cost_usd"], by_id["plain"]["unpriced_spans"]) == (0, 0)
    body = client.get("/api/runs/mixed/").json()
    assert body["cost_usd"] == pytest.approx(2.50)
    models = {row["model"]: row for row in body["models"]}
    assert models["gpt-4o"]["cost_usd"] == pytest.approx(2.50)
    assert (models["my-local-llama"]["cost_usd"], models["my-local-llama"]["unpriced_calls"]) == (
        None,
        1,
    )


def test_the_projects_page_and_api_give_each_projects_cost(
    client: Client, runs: None, django_assert_num_queries: Any
) -> None:
    store(payload(turn("5" * 32, "elsewhere", "my-local-llama"), {"studio.project": "local"}))
    store(payload(turn("6" * 32, "elsewhere", None), {"studio.project": "quiet"}))
    html = client.get("/projects/").content.decode()
    assert cells(html, ">costs<")[3] == "$2.50 + 2 without a price"
    assert cells(html, ">local<")[3] == "no price"
    assert cells(html, ">quiet<")[3] == "—"
    assert f'href="/projects/{PROJECT}/" title="Its overview' in html
    rows = {row["name"]: row for row in client.get("/api/projects/").json()["results"]}
    assert rows[PROJECT]["cost_usd"] == pytest.approx(2.50)
    assert rows[PROJECT]["unpriced_spans"] == 2
    assert (rows["local"]["cost_usd"], rows["local"]["unpriced_spans"]) == (None, 1)
    assert (rows["quiet"]["cost_usd"], rows["quiet"]["unpriced_spans"]) == (0, 0)
