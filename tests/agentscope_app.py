"""A small, real AgentScope 1.0.x application, run by the tests as a subprocess against Studio.

    python tests/agentscope_app.py STUDIO_URL react   # a ReActAgent, a scripted model, a tool
    python tests/agentscope_app.py STUDIO_URL user    # a UserAgent answered from the run page
    python tests/agentscope_app.py STUDIO_URL structured  # the same, asking for a pydantic model

Nothing here talks to a real model: `ScriptedModel` streams canned replies, so the application
goes through agentscope's real code paths (registration, Socket.IO, printing hooks, tracing)
without a network.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncGenerator
from typing import Any

import agentscope
from agentscope.agent import ReActAgent, UserAgent
from agentscope.formatter import OpenAIChatFormatter
from agentscope.message import Msg, TextBlock, ToolUseBlock
from agentscope.model import ChatModelBase, ChatResponse
from agentscope.model._model_usage import ChatUsage
from agentscope.tool import Toolkit, ToolResponse
from agentscope.tracing import trace_llm
from pydantic import BaseModel, Field


class ScriptedModel(ChatModelBase):
    """Streams each scripted reply in growing chunks, as a streaming provider does."""

    def __init__(self, replies: list[list[dict[str, Any]]]) -> None:
        super().__init__("scripted-model", stream=True)
        self.replies = list(replies)

    @trace_llm
    async def __call__(
        self, messages: list[dict], tools: list[dict] | None = None, **kwargs: Any
    ) -> AsyncGenerator[ChatResponse, None]:
        blocks = self.replies.pop(0)
        usage = ChatUsage(input_tokens=11, output_tokens=7, time=0.01)

        async def stream() -> AsyncGenerator[ChatResponse, None]:
            text = next((b["text"] for b in blocks if b["type"] == "text"), "")
            others = [b for b in blocks if b["type"] != "text"]
            words = text.split(" ")
            for n in range(1, len(words) + 1):
                content: list[Any] = [TextBlock(type="text", text=" ".join(words[:n]))]
                yield ChatResponse(content=content, usage=usage)
            yield ChatResponse(content=[TextBlock(type="text", text=text), *others], usage=usage)

        return stream()


def convert(amount: float, src: str, dst: str) -> ToolResponse:
    """Convert an amount of money between currencies.

    Args:
        amount (float): The amount to convert.
        src (str): The currency to convert from.
        dst (str): The currency to convert to.
    """
    return ToolResponse(content=[TextBlock(type="text", text=f"{amount} {src} = 19500 {dst}")])


async def react(studio_url: str) -> None:
    agentscope.init(project="studio-tests", name="react", studio_url=studio_url)
    toolkit = Toolkit()
    toolkit.register_tool_function(convert)
    model = ScriptedModel(
        [
            [
                {"type": "text", "text": "I will convert the currency."},
                ToolUseBlock(
                    type="tool_use",
                    id="call_fx1",
                    name="convert",
                    input={"amount": 120, "src": "EUR", "dst": "JPY"},
                ),
            ],
            [{"type": "text", "text": "120 EUR is about 19,500 JPY."}],
        ]
    )
    agent = ReActAgent(
        name="Treasurer",
        sys_prompt="You convert currencies.",
        model=model,
        formatter=OpenAIChatFormatter(),
        toolkit=toolkit,
    )
    reply = await agent(Msg("user", "How much is 120 EUR in JPY?", "user"))
    print(json.dumps({"run_id": agentscope._config.run_id, "reply": reply.get_text_content()}))


async def user(studio_url: str) -> None:
    agentscope.init(project="studio-tests", name="user-input", studio_url=studio_url)
    print(json.dumps({"run_id": agentscope._config.run_id}), flush=True)
    answer = await UserAgent(name="Alice")()
    print(json.dumps({"answer": answer.get_text_content()}), flush=True)


class Booking(BaseModel):
    city: str = Field(description="Where to stay")
    nights: int = Field(ge=1, le=30)
    breakfast: bool = False


async def structured(studio_url: str) -> None:
    agentscope.init(project="studio-tests", name="structured-input", studio_url=studio_url)
    print(json.dumps({"run_id": agentscope._config.run_id}), flush=True)
    answer = await UserAgent(name="Alice")(structured_model=Booking)
    booking = Booking.model_validate(answer.metadata)
    print(json.dumps({"answer": answer.get_text_content(), "booking": booking.model_dump()}))


if __name__ == "__main__":
    url, mode = sys.argv[1], sys.argv[2]
    asyncio.run({"react": react, "user": user, "structured": structured}[mode](url))
