"""The decorators, and the life cycle of their spans for each shape of function.

Every wrapper keeps the shape of the function it wraps (sync, generator, async, async
generator), so ``inspect`` and frameworks see the same kind of callable. When tracing is off
(``STATE.tracer is None``) the wrapper calls the function and does nothing else.

Spans follow ``start_as_current_span`` semantics: the span is current while the function body
runs. For generators it is current only while the generator body runs, between the consumer's
``next()``/``send()`` and the next ``yield``, never while the consumer holds the item.
"""

import contextvars
import functools
import inspect
import logging
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Status, StatusCode, Tracer

from studio_sdk.operations import (
    Call,
    Collector,
    EmbeddingOperation,
    FormatOperation,
    GenericOperation,
    LLMOperation,
    Operation,
    ReplyOperation,
    ToolOperation,
    bind_call,
)
from studio_sdk.setup import STATE

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger(__name__)

_CONVERSATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "studio_conversation_id", default=None
)


@contextmanager
def conversation(conversation_id: str) -> Iterator[str]:
    """Tag every span started inside the block with ``gen_ai.conversation.id``."""
    token = _CONVERSATION.set(conversation_id)
    try:
        yield conversation_id
    finally:
        _CONVERSATION.reset(token)


def error_type(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module in (None, "builtins") else f"{module}.{cls.__qualname__}"


class _Run:
    """One span around one call; every method is safe to call after the span has ended.

    ``with run:`` makes the span current for a step of the call (the call itself, or one step
    of the stream it returned) and records an exception that escapes the step.

    Failures in our own attribute code are logged and swallowed: tracing must never change
    what the traced function does.
    """

    __slots__ = ("call", "collector", "context", "ended", "op", "settings", "span", "token")

    def __init__(
        self,
        tracer: Tracer,
        op: Operation,
        function: Callable[..., Any],
        signature: inspect.Signature | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.op = op
        self.settings = STATE.settings
        self.ended = False
        self.collector: Collector | None = None
        try:
            self.call = bind_call(function, signature, args, kwargs)
            name, attributes = op.start(self.call, self.settings)
        except Exception:
            logger.warning("Studio tracing could not describe a call", exc_info=True)
            self.call = Call(function, getattr(function, "__qualname__", "?"), None, {})
            name, attributes = self.call.function_name, {}
        conversation_id = _CONVERSATION.get()
        if conversation_id:
            attributes["gen_ai.conversation.id"] = conversation_id
        self.span = tracer.start_span(name, kind=op.kind, attributes=attributes)
        self.context = otel_trace.set_span_in_context(self.span)

    def __enter__(self) -> None:
        # Steps of one call never overlap (a running generator cannot be re-entered), so one
        # token slot is enough.
        self.token = otel_context.attach(self.context)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        try:
            if exc is not None:
                self.fail(exc)
        finally:
            otel_context.detach(self.token)

    def add(self, item: Any) -> None:
        try:
            if self.collector is None:
                self.collector = self.op.collector(self.settings)
            self.collector.add(item)
        except Exception:
            logger.warning("Studio tracing could not record a streamed item", exc_info=True)

    def _record(self, result: Any) -> None:
        try:
            attributes = self.op.finish(self.call, result, self.settings)
            if attributes:
                self.span.set_attributes(attributes)
        except Exception:
            logger.warning("Studio tracing could not describe a result", exc_info=True)

    def _record_stream(self) -> None:
        """Record what the stream yielded so far, folded by the operation's collector."""
        try:
            result = (self.collector or self.op.collector(self.settings)).value()
        except Exception:
            logger.warning("Studio tracing could not fold a stream", exc_info=True)
            return
        self._record(result)

    def succeed(self, result: Any) -> None:
        if not self.ended:
            self._record(result)
            self._end(Status(StatusCode.OK))

    def succeed_stream(self) -> None:
        if not self.ended:
            self._record_stream()
            self._end(Status(StatusCode.OK))

    def close_early(self) -> None:
        """The consumer stopped iterating (or dropped the generator): not an error."""
        if self.ended:
            return
        if self.collector is not None:
            self._record_stream()
        self._end()

    def fail(self, exc: BaseException) -> None:
        if self.ended:
            return
        if isinstance(exc, GeneratorExit):
            self.close_early()
            return
        if self.collector is not None:
            self._record_stream()
        self.span.set_attribute("error.type", error_type(exc))
        # str() runs the exception's own code, which may raise: ours must never replace theirs.
        try:
            message = str(exc) or type(exc).__name__
        except Exception:
            message = type(exc).__name__
        try:
            self.span.record_exception(exc, escaped=True)
        except Exception:
            logger.warning("Studio tracing could not record an exception", exc_info=True)
        self._end(Status(StatusCode.ERROR, message))

    def _end(self, status: Status | None = None) -> None:
        self.ended = True
        if status is not None:
            self.span.set_status(status)
        self.span.end()

    def complete(self, result: Any, from_sync: bool) -> Any:
        """End the span with ``result``, or hand the span over to the stream it returned."""
        if inspect.isgenerator(result):
            driver: Any = _drive_sync(self, result)
        elif inspect.isasyncgen(result):
            driver = _continue_async(self, result)
        elif from_sync and inspect.iscoroutine(result):
            driver = _await_returned(self, result)
        else:
            self.succeed(result)
            return result
        # A stream that is dropped before its first item never runs our cleanup code.
        weakref.finalize(driver, self.close_early).atexit = False
        return driver


def _drive_sync(run: _Run, gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Delegate to ``gen`` like ``yield from``, with the span current only inside ``gen``."""
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        with run:
            try:
                if thrown is not None:
                    exc, thrown = thrown, None
                    item = gen.throw(exc)
                else:
                    item = gen.send(sent)
            except StopIteration as stop:
                run.succeed_stream()
                return stop.value
        run.add(item)
        try:
            sent = yield item
        except GeneratorExit:
            with run:
                gen.close()
            run.close_early()
            raise
        except BaseException as exc:
            thrown = exc


def _async_gen_wrapper(
    function: Callable[..., AsyncGenerator[Any, Any]] | None,
    op: Operation | None,
    signature: inspect.Signature | None,
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """An async generator function delegating to ``function``'s generator.

    With ``function=None`` it is instead called as ``(run, agen)`` to continue a span over an
    async generator returned by a traced call: async generators have no ``yield from``, so
    this one loop serves both. It also serves calls made while tracing is off (``run is
    None``), which is why it checks ``run`` instead of entering ``with run:``: a no-op context
    manager, or a start callable in place of ``function=None``, measurably slows that path.
    """

    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        run: _Run | None
        if function is None:
            run, agen = args
        else:
            tracer = STATE.tracer
            if tracer is None:
                run = None
                agen = function(*args, **kwargs)
            else:
                assert op is not None
                run = _Run(tracer, op, function, signature, args, kwargs)
                try:
                    agen = function(*args, **kwargs)
                except BaseException as exc:
                    run.fail(exc)
                    raise
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            token = None if run is None else otel_context.attach(run.context)
            try:
                if thrown is not None:
                    exc, thrown = thrown, None
                    item = await agen.athrow(exc)
                else:
                    item = await agen.asend(sent)
            except StopAsyncIteration:
                if run is not None:
                    run.succeed_stream()
                return
            except BaseException as exc:
                if run is not None:
                    run.fail(exc)
                raise
            finally:
                if token is not None:
                    otel_context.detach(token)
            if run is not None:
                run.add(item)
            try:
                sent = yield item
            except GeneratorExit:
                token = None if run is None else otel_context.attach(run.context)
                try:
                    await agen.aclose()
                except BaseException as exc:
                    if run is not None:
                        run.fail(exc)
                    raise
                finally:
                    if token is not None:
                        otel_context.detach(token)
                if run is not None:
                    run.close_early()
                raise
            except BaseException as exc:
                thrown = exc

    return wrapper


_continue_async = _async_gen_wrapper(None, None, None)


async def _await_returned(run: _Run, coroutine: Coroutine[Any, Any, Any]) -> Any:
    with run:
        result = await coroutine
    return run.complete(result, from_sync=False)


def _sync_wrapper(
    function: Callable[..., Any], op: Operation, signature: inspect.Signature | None
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tracer = STATE.tracer
        if tracer is None:
            return function(*args, **kwargs)
        run = _Run(tracer, op, function, signature, args, kwargs)
        with run:
            result = function(*args, **kwargs)
        return run.complete(result, from_sync=True)

    return wrapper


def _async_wrapper(
    function: Callable[..., Coroutine[Any, Any, Any]],
    op: Operation,
    signature: inspect.Signature | None,
) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        tracer = STATE.tracer
        if tracer is None:
            return await function(*args, **kwargs)
        run = _Run(tracer, op, function, signature, args, kwargs)
        with run:
            result = await function(*args, **kwargs)
        return run.complete(result, from_sync=False)

    return wrapper


def _gen_wrapper(
    function: Callable[..., Generator[Any, Any, Any]],
    op: Operation,
    signature: inspect.Signature | None,
) -> Callable[..., Generator[Any, Any, Any]]:
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        tracer = STATE.tracer
        if tracer is None:
            return (yield from function(*args, **kwargs))
        run = _Run(tracer, op, function, signature, args, kwargs)
        with run:
            gen = function(*args, **kwargs)
        return (yield from _drive_sync(run, gen))

    return wrapper


def _decorate(function: Any, op: Operation) -> Any:
    if isinstance(function, (classmethod, staticmethod)):
        return type(function)(_decorate(function.__func__, op))
    if not callable(function):
        raise TypeError(f"cannot trace {function!r}: it is not callable")
    try:
        signature: inspect.Signature | None = inspect.signature(function)
    except (TypeError, ValueError):
        signature = None
    if inspect.isasyncgenfunction(function):
        wrapper: Callable[..., Any] = _async_gen_wrapper(function, op, signature)
    elif inspect.iscoroutinefunction(function):
        wrapper = _async_wrapper(function, op, signature)
    elif inspect.isgeneratorfunction(function):
        wrapper = _gen_wrapper(function, op, signature)
    else:
        wrapper = _sync_wrapper(function, op, signature)
    return functools.update_wrapper(wrapper, function)


def _decorator(op: Operation) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        return _decorate(function, op)  # type: ignore[no-any-return]

    return decorate


@overload
def trace(function: F, /) -> F: ...
@overload
def trace(function: str | None = None, /, *, name: str | None = None) -> Callable[[F], F]: ...
def trace(function: Any = None, /, *, name: str | None = None) -> Any:
    """Trace any function: ``invoke_generic_function {name}`` with its input and output.

    Usable bare (``@trace``), with a name (``@trace(name="fetch")`` or ``@trace("fetch")``).
    The name defaults to ``Class.method`` or the function's name.
    """
    if isinstance(function, str):
        function, name = None, function
    decorate = _decorator(GenericOperation(name))
    return decorate if function is None else decorate(function)


@overload
def trace_llm(function: F, /) -> F: ...
@overload
def trace_llm(
    function: None = None, /, *, provider: str | None = None, model: str | None = None
) -> Callable[[F], F]: ...
def trace_llm(
    function: Any = None, /, *, provider: str | None = None, model: str | None = None
) -> Any:
    """Trace a chat model call (usually a model's ``__call__``): ``chat {model}``, CLIENT.

    The model comes from ``model=``, else a ``model`` argument, else the instance's
    ``model_name``/``model``; the provider from ``provider=``, else the instance's
    ``provider``, else the class name (``OpenAIChatModel`` -> ``openai``), else ``unknown``.
    A returned generator or async generator of chunks is folded into one response; see
    ``studio_sdk.messages.StreamAccumulator`` for the rule.
    """
    decorate = _decorator(LLMOperation(provider, model))
    return decorate if function is None else decorate(function)


@overload
def trace_reply(function: F, /) -> F: ...
@overload
def trace_reply(
    function: None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    agent_id: str | None = None,
) -> Callable[[F], F]: ...
def trace_reply(
    function: Any = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    agent_id: str | None = None,
) -> Any:
    """Trace an agent's reply: ``invoke_agent {name}`` with its input and output messages.

    Name, id and description default to the instance's ``name``, ``id`` and ``description``
    (then the class name, ``Class-<address>`` and the class docstring's first paragraph).
    """
    decorate = _decorator(ReplyOperation(name, description, agent_id))
    return decorate if function is None else decorate(function)


@overload
def trace_format(function: F, /) -> F: ...
@overload
def trace_format(function: None = None, /, *, target: str | None = None) -> Callable[[F], F]: ...
def trace_format(function: Any = None, /, *, target: str | None = None) -> Any:
    """Trace a formatter: ``format {target}``, the target from ``target=`` or the class name
    (``OpenAIChatFormatter`` -> ``openai``), and the number of formatted messages."""
    decorate = _decorator(FormatOperation(target))
    return decorate if function is None else decorate(function)


@overload
def trace_tool(function: F, /) -> F: ...
@overload
def trace_tool(
    function: None = None, /, *, name: str | None = None, description: str | None = None
) -> Callable[[F], F]: ...
def trace_tool(
    function: Any = None, /, *, name: str | None = None, description: str | None = None
) -> Any:
    """Trace a tool execution: ``execute_tool {name}`` with the call id, arguments and result.

    When an argument is a tool call (OpenAI ``{"id", "function": {"name", "arguments"}}`` or a
    ``tool_use`` block), name, id and arguments come from it. Otherwise the name is the
    function's, the id comes from a ``tool_call_id``/``call_id``/``tool_use_id`` argument (or is
    generated) and the arguments are the bound arguments.
    """
    decorate = _decorator(ToolOperation(name, description))
    return decorate if function is None else decorate(function)


@overload
def trace_embedding(function: F, /) -> F: ...
@overload
def trace_embedding(
    function: None = None, /, *, provider: str | None = None, model: str | None = None
) -> Callable[[F], F]: ...
def trace_embedding(
    function: Any = None, /, *, provider: str | None = None, model: str | None = None
) -> Any:
    """Trace an embedding call: ``embeddings {model}``, CLIENT, with the vector size and the
    input tokens when the response reports them."""
    decorate = _decorator(EmbeddingOperation(provider, model))
    return decorate if function is None else decorate(function)
