"""Overhead of the tracing SDK's decorators per call: ``python benchmarks/bench_sdk.py``.

Each case times a decorated function against the same undecorated function, with tracing off
(no ``init``: the decorators must cost well under 1 µs) and on (spans built, attributes
serialised, handed to a SimpleSpanProcessor whose exporter discards them). Best of several
repeats, so the figures are the cost of the code rather than of a noisy neighbour.
"""

import argparse
import asyncio
import os
import platform
import sys
import time
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from studio_sdk import init, shutdown, trace, trace_llm

RESPONSE = {
    "id": "chatcmpl-bench",
    "model": "gpt-4o",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The answer is 42."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 6},
}
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is six times seven?"},
]


class DiscardingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def add(a: int, b: int) -> int:
    return a + b


async def add_async(a: int, b: int) -> int:
    return a + b


def count(n: int) -> Generator[int, None, None]:
    yield from range(n)


async def count_async(n: int) -> AsyncGenerator[int, None]:
    for i in range(n):
        yield i


def chat(messages: list[dict[str, str]], temperature: float = 0.2) -> dict[str, Any]:
    return RESPONSE


def per_call_sync(
    function: Callable[..., Any], args: tuple[Any, ...], n: int, repeat: int
) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            function(*args)
        best = min(best, time.perf_counter() - start)
    return best / n


def per_call_gen(function: Callable[..., Any], args: tuple[Any, ...], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            for _ in function(*args):
                pass
        best = min(best, time.perf_counter() - start)
    return best / n


def per_call_async(
    function: Callable[..., Any], args: tuple[Any, ...], n: int, repeat: int
) -> float:
    async def run() -> float:
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(n):
                await function(*args)
            best = min(best, time.perf_counter() - start)
        return best / n

    return asyncio.run(run())


def per_call_async_gen(
    function: Callable[..., Any], args: tuple[Any, ...], n: int, repeat: int
) -> float:
    async def run() -> float:
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(n):
                async for _ in function(*args):
                    pass
            best = min(best, time.perf_counter() - start)
        return best / n

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="calls per repeat, tracing off")
    parser.add_argument("--repeat", type=int, default=7)
    options = parser.parse_args()
    n_off, n_on = options.n, max(1, options.n // 20)

    traced_add = trace(name="add")(add)
    traced_add_async = trace(name="add")(add_async)
    traced_chat = trace_llm(provider="openai", model="gpt-4o")(chat)

    Timer = Callable[[Callable[..., Any], tuple[Any, ...], int, int], float]
    cases: list[tuple[str, Callable[..., Any], Callable[..., Any], tuple[Any, ...], Timer]] = [
        ("@trace sync", add, traced_add, (1, 2), per_call_sync),
        ("@trace async", add_async, traced_add_async, (1, 2), per_call_async),
        ("@trace generator (3 items)", count, trace(name="count")(count), (3,), per_call_gen),
        (
            "@trace async gen (3 items)",
            count_async,
            trace(name="count")(count_async),
            (3,),
            per_call_async_gen,
        ),
        ("@trace_llm sync (OpenAI dict)", chat, traced_chat, (MESSAGES,), per_call_sync),
    ]

    rows: list[tuple[str, str, float, float]] = []

    def measure(mode: str, n: int) -> None:
        for label, bare, traced, args, timer in cases:
            baseline = timer(bare, args, n, options.repeat)
            decorated = timer(traced, args, n, options.repeat)
            rows.append((label, mode, baseline, decorated))

    measure("off", n_off)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DiscardingExporter()))
    init(tracer_provider=provider)
    measure("on", n_on)
    init(tracer_provider=provider, capture_content=False)
    measure("on, no content", n_on)
    shutdown()

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {cpu}")
    print(f"{'case':<32} {'tracing':<15} {'bare':>10} {'decorated':>11} {'overhead':>10}")
    for label, mode, baseline, decorated in rows:
        print(
            f"{label:<32} {mode:<15} {baseline * 1e9:>8.0f}ns {decorated * 1e9:>9.0f}ns "
            f"{(decorated - baseline) * 1e9:>8.0f}ns"
        )


if __name__ == "__main__":
    main()
