"""OTLP decoding: request bodies (protobuf or OTLP/JSON, gzip or deflate) into plain span records.

Both receivers (HTTP and gRPC) call this module and hand its records to the one writer. A span
that cannot be stored (bad ids, impossible times) is rejected and counted for `partial_success`;
the other spans of the request are kept. A body that cannot be parsed at all is a DecodeError.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tracing import conventions, costs
from tracing.prices import PriceTable

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

MAX_INT64 = 2**63 - 1
# PostgreSQL's integer: the dropped counts are uint32 on the wire.
MAX_INT32 = 2**31 - 1
# Per span: a trace's token totals are sums over its spans, and must still fit a bigint.
MAX_TOKENS = 2**31 - 1
ZERO_TRACE_ID = "0" * 32
ZERO_SPAN_ID = "0" * 16
# Messages in partial_success name at most this many rejected spans: enough to debug an
# exporter, bounded for a request full of bad spans.
MAX_MESSAGES = 5


class DecodeError(Exception):
    """The body is not a valid OTLP trace export: nothing of it is stored."""


class BodyTooLarge(Exception):
    """The body, or what it inflates to, is over the limit."""


class UnsupportedEncoding(Exception):
    """A Content-Encoding we do not speak."""


@dataclass(slots=True)
class SpanRecord:
    """One span, as the writer stores it: ids as lowercase hex, times in integer nanoseconds,
    the structured parts already serialised to JSON text."""

    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    kind: int
    status_code: int
    span_type: str
    operation: str
    input_tokens: int
    output_tokens: int
    flags: int
    dropped_attributes_count: int
    dropped_events_count: int
    dropped_links_count: int
    name: str
    service_name: str
    model: str
    label: str
    conversation_id: str
    input_preview: str
    status_message: str
    trace_state: str
    attributes_json: str
    events_json: str
    links_json: str
    resource_json: str
    scope_json: str
    # The trace's project as this span claims it: the sending key's, else its resource's (see
    # Batch.set_project). The writer gives a trace the project of the spans that created it.
    project: str = conventions.DEFAULT_PROJECT
    # A model call's USD at the decoder's prices (None: not a model call, or no price).
    cost_usd: float | None = None
    # Not columns, for ingest.ownership: `keyed`, the project is an ingest key's (a key may add
    # spans only to its own project's traces); `refused`, set by the writer's last attempt when
    # the span was not stored for that reason.
    keyed: bool = False
    refused: bool = False


_NOT_COLUMNS = ("keyed", "refused")
# The column order of a record, for the writer's INSERT: the dataclass fields, in order.
SPAN_COLUMNS: tuple[str, ...] = tuple(
    name for name in SpanRecord.__dataclass_fields__ if name not in _NOT_COLUMNS
)


@dataclass
class Batch:
    records: list[SpanRecord] = field(default_factory=list)
    rejected: int = 0
    messages: list[str] = field(default_factory=list)
    # The project of the ingest key that sent the batch (None: no key); see set_project.
    project: str | None = None

    def set_project(self, project: str | None) -> None:
        """The sending key's project, which outranks what the spans' resources say."""
        self.project = project
        if project:
            for record in self.records:
                record.project = project
                record.keyed = True

    def count_refused(self, refused: Iterable[tuple[str, str]]) -> None:
        """Once the writer committed: count the spans it refused (ingest.ownership; (trace id,
        span id) pairs, what the writer's future holds) as rejected, for partial_success. The
        trace's project is not named: it is another key's business."""
        for trace_id, span_id in refused:
            self.reject(
                f"span {span_id}: trace {trace_id} belongs to another project than this ingest "
                "key's"
            )

    def reject(self, message: str) -> None:
        self.rejected += 1
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(message)

    @property
    def error_message(self) -> str:
        if not self.rejected:
            return ""
        more = self.rejected - len(self.messages)
        text = "; ".join(self.messages)
        if more > 0:
            text += f"; and {more} more"
        return f"{self.rejected} span(s) rejected: {text}"


# ---------------------------------------------------------------------------------------------
# Bodies


# Input is fed to zlib this much at a time: a finished member hands back the rest of its input
# as a copy, so feeding a body of many tiny members whole would copy it once per member.
INFLATE_CHUNK = 64 * 1024


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate a gzip or deflate body, refusing to produce more than `limit` bytes (the raw body
    is the receiver's to bound).

    A gzip body may hold several members one after the other (pigz and streaming compressors
    write them so); every member is inflated, as gzip itself does. Anything else after the end of
    the stream is an error rather than ignored: a body is stored whole or not at all. Inflating
    stops as soon as the limit is passed, so a gzip bomb costs at most `limit` bytes.
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, zlib.MAX_WBITS | 16, limit, encoding, members=True)
    if encoding == "deflate":
        # HTTP's deflate is zlib-wrapped; some clients send raw deflate anyway.
        try:
            return _inflate(body, zlib.MAX_WBITS, limit, encoding, members=False)
        except DecodeError:
            return _inflate(body, -zlib.MAX_WBITS, limit, encoding, members=False)
    raise UnsupportedEncoding(f"unsupported Content-Encoding {encoding!r}")


def _inflate(body: bytes, wbits: int, limit: int, encoding: str, *, members: bool) -> bytes:
    too_large = BodyTooLarge(f"body inflates to more than the limit of {limit} bytes")
    out = bytearray()
    inflater = zlib.decompressobj(wbits)
    view = memoryview(body)
    try:
        for offset in range(0, len(body), INFLATE_CHUNK):
            data: bytes | memoryview = view[offset : offset + INFLATE_CHUNK]
            while data:
                if inflater.eof:
                    if not members:
                        raise DecodeError(f"corrupt {encoding} body: data after the end")
                    inflater = zlib.decompressobj(wbits)
                out += inflater.decompress(data, limit + 1 - len(out))
                if len(out) > limit:
                    raise too_large
                # Past the end of a member, the rest of this chunk starts the next one.
                data = inflater.unused_data if inflater.eof else b""
    except zlib.error as exc:
        raise DecodeError(f"corrupt {encoding} body: {exc}") from None
    if not inflater.eof:
        raise DecodeError(f"corrupt {encoding} body: truncated stream")
    return bytes(out)


def decode(
    body: bytes, content_type: str, into: Batch | None = None, prices: PriceTable | None = None
) -> Batch:
    """The body's spans as records, in `into` (a Batch whose `records` may be any sink with
    `append`) or a new Batch, model calls priced by `prices` (default: the shipped table)."""
    if content_type == PROTOBUF:
        return decode_protobuf(body, into, prices)
    if content_type == JSON:
        return decode_json(body, into, prices)
    raise ValueError(f"unsupported content type {content_type!r}")


_shipped_prices: PriceTable | None = None


def shipped_prices() -> PriceTable:
    """The shipped price table: what a decoder without Django (a worker process) starts from."""
    global _shipped_prices
    if _shipped_prices is None:
        _shipped_prices = PriceTable()
    return _shipped_prices


# The table a decode without `prices` uses; the ingest app points it at the one in use
# (shipped + STUDIO_PRICES) when Django starts. Worker processes are handed theirs.
default_prices: Callable[[], PriceTable] = shipped_prices


def decode_protobuf(
    body: bytes, into: Batch | None = None, prices: PriceTable | None = None
) -> Batch:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
        raise DecodeError(f"not a valid ExportTraceServiceRequest protobuf: {exc}") from None
    return records_from_request(request, into, prices)


_ID_FIELDS = (("traceId", 16), ("spanId", 8), ("parentSpanId", 8))


def decode_json(body: bytes, into: Batch | None = None, prices: PriceTable | None = None) -> Batch:
    """OTLP/JSON: protobuf's JSON mapping, except that trace and span ids are hex, not base64."""
    try:
        # orjson, not json: it refuses lone surrogates (`"\ud800"`), which json admits and
        # protobuf's parser then fails on with a SystemError, and it bounds nesting itself.
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError("OTLP/JSON body must be an object with `resourceSpans`")
    batch = Batch()
    try:
        for resource_spans in document.get("resourceSpans") or []:
            for scope_spans in resource_spans.get("scopeSpans") or []:
                spans = scope_spans.get("spans")
                if not spans:
                    continue
                kept = []
                for span in spans:
                    problem = _hex_ids_to_base64(span)
                    if problem:
                        batch.reject(problem)
                    else:
                        kept.append(span)
                scope_spans["spans"] = kept
    except (AttributeError, TypeError) as exc:
        raise DecodeError(f"OTLP/JSON body has the wrong shape: {exc}") from None
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise DecodeError(f"not a valid OTLP/JSON ExportTraceServiceRequest: {exc}") from None
    decoded = records_from_request(request, into, prices)
    decoded.rejected += batch.rejected
    decoded.messages = (batch.messages + decoded.messages)[:MAX_MESSAGES]
    return decoded


def _hex_to_base64(value: Any, what: str, size: int) -> tuple[str | None, str]:
    if not isinstance(value, str):
        return None, f"{what} must be a hex string"
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None, f"{what} {value[:40]!r} is not hex"
    if len(raw) != size:
        return None, f"{what} {value[:40]!r} is not {size} bytes"
    return base64.b64encode(raw).decode("ascii"), ""


def _ids_to_base64(obj: dict[str, Any], fields: tuple[tuple[str, int], ...], label: str) -> str:
    """Rewrite obj's hex id fields in place; return a problem or ''."""
    for key, size in fields:
        value = obj.get(key)
        if value in (None, ""):
            continue
        converted, problem = _hex_to_base64(value, f"{label}{key}", size)
        if problem:
            return problem
        obj[key] = converted
    return ""


def _hex_ids_to_base64(span: dict[str, Any]) -> str:
    """Rewrite a JSON span's hex ids in place for protobuf's parser; return a problem or ''."""
    if not isinstance(span, dict):
        raise TypeError("a span must be an object")
    label = f"span {span.get('name', '')!r}"
    if problem := _ids_to_base64(span, _ID_FIELDS, f"{label}: "):
        return problem
    for link in span.get("links") or []:
        if not isinstance(link, dict):
            raise TypeError("a link must be an object")
        if problem := _ids_to_base64(link, _ID_FIELDS[:2], f"{label}: link "):
            return problem
    return ""


# ---------------------------------------------------------------------------------------------
# Protobuf messages to records


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as the JSON value that keeps its type."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        number = value.double_value
        # JSON has no NaN or infinities; keep them readable rather than fail the batch.
        return number if math.isfinite(number) else str(number)
    if which == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def key_values(items: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in items}


def _dumps(value: Any) -> str:
    # orjson: the JSON bodies are most of the decoding time, and it keeps ints and floats apart.
    return orjson.dumps(value).decode()


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; JSON columns escape it, plain columns must not carry it.
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def records_from_request(
    request: ExportTraceServiceRequest,
    into: Batch | None = None,
    prices: PriceTable | None = None,
) -> Batch:
    batch = Batch() if into is None else into
    table = default_prices() if prices is None else prices
    for resource_spans in request.resource_spans:
        resource = resource_spans.resource
        resource_attributes = key_values(resource.attributes)
        service_name = resource_attributes.get("service.name")
        service_name = _text(str(service_name)) if service_name is not None else ""
        resource_doc: dict[str, Any] = {"attributes": resource_attributes}
        if resource.dropped_attributes_count:
            resource_doc["dropped_attributes_count"] = resource.dropped_attributes_count
        if resource_spans.schema_url:
            resource_doc["schema_url"] = resource_spans.schema_url
        resource_json = _dumps(resource_doc)
        project = _text(conventions.project(resource_attributes)) or conventions.DEFAULT_PROJECT
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            scope_doc: dict[str, Any] = {"name": scope.name, "version": scope.version}
            if len(scope.attributes):
                scope_doc["attributes"] = key_values(scope.attributes)
            if scope.dropped_attributes_count:
                scope_doc["dropped_attributes_count"] = scope.dropped_attributes_count
            if scope_spans.schema_url:
                scope_doc["schema_url"] = scope_spans.schema_url
            scope_json = _dumps(scope_doc)
            for span in scope_spans.spans:
                try:
                    record = _record(span, service_name, resource_json, scope_json, batch, table)
                except (ValueError, TypeError) as exc:
                    # An attribute no convention foresaw must cost its span, not the request.
                    batch.reject(f"span {span.name[:80]!r}: {exc}")
                    continue
                if record is not None:
                    record.project = project
                    batch.records.append(record)
    return batch


def _record(
    span: Any,
    service_name: str,
    resource_json: str,
    scope_json: str,
    batch: Batch,
    prices: PriceTable,
) -> SpanRecord | None:
    trace_id = span.trace_id.hex()
    span_id = span.span_id.hex()
    label = f"span {span.name[:80]!r}"
    if len(span.trace_id) != 16 or trace_id == ZERO_TRACE_ID:
        batch.reject(f"{label}: trace_id must be 16 bytes and not all zero")
        return None
    if len(span.span_id) != 8 or span_id == ZERO_SPAN_ID:
        batch.reject(f"{label}: span_id must be 8 bytes and not all zero")
        return None
    parent = span.parent_span_id.hex()
    if parent == ZERO_SPAN_ID:
        parent = ""
    elif parent and len(span.parent_span_id) != 8:
        batch.reject(f"{label}: parent_span_id must be 8 bytes or empty")
        return None
    start = span.start_time_unix_nano
    end = span.end_time_unix_nano
    if start == 0 or start > MAX_INT64 or end > MAX_INT64:
        batch.reject(f"{label}: start_time_unix_nano missing or out of range")
        return None
    if end < start:
        batch.reject(f"{label}: ends before it starts")
        return None

    attributes = key_values(span.attributes)
    events_json = (
        _dumps(
            [
                _event(e.name, e.time_unix_nano, e.attributes, e.dropped_attributes_count)
                for e in span.events
            ]
        )
        if len(span.events)
        else "[]"
    )
    links_json = _dumps([_link(link) for link in span.links]) if len(span.links) else "[]"
    status_code = span.status.code
    span_type = conventions.span_type(attributes)
    model = _text(conventions.model(attributes))
    # Priced here, where the attributes are parsed anyway: cost is stored, not read from the
    # JSON bodies on every list (tracing.costs never counts cached tokens twice).
    cost_usd = (
        costs.cost(prices.price(model), costs.usage(attributes))
        if span_type in costs.MODEL_SPAN_TYPES
        else None
    )
    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        start_ns=start,
        end_ns=end,
        kind=span.kind if 0 <= span.kind <= 5 else 0,
        status_code=status_code if status_code in (0, 1, 2) else 0,
        span_type=span_type,
        operation=_text(conventions.operation(attributes))[:64],
        input_tokens=_bounded(conventions.input_tokens(attributes), MAX_TOKENS),
        output_tokens=_bounded(conventions.output_tokens(attributes), MAX_TOKENS),
        flags=span.flags,
        dropped_attributes_count=min(span.dropped_attributes_count, MAX_INT32),
        dropped_events_count=min(span.dropped_events_count, MAX_INT32),
        dropped_links_count=min(span.dropped_links_count, MAX_INT32),
        name=_text(span.name),
        service_name=service_name,
        model=model,
        label=_text(conventions.label(span.name, span_type, attributes)),
        conversation_id=_text(conventions.conversation_id(attributes)),
        # The overview shows the first user input of a trace: its root's, or an agent's while the
        # root is missing. Other spans' previews would never be shown.
        input_preview=_text(conventions.input_preview(attributes))
        if not parent or span_type == conventions.AGENT
        else "",
        status_message=_text(span.status.message),
        trace_state=_text(span.trace_state),
        attributes_json=_dumps(attributes),
        events_json=events_json,
        links_json=links_json,
        resource_json=resource_json,
        scope_json=scope_json,
        cost_usd=cost_usd,
    )


def _bounded(value: int, maximum: int) -> int:
    return value if 0 <= value <= maximum else 0


def _event(name: str, time_ns: int, attributes: Any, dropped: int) -> dict[str, Any]:
    event: dict[str, Any] = {
        "name": name,
        "time_ns": time_ns,
        "attributes": key_values(attributes),
    }
    if dropped:
        event["dropped_attributes_count"] = dropped
    return event


def _link(link: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "trace_id": link.trace_id.hex(),
        "span_id": link.span_id.hex(),
        "trace_state": link.trace_state,
        "attributes": key_values(link.attributes),
    }
    if link.flags:
        doc["flags"] = link.flags
    if link.dropped_attributes_count:
        doc["dropped_attributes_count"] = link.dropped_attributes_count
    return doc


# ---------------------------------------------------------------------------------------------
# Responses


def response_message(batch: Batch) -> ExportTraceServiceResponse:
    response = ExportTraceServiceResponse()
    if batch.rejected:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(
                rejected_spans=batch.rejected, error_message=batch.error_message
            )
        )
    return response


def encode_response(batch: Batch, content_type: str) -> bytes:
    message = response_message(batch)
    if content_type == JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()
