"""A realistic multi-agent session, emitted with the SDK's decorators only.

``run_demo(studio_url)`` sends one trace: a Planner agent answers a trip-planning question,
converting currency with a tool, failing to reach a weather tool (the agent turns the error
into a tool result, as agents do), delegating research to a Researcher agent, and streaming
its final answer. The models are scripted (OpenAI-shaped responses, no network, no key), so
every run has the same spans, contents and token counts; only ids and times differ.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from opentelemetry import trace as otel_trace

from studio_sdk.decorators import (
    conversation,
    trace,
    trace_format,
    trace_llm,
    trace_reply,
    trace_tool,
)
from studio_sdk.setup import flush, init

Message = dict[str, Any]

QUESTION = (
    "I'm planning 4 days in Tokyo in April with a budget of 1,500 EUR. "
    "How much is that in yen, and what should I see?"
)

# (span name, parent span name or None), in start order.
EXPECTED_SPANS: tuple[tuple[str, str | None], ...] = (
    ("invoke_agent Planner", None),
    ("format openai", "invoke_agent Planner"),
    ("chat gpt-4o", "invoke_agent Planner"),
    ("execute_tool convert_currency", "invoke_agent Planner"),
    ("invoke_generic_function estimate_daily_budget", "invoke_agent Planner"),
    ("execute_tool get_weather_forecast", "invoke_agent Planner"),
    ("invoke_agent Researcher", "invoke_agent Planner"),
    ("format openai", "invoke_agent Researcher"),
    ("chat gpt-4o-mini", "invoke_agent Researcher"),
    ("execute_tool search_attractions", "invoke_agent Researcher"),
    ("invoke_generic_function rank_attractions", "invoke_agent Researcher"),
    ("format openai", "invoke_agent Researcher"),
    ("chat gpt-4o-mini", "invoke_agent Researcher"),
    ("format openai", "invoke_agent Planner"),
    ("chat gpt-4o", "invoke_agent Planner"),
)
# The one span with status ERROR: the weather tool.
EXPECTED_ERROR_SPAN = "execute_tool get_weather_forecast"

FINAL_ANSWER = (
    "Your 1,500 EUR is about 241,800 JPY (at 161.2 JPY per EUR), roughly 60,450 JPY a day. "
    "I could not reach the weather service, so pack layers: April in Tokyo is usually mild. "
    "Day 1: Senso-ji in Asakusa. Day 2: Shinjuku Gyoen for the cherry blossoms, then Meiji "
    "Jingu. Day 3: breakfast at Tsukiji Outer Market and an evening at teamLab Planets. "
    "Day 4: a free day for Ginza and anything you missed."
)

RESEARCH_ANSWER = (
    "Top picks for April: Shinjuku Gyoen for the cherry blossoms (500 JPY), Senso-ji and Meiji "
    "Jingu (free), Tsukiji Outer Market for food (about 2,500 JPY) and teamLab Planets "
    "(3,800 JPY). All fit within 12,090 JPY a day."
)


def _tool_call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


# Each scripted turn: the assistant text, its tool calls, and (input, output) token usage.
PLANNER_SCRIPT: list[dict[str, Any]] = [
    {
        "content": "Let me convert your budget and check the April weather first.",
        "tool_calls": [
            _tool_call(
                "call_convert_1",
                "convert_currency",
                {"amount": 1500, "source": "EUR", "target": "JPY"},
            ),
            _tool_call(
                "call_weather_1", "get_weather_forecast", {"city": "Tokyo", "month": "April"}
            ),
        ],
        "usage": (182, 64),
    },
    {"content": FINAL_ANSWER, "tool_calls": [], "usage": (412, 96)},
]
RESEARCHER_SCRIPT: list[dict[str, Any]] = [
    {
        "content": None,
        "tool_calls": [
            _tool_call(
                "call_search_1",
                "search_attractions",
                {"city": "Tokyo", "interests": ["cherry blossoms", "food", "culture"]},
            )
        ],
        "usage": (96, 31),
    },
    {"content": RESEARCH_ANSWER, "tool_calls": [], "usage": (241, 58)},
]
EXPECTED_INPUT_TOKENS = sum(turn["usage"][0] for turn in PLANNER_SCRIPT + RESEARCHER_SCRIPT)
EXPECTED_OUTPUT_TOKENS = sum(turn["usage"][1] for turn in PLANNER_SCRIPT + RESEARCHER_SCRIPT)

PLANNER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "convert_currency",
            "description": "Convert an amount of money between currencies.",
            "parameters": {
                "type": "object",
                "properties": {
                    "amount": {"type": "number"},
                    "source": {"type": "string", "description": "ISO 4217 code"},
                    "target": {"type": "string", "description": "ISO 4217 code"},
                },
                "required": ["amount", "source", "target"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_weather_forecast",
            "description": "Typical weather for a city in a given month.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "month": {"type": "string"}},
                "required": ["city", "month"],
            },
        },
    },
]
RESEARCHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_attractions",
            "description": "Search a travel guide for attractions in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "interests": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["city"],
            },
        },
    }
]


class ScriptedOpenAIChatModel:
    """Replays scripted OpenAI chat completions, so the demo needs no network and no key."""

    def __init__(self, model_name: str, script: list[dict[str, Any]]) -> None:
        self.model_name = model_name
        self.script = script
        self.turn = 0

    @trace_llm
    async def __call__(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None = None,
        stream: bool = False,
        temperature: float = 0.3,
        max_tokens: int = 800,
    ) -> dict[str, Any] | AsyncGenerator[dict[str, Any], None]:
        self.turn += 1
        step = self.script[self.turn - 1]
        response_id = f"chatcmpl-demo-{self.model_name}-{self.turn}"
        await asyncio.sleep(0.002)
        if stream:
            return self._stream(response_id, step)
        message: dict[str, Any] = {"role": "assistant", "content": step["content"]}
        if step["tool_calls"]:
            message["tool_calls"] = step["tool_calls"]
        prompt_tokens, completion_tokens = step["usage"]
        return {
            "id": response_id,
            "object": "chat.completion",
            "model": f"{self.model_name}-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if step["tool_calls"] else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def _stream(
        self, response_id: str, step: dict[str, Any]
    ) -> AsyncGenerator[dict[str, Any], None]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": response_id,
                "object": "chat.completion.chunk",
                "model": f"{self.model_name}-2024-08-06",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        yield chunk({"role": "assistant", "content": ""})
        words = step["content"].split(" ")
        for index, word in enumerate(words):
            await asyncio.sleep(0)
            yield chunk({"content": word if index == len(words) - 1 else word + " "})
        yield chunk({}, "stop")
        prompt_tokens, completion_tokens = step["usage"]
        yield {
            "id": response_id,
            "object": "chat.completion.chunk",
            "model": f"{self.model_name}-2024-08-06",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


class OpenAIChatFormatter:
    """Turns agent memory into OpenAI chat messages."""

    @trace_format
    async def format(self, msgs: list[Message]) -> list[Message]:
        formatted = []
        for msg in msgs:
            out = {key: value for key, value in msg.items() if value is not None}
            if out.get("role") == "tool":
                out.pop("name", None)
            formatted.append(out)
        return formatted


async def convert_currency(amount: float, source: str, target: str) -> dict[str, Any]:
    rates = {("EUR", "JPY"): 161.2, ("USD", "JPY"): 149.5, ("EUR", "USD"): 1.08}
    rate = rates[(source, target)]
    return {
        "amount": amount,
        "source": source,
        "target": target,
        "rate": rate,
        "converted": round(amount * rate),
    }


async def get_weather_forecast(city: str, month: str) -> dict[str, Any]:
    raise ConnectionError(f"weather service unavailable (HTTP 503) for {city} in {month}")


class Toolkit:
    """Runs the tool calls a model asks for."""

    def __init__(self, tools: dict[str, Callable[..., Awaitable[Any]]]) -> None:
        self.tools = tools

    @trace_tool
    async def execute(self, tool_call: dict[str, Any]) -> Any:
        function = self.tools[tool_call["function"]["name"]]
        return await function(**json.loads(tool_call["function"]["arguments"]))


@trace(name="estimate_daily_budget")
def estimate_daily_budget(total_jpy: int, days: int) -> dict[str, int]:
    per_day = total_jpy // days
    return {
        "per_day_jpy": per_day,
        "lodging_jpy": per_day * 50 // 100,
        "food_and_transport_jpy": per_day * 30 // 100,
        "sightseeing_jpy": per_day * 20 // 100,
    }


@trace_tool(name="search_attractions", description="Search a travel guide for attractions.")
async def search_attractions(
    city: str, interests: list[str], *, tool_call_id: str
) -> list[dict[str, Any]]:
    await asyncio.sleep(0.001)
    return [
        {"name": "Shinjuku Gyoen", "cost_jpy": 500, "note": "cherry blossoms peak early April"},
        {"name": "Senso-ji", "cost_jpy": 0, "note": "oldest temple in Tokyo"},
        {"name": "teamLab Planets", "cost_jpy": 3800, "note": "book ahead"},
        {"name": "Tsukiji Outer Market", "cost_jpy": 2500, "note": "go before 10am"},
        {"name": "Meiji Jingu", "cost_jpy": 0, "note": "forest shrine"},
        {"name": "Tokyo Skytree", "cost_jpy": 3100, "note": "best at sunset"},
        {"name": "Private sushi omakase", "cost_jpy": 30000, "note": "over budget"},
    ]


@trace(name="rank_attractions")
def rank_attractions(
    attractions: list[dict[str, Any]], daily_budget_jpy: int, limit: int = 5
) -> list[str]:
    affordable = [a for a in attractions if a["cost_jpy"] <= daily_budget_jpy]
    affordable.sort(key=lambda a: (a["cost_jpy"], a["name"]))
    return [a["name"] for a in affordable[:limit]]


class ResearcherAgent:
    """Finds attractions and activities that fit a traveller's budget."""

    def __init__(self) -> None:
        self.id = "agent-researcher-01"
        self.name = "Researcher"
        self.description = "Finds attractions and activities that fit a traveller's budget."
        self.model = ScriptedOpenAIChatModel("gpt-4o-mini", RESEARCHER_SCRIPT)
        self.formatter = OpenAIChatFormatter()
        self.memory: list[Message] = [
            {
                "role": "system",
                "name": "system",
                "content": "You are Researcher. Use search_attractions, then recommend.",
            }
        ]

    @trace_reply
    async def reply(self, msg: Message) -> Message:
        self.memory.append(msg)
        response = await self.model(
            await self.formatter.format(self.memory), tools=RESEARCHER_TOOLS
        )
        assistant = response["choices"][0]["message"]
        self.memory.append({**assistant, "name": self.name})
        for call in assistant.get("tool_calls", []):
            arguments = json.loads(call["function"]["arguments"])
            found = await search_attractions(**arguments, tool_call_id=call["id"])
            ranked = rank_attractions(found, daily_budget_jpy=12090)
            self.memory.append(
                {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(ranked)}
            )
        response = await self.model(
            await self.formatter.format(self.memory), tools=RESEARCHER_TOOLS
        )
        answer: Message = {
            "role": "assistant",
            "name": self.name,
            "content": response["choices"][0]["message"]["content"],
        }
        self.memory.append(answer)
        return answer


class PlannerAgent:
    """Plans trips: budgets, logistics, and an itinerary."""

    def __init__(self, researcher: ResearcherAgent) -> None:
        self.id = "agent-planner-01"
        self.name = "Planner"
        self.description = "Plans trips: converts budgets, checks conditions, writes itineraries."
        self.model = ScriptedOpenAIChatModel("gpt-4o", PLANNER_SCRIPT)
        self.formatter = OpenAIChatFormatter()
        self.toolkit = Toolkit(
            {"convert_currency": convert_currency, "get_weather_forecast": get_weather_forecast}
        )
        self.researcher = researcher
        self.trace_id = ""
        self.memory: list[Message] = [
            {
                "role": "system",
                "name": "system",
                "content": (
                    "You are Planner, a travel planning agent. Use tools for numbers and "
                    "delegate research to the Researcher."
                ),
            }
        ]

    @trace_reply
    async def reply(self, msg: Message) -> Message:
        # The reply span is the root: its trace id is the session's.
        self.trace_id = format(otel_trace.get_current_span().get_span_context().trace_id, "032x")
        self.memory.append(msg)
        response = await self.model(await self.formatter.format(self.memory), tools=PLANNER_TOOLS)
        assistant = response["choices"][0]["message"]
        self.memory.append({**assistant, "name": self.name})
        budget: dict[str, int] = {}
        for call in assistant.get("tool_calls", []):
            try:
                result = await self.toolkit.execute(call)
            except Exception as exc:
                # As agent frameworks do: a failing tool becomes a result the model can read.
                content = f"Error: {type(exc).__name__}: {exc}"
            else:
                content = json.dumps(result)
                if call["function"]["name"] == "convert_currency":
                    budget = estimate_daily_budget(result["converted"], days=4)
            self.memory.append({"role": "tool", "tool_call_id": call["id"], "content": content})

        research = await self.researcher.reply(
            {
                "role": "user",
                "name": self.name,
                "content": (
                    "Find the best sights in Tokyo for 4 days in April with about "
                    f"{budget.get('sightseeing_jpy', 0):,} JPY per day for sightseeing."
                ),
            }
        )
        self.memory.append({"role": "user", "name": "Researcher", "content": research["content"]})

        stream = await self.model(await self.formatter.format(self.memory), stream=True)
        pieces = []
        async for chunk in stream:
            for choice in chunk["choices"]:
                pieces.append(choice["delta"].get("content") or "")
        answer: Message = {"role": "assistant", "name": self.name, "content": "".join(pieces)}
        self.memory.append(answer)
        return answer


async def _session() -> str:
    planner = PlannerAgent(ResearcherAgent())
    with conversation(f"demo-{uuid.uuid4().hex[:12]}"):
        await planner.reply({"role": "user", "name": "user", "content": QUESTION})
    return planner.trace_id


def run_demo(studio_url: str, protocol: str = "http") -> str:
    """Send the demo session to ``studio_url`` and return its trace id (32 hex digits).

    With ``protocol="grpc"``, ``studio_url`` is the gRPC address (``http://host:4317`` or
    ``host:4317``). Blocks until the spans are exported; must not be called from a running
    event loop. The trace has the spans listed in ``EXPECTED_SPANS``.
    """
    init(studio_url, service_name="studio-demo", protocol=protocol)
    trace_id = asyncio.run(_session())
    if not flush():
        raise RuntimeError(f"the demo's spans could not be exported to {studio_url} in time")
    return trace_id
