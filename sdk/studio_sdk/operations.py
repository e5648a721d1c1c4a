"""What each decorator records: span name, kind and attributes, before and after the call.

An operation never sees the span itself, only the call and its result; the decorators module
owns the span's life cycle. Attribute names follow the OpenTelemetry GenAI conventions v1.38
and the AgentScope extensions (``agentscope.function.*``, ``agentscope.format.*``).
"""

import inspect
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.trace import SpanKind

from studio_sdk.config import Settings
from studio_sdk.genai import (
    TOOL_CALL_TYPES,
    as_int,
    as_str,
    get,
    parse_json,
    system_instructions,
    to_messages,
    tool_definitions,
)
from studio_sdk.messages import LLMResult, StreamAccumulator, first_int, parse_response
from studio_sdk.serialize import dumps, items_marker, snapshot, truncate_text

AttributeValue = str | bool | int | float | list[str]
Attributes = dict[str, AttributeValue]

# How many yielded items a generator span keeps for its output; more would pin memory.
MAX_COLLECTED_ITEMS = 1000


@dataclass(slots=True)
class Call:
    """A decorated call: the bound arguments without ``self``/``cls``, and the owner if any."""

    function: Callable[..., Any]
    function_name: str
    owner: Any
    arguments: dict[str, Any]


def _clean_qualname(function: Callable[..., Any]) -> str:
    qualname = getattr(function, "__qualname__", None) or getattr(function, "__name__", "")
    # "test_x.<locals>.helper" says nothing useful to the person reading a trace.
    return qualname.rsplit("<locals>.", 1)[-1] or repr(function)


def bind_call(
    function: Callable[..., Any],
    signature: inspect.Signature | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Call:
    owner: Any = None
    arguments: dict[str, Any] | None = None
    if signature is not None:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            # The call itself will raise the same TypeError; record what was passed.
            bound = None
        if bound is not None:
            bound.apply_defaults()
            arguments = {}
            for index, (name, value) in enumerate(bound.arguments.items()):
                kind = signature.parameters[name].kind
                if index == 0 and name in ("self", "cls"):
                    owner = value
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    arguments.update(value)
                elif kind is inspect.Parameter.VAR_POSITIONAL:
                    arguments[name] = list(value)
                else:
                    arguments[name] = value
    if arguments is None:
        arguments = {"args": list(args), "kwargs": dict(kwargs)}
    name = getattr(function, "__name__", None) or _clean_qualname(function)
    if owner is not None:
        owner_name = owner.__name__ if isinstance(owner, type) else type(owner).__name__
        function_name = f"{owner_name}.{name}"
    else:
        function_name = _clean_qualname(function)
    return Call(function, function_name, owner, arguments)


@dataclass(slots=True)
class Collected:
    """The items a generator yielded (at most MAX_COLLECTED_ITEMS kept) and how many."""

    items: list[Any]
    total: int

    def as_output(self) -> list[Any]:
        if self.total > len(self.items):
            return [*self.items, items_marker(self.total - len(self.items))]
        return self.items


class Collector(Protocol):
    def add(self, item: Any) -> None: ...

    def value(self) -> Any: ...


class ListCollector:
    """Keeps bounded JSON snapshots of the items, not the items: a generator of file chunks or
    data frames must not have a thousand of them pinned in memory until it ends."""

    def __init__(self, keep: bool, max_chars: int) -> None:
        self.keep = keep
        self.max_chars = max_chars
        self.chars = 0
        self.items: list[Any] = []
        self.total = 0

    def add(self, item: Any) -> None:
        self.total += 1
        # Past max_chars the output attribute could not show more items anyway.
        if self.keep and self.chars < self.max_chars and len(self.items) < MAX_COLLECTED_ITEMS:
            data, chars = snapshot(item, self.max_chars)
            self.items.append(data)
            self.chars += chars

    def value(self) -> Collected:
        return Collected(self.items, self.total)


class LastCollector:
    """For cumulative streams (AgentScope replies and tool responses): the last item is the
    whole answer."""

    def __init__(self) -> None:
        self.last: Any = None

    def add(self, item: Any) -> None:
        self.last = item

    def value(self) -> Any:
        return self.last


class LLMCollector:
    def __init__(self, capture: bool) -> None:
        self.accumulator = StreamAccumulator(capture)

    def add(self, item: Any) -> None:
        self.accumulator.add(item)

    def value(self) -> LLMResult:
        return self.accumulator.result()


class Operation:
    """Base: a span of ``kind`` whose attributes are computed before and after the call."""

    kind = SpanKind.INTERNAL

    def start(self, call: Call, settings: Settings) -> tuple[str, Attributes]:
        raise NotImplementedError

    def finish(self, call: Call, result: Any, settings: Settings) -> Attributes:
        return {}

    def collector(self, settings: Settings) -> Collector:
        return LastCollector()


def _json(value: Any, settings: Settings) -> str:
    return dumps(value, settings.max_attribute_chars)


def _text(value: str, settings: Settings) -> str:
    return truncate_text(value, settings.max_attribute_chars)


def _first_paragraph(doc: str | None) -> str | None:
    if not doc:
        return None
    cleaned = inspect.cleandoc(doc).strip()
    return cleaned.split("\n\n", 1)[0].strip() or None


def _owner_str(owner: Any, *names: str) -> str | None:
    for name in names:
        value = as_str(get(owner, name)) if owner is not None else None
        if value:
            return value
    return None


def _pick_argument(arguments: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if arguments.get(name) is not None:
            return arguments[name]
    for value in arguments.values():
        if isinstance(value, (str, list, tuple, Mapping)) or get(value, "content") is not None:
            return value
    return None


class GenericOperation(Operation):
    def __init__(self, name: str | None) -> None:
        self.name = name

    def start(self, call: Call, settings: Settings) -> tuple[str, Attributes]:
        name = self.name or call.function_name
        attributes: Attributes = {
            "gen_ai.operation.name": "invoke_generic_function",
            "agentscope.function.name": name,
        }
        if settings.capture_content:
            attributes["agentscope.function.input"] = _json(call.arguments, settings)
        return f"invoke_generic_function {name}", attributes

    def finish(self, call: Call, result: Any, settings: Settings) -> Attributes:
        if not settings.capture_content:
            return {}
        output = result.as_output() if isinstance(result, Collected) else result
        return {"agentscope.function.output": _json(output, settings)}

    def collector(self, settings: Settings) -> Collector:
        return ListCollector(settings.capture_content, settings.max_attribute_chars)


_FORMATTER_SUFFIXES = re.compile(r"(MultiAgent|Chat)?Formatter(Base)?$")


def format_target(owner: Any) -> str:
    """``OpenAIChatFormatter`` -> ``openai``; anything unrecognisable -> ``unknown``."""
    if owner is None:
        return "unknown"
    cls = owner if isinstance(owner, type) else type(owner)
    target = _FORMATTER_SUFFIXES.sub("", cls.__name__)
    if not target or target == cls.__name__:
        return "unknown"
    return target.lower()


class FormatOperation(Operation):
    def __init__(self, target: str | None) -> None:
        self.target = target

    def start(self, call: Call, settings: Settings) -> tuple[str, Attributes]:
        target = self.target or format_target(call.owner)
        attributes: Attributes = {
            "gen_ai.operation.name": "format",
            "agentscope.format.target": target,
            "agentscope.function.name": call.function_name,
        }
        if settings.capture_content:
            attributes["agentscope.function.input"] = _json(call.arguments, settings)
        return f"format {target}", attributes

    def finish(self, call: Call, result: Any, settings: Settings) -> Attributes:
        attributes: Attributes = {}
        if isinstance(result, Collected):
            attributes["agentscope.format.count"] = result.total
            output: Any = result.as_output()
        else:
            if isinstance(result, (list, tuple)):
                attributes["agentscope.format.count"] = len(result)
            output = result
        if settings.capture_content:
            attributes["agentscope.function.output"] = _json(output, settings)
        return attributes

    def collector(self, settings: Settings) -> Collector:
        return ListCollector(settings.capture_content, settings.max_attribute_chars)


# Checked in order against the lowercased class name; the first hit names the provider.
_PROVIDER_HINTS = (
    ("azureopenai", "azure.ai.openai"),
    ("azure", "azure.ai.inference"),
    ("openai", "openai"),
    ("anthropic", "anthropic"),
    ("claude", "anthropic"),
    ("dashscope", "dashscope"),
    ("gemini", "gcp.gemini"),
    ("vertex", "gcp.vertex_ai"),
    ("ollama", "ollama"),
    ("deepseek", "deepseek"),
    ("mistral", "mistral_ai"),
    ("groq", "groq"),
    ("bedrock", "aws.bedrock"),
    ("cohere", "cohere"),
    ("grok", "x_ai"),
    ("perplexity", "perplexity"),
    ("watsonx", "ibm.watsonx.ai"),
)


def infer_provider(owner: Any) -> str:
    explicit = _owner_str(owner, "provider", "provider_name")
    if explicit:
        return explicit
    if owner is None:
        return "unknown"
    cls = owner if isinstance(owner, type) else type(owner)
    name = cls.__name__.lower()
    for hint, provider in _PROVIDER_HINTS:
        if hint in name:
            return provider
    if name.startswith("xai"):
        return "x_ai"
    return "unknown"


def _model_name(explicit: str | None, call: Call) -> str:
    if explicit:
        return explicit
    from_argument = as_str(call.arguments.get("model"))
    if from_argument:
        return from_argument
    return _owner_str(call.owner, "model_name", "model", "model_id", "deployment_name") or "unknown"


_MESSAGE_ARGUMENTS = ("messages", "msgs", "prompt", "input", "contents", "message", "inputs")

# (argument names, attribute, converter); the first name present wins.
_REQUEST_PARAMETERS: tuple[tuple[tuple[str, ...], str, Callable[[Any], Any]], ...] = (
    (("temperature",), "gen_ai.request.temperature", float),
    (("top_p",), "gen_ai.request.top_p", float),
    (("top_k",), "gen_ai.request.top_k", float),
    (
        ("max_tokens", "max_completion_tokens", "max_output_tokens"),
        "gen_ai.request.max_tokens",
        int,
    ),
    (("seed",), "gen_ai.request.seed", int),
    (("frequency_penalty",), "gen_ai.request.frequency_penalty", float),
    (("presence_penalty",), "gen_ai.request.presence_penalty", float),
    (("n",), "gen_ai.request.choice.count", int),
)


def request_parameters(parameters: Mapping[str, Any]) -> Attributes:
    attributes: Attributes = {}
    for names, attribute, convert in _REQUEST_PARAMETERS:
        for name in names:
            value = parameters.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[attribute] = convert(value)
                break
    stop = parameters.get("stop")
    if stop is None:
        stop = parameters.get("stop_sequences")
    if isinstance(stop, str):
        attributes["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
        attributes["gen_ai.request.stop_sequences"] = list(stop)
    if attributes.get("gen_ai.request.choice.count") == 1:
        del attributes["gen_ai.request.choice.count"]
    return attributes


def _llm_parameters(call: Call) -> dict[str, Any]:
    # AgentScope models keep default generation settings on the instance.
    defaults = get(call.owner, "generate_kwargs") if call.owner is not None else None
    merged = dict(defaults) if isinstance(defaults, Mapping) else {}
    merged.update(call.arguments)
    return merged


def _usage_attributes(result: LLMResult) -> Attributes:
    attributes: Attributes = {}
    if result.input_tokens is not None:
        attributes["gen_ai.usage.input_tokens"] = result.input_tokens
    if result.output_tokens is not None:
        attributes["gen_ai.usage.output_tokens"] = result.output_tokens
    return attributes


class ModelOperation(Operation):
    """A call to a model (chat or embeddings): a CLIENT span named ``{operation} {model}``."""

    kind = SpanKind.CLIENT
    operation = ""

    def __init__(self, provider: str | None, model: str | None) -> None:
        self.provider = provider
        self.model = model

    def start(self, call: Call, settings: Settings) -> tuple[str, Attributes]:
        model = _model_name(self.model, call)
        attributes: Attributes = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": self.provider or infer_provider(call.owner),
            "gen_ai.request.model": model,
            "agentscope.function.name": call.function_name,
        }
        return f"{self.operation} {model}", attributes


class LLMOperation(ModelOperation):
    operation = "chat"

    def start(self, call: Call, settings: Settings) -> tuple[str, Attributes]:
        name, attributes = super().start(call, settings)
        parameters = _llm_parameters(call)
        attributes.update(request_parameters(parameters))
        if settings.capture_content:
            messages = to_messages(_pick_argument(call.arguments, _MESSAGE_ARGUMENTS), "user")
            if messages:
                attributes["gen_ai.input.messages"] = _json(messages, settings)
            system = parameters.get("system")
            if system is not None:
                attributes["gen_ai.system_instructions"] = _json(
                    system_instructions(system), settings
                )
            definitions = tool_definitions(parameters.get("tools"))
            if definitions:
                attributes["gen_ai.tool.definitions"] = _json(definitions, settings)
        return name, attributes

    def finish(self, call: Call, result: Any, settings: Settings) -> Attributes:
        parsed = parse_response(result)
        attributes = _usage_attributes(parsed)
        if parsed.response_id:
            attributes["gen_ai.response.id"] = parsed.response_id
        if parsed.model:
            attributes["gen_ai.response.model"] = parsed.model
        if parsed.finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = parsed.finish_reasons
        if settings.capture_content and parsed.messages:
            attributes["gen_ai.output.messages"] = _json(parsed.messages, settings)
        return attributes

    def collector(self, settings: Settings) -> Collector:
        return LLMCollector(settings.capture_content)


_AGENT_INPUT_ARGUMENTS = ("msg", "msgs", "message", "messages", "x", "input", "query", "prompt")


class ReplyOperation(Operation):
    def __init__(self, name: str | None, description: str | None, agent_id: str | None) -> None:
        self.name = name
        self.description = description
        self.agent_id = agent_id

    def _agent_name(self, call: Call) -> str:
        if self.name:
            return self.name
        owner = call.owner
        named = _owner_str(owner, "name", "agent_name")
        if named:
            return named
        if owner is not None:
            return owner.__name__ if isinstance(owner, type) else type(owner).__name__
        return getattr(call.function, "__name__", "agent")

    def start(self, call: Call, settings: Settings) -> tuple[str, Attributes]:
        owner = call.owner
        name = self._agent_name(call)
        attributes: Attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": name,
            "agentscope.function.name": call.function_name,
        }
        agent_id = self.agent_id or _owner_str(owner, "id", "agent_id")
        if agent_id is None and owner is not None:
            # Unique while the object lives, which is the span's lifetime.
            agent_id = f"{type(owner).__name__}-{id(owner):x}"
        if agent_id:
            attributes["gen_ai.agent.id"] = agent_id
        description = self.description or _owner_str(owner, "description")
        if description is None and owner is not None:
            cls = owner if isinstance(owner, type) else type(owner)
            description = _first_paragraph(cls.__doc__)
        if description is None:
            description = _first_paragraph(getattr(call.function, "__doc__", None))
        if description:
            attributes["gen_ai.agent.description"] = _text(description, settings)
        if settings.capture_content:
            value = _pick_argument(call.arguments, _AGENT_INPUT_ARGUMENTS)
            messages = to_messages(value, "user")
            if messages:
                attributes["gen_ai.input.messages"] = _json(messages, settings)
            attributes["agentscope.function.input"] = _json(call.arguments, settings)
        return f"invoke_agent {name}", attributes

    def finish(self, call: Call, result: Any, settings: Settings) -> Attributes:
        if not settings.capture_content or result is None:
            return {}
        messages = to_messages(result, "assistant")
        agent_name = self._agent_name(call)
        for message in messages:
            message.setdefault("name", agent_name)
            message.setdefault("finish_reason", "stop")
        return {
            "gen_ai.output.messages": _json(messages, settings),
            "agentscope.function.output": _json(result, settings),
        }


_CALL_ID_ARGUMENTS = ("tool_call_id", "call_id", "tool_use_id")
_TOOL_CALL_TYPES = TOOL_CALL_TYPES | {"function"}


def _as_tool_call(value: Any) -> tuple[str | None, str | None, Any] | None:
    """(name, id, arguments) if ``value`` is an OpenAI tool call or a tool_use block."""
    if isinstance(value, (str, bytes, int, float, list, tuple)) or value is None:
        return None
    function = get(value, "function")
    if function is not None and get(function, "name") is not None:
        return (
            as_str(get(function, "name")),
            as_str(get(value, "id")),
            parse_json(get(function, "arguments")),
        )
    if as_str(get(value, "type")) in _TOOL_CALL_TYPES and get(value, "name") is not None:
        arguments = get(value, "input")
        if arguments is None:
            arguments = parse_json(get(value, "arguments"))
        call_id = as_str(get(value, "id")) or as_str(get(value, "call_id"))
        return as_str(get(value, "name")), call_id, arguments
    return None


class ToolOperation(Operation):
    def __init__(self, name: str | None, description: str | None) -> None:
        self.name = name
        self.description = description

    def start(self, call: Call, settings: Settings) -> tuple[str, Attributes]:
        block = None
        for value in call.arguments.values():
            block = _as_tool_call(value)
            if block is not None:
                break
        call_id = None
        for key in _CALL_ID_ARGUMENTS:
            call_id = call_id or as_str(call.arguments.get(key))
        if block is not None:
            block_name, block_id, arguments = block
        else:
            block_name, block_id = None, None
            arguments = {k: v for k, v in call.arguments.items() if k not in _CALL_ID_ARGUMENTS}
        name = self.name or block_name or getattr(call.function, "__name__", "tool")
        call_id = call_id or block_id or f"call_{uuid.uuid4().hex[:24]}"
        attributes: Attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "function",
            "agentscope.function.name": call.function_name,
        }
        description = self.description or _first_paragraph(getattr(call.function, "__doc__", None))
        if description:
            attributes["gen_ai.tool.description"] = _text(description, settings)
        if settings.capture_content:
            attributes["gen_ai.tool.call.arguments"] = _json(arguments, settings)
        return f"execute_tool {name}", attributes

    def finish(self, call: Call, result: Any, settings: Settings) -> Attributes:
        if not settings.capture_content:
            return {}
        return {"gen_ai.tool.call.result": _json(result, settings)}


def embedding_dimensions(response: Any) -> int | None:
    """The vector length from a list of floats, a list of vectors, OpenAI's ``data`` or
    AgentScope's ``embeddings``, or an array's last axis."""
    shape = get(response, "shape")
    if isinstance(shape, tuple) and shape and isinstance(shape[-1], int):
        return shape[-1]
    vector: Any = response
    for _ in range(6):
        if isinstance(vector, (list, tuple)):
            if not vector:
                return None
            if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector[:8]):
                return len(vector)
            vector = vector[0]
            continue
        data = get(vector, "data")
        embeddings = get(vector, "embeddings")
        embedding = get(vector, "embedding")
        values = get(vector, "values")
        if isinstance(data, (list, tuple)):
            vector = data
        elif isinstance(embeddings, (list, tuple)):
            vector = embeddings
        elif isinstance(embedding, (list, tuple)):
            vector = embedding
        elif isinstance(values, (list, tuple)):
            vector = values
        else:
            return None
    return None


class EmbeddingOperation(ModelOperation):
    operation = "embeddings"

    def start(self, call: Call, settings: Settings) -> tuple[str, Attributes]:
        name, attributes = super().start(call, settings)
        requested = as_int(call.arguments.get("dimensions"))
        if requested is not None:
            attributes["gen_ai.embeddings.dimension.count"] = requested
        return name, attributes

    def finish(self, call: Call, result: Any, settings: Settings) -> Attributes:
        attributes: Attributes = {}
        dimensions = embedding_dimensions(result)
        if dimensions is not None:
            attributes["gen_ai.embeddings.dimension.count"] = dimensions
        tokens = first_int(get(result, "usage"), "input_tokens", "prompt_tokens", "total_tokens")
        if tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = tokens
        model = as_str(get(result, "model"))
        if model:
            attributes["gen_ai.response.model"] = model
        return attributes
