"""Cost: the price table, model name matching, token counts of every convention (cached and
reasoning tokens counted once), the user's price file, the /prices/ page and `cost_usd` in the
API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.test import Client, override_settings

from tests.conftest import ROOT
from tests.test_trace_page import payload, span, store
from tracing import costs, prices
from tracing.prices import Price, PriceTable

TRACE = "5b8efff798038103d269b633813fc60c"


@pytest.fixture
def table() -> PriceTable:
    return PriceTable()


def test_the_shipped_table_says_when_it_was_checked_and_to_verify(table: PriceTable) -> None:
    document = json.loads(prices.PRICES_FILE.read_text())
    assert document["checked"] == table.checked
    assert "verify" in document["note"]
    providers = {row.price.provider for row in table.rows.values()}
    assert {"openai", "anthropic", "google", "deepseek", "alibaba"} <= providers
    assert all(row.price.input >= 0 and row.price.output >= 0 for row in table.rows.values())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4-0613", "gpt-4"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("anthropic/claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("gemini-1.5-pro-002", "gemini-1.5-pro"),
        ("qwen-max-2025-01-25", "qwen-max"),
        ("deepseek-chat", "deepseek-chat"),
        ("chatgpt-4o-latest", "chatgpt-4o-latest"),  # exact first: its own row
    ],
)
def test_model_names_match_exactly_then_normalised(
    table: PriceTable, name: str, expected: str
) -> None:
    row = table.lookup(name)
    assert row is not None and row.model == expected


@pytest.mark.parametrize("name", ["gpt-4o-audio-preview", "my-local-llama", "", "gpt-4o-minix"])
def test_an_unknown_model_has_no_price_never_zero(table: PriceTable, name: str) -> None:
    assert table.lookup(name) is None
    attributes = {"gen_ai.request.model": name, "gen_ai.usage.input_tokens": 100}
    assert costs.span_cost(attributes, table) is None


def test_genai_cached_tokens_are_part_of_the_input_and_counted_once(table: PriceTable) -> None:
    # gpt-4o: 2.50 input, 1.25 cached input, 10.00 output per million.
    attributes = {
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.cache_read.input_tokens": 400,
        "gen_ai.usage.output_tokens": 200,
    }
    assert costs.span_cost(attributes, table) == pytest.approx(
        (600 * 2.50 + 400 * 1.25 + 200 * 10.0) / 1e6
    )
    without_cache = {k: v for k, v in attributes.items() if "cache" not in k}
    assert costs.span_cost(without_cache, table) == pytest.approx((1000 * 2.5 + 200 * 10) / 1e6)


def test_openinference_cache_and_reasoning_tokens(table: PriceTable) -> None:
    attributes = {
        "openinference.span.kind": "LLM",
        "llm.model_name": "o3-mini",
        "llm.token_count.prompt": 2000,
        "llm.token_count.prompt_details.cache_read": 1000,
        "llm.token_count.completion": 500,
        "llm.token_count.completion_details.reasoning": 300,
    }
    # o3-mini: 1.10 input, 0.55 cached, 4.40 output; reasoning at the output price.
    expected = (1000 * 1.10 + 1000 * 0.55 + 200 * 4.40 + 300 * 4.40) / 1e6
    assert costs.span_cost(attributes, table) == pytest.approx(expected)
    used = costs.usage(attributes)
    assert (used.cache_read_tokens, used.reasoning_tokens) == (1000, 300)


def test_openllmetry_anthropic_cache_reads_and_writes(table: PriceTable) -> None:
    # OpenLLMetry's prompt tokens include Anthropic's cache reads and writes.
    attributes = {
        "gen_ai.system": "Anthropic",
        "gen_ai.request.model": "claude-3-5-sonnet-20241022",
        "gen_ai.usage.prompt_tokens": 10_000,
        "gen_ai.usage.cache_read_input_tokens": 8000,
        "gen_ai.usage.cache_creation_input_tokens": 1000,
        "gen_ai.usage.completion_tokens": 100,
    }
    expected = (1000 * 3.0 + 8000 * 0.30 + 1000 * 3.75 + 100 * 15.0) / 1e6
    assert costs.span_cost(attributes, table) == pytest.approx(expected)


def test_anthropic_counting_with_cache_outside_the_input_adds_it(table: PriceTable) -> None:
    # Anthropic's own usage: input_tokens excludes the cache; more cached than input says so.
    attributes = {
        "gen_ai.request.model": "claude-3-5-sonnet",
        "gen_ai.usage.input_tokens": 50,
        "gen_ai.usage.cache_read.input_tokens": 8000,
        "gen_ai.usage.output_tokens": 100,
    }
    expected = (50 * 3.0 + 8000 * 0.30 + 100 * 15.0) / 1e6
    assert costs.span_cost(attributes, table) == pytest.approx(expected)


def test_token_counts_as_strings_are_read(table: PriceTable) -> None:
    attributes = {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": "1000",
        "gen_ai.usage.output_tokens": "0",
    }
    assert costs.span_cost(attributes, table) == pytest.approx(1000 * 2.5 / 1e6)


def test_an_override_file_adds_and_overrides_models(tmp_path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "my-model": {"input": 2.0, "output": 8.0, "cached_input": 0.5, "reasoning": 16.0},
                "gpt-4o": {"input": 1.0, "output": 4.0},
            }
        )
    )
    table = PriceTable(prices.load_overrides(path))
    assert table.lookup("my-model").origin == prices.ADDED  # type: ignore[union-attr]
    assert table.lookup("openai/gpt-4o-2024-08-06").origin == prices.OVERRIDDEN  # type: ignore[union-attr]
    assert table.price("gpt-4o") == Price(input=1.0, output=4.0)
    attributes = {
        "gen_ai.request.model": "my-model",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.cache_read.input_tokens": 40,
        "gen_ai.usage.output_tokens": 1000,
        "gen_ai.usage.reasoning_tokens": 800,
    }
    expected = (60 * 2.0 + 40 * 0.5 + 200 * 8.0 + 800 * 16.0) / 1e6
    assert costs.span_cost(attributes, table) == pytest.approx(expected)
    # Not overridden: a missing cached price is the input price, not a discount.
    assert table.price("gpt-4o").cached_input_rate == 1.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{", "not JSON"),
        ("[]", "must be a JSON object"),
        ('{"m": {"input": 1}}', "'m' needs 'output'"),
        ('{"m": {"input": "1", "output": 2}}', "'m' 'input' must be a number"),
        ('{"m": {"input": -1, "output": 2}}', ">= 0"),
        ('{"m": {"input": 1, "output": 2, "cached": 0.5}}', "unknown key 'cached'"),
        ('{"m": 3}', "'m' must map to an object"),
    ],
)
def test_a_bad_override_file_is_refused_with_the_problem(content: str, problem: str) -> None:
    with pytest.raises(prices.PriceError, match=problem):
        prices.parse_overrides(content)


def test_a_bad_prices_file_stops_studio_with_one_line(tmp_path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"my-model": {"input": 2.0}}')
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path / "data"), "STUDIO_PRICES": str(path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("Bad setting: STUDIO_PRICES must be a JSON file")
    assert "'my-model' needs 'output'" in result.stderr and str(path) in result.stderr
    assert result.stderr.count("\n") == 1
    env["STUDIO_PRICES"] = str(tmp_path / "missing.json")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2 and "No such file or directory" in result.stderr


@pytest.mark.django_db
def test_the_prices_page_shows_the_table_and_marks_the_users_rows(
    client: Client, django_assert_num_queries
) -> None:
    overrides = {"gpt-4o": Price(1.0, 4.0), "my-model": Price(2.0, 8.0, cached_input=0.5)}
    with override_settings(STUDIO_PRICES=overrides, STUDIO_PRICES_FILE="/etc/prices.json"):
        with django_assert_num_queries(0):
            response = client.get("/prices/")
    html = response.content.decode()
    assert response.status_code == 200
    assert '<a href="/prices/" aria-current="page">Prices</a>' in html
    assert PriceTable().checked in html and "/etc/prices.json" in html
    assert 'class="origin-overridden" data-model="gpt-4o"' in html
    assert 'class="origin-added" data-model="my-model"' in html
    assert 'class="origin-builtin" data-model="claude-3-5-sonnet"' in html
    assert "<style" not in html and "style=" not in html and "<script>" not in html


@pytest.mark.django_db
def test_the_trace_api_gives_each_model_call_and_the_trace_a_cost(client: Client) -> None:
    llm = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}
    store(
        payload(
            [
                span(
                    "a000000000000001",
                    "agent",
                    attributes={"gen_ai.operation.name": "invoke_agent"},
                ),
                span(
                    "a000000000000002",
                    "chat gpt-4o",
                    "a000000000000001",
                    attributes={
                        **llm,
                        "gen_ai.usage.input_tokens": 1000,
                        "gen_ai.usage.cache_read.input_tokens": 1000,
                        "gen_ai.usage.output_tokens": 100,
                    },
                ),
                span(
                    "a000000000000003",
                    "chat local",
                    "a000000000000001",
                    attributes={**llm, "gen_ai.request.model": "my-llama"},
                ),
            ]
        )
    )
    response = client.get(f"/api/traces/{TRACE}/")
    body = json.loads(b"".join(response.streaming_content))  # streamed
    by_id = {row["span_id"]: row for row in body["spans"]}
    assert by_id["a000000000000002"]["cost_usd"] == pytest.approx((1000 * 1.25 + 100 * 10) / 1e6)
    assert by_id["a000000000000003"]["cost_usd"] is None
    assert by_id["a000000000000001"]["cost_usd"] is None
    assert body["cost_usd"] == pytest.approx(0.00225)
    assert body["unpriced_spans"] == 1
    assert {"trace_id", "name", "span_count", "spans"} <= set(body)


@pytest.mark.django_db
def test_a_conversations_cost_sums_its_traces_model_calls(django_assert_num_queries) -> None:
    from tracing import selectors

    def turn(trace_id: str, model: str) -> list[dict]:
        return [
            span("d000000000000001", "agent", trace_id=trace_id,
                 attributes={"gen_ai.operation.name": "invoke_agent",
                             "gen_ai.conversation.id": "conv-1"}),
            span("d000000000000002", "chat", "d000000000000001", trace_id=trace_id,
                 attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                             "gen_ai.usage.input_tokens": 1_000_000,
                             "gen_ai.usage.output_tokens": 0}),
        ]  # fmt: skip

    store(payload(turn("1" * 32, "gpt-4o") + turn("2" * 32, "deepseek-chat")))
    store(payload(turn("3" * 32, "unknown-model")))
    with django_assert_num_queries(1):
        total = selectors.conversation_cost("conv-1")
    assert total.cost_usd == pytest.approx(2.50 + 0.28)
    assert (total.model_spans, total.unpriced_spans) == (3, 1)
    assert selectors.trace_cost("3" * 32).cost_usd is None
    assert selectors.conversations_cost(["conv-1", "other"]).cost_usd == pytest.approx(2.78)
    assert selectors.conversation_cost("nobody").cost_usd == 0
