"""The tracing SDK (studio_sdk): decorators, span life cycles, content, init and export.

Spans are recorded with ``init(tracer_provider=...)`` into a private provider with an in-memory
exporter, so no test depends on OpenTelemetry's global provider (settable once per process);
what touches the global provider runs in a subprocess.
"""

import asyncio
import gc
import inspect
import json
import os
import re
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Generator, Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from studio_sdk import (
    conversation,
    flush,
    init,
    shutdown,
    trace,
    trace_embedding,
    trace_format,
    trace_llm,
    trace_reply,
    trace_tool,
)
from studio_sdk import setup as sdk_setup
from studio_sdk.config import DEFAULT_MAX_ATTRIBUTE_CHARS, load_settings
from studio_sdk.genai import to_messages
from studio_sdk.messages import StreamAccumulator, parse_response
from studio_sdk.serialize import dumps, truncate_text

ROOT = Path(__file__).resolve().parent.parent
ENV_VARS = (
    "STUDIO_CAPTURE_CONTENT",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    "STUDIO_MAX_ATTRIBUTE_CHARS",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
)


@pytest.fixture(autouse=True)
def clean_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    shutdown()
    yield
    shutdown()


@pytest.fixture
def provider() -> TracerProvider:
    return TracerProvider()


@pytest.fixture
def exporter(provider: TracerProvider) -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


@pytest.fixture
def spans(provider: TracerProvider, exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """Tracing on, recording into ``exporter``."""
    init(tracer_provider=provider)
    return exporter


def only(exporter: InMemorySpanExporter, name: str | None = None) -> ReadableSpan:
    finished = [s for s in exporter.get_finished_spans() if name is None or s.name == name]
    assert len(finished) == 1, [s.name for s in exporter.get_finished_spans()]
    return finished[0]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def json_attr(span: ReadableSpan, key: str) -> Any:
    return json.loads(attrs(span)[key])


def error_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class PaymentDeclined(Exception):
    pass


# ---------------------------------------------------------------- disabled mode


def test_it_calls_the_function_and_records_nothing_without_init(
    exporter: InMemorySpanExporter,
) -> None:
    calls: list[str] = []

    @trace
    def plain(x: int) -> int:
        calls.append("plain")
        return x * 2

    @trace_llm
    def gen(n: int) -> Generator[int, None, str]:
        calls.append("gen")
        yield from range(n)
        return "done"

    @trace_tool
    async def coro(x: int) -> int:
        calls.append("coro")
        return x + 1

    @trace_reply
    async def agen(n: int) -> AsyncGenerator[int, None]:
        calls.append("agen")
        for i in range(n):
            yield i

    async def consume() -> tuple[int, list[int]]:
        return await coro(1), [i async for i in agen(3)]

    assert sdk_setup.STATE.tracer is None
    assert plain(4) == 8
    assert list(gen(3)) == [0, 1, 2]
    assert asyncio.run(consume()) == (2, [0, 1, 2])
    assert calls == ["plain", "gen", "coro", "agen"]
    assert exporter.get_finished_spans() == ()


def test_it_keeps_the_shape_and_metadata_of_the_wrapped_function() -> None:
    def plain(a: int, b: str = "x") -> str:
        """Doc."""
        return b * a

    def gen() -> Generator[int, None, None]:
        yield 1

    async def coro() -> int:
        return 1

    async def agen() -> AsyncGenerator[int, None]:
        yield 1

    for decorator in (trace, trace_llm, trace_reply, trace_format, trace_tool, trace_embedding):
        wrapped = decorator(plain)
        assert wrapped.__name__ == "plain" and wrapped.__doc__ == "Doc."
        assert inspect.signature(wrapped) == inspect.signature(plain)
        assert inspect.isgeneratorfunction(decorator(gen))
        assert inspect.iscoroutinefunction(decorator(coro))
        assert inspect.isasyncgenfunction(decorator(agen))


@pytest.mark.parametrize("enabled", [False, True], ids=["tracing off", "tracing on"])
def test_generators_forward_send_throw_and_return_values(
    enabled: bool, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    if enabled:
        init(tracer_provider=provider)

    @trace(name="acc")
    def accumulator() -> Generator[int, int, str]:
        total = 0
        while True:
            try:
                value = yield total
            except KeyError:
                return f"stopped at {total}"
            total += value

    gen = accumulator()
    assert next(gen) == 0
    assert gen.send(5) == 5
    with pytest.raises(StopIteration) as stop:
        gen.throw(KeyError("x"))
    assert stop.value.value == "stopped at 5"

    @trace(name="echo")
    async def echo() -> AsyncGenerator[str, str]:
        received = "start"
        while True:
            try:
                received = yield received
            except ValueError:
                yield "recovered"

    async def drive() -> list[str]:
        agen = echo()
        out = [await agen.asend(None), await agen.asend("a"), await agen.athrow(ValueError())]
        await agen.aclose()
        return out

    assert asyncio.run(drive()) == ["start", "a", "recovered"]
    finished = {s.name: s.status.status_code for s in exporter.get_finished_spans()}
    if enabled:
        assert finished == {
            "invoke_generic_function acc": StatusCode.OK,
            # Closed by the consumer: not an error, not a success.
            "invoke_generic_function echo": StatusCode.UNSET,
        }
    else:
        assert finished == {}


def test_disabled_overhead_is_below_a_few_microseconds() -> None:
    def bare(x: int) -> int:
        return x

    traced = trace_llm(bare)
    n = 50_000

    def per_call(function: Any) -> float:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for i in range(n):
                function(i)
            best = min(best, (time.perf_counter() - start) / n)
        return best

    # The target is < 1 µs; the bound leaves room for slow, shared CI machines.
    assert per_call(traced) - per_call(bare) < 3e-6


# ---------------------------------------------------------------- @trace


def test_trace_records_bound_arguments_and_output(spans: InMemorySpanExporter) -> None:
    @trace(name="greet")
    def greet(name: str, age: int, *extra: str, punctuation: str = "!", **meta: Any) -> str:
        return f"Hello {name} ({age}){punctuation}"

    assert greet("Ada", 36, "x", lang="en") == "Hello Ada (36)!"
    span = only(spans)
    assert span.name == "invoke_generic_function greet"
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.OK
    assert attrs(span)["gen_ai.operation.name"] == "invoke_generic_function"
    assert attrs(span)["agentscope.function.name"] == "greet"
    assert json_attr(span, "agentscope.function.input") == {
        "name": "Ada",
        "age": 36,
        "extra": ["x"],
        "punctuation": "!",
        "lang": "en",
    }
    assert json_attr(span, "agentscope.function.output") == "Hello Ada (36)!"


def test_trace_bare_skips_self_and_names_the_method_by_its_class(
    spans: InMemorySpanExporter,
) -> None:
    class Calculator:
        @trace
        def add(self, a: int, b: int) -> int:
            return a + b

        @trace("scaled")
        @classmethod
        def scaled(cls, a: int) -> int:
            return a * 10

        @trace
        @staticmethod
        def negate(a: int) -> int:
            return -a

    assert Calculator().add(1, 2) == 3
    assert Calculator.scaled(2) == 20
    assert Calculator().negate(4) == -4
    add, scaled, negate = spans.get_finished_spans()
    assert add.name == "invoke_generic_function Calculator.add"
    assert json_attr(add, "agentscope.function.input") == {"a": 1, "b": 2}
    assert scaled.name == "invoke_generic_function scaled"
    assert json_attr(scaled, "agentscope.function.input") == {"a": 2}
    assert negate.name == "invoke_generic_function Calculator.negate"


def test_trace_shows_values_that_are_not_json_by_their_repr(spans: InMemorySpanExporter) -> None:
    class Point:
        def __repr__(self) -> str:
            return "Point(1, 2)"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    @trace
    def store(point: Point, tags: set[str], data: bytes, broken: Broken, ratio: float) -> Point:
        return point

    store(Point(), {"a"}, b"\x00\x01", Broken(), float("nan"))
    span = only(spans)
    inputs = json_attr(span, "agentscope.function.input")
    assert inputs["point"] == "Point(1, 2)"
    assert inputs["tags"] == "{'a'}"
    assert inputs["data"] == "<2 bytes>"
    assert "repr failed" in inputs["broken"]
    assert inputs["ratio"] == "nan"
    assert json_attr(span, "agentscope.function.output") == "Point(1, 2)"


def test_trace_sync_generator_span_covers_the_whole_iteration(
    spans: InMemorySpanExporter, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("test")

    @trace(name="numbers")
    def numbers(n: int) -> Generator[int, None, None]:
        for i in range(n):
            with tracer.start_as_current_span(f"step {i}"):
                pass
            yield i

    gen = numbers(3)
    assert spans.get_finished_spans() == ()
    assert list(gen) == [0, 1, 2]
    span = only(spans, "invoke_generic_function numbers")
    steps = [s for s in spans.get_finished_spans() if s.name.startswith("step")]
    assert len(steps) == 3
    assert all(s.parent is not None and s.parent.span_id == span.context.span_id for s in steps)
    assert span.end_time >= max(s.end_time for s in steps)
    assert json_attr(span, "agentscope.function.output") == [0, 1, 2]
    assert span.status.status_code is StatusCode.OK


def test_trace_async_function(spans: InMemorySpanExporter) -> None:
    @trace(name="process")
    async def process(data: dict[str, int]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"processed": data}

    assert asyncio.run(process({"a": 1})) == {"processed": {"a": 1}}
    span = only(spans)
    assert span.name == "invoke_generic_function process"
    assert json_attr(span, "agentscope.function.input") == {"data": {"a": 1}}
    assert json_attr(span, "agentscope.function.output") == {"processed": {"a": 1}}


def test_trace_async_generator_span_covers_the_whole_iteration(
    spans: InMemorySpanExporter,
) -> None:
    @trace(name="stream")
    async def stream(n: int) -> AsyncGenerator[str, None]:
        for i in range(n):
            await asyncio.sleep(0)
            yield f"data_{i}"

    async def consume() -> list[str]:
        out = []
        async for item in stream(3):
            assert spans.get_finished_spans() == ()
            out.append(item)
        return out

    assert asyncio.run(consume()) == ["data_0", "data_1", "data_2"]
    span = only(spans)
    assert json_attr(span, "agentscope.function.output") == ["data_0", "data_1", "data_2"]
    assert span.status.status_code is StatusCode.OK


def test_a_returned_generator_keeps_the_span_open_until_it_is_consumed(
    spans: InMemorySpanExporter,
) -> None:
    @trace(name="lazy")
    def lazy(n: int) -> Iterator[int]:
        return (i * i for i in range(n))

    @trace(name="alazy")
    async def alazy(n: int) -> AsyncGenerator[int, None]:
        async def inner() -> AsyncGenerator[int, None]:
            for i in range(n):
                yield i

        return inner()

    gen = lazy(3)
    assert spans.get_finished_spans() == ()
    assert list(gen) == [0, 1, 4]
    assert json_attr(only(spans, "invoke_generic_function lazy"), "agentscope.function.output") == [
        0,
        1,
        4,
    ]

    async def consume() -> list[int]:
        return [i async for i in await alazy(2)]

    assert asyncio.run(consume()) == [0, 1]
    assert only(spans, "invoke_generic_function alazy").status.status_code is StatusCode.OK


# ---------------------------------------------------------------- errors


def test_an_error_marks_the_span_and_propagates_unchanged(spans: InMemorySpanExporter) -> None:
    raised: list[BaseException] = []

    @trace(name="pay")
    def pay(amount: int) -> None:
        error = PaymentDeclined(f"card declined for {amount} EUR")
        raised.append(error)
        raise error

    with pytest.raises(PaymentDeclined) as caught:
        pay(12)
    assert caught.value is raised[0]
    assert caught.traceback[-1].name == "pay"
    span = only(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "card declined for 12 EUR"
    assert attrs(span)["error.type"] == error_name(PaymentDeclined)
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == error_name(PaymentDeclined)
    assert event.attributes["exception.message"] == "card declined for 12 EUR"
    assert "raise error" in event.attributes["exception.stacktrace"]
    assert "agentscope.function.output" not in attrs(span)


def test_errors_in_every_shape_are_recorded(spans: InMemorySpanExporter) -> None:
    @trace_tool(name="lookup")
    async def lookup(key: str) -> str:
        raise KeyError(key)

    @trace(name="items")
    def items() -> Generator[int, None, None]:
        yield 1
        raise ValueError("bad item")

    @trace_llm(model="m")
    async def chunks() -> AsyncGenerator[str, None]:
        yield "partial "
        raise TimeoutError("stream stalled")

    with pytest.raises(KeyError):
        asyncio.run(lookup("missing"))
    with pytest.raises(ValueError, match="bad item"):
        list(items())

    async def consume() -> list[str]:
        return [c async for c in chunks()]

    with pytest.raises(TimeoutError):
        asyncio.run(consume())

    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert attrs(by_name["execute_tool lookup"])["error.type"] == "KeyError"
    assert attrs(by_name["invoke_generic_function items"])["error.type"] == "ValueError"
    chat = by_name["chat m"]
    assert attrs(chat)["error.type"] == "TimeoutError"
    assert chat.status.description == "stream stalled"
    # What streamed before the failure is kept.
    assert json_attr(chat, "gen_ai.output.messages")[0]["parts"] == [
        {"type": "text", "content": "partial "}
    ]
    assert all(s.status.status_code is StatusCode.ERROR for s in by_name.values())


def test_an_exception_whose_str_raises_still_propagates_unchanged(
    spans: InMemorySpanExporter,
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    @trace(name="odd")
    def odd() -> None:
        raise Unprintable()

    with pytest.raises(Unprintable):
        odd()
    span = only(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "Unprintable"
    assert attrs(span)["error.type"] == error_name(Unprintable)


def test_a_failing_attribute_extractor_never_breaks_the_call(spans: InMemorySpanExporter) -> None:
    class Hostile:
        @property
        def model_name(self) -> str:
            raise RuntimeError("boom")

        def __repr__(self) -> str:
            raise RuntimeError("no repr either")

        @trace_llm
        def __call__(self, messages: Any) -> Any:
            return Hostile()

    result = Hostile()([{"role": "user", "content": "hi"}])
    assert isinstance(result, Hostile)
    assert only(spans).status.status_code is StatusCode.OK


# ---------------------------------------------------------------- generators closed early


def test_a_generator_span_does_not_keep_what_it_yielded_alive(
    spans: InMemorySpanExporter,
) -> None:
    class Chunk:
        def __repr__(self) -> str:
            return "Chunk()"

    alive: list[weakref.ref[Chunk]] = []

    @trace(name="chunks")
    def chunks() -> Generator[Chunk, None, None]:
        for _ in range(3):
            chunk = Chunk()
            alive.append(weakref.ref(chunk))
            yield chunk
            del chunk

    stream = chunks()
    for _ in range(3):
        next(stream)
    gc.collect()
    # The consumer dropped the first two; the span (still open) must not hold them.
    assert [ref() for ref in alive[:2]] == [None, None]
    stream.close()
    assert json_attr(only(spans), "agentscope.function.output") == ["Chunk()"] * 3


def test_it_closes_the_span_when_a_generator_is_abandoned(spans: InMemorySpanExporter) -> None:
    cleaned: list[str] = []

    @trace(name="rows")
    def rows() -> Generator[int, None, None]:
        try:
            yield from range(100)
        finally:
            cleaned.append("inner finally")

    gen = rows()
    assert next(gen) == 0
    assert next(gen) == 1
    del gen
    gc.collect()
    span = only(spans)
    assert cleaned == ["inner finally"]
    assert span.end_time is not None
    assert span.status.status_code is StatusCode.UNSET
    assert json_attr(span, "agentscope.function.output") == [0, 1]


def test_it_closes_the_span_when_the_consumer_breaks_or_closes(
    spans: InMemorySpanExporter,
) -> None:
    @trace(name="rows")
    def rows() -> Generator[int, None, None]:
        yield from range(100)

    for item in rows():
        if item == 2:
            break
    gen = rows()
    next(gen)
    gen.close()
    assert [s.end_time is not None for s in spans.get_finished_spans()] == [True, True]


def test_it_closes_the_span_when_an_async_generator_is_closed_or_abandoned(
    spans: InMemorySpanExporter,
) -> None:
    cleaned: list[str] = []

    @trace_llm(model="m")
    async def tokens() -> AsyncGenerator[str, None]:
        try:
            for word in ["Hello", " world", "!"]:
                yield word
        finally:
            cleaned.append("closed")

    async def scenario() -> None:
        agen = tokens()
        assert await agen.__anext__() == "Hello"
        await agen.aclose()

        async for _ in tokens():
            break

        abandoned = tokens()
        await abandoned.__anext__()
        del abandoned
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)

    asyncio.run(scenario())
    assert cleaned == ["closed", "closed", "closed"]
    finished = spans.get_finished_spans()
    assert len(finished) == 3
    assert all(s.status.status_code is StatusCode.UNSET for s in finished)
    assert json_attr(finished[0], "gen_ai.output.messages")[0]["parts"] == [
        {"type": "text", "content": "Hello"}
    ]


def test_it_ends_the_span_of_a_returned_generator_that_is_never_iterated(
    spans: InMemorySpanExporter,
) -> None:
    @trace(name="never")
    def never() -> Iterator[int]:
        return iter_numbers()

    def iter_numbers() -> Generator[int, None, None]:
        yield 1

    gen = never()
    assert spans.get_finished_spans() == ()
    del gen
    gc.collect()
    assert only(spans).end_time is not None


# ---------------------------------------------------------------- context and nesting


def test_spans_nest_with_plain_otel_spans(
    spans: InMemorySpanExporter, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("app")

    @trace_tool(name="search")
    def search(query: str) -> list[str]:
        with tracer.start_as_current_span("http GET"):
            return [query]

    @trace_reply(name="Helper")
    async def reply(msg: str) -> str:
        await asyncio.sleep(0)
        return ", ".join(search(msg))

    with tracer.start_as_current_span("request"):
        asyncio.run(reply("sushi"))

    by_name = {s.name: s for s in spans.get_finished_spans()}
    request, agent = by_name["request"], by_name["invoke_agent Helper"]
    tool, http = by_name["execute_tool search"], by_name["http GET"]
    assert agent.parent.span_id == request.context.span_id
    assert tool.parent.span_id == agent.context.span_id
    assert http.parent.span_id == tool.context.span_id
    assert len({s.context.trace_id for s in by_name.values()}) == 1


def test_generator_context_is_current_only_inside_the_generator_body(
    spans: InMemorySpanExporter, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("app")
    seen_inside: list[str] = []

    def current_name() -> str:
        return getattr(otel_trace.get_current_span(), "name", "none")

    @trace(name="gen")
    def gen() -> Generator[int, None, None]:
        for i in range(2):
            seen_inside.append(current_name())
            yield i

    @trace(name="agen")
    async def agen() -> AsyncGenerator[int, None]:
        for i in range(2):
            seen_inside.append(current_name())
            yield i

    with tracer.start_as_current_span("consumer"):
        for _ in gen():
            assert current_name() == "consumer"

        async def consume() -> None:
            async for _ in agen():
                assert current_name() == "consumer"

        asyncio.run(consume())
        assert current_name() == "consumer"

    assert seen_inside == ["invoke_generic_function gen"] * 2 + ["invoke_generic_function agen"] * 2


def test_concurrent_tasks_get_their_own_parents(spans: InMemorySpanExporter) -> None:
    @trace_tool
    async def fetch(city: str) -> str:
        await asyncio.sleep(0.001)
        return city

    @trace_reply(name="Agent")
    async def agent(city: str) -> str:
        await asyncio.sleep(0)
        return await fetch(city)

    async def main() -> list[str]:
        return await asyncio.gather(agent("Paris"), agent("Rome"))

    assert asyncio.run(main()) == ["Paris", "Rome"]
    finished = spans.get_finished_spans()
    agents = {s.context.span_id: s for s in finished if s.name == "invoke_agent Agent"}
    tools = [s for s in finished if s.name == "execute_tool fetch"]
    for tool in tools:
        parent = agents[tool.parent.span_id]
        assert (
            json_attr(parent, "gen_ai.input.messages")[0]["parts"][0]["content"]
            == json_attr(tool, "gen_ai.tool.call.arguments")["city"]
        )
    assert len({s.context.trace_id for s in agents.values()}) == 2


def test_conversation_tags_spans_started_inside(spans: InMemorySpanExporter) -> None:
    @trace
    def step() -> None:
        pass

    with conversation("conv-42"):
        step()
    step()
    first, second = spans.get_finished_spans()
    assert attrs(first)["gen_ai.conversation.id"] == "conv-42"
    assert "gen_ai.conversation.id" not in attrs(second)


# ---------------------------------------------------------------- @trace_llm

OPENAI_RESPONSE = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Converting.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "convert", "arguments": '{"amount": 120}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 41, "completion_tokens": 9, "total_tokens": 50},
}


class OpenAIChatModel:
    def __init__(self, response: Any, model_name: str = "gpt-4o") -> None:
        self.model_name = model_name
        self.response = response

    @trace_llm
    async def __call__(self, messages: Any, **kwargs: Any) -> Any:
        return self.response


def test_trace_llm_records_an_openai_chat_completion(spans: InMemorySpanExporter) -> None:
    model = OpenAIChatModel(OPENAI_RESPONSE)
    messages = [
        {"role": "system", "content": "You handle money."},
        {"role": "user", "content": [{"type": "text", "text": "120 EUR in JPY?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c0", "type": "function", "function": {"name": "rate", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c0", "content": "162.5"},
    ]
    tools = [{"type": "function", "function": {"name": "convert", "parameters": {}}}]
    result = asyncio.run(
        model(
            messages,
            tools=tools,
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            max_tokens=256,
            seed=7,
            stop="END",
            frequency_penalty=0.1,
            presence_penalty=0.3,
        )
    )
    assert result is OPENAI_RESPONSE
    span = only(spans)
    assert span.name == "chat gpt-4o"
    assert span.kind is SpanKind.CLIENT
    a = attrs(span)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.top_k"] == 40.0
    assert a["gen_ai.request.max_tokens"] == 256
    assert a["gen_ai.request.seed"] == 7
    assert a["gen_ai.request.stop_sequences"] == ("END",)
    assert a["gen_ai.request.frequency_penalty"] == 0.1
    assert a["gen_ai.request.presence_penalty"] == 0.3
    assert a["gen_ai.response.id"] == "chatcmpl-1"
    assert a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert a["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert a["gen_ai.usage.input_tokens"] == 41
    assert a["gen_ai.usage.output_tokens"] == 9
    assert json_attr(span, "gen_ai.input.messages") == [
        {"role": "system", "parts": [{"type": "text", "content": "You handle money."}]},
        {"role": "user", "parts": [{"type": "text", "content": "120 EUR in JPY?"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "c0", "name": "rate", "arguments": {}}],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "c0", "response": "162.5"}],
        },
    ]
    assert json_attr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Converting."},
                {
                    "type": "tool_call",
                    "id": "call_1",
                    "name": "convert",
                    "arguments": {"amount": 120},
                },
            ],
            "finish_reason": "tool_call",
        }
    ]
    assert json_attr(span, "gen_ai.tool.definitions") == [
        {"type": "function", "name": "convert", "parameters": {}}
    ]


def ns(**kwargs: Any) -> SimpleNamespace:
    return SimpleNamespace(**kwargs)


def test_trace_llm_reads_openai_sdk_objects(spans: InMemorySpanExporter) -> None:
    response = ns(
        id="chatcmpl-2",
        model="gpt-4o-mini",
        choices=[
            ns(
                index=0,
                message=ns(role="assistant", content="Hi!", tool_calls=None),
                finish_reason="stop",
            )
        ],
        usage=ns(prompt_tokens=3, completion_tokens=2),
    )
    asyncio.run(OpenAIChatModel(response, "gpt-4o-mini")("Hello"))
    span = only(spans)
    assert attrs(span)["gen_ai.usage.input_tokens"] == 3
    assert json_attr(span, "gen_ai.input.messages") == [
        {"role": "user", "parts": [{"type": "text", "content": "Hello"}]}
    ]
    assert json_attr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hi!"}],
            "finish_reason": "stop",
        }
    ]


def test_trace_llm_reads_anthropic_style_messages(spans: InMemorySpanExporter) -> None:
    class AnthropicChatModel:
        model_name = "claude-sonnet-4"

        @trace_llm
        def __call__(self, messages: Any, system: Any = None, max_tokens: int = 1024) -> Any:
            return ns(
                id="msg_1",
                model="claude-sonnet-4-20250514",
                role="assistant",
                content=[
                    {"type": "thinking", "thinking": "Need the rate."},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "rate", "input": {"to": "JPY"}},
                ],
                stop_reason="tool_use",
                usage=ns(input_tokens=30, output_tokens=12),
            )

    AnthropicChatModel()(
        [
            {"role": "user", "content": "Rate?"},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_0", "content": "ok"}],
            },
        ],
        system="Be brief.",
    )
    span = only(spans)
    a = attrs(span)
    assert a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.request.max_tokens"] == 1024
    assert a["gen_ai.response.finish_reasons"] == ("tool_use",)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (30, 12)
    assert json_attr(span, "gen_ai.system_instructions") == [
        {"type": "text", "content": "Be brief."}
    ]
    assert json_attr(span, "gen_ai.input.messages")[1]["parts"] == [
        {"type": "tool_call_response", "id": "toolu_0", "response": "ok"}
    ]
    assert json_attr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "Need the rate."},
                {"type": "text", "content": "Let me check."},
                {"type": "tool_call", "id": "toolu_1", "name": "rate", "arguments": {"to": "JPY"}},
            ],
            "finish_reason": "tool_call",
        }
    ]


class ChatUsage:
    def __init__(self, input_tokens: int, output_tokens: int) -> None:
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens


class ChatResponse:
    """Shaped like agentscope.model.ChatResponse: content blocks, usage, no finish reason."""

    def __init__(self, content: list[dict[str, Any]], usage: ChatUsage | None = None) -> None:
        self.id = "resp-1"
        self.content = content
        self.usage = usage


class Msg:
    """Shaped like agentscope.message.Msg."""

    def __init__(self, name: str, content: Any, role: str) -> None:
        self.name, self.content, self.role = name, content, role


def test_trace_llm_reads_agentscope_style_responses_and_decorator_arguments(
    spans: InMemorySpanExporter,
) -> None:
    class ScriptedModel:
        @trace_llm(provider="dashscope", model="qwen-max")
        async def __call__(self, messages: Any) -> ChatResponse:
            return ChatResponse(
                [
                    {"type": "text", "text": "I will convert the currency."},
                    {"type": "tool_use", "id": "call_fx1", "name": "convert", "input": {"a": 1}},
                ],
                ChatUsage(41, 9),
            )

    asyncio.run(ScriptedModel()([Msg("user", "How much is 120 EUR in JPY?", "user")]))
    span = only(spans)
    a = attrs(span)
    assert span.name == "chat qwen-max"
    assert a["gen_ai.provider.name"] == "dashscope"
    assert a["gen_ai.response.id"] == "resp-1"
    assert a["gen_ai.response.finish_reasons"] == ("tool_call",)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (41, 9)
    assert json_attr(span, "gen_ai.input.messages") == [
        {
            "role": "user",
            "parts": [{"type": "text", "content": "How much is 120 EUR in JPY?"}],
            "name": "user",
        }
    ]
    assert json_attr(span, "gen_ai.output.messages")[0]["parts"][1] == {
        "type": "tool_call",
        "id": "call_fx1",
        "name": "convert",
        "arguments": {"a": 1},
    }


def test_trace_llm_falls_back_to_unknown_provider_and_model(spans: InMemorySpanExporter) -> None:
    @trace_llm
    def ask(prompt: str) -> str:
        return "forty-two"

    @trace_llm
    def ask_dict(prompt: str, model: str = "local-7b") -> dict[str, str]:
        return {"text": "ok"}

    ask("meaning?")
    ask_dict("x")
    first, second = spans.get_finished_spans()
    assert first.name == "chat unknown"
    assert attrs(first)["gen_ai.provider.name"] == "unknown"
    assert json_attr(first, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "forty-two"}],
            "finish_reason": "stop",
        }
    ]
    assert second.name == "chat local-7b"
    assert json_attr(second, "gen_ai.output.messages")[0]["parts"][0]["content"] == "ok"


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def test_trace_llm_folds_an_openai_delta_stream(spans: InMemorySpanExporter) -> None:
    chunks = [
        openai_chunk({"role": "assistant", "content": ""}),
        openai_chunk({"content": "Con"}),
        openai_chunk({"content": "verting"}),
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "convert", "arguments": '{"amo'},
                    }
                ]
            }
        ),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'unt": 5}'}}]}),
        openai_chunk({}, "tool_calls"),
        {
            "id": "chatcmpl-s",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7},
        },
    ]

    class OpenAIChatModel:
        model_name = "gpt-4o"

        @trace_llm
        async def __call__(self, messages: Any, stream: bool = True) -> Any:
            for chunk in chunks:
                await asyncio.sleep(0)
                yield chunk

    async def consume() -> int:
        return len([c async for c in OpenAIChatModel()("hi")])

    assert asyncio.run(consume()) == len(chunks)
    span = only(spans)
    a = attrs(span)
    assert a["gen_ai.response.id"] == "chatcmpl-s"
    assert a["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12, 7)
    assert json_attr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Converting"},
                {
                    "type": "tool_call",
                    "id": "call_9",
                    "name": "convert",
                    "arguments": {"amount": 5},
                },
            ],
            "finish_reason": "tool_call",
        }
    ]


def test_trace_llm_keeps_the_last_chunk_of_a_cumulative_stream(
    spans: InMemorySpanExporter,
) -> None:
    class DashScopeChatModel:
        model_name = "qwen-max"

        @trace_llm
        async def __call__(self, messages: Any, stream: bool = False) -> Any:
            async def generate() -> AsyncGenerator[ChatResponse, None]:
                text = ""
                for piece in ["120 EUR", " is about", " 19,500 JPY."]:
                    text += piece
                    yield ChatResponse([{"type": "text", "text": text}])
                yield ChatResponse([{"type": "text", "text": text}], ChatUsage(43, 9))

            return generate()

    async def consume() -> list[Any]:
        return [c async for c in await DashScopeChatModel()("convert", stream=True)]

    assert len(asyncio.run(consume())) == 4
    span = only(spans)
    assert attrs(span)["gen_ai.provider.name"] == "dashscope"
    assert attrs(span)["gen_ai.usage.input_tokens"] == 43
    assert json_attr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "120 EUR is about 19,500 JPY."}],
            "finish_reason": "stop",
        }
    ]


def test_trace_llm_concatenates_a_sync_stream_of_strings(spans: InMemorySpanExporter) -> None:
    @trace_llm(model="local")
    def generate(prompt: str) -> Generator[str, None, None]:
        yield from ["Bon", "jour"]

    assert "".join(generate("hi")) == "Bonjour"
    assert json_attr(only(spans), "gen_ai.output.messages")[0]["parts"] == [
        {"type": "text", "content": "Bonjour"}
    ]


def test_stream_accumulator_folds_anthropic_events() -> None:
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_s",
                "model": "claude",
                "usage": {"input_tokens": 8, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "tu", "name": "f"},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"x":'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": " 1}"},
        },
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 15},
        },
        {"type": "message_stop"},
    ]
    accumulator = StreamAccumulator()
    for event in events:
        accumulator.add(event)
    result = accumulator.result()
    assert (result.response_id, result.input_tokens, result.output_tokens) == ("msg_s", 8, 15)
    assert result.finish_reasons == ["tool_use"]
    assert result.messages == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Hi"},
                {"type": "tool_call", "id": "tu", "name": "f", "arguments": {"x": 1}},
            ],
            "finish_reason": "tool_call",
        }
    ]


def test_message_conversion_handles_media_and_odd_values() -> None:
    messages = to_messages(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                    {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
                ],
            },
            "plain question",
            42,
        ]
    )
    # A data: URL stays a uri part (as Studio's reader always read it), with its mime type.
    assert messages[0]["parts"] == [
        {
            "type": "uri",
            "modality": "image",
            "uri": "data:image/png;base64,QUJD",
            "mime_type": "image/png",
        },
        {"type": "uri", "modality": "image", "uri": "https://x.test/cat.jpg"},
        {"type": "blob", "modality": "audio", "content": "UklG", "mime_type": "audio/wav"},
    ]
    assert messages[1] == {"role": "user", "parts": [{"type": "text", "content": "plain question"}]}
    assert messages[2] == {"role": "user", "parts": [{"type": "text", "content": "42"}]}


def test_parse_response_reads_gemini_ollama_and_responses_api_shapes() -> None:
    gemini = parse_response(
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": "Hola"}]},
                    "finish_reason": "STOP",
                }
            ],
            "usage_metadata": {"prompt_token_count": 4, "candidates_token_count": 2},
            "model_version": "gemini-2.0-flash",
        }
    )
    assert (gemini.model, gemini.input_tokens, gemini.output_tokens) == ("gemini-2.0-flash", 4, 2)
    assert gemini.messages[0]["finish_reason"] == "stop"
    ollama = parse_response(
        {
            "model": "llama3",
            "message": {"role": "assistant", "content": "Hey"},
            "done_reason": "stop",
            "prompt_eval_count": 10,
            "eval_count": 3,
        }
    )
    assert (ollama.input_tokens, ollama.output_tokens) == (10, 3)
    responses = parse_response(
        {
            "id": "resp_1",
            "object": "response",
            "status": "completed",
            "output": [
                {"type": "message", "content": [{"type": "output_text", "text": "Done"}]},
                {"type": "function_call", "call_id": "fc_1", "name": "f", "arguments": "{}"},
            ],
            "usage": {"input_tokens": 5, "output_tokens": 6},
        }
    )
    assert responses.messages[0]["parts"] == [
        {"type": "text", "content": "Done"},
        {"type": "tool_call", "id": "fc_1", "name": "f", "arguments": {}},
    ]
    assert responses.finish_reasons == ["completed"]


# ---------------------------------------------------------------- @trace_reply


def test_trace_reply_records_the_agent_and_its_messages(spans: InMemorySpanExporter) -> None:
    class ReActAgent:
        def __init__(self) -> None:
            self.id = "agent-1"
            self.name = "Treasurer"
            self.description = "Handles money questions."

        @trace_reply
        async def reply(self, msg: Msg | None = None, structured_model: Any = None) -> Msg:
            return Msg(self.name, [{"type": "text", "text": "About 19,500 JPY."}], "assistant")

    asyncio.run(ReActAgent().reply(Msg("user", "How much is 120 EUR in JPY?", "user")))
    span = only(spans)
    a = attrs(span)
    assert span.name == "invoke_agent Treasurer"
    assert span.kind is SpanKind.INTERNAL
    assert a["gen_ai.operation.name"] == "invoke_agent"
    assert a["gen_ai.agent.id"] == "agent-1"
    assert a["gen_ai.agent.name"] == "Treasurer"
    assert a["gen_ai.agent.description"] == "Handles money questions."
    assert a["agentscope.function.name"] == "ReActAgent.reply"
    assert json_attr(span, "gen_ai.input.messages") == [
        {
            "role": "user",
            "parts": [{"type": "text", "content": "How much is 120 EUR in JPY?"}],
            "name": "user",
        }
    ]
    assert json_attr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "About 19,500 JPY."}],
            "name": "Treasurer",
            "finish_reason": "stop",
        }
    ]


def test_trace_reply_falls_back_to_the_class(spans: InMemorySpanExporter) -> None:
    class Greeter:
        """Says hello.

        Longer explanation that is not part of the description.
        """

        @trace_reply
        def reply(self, text: str) -> str:
            return f"Hello, {text}"

        @trace_reply(name="Streamer", agent_id="s-1", description="Streams.")
        def stream(self, text: str) -> Generator[str, None, None]:
            yield "Hel"
            yield "Hello"

    greeter = Greeter()
    greeter.reply("Ada")
    assert list(greeter.stream("x")) == ["Hel", "Hello"]
    reply, stream = spans.get_finished_spans()
    assert reply.name == "invoke_agent Greeter"
    assert attrs(reply)["gen_ai.agent.description"] == "Says hello."
    assert attrs(reply)["gen_ai.agent.id"] == f"Greeter-{id(greeter):x}"
    assert json_attr(reply, "gen_ai.output.messages")[0]["parts"][0]["content"] == "Hello, Ada"
    assert stream.name == "invoke_agent Streamer"
    assert attrs(stream)["gen_ai.agent.id"] == "s-1"
    assert json_attr(stream, "gen_ai.output.messages")[0]["parts"][0]["content"] == "Hello"


# ---------------------------------------------------------------- @trace_format


def test_trace_format_records_target_count_input_and_output(spans: InMemorySpanExporter) -> None:
    class OpenAIChatFormatter:
        @trace_format
        async def format(self, msgs: list[Msg]) -> list[dict[str, Any]]:
            return [{"role": m.role, "content": m.content} for m in msgs]

    class DashScopeMultiAgentFormatter:
        @trace_format
        def format(self, msgs: list[Msg]) -> Generator[dict[str, Any], None, None]:
            for m in msgs:
                yield {"role": m.role}

    @trace_format
    def to_prompt(msgs: list[str]) -> list[str]:
        return msgs

    msgs = [Msg("system", "Be nice.", "system"), Msg("user", "Hi", "user")]
    asyncio.run(OpenAIChatFormatter().format(msgs))
    list(DashScopeMultiAgentFormatter().format(msgs))
    to_prompt(["a"])
    openai, dashscope, plain = spans.get_finished_spans()
    assert openai.name == "format openai"
    assert attrs(openai)["gen_ai.operation.name"] == "format"
    assert attrs(openai)["agentscope.format.target"] == "openai"
    assert attrs(openai)["agentscope.format.count"] == 2
    assert attrs(openai)["agentscope.function.name"] == "OpenAIChatFormatter.format"
    assert json_attr(openai, "agentscope.function.output") == [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "Hi"},
    ]
    assert len(json_attr(openai, "agentscope.function.input")["msgs"]) == 2
    assert dashscope.name == "format dashscope"
    assert attrs(dashscope)["agentscope.format.count"] == 2
    assert plain.name == "format unknown"
    assert attrs(plain)["agentscope.format.count"] == 1


def test_trace_format_accepts_an_explicit_target(spans: InMemorySpanExporter) -> None:
    @trace_format(target="anthropic")
    def format_msgs(msgs: list[str]) -> list[str]:
        return msgs

    format_msgs([])
    assert only(spans).name == "format anthropic"


# ---------------------------------------------------------------- @trace_tool


def test_trace_tool_records_call_id_arguments_and_result(spans: InMemorySpanExporter) -> None:
    @trace_tool
    def convert(amount: float, src: str, dst: str, tool_call_id: str | None = None) -> str:
        """Convert money between currencies.

        Uses today's rate.
        """
        return f"{amount} {src} = {amount * 162.5:.0f} {dst}"

    assert convert(120, "EUR", "JPY", tool_call_id="call_fx1") == "120 EUR = 19500 JPY"
    span = only(spans)
    a = attrs(span)
    assert span.name == "execute_tool convert"
    assert a["gen_ai.operation.name"] == "execute_tool"
    assert a["gen_ai.tool.name"] == "convert"
    assert a["gen_ai.tool.call.id"] == "call_fx1"
    assert a["gen_ai.tool.description"] == "Convert money between currencies."
    assert json_attr(span, "gen_ai.tool.call.arguments") == {
        "amount": 120,
        "src": "EUR",
        "dst": "JPY",
    }
    assert json_attr(span, "gen_ai.tool.call.result") == "120 EUR = 19500 JPY"


def test_trace_tool_generates_an_id_and_accepts_a_name(spans: InMemorySpanExporter) -> None:
    @trace_tool(name="search", description="Search the web.")
    async def web_search(query: str) -> list[str]:
        return [f"result for {query}"]

    asyncio.run(web_search("yen trend"))
    span = only(spans)
    assert span.name == "execute_tool search"
    assert re.fullmatch(r"call_[0-9a-f]{24}", attrs(span)["gen_ai.tool.call.id"])
    assert attrs(span)["gen_ai.tool.description"] == "Search the web."
    assert json_attr(span, "gen_ai.tool.call.result") == ["result for yen trend"]


def test_trace_tool_reads_a_tool_call_argument(spans: InMemorySpanExporter) -> None:
    class Toolkit:
        @trace_tool
        async def call_tool_function(self, tool_call: dict[str, Any]) -> str:
            return "ok"

    toolkit = Toolkit()
    asyncio.run(
        toolkit.call_tool_function(
            {"type": "tool_use", "id": "call_bad", "name": "search_web", "input": {"q": "yen"}}
        )
    )
    asyncio.run(
        toolkit.call_tool_function(
            {"id": "c2", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
        )
    )
    first, second = spans.get_finished_spans()
    assert first.name == "execute_tool search_web"
    assert attrs(first)["gen_ai.tool.call.id"] == "call_bad"
    assert json_attr(first, "gen_ai.tool.call.arguments") == {"q": "yen"}
    assert second.name == "execute_tool f"
    assert attrs(second)["gen_ai.tool.call.id"] == "c2"
    assert json_attr(second, "gen_ai.tool.call.arguments") == {"x": 1}


# ---------------------------------------------------------------- @trace_embedding


def test_trace_embedding_records_dimensions_and_usage(spans: InMemorySpanExporter) -> None:
    class OpenAIEmbedding:
        model_name = "text-embedding-3-small"

        @trace_embedding
        def __call__(self, texts: list[str]) -> Any:
            return ns(
                data=[ns(embedding=[0.1] * 8, index=i) for i in range(len(texts))],
                model="text-embedding-3-small",
                usage=ns(prompt_tokens=6, total_tokens=6),
            )

    @trace_embedding(provider="ollama", model="nomic")
    async def embed(texts: list[str]) -> list[list[float]]:
        return [[0.0, 1.0, 2.0] for _ in texts]

    OpenAIEmbedding()(["a", "b"])
    asyncio.run(embed(["x"]))
    openai, local = spans.get_finished_spans()
    assert openai.name == "embeddings text-embedding-3-small"
    assert openai.kind is SpanKind.CLIENT
    a = attrs(openai)
    assert a["gen_ai.operation.name"] == "embeddings"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "text-embedding-3-small"
    assert a["gen_ai.embeddings.dimension.count"] == 8
    assert a["gen_ai.usage.input_tokens"] == 6
    assert local.name == "embeddings nomic"
    assert attrs(local)["gen_ai.provider.name"] == "ollama"
    assert attrs(local)["gen_ai.embeddings.dimension.count"] == 3


# ---------------------------------------------------------------- content capture and size


CONTENT_KEYS = {
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "agentscope.function.input",
    "agentscope.function.output",
}


def run_everything() -> None:
    @trace
    def helper(secret: str) -> str:
        return secret

    @trace_tool
    def tool(secret: str) -> str:
        return secret

    @trace_reply(name="A")
    def agent(msg: str) -> str:
        return msg

    @trace_format
    def fmt(msgs: list[str]) -> list[str]:
        return msgs

    helper("s")
    tool("s")
    agent("s")
    fmt(["s"])
    asyncio.run(
        OpenAIChatModel(OPENAI_RESPONSE)("secret", system="s", tools=[{"name": "t"}], seed=1)
    )


@pytest.mark.parametrize(
    "env",
    [
        {"STUDIO_CAPTURE_CONTENT": "false"},
        {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "false"},
        {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "NO_CONTENT"},
        {
            "STUDIO_CAPTURE_CONTENT": "0",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
        },
    ],
)
def test_capture_off_records_only_structure(
    monkeypatch: pytest.MonkeyPatch,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    env: dict[str, str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    init(tracer_provider=provider)
    run_everything()
    finished = exporter.get_finished_spans()
    assert len(finished) == 5
    for span in finished:
        assert not CONTENT_KEYS & set(attrs(span)), span.name
    chat = only(exporter, "chat gpt-4o")
    assert attrs(chat)["gen_ai.usage.input_tokens"] == 41
    assert attrs(chat)["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert attrs(chat)["gen_ai.request.seed"] == 1


def test_capture_can_be_turned_off_by_argument_and_on_by_studio_variable(
    monkeypatch: pytest.MonkeyPatch, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    init(tracer_provider=provider, capture_content=False)
    run_everything()
    assert not any(CONTENT_KEYS & set(attrs(s)) for s in exporter.get_finished_spans())
    exporter.clear()
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "false")
    monkeypatch.setenv("STUDIO_CAPTURE_CONTENT", "true")
    init(tracer_provider=provider)
    run_everything()
    assert "agentscope.function.input" in attrs(only(exporter, "invoke_generic_function helper"))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STUDIO_CAPTURE_CONTENT", "maybe", "STUDIO_CAPTURE_CONTENT='maybe'"),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "sometimes", "sometimes"),
        ("STUDIO_MAX_ATTRIBUTE_CHARS", "lots", "not an integer"),
        ("STUDIO_MAX_ATTRIBUTE_CHARS", "10", "at least 64"),
    ],
)
def test_bad_environment_values_fail_loudly(
    monkeypatch: pytest.MonkeyPatch, provider: TracerProvider, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=re.escape(message)):
        init(tracer_provider=provider)
    assert sdk_setup.STATE.tracer is None


def test_bad_init_arguments_fail_loudly(provider: TracerProvider) -> None:
    with pytest.raises(ValueError, match="protocol"):
        init(tracer_provider=provider, protocol="carrier-pigeon")
    with pytest.raises(ValueError, match="max_attribute_chars"):
        init(tracer_provider=provider, max_attribute_chars=3)
    with pytest.raises(ValueError, match="tracing_url"):
        init(tracing_url="", tracer_provider=provider)
    with pytest.raises(TypeError, match="TracerProvider"):
        init(tracer_provider=otel_trace.NoOpTracerProvider())  # type: ignore[arg-type]


def test_settings_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.capture_content is True
    assert settings.max_attribute_chars == DEFAULT_MAX_ATTRIBUTE_CHARS
    assert load_settings(environ={"STUDIO_MAX_ATTRIBUTE_CHARS": "1000"}).max_attribute_chars == 1000


def test_truncation_keeps_json_valid_and_small_fields_intact() -> None:
    value = {
        "question": "short",
        "image": "A" * 100_000,
        "history": [{"role": "user", "content": "x" * 5000} for _ in range(50)],
        "quote": 'He said "hi"\n' * 2000,
    }
    for limit in (64, 200, 1000, 10_000):
        text = dumps(value, limit)
        assert len(text) <= limit
        json.loads(text)
    parsed = json.loads(dumps(value, 10_000))
    assert parsed["question"] == "short"
    assert "…[truncated" in parsed["image"]
    many = json.loads(dumps(list(range(100_000)), 500))
    assert many[0] == 0 and "more items" in many[-1]
    nested: list[Any] = []
    for _ in range(100):
        nested = [nested]
    json.loads(dumps(nested, 1000))
    # Ints past 64 bits do not make json.dumps fail (nor str(), past 4300 digits).
    assert json.loads(dumps({"n": 10**5000, "m": 2**64 - 1}, 500)) == {
        "n": "<int object (repr failed)>",
        "m": 2**64 - 1,
    }
    assert truncate_text("abc", 64) == "abc"
    assert 90 <= len(truncate_text("x" * 1000, 100)) <= 100


def test_long_attributes_are_truncated_to_the_configured_size(
    monkeypatch: pytest.MonkeyPatch, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    monkeypatch.setenv("STUDIO_MAX_ATTRIBUTE_CHARS", "500")
    init(tracer_provider=provider)

    @trace
    def summarise(document: str, title: str) -> str:
        return document.upper()

    summarise("lorem ipsum " * 10_000, "Report")
    span = only(exporter)
    raw_input = attrs(span)["agentscope.function.input"]
    assert len(raw_input) <= 500
    assert json.loads(raw_input)["title"] == "Report"
    assert "…[truncated" in json.loads(attrs(span)["agentscope.function.output"])

    init(tracer_provider=provider, max_attribute_chars=100)
    exporter.clear()
    summarise("x" * 1000, "T")
    assert len(attrs(only(exporter))["agentscope.function.input"]) <= 100


# ---------------------------------------------------------------- init, export, shutdown


class RecordedExporter(InMemorySpanExporter):
    def __init__(self, protocol: str, endpoint: str, headers: dict[str, str]) -> None:
        super().__init__()
        self.protocol, self.endpoint, self.headers = protocol, endpoint, headers


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[RecordedExporter]:
    created: list[RecordedExporter] = []

    def make(protocol: str, endpoint: str, headers: dict[str, str]) -> RecordedExporter:
        created.append(RecordedExporter(protocol, endpoint, headers))
        return created[-1]

    monkeypatch.setattr(sdk_setup, "make_exporter", make)
    return created


def test_init_twice_adds_no_duplicate_exporter(
    provider: TracerProvider, made: list[RecordedExporter]
) -> None:
    init("http://localhost:3000/", tracer_provider=provider)
    init("http://localhost:3000", tracer_provider=provider)
    assert [e.endpoint for e in made] == ["http://localhost:3000/v1/traces"]
    init(tracing_url="http://collector:4318/v1/traces", tracer_provider=provider)
    assert len(made) == 2

    @trace
    def work() -> int:
        return 1

    work()
    assert flush()
    assert [len(e.get_finished_spans()) for e in made] == [1, 1]


def test_tracing_url_is_used_as_given_with_headers(
    monkeypatch: pytest.MonkeyPatch, provider: TracerProvider, made: list[RecordedExporter]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api_key=phoenix-key,X-Team=ml")
    init(
        "http://ignored:3000",
        tracing_url="https://cloud.langfuse.com/api/public/otel/v1/traces",
        headers={"Authorization": "Basic abc=", "x-team": "core"},
        tracer_provider=provider,
    )
    (exporter,) = made
    assert exporter.protocol == "http"
    assert exporter.endpoint == "https://cloud.langfuse.com/api/public/otel/v1/traces"
    assert exporter.headers == {
        "api_key": "phoenix-key",
        "x-team": "core",
        "authorization": "Basic abc=",
    }


def test_grpc_protocol_uses_the_address(
    provider: TracerProvider, made: list[RecordedExporter]
) -> None:
    init("http://localhost:4317/", protocol="grpc", tracer_provider=provider)
    init(tracing_url="collector:4317", protocol="GRPC", tracer_provider=provider)
    assert [(e.protocol, e.endpoint) for e in made] == [
        ("grpc", "http://localhost:4317"),
        ("grpc", "http://collector:4317"),
    ]


def test_make_exporter_builds_the_otlp_exporter_of_the_protocol() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    http = sdk_setup.make_exporter("http", "http://127.0.0.1:9/v1/traces", {"a": "b"})
    grpc = sdk_setup.make_exporter("grpc", "http://127.0.0.1:9", {"a": "b"})
    assert isinstance(http, HttpExporter)
    assert isinstance(grpc, GrpcExporter)
    http.shutdown()
    grpc.shutdown()


def test_shutdown_stops_recording_and_init_works_again(
    provider: TracerProvider, exporter: InMemorySpanExporter, made: list[RecordedExporter]
) -> None:
    @trace
    def work() -> None:
        pass

    init("http://localhost:3000", tracer_provider=provider)
    work()
    shutdown()
    work()
    assert len(exporter.get_finished_spans()) == 1
    assert flush() is True
    init("http://localhost:3000", tracer_provider=provider)
    work()
    assert len(exporter.get_finished_spans()) == 2
    assert len(made) == 2
    # The retired exporter received nothing after its shutdown.
    assert len(made[0].get_finished_spans()) == 1


class CaptureHandler(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def otlp_http() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    received: list[tuple[str, dict[str, str], bytes]] = []
    handler = type("Handler", (CaptureHandler,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def decode_spans(bodies: list[bytes]) -> list[Any]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    out = []
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                out.extend(scope_spans.spans)
    return out


def test_it_exports_over_otlp_http_with_headers(
    provider: TracerProvider, otlp_http: tuple[str, list[tuple[str, dict[str, str], bytes]]]
) -> None:
    url, received = otlp_http
    init(url + "/", headers={"X-Api-Key": "k1"}, tracer_provider=provider)

    @trace_tool(name="ping")
    def ping() -> str:
        return "pong"

    ping()
    assert flush()
    path, headers, body = received[0]
    assert path == "/v1/traces"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["x-api-key"] == "k1"
    (span,) = decode_spans([body])
    assert span.name == "execute_tool ping"


@pytest.fixture
def otlp_grpc() -> Iterator[tuple[str, list[tuple[Any, dict[str, str]]]]]:
    """A gRPC TraceService on a free port: (bare "host:port", [(request, metadata)])."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list[tuple[Any, dict[str, str]]] = []

    class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            received.append((request, dict(context.invocation_metadata())))
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", received
    shutdown()
    server.stop(None)


def test_it_exports_over_otlp_grpc_to_a_bare_address(
    provider: TracerProvider, otlp_grpc: tuple[str, list[tuple[Any, dict[str, str]]]]
) -> None:
    address, received = otlp_grpc
    init(address, protocol="grpc", headers={"x-token": "t"}, tracer_provider=provider)

    @trace(name="over grpc")
    def work() -> None:
        pass

    work()
    assert flush()
    request, metadata = received[0]
    assert metadata["x-token"] == "t"
    assert request.resource_spans[0].scope_spans[0].spans[0].name == (
        "invoke_generic_function over grpc"
    )


def run_python(code: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    completed = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_init_creates_a_global_provider_with_the_service_name() -> None:
    code = """
from opentelemetry import trace as t
from opentelemetry.sdk.trace import TracerProvider
from studio_sdk import init
provider = init(service_name="billing")
assert t.get_tracer_provider() is provider
assert provider.resource.attributes["service.name"] == "billing"
assert init() is provider
"""
    run_python(code)


def test_init_reuses_an_sdk_provider_the_app_installed() -> None:
    code = """
from opentelemetry import trace as t
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from studio_sdk import init, trace, setup
from studio_sdk.setup import STATE
setup.make_exporter = lambda *args: InMemorySpanExporter()
app = TracerProvider()
memory = InMemorySpanExporter()
app.add_span_processor(SimpleSpanProcessor(memory))
t.set_tracer_provider(app)
assert init("http://127.0.0.1:9", service_name="ignored") is app
assert len(STATE.processors) == 1
with t.get_tracer("app").start_as_current_span("app span"):
    trace(lambda: None)()
names = [s.name for s in memory.get_finished_spans()]
assert names == ["invoke_generic_function <lambda>", "app span"], names
"""
    run_python(code)


# ---------------------------------------------------------------- demo


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_demo_sends_a_multi_agent_session(
    protocol: str,
    otlp_http: tuple[str, list[tuple[str, dict[str, str], bytes]]],
    otlp_grpc: tuple[str, list[tuple[Any, dict[str, str]]]],
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from studio_sdk.demo import (
        EXPECTED_ERROR_SPAN,
        EXPECTED_INPUT_TOKENS,
        EXPECTED_OUTPUT_TOKENS,
        EXPECTED_SPANS,
    )

    url = otlp_http[0] if protocol == "http" else f"http://{otlp_grpc[0]}"
    trace_id = run_python(
        "import sys; from studio_sdk.demo import run_demo; print(run_demo(*sys.argv[1:]))",
        url,
        protocol,
    ).strip()
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    if protocol == "http":
        bodies = [body for _, _, body in otlp_http[1]]
    else:
        bodies = [request.SerializeToString() for request, _ in otlp_grpc[1]]
        assert all(isinstance(r, ExportTraceServiceRequest) for r, _ in otlp_grpc[1])
    exported = decode_spans(bodies)
    assert {s.trace_id.hex() for s in exported} == {trace_id}
    by_id = {s.span_id: s for s in exported}
    ordered = sorted(exported, key=lambda s: s.start_time_unix_nano)
    assert [
        (s.name, by_id[s.parent_span_id].name if s.parent_span_id else None) for s in ordered
    ] == list(EXPECTED_SPANS)
    errors = [s.name for s in exported if s.status.code == 2]
    assert errors == [EXPECTED_ERROR_SPAN]

    def attr(span: Any, key: str) -> Any:
        for kv in span.attributes:
            if kv.key == key:
                return kv.value.int_value or kv.value.string_value
        return None

    chats = [s for s in exported if s.name.startswith("chat ")]
    assert sum(attr(s, "gen_ai.usage.input_tokens") for s in chats) == EXPECTED_INPUT_TOKENS
    assert sum(attr(s, "gen_ai.usage.output_tokens") for s in chats) == EXPECTED_OUTPUT_TOKENS
    final = ordered[-1]
    output = json.loads(attr(final, "gen_ai.output.messages"))
    assert output[0]["parts"][0]["content"].startswith("Your 1,500 EUR is about 241,800 JPY")
    weather = next(s for s in exported if s.name == EXPECTED_ERROR_SPAN)
    assert attr(weather, "error.type") == "ConnectionError"
