"""``init``, ``flush`` and ``shutdown``: where the SDK's spans go.

The decorators look at ``STATE.tracer`` on every call: ``None`` (before ``init`` and after
``shutdown``) means "call the function and nothing else". The state keeps its own reference to
the provider, so tests and applications do not depend on OpenTelemetry's global provider, which
can be set only once per process.
"""

import logging
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.util.re import parse_env_headers

from studio_sdk.config import Settings, load_settings

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

logger = logging.getLogger(__name__)

SCOPE_NAME = "studio"
SCOPE_VERSION = "0.1.0"

Protocol = Literal["http", "grpc"]
_PROTOCOLS: dict[str, Protocol] = {"http": "http", "http/protobuf": "http", "grpc": "grpc"}


class ExportProcessor(SpanProcessor):
    """A BatchSpanProcessor that can be retired quietly.

    An SDK provider offers no way to remove a processor, so after ``shutdown()`` ours stays in
    the provider's list; this wrapper then drops spans silently instead of logging each one.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        self._batch = BatchSpanProcessor(exporter)
        self._active = True

    def on_end(self, span: ReadableSpan) -> None:
        if self._active:
            self._batch.on_end(span)

    def shutdown(self) -> None:
        if self._active:
            self._active = False
            self._batch.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batch.force_flush(timeout_millis) if self._active else True


class _State:
    __slots__ = ("lock", "processors", "provider", "settings", "tracer")

    def __init__(self) -> None:
        self.tracer: Tracer | None = None
        self.settings = Settings()
        self.provider: TracerProvider | None = None
        # Keyed by (provider, protocol, endpoint) so a second init() never adds a duplicate.
        self.processors: dict[tuple[TracerProvider, str, str], ExportProcessor] = {}
        self.lock = threading.RLock()


STATE = _State()


def _normalize_protocol(protocol: str) -> Protocol:
    try:
        return _PROTOCOLS[protocol.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"protocol must be 'http' or 'grpc', got {protocol!r}") from None


def _check_url(name: str, url: object) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{name} must be a non-empty URL string, got {url!r}")
    return url.strip()


def resolve_endpoint(
    studio_url: str | None, tracing_url: str | None, protocol: Protocol
) -> str | None:
    """The exporter endpoint: ``tracing_url`` as given, else ``studio_url`` + ``/v1/traces``.

    For gRPC both name the collector's address; a bare ``host:port`` means plaintext, as for a
    local Studio (use ``https://`` for TLS).
    """
    if tracing_url is not None:
        url = _check_url("tracing_url", tracing_url)
    elif studio_url is not None:
        url = _check_url("studio_url", studio_url).rstrip("/")
        if protocol == "http":
            url += "/v1/traces"
    else:
        return None
    if protocol == "grpc" and "://" not in url:
        url = f"http://{url}"
    return url


def resolve_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`` overridden by the ``headers`` argument.

    Keys are lowercased because gRPC metadata rejects uppercase keys.
    """
    raw = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or os.environ.get(
        "OTEL_EXPORTER_OTLP_HEADERS", ""
    )
    merged = {key.lower(): value for key, value in parse_env_headers(raw, liberal=True).items()}
    for key, value in (headers or {}).items():
        merged[str(key).lower()] = str(value)
    return merged


def make_exporter(protocol: Protocol, endpoint: str, headers: dict[str, str]) -> SpanExporter:
    # Imported here: each exporter pulls in its transport (requests or grpcio), which an
    # application using only the other one should not pay for.
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(
            endpoint=endpoint,
            insecure=not endpoint.startswith("https://"),
            headers=headers or None,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter(endpoint=endpoint, headers=headers or None)


def _choose_provider(
    tracer_provider: TracerProvider | None, service_name: str | None
) -> TracerProvider:
    if tracer_provider is not None:
        if not isinstance(tracer_provider, TracerProvider):
            raise TypeError(
                "tracer_provider must be an opentelemetry.sdk.trace.TracerProvider, "
                f"got {type(tracer_provider).__qualname__}"
            )
        return tracer_provider
    if STATE.provider is not None:
        return STATE.provider
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        if service_name:
            logger.info("Reusing the application's TracerProvider; service_name is ignored")
        return current
    attributes = {SERVICE_NAME: service_name} if service_name else {}
    provider = TracerProvider(resource=Resource.create(attributes))
    # Only a still-unset global (the API's proxy) may be replaced; if the application installed
    # another kind of provider we keep ours private rather than fight over the global.
    if isinstance(current, trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    return provider


def init(
    studio_url: str | None = None,
    tracing_url: str | None = None,
    *,
    service_name: str | None = None,
    headers: Mapping[str, str] | None = None,
    protocol: str = "http",
    capture_content: bool | None = None,
    max_attribute_chars: int | None = None,
    tracer_provider: TracerProvider | None = None,
) -> TracerProvider:
    """Start recording spans from the decorators, and export them when a URL is given.

    - ``studio_url``: a Studio; spans go to ``<studio_url>/v1/traces`` (gRPC: the address).
    - ``tracing_url``: any OTLP endpoint, used exactly as given; wins over ``studio_url``.
    - ``headers``: sent with each export, over ``OTEL_EXPORTER_OTLP_HEADERS``.
    - ``protocol``: ``"http"`` (OTLP/HTTP protobuf) or ``"grpc"``.
    - ``capture_content`` / ``max_attribute_chars``: override ``STUDIO_CAPTURE_CONTENT`` (and
      ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``) / ``STUDIO_MAX_ATTRIBUTE_CHARS``.
    - ``tracer_provider``: record into this SDK provider instead of the global one.

    Without ``tracer_provider`` an SDK provider already installed globally is reused (our
    exporter is added to it); otherwise one is created (with ``service_name``) and installed
    globally. Calling ``init`` again is safe: an endpoint already exported to is not added twice.
    Returns the provider in use.
    """
    normalized = _normalize_protocol(protocol)
    settings = load_settings(capture_content, max_attribute_chars)
    endpoint = resolve_endpoint(studio_url, tracing_url, normalized)
    with STATE.lock:
        provider = _choose_provider(tracer_provider, service_name)
        if endpoint is not None:
            key = (provider, normalized, endpoint)
            if key not in STATE.processors:
                exporter = make_exporter(normalized, endpoint, resolve_headers(headers))
                processor = ExportProcessor(exporter)
                provider.add_span_processor(processor)
                STATE.processors[key] = processor
        STATE.settings = settings
        STATE.provider = provider
        # Set last: from here on the decorators record.
        STATE.tracer = provider.get_tracer(SCOPE_NAME, SCOPE_VERSION)
    return provider


def flush(timeout_millis: int = 30000) -> bool:
    """Export every finished span now; ``True`` if all exports completed in time."""
    with STATE.lock:
        provider = STATE.provider
    if provider is None:
        return True
    return provider.force_flush(timeout_millis)


def shutdown() -> None:
    """Flush, shut down the exporters ``init`` added, and stop recording.

    The provider stays installed (OpenTelemetry cannot replace a global provider), so ``init``
    may be called again afterwards, e.g. by the next test.
    """
    with STATE.lock:
        STATE.tracer = None
        provider = STATE.provider
        processors = list(STATE.processors.values())
        STATE.processors.clear()
        STATE.provider = None
        STATE.settings = Settings()
    if provider is not None:
        provider.force_flush()
    for processor in processors:
        processor.shutdown()
