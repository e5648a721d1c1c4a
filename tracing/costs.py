"""What a model call cost, from the token counts its span carries. Plain Python, no Django.

Token counts, wherever the instrumentation put them:
- input and output: tracing.conventions (GenAI `gen_ai.usage.input_tokens`, the older
  `prompt_tokens`, OpenInference `llm.token_count.prompt`, ...);
- cache reads: GenAI `gen_ai.usage.cache_read.input_tokens`, OpenLLMetry
  `gen_ai.usage.cache_read_input_tokens`, OpenInference `llm.token_count.prompt_details.cache_read`;
- cache writes: the same three spellings with `cache_creation` / `cache_write`;
- reasoning: `gen_ai.usage.reasoning_tokens` (OpenLLMetry and others),
  `gen_ai.usage.reasoning.output_tokens`, OpenInference
  `llm.token_count.completion_details.reasoning`.

Never counting a token twice: the GenAI conventions, OpenInference and OpenLLMetry all count
cached tokens inside the input tokens (as OpenAI's `prompt_tokens` does; their Anthropic
instrumentations add Anthropic's separate cache counts in), and reasoning tokens inside the output
tokens. So the input tokens are split into fresh and cached, and the output tokens into visible and
reasoning, each part at its own price. A span that reports Anthropic's own counting (input tokens
exclude cache reads and writes) shows as cache tokens exceeding the input tokens: then they cannot
be inside it, and are added instead. The same rule holds for reasoning tokens exceeding the output
tokens (Gemini's `thoughts_token_count` is separate from its candidates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tracing import conventions
from tracing.prices import Price, PriceTable

CACHE_READ_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
CACHE_WRITE_KEYS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
REASONING_KEYS = (
    "gen_ai.usage.reasoning_tokens",
    "gen_ai.usage.reasoning.output_tokens",
    "llm.token_count.completion_details.reasoning",
)
# The spans whose tokens are billed: model calls. An agent span that repeats its calls' totals
# is not billed again.
MODEL_SPAN_TYPES = frozenset({conventions.LLM, conventions.EMBEDDING})


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


def usage(attributes: Mapping[str, Any]) -> Usage:
    return Usage(
        input_tokens=conventions.input_tokens(attributes),
        output_tokens=conventions.output_tokens(attributes),
        cache_read_tokens=conventions.first_int(attributes, CACHE_READ_KEYS),
        cache_write_tokens=conventions.first_int(attributes, CACHE_WRITE_KEYS),
        reasoning_tokens=conventions.first_int(attributes, REASONING_KEYS),
    )


def first_int(values: Sequence[Any], start: int = 0, stop: int | None = None) -> int:
    """The first usable count among raw values (as extracted from JSON), like
    conventions.first_int: `values[start:stop]`, None meaning absent."""
    for index in range(start, len(values) if stop is None else stop):
        value = values[index]
        if value is None:
            continue
        count = conventions.first_int({"v": value}, ("v",))
        if count or value in (0, "0"):
            return count
    return 0


def cost(price: Price | None, used: Usage) -> float | None:
    """USD for these tokens at this price; None when there is no price (never 0)."""
    if price is None:
        return None
    # Negative counts are nonsense from a broken instrumentation: no tokens.
    cache_read = used.cache_read_tokens if used.cache_read_tokens > 0 else 0
    cache_write = used.cache_write_tokens if used.cache_write_tokens > 0 else 0
    reasoning = used.reasoning_tokens if used.reasoning_tokens > 0 else 0
    input_tokens = used.input_tokens if used.input_tokens > 0 else 0
    output_tokens = used.output_tokens if used.output_tokens > 0 else 0
    cached = cache_read + cache_write
    fresh = input_tokens - cached if cached <= input_tokens else input_tokens
    visible = output_tokens - reasoning if reasoning <= output_tokens else output_tokens
    micro = (
        fresh * price.input
        + cache_read * price.cached_input_rate
        + cache_write * price.cache_write_rate
        + visible * price.output
        + reasoning * price.reasoning_rate
    )
    return micro / 1_000_000


def span_cost(
    attributes: Mapping[str, Any], table: PriceTable, model: str | None = None
) -> float | None:
    """A model call's cost from its attributes (its model from them too, unless given)."""
    name = conventions.model(attributes) if model is None else model
    return cost(table.price(name), usage(attributes))


@dataclass(frozen=True, slots=True)
class Total:
    """Cost of many spans: the sum over the priced ones, and how many model calls had no price.
    `cost_usd` is None when there were model calls and none had a price."""

    cost_usd: float | None
    model_spans: int
    unpriced_spans: int


def total(costs: list[float | None]) -> Total:
    """Sum the costs of model spans (None: no price)."""
    priced = [value for value in costs if value is not None]
    unpriced = len(costs) - len(priced)
    if costs and not priced:
        return Total(None, len(costs), unpriced)
    return Total(sum(priced, 0.0), len(costs), unpriced)
