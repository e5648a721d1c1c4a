"""OTLP decoding, from real exporter payloads and hand-written OTLP/JSON."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import otlp
from tests.conftest import fixture_bytes

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"


def json_body(spans: list[dict], resource_attrs: list[dict] | None = None) -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": resource_attrs or []},
                    "scopeSpans": [{"scope": {"name": "hand", "version": "1"}, "spans": spans}],
                }
            ]
        }
    ).encode()


def span(**overrides: object) -> dict:
    doc = {
        "traceId": TRACE_ID,
        "spanId": SPAN_ID,
        "name": "hand-made",
        "kind": 2,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000500000000",
    }
    doc.update(overrides)
    return doc


def test_it_decodes_the_official_http_exporter_payload() -> None:
    records = [
        r
        for i in range(3)
        for r in otlp.decode_protobuf(fixture_bytes(f"otel-sdk-http-{i}.pb")).records
    ]
    by_name = {r.name: r for r in records}
    assert set(by_name) == {"invoke_agent Planner", "chat gpt-4o", "execute_tool search"}
    root = by_name["invoke_agent Planner"]
    assert root.parent_span_id == ""
    assert root.service_name == "capture-app"
    assert root.span_type == "agent"
    assert root.conversation_id == "conv-42"
    assert root.input_preview == "Plan a trip to Kyoto"
    attributes = json.loads(root.attributes_json)
    assert attributes["an.int"] == 7 and isinstance(attributes["an.int"], int)
    assert attributes["a.float"] == 2.5
    assert attributes["a.bool"] is True
    assert attributes["strings"] == ["a", "b"]
    assert attributes["ints"] == [1, 2, 3]
    assert attributes["bools"] == [True, False]
    scope = json.loads(root.scope_json)
    assert scope == {
        "name": "capture.fixture",
        "version": "1.2.3",
        "attributes": {"scope.attr": "yes"},
    }
    resource = json.loads(root.resource_json)
    assert resource["attributes"]["deployment.environment"] == "test"

    chat = by_name["chat gpt-4o"]
    assert chat.parent_span_id == root.span_id
    assert chat.kind == 3  # CLIENT
    assert (chat.span_type, chat.model, chat.input_tokens, chat.output_tokens) == (
        "llm",
        "gpt-4o",
        120,
        30,
    )
    assert json.loads(chat.events_json)[0]["attributes"] == {"index": 0, "finish_reason": "stop"}

    tool = by_name["execute_tool search"]
    assert tool.status_code == 2 and tool.status_message == "search backend timed out"
    event = json.loads(tool.events_json)[0]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "TimeoutError"
    assert "Traceback" in event["attributes"]["exception.stacktrace"]
    link = json.loads(tool.links_json)[0]
    assert link["span_id"] == root.span_id and link["attributes"] == {"link.kind": "caused-by"}


def test_the_grpc_exporter_payload_decodes_to_the_same_spans() -> None:
    for index in range(3):
        http = otlp.decode_protobuf(fixture_bytes(f"otel-sdk-http-{index}.pb")).records
        grpc = otlp.decode_protobuf(fixture_bytes(f"otel-sdk-grpc-{index}.pb")).records
        assert [(r.name, r.kind, r.attributes_json) for r in http] == [
            (r.name, r.kind, r.attributes_json) for r in grpc
        ]


def test_agentscope_protobuf_and_json_payloads_decode_alike() -> None:
    from_pb = otlp.decode_protobuf(fixture_bytes("agentscope-1.0.21-react-agent.pb")).records
    from_json = otlp.decode_json(fixture_bytes("agentscope-1.0.21-react-agent.otlp.json")).records
    assert len(from_pb) == 9
    assert from_pb == from_json
    agent = next(r for r in from_pb if r.operation == "invoke_agent")
    # agentscope 1.0.x writes the conversation id JSON-quoted; Studio strips the quotes.
    assert agent.conversation_id == "FBR8Y7LSqV7pXo8fzTZ8TV"
    assert agent.label == "Treasurer"


def test_it_decodes_every_any_value_variant_from_json() -> None:
    raw = base64.b64encode(b"\x00\x01binary").decode()
    attributes = [
        {"key": "s", "value": {"stringValue": "text"}},
        {"key": "i", "value": {"intValue": "9007199254740993"}},
        {"key": "d", "value": {"doubleValue": 1.5}},
        {"key": "b", "value": {"boolValue": True}},
        {"key": "bytes", "value": {"bytesValue": raw}},
        {
            "key": "arr",
            "value": {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "two"}]}},
        },
        {
            "key": "kv",
            "value": {
                "kvlistValue": {
                    "values": [
                        {
                            "key": "nested",
                            "value": {
                                "kvlistValue": {
                                    "values": [{"key": "x", "value": {"doubleValue": 2}}]
                                }
                            },
                        }
                    ]
                }
            },
        },
        {"key": "empty", "value": {}},
    ]
    body = json_body(
        [
            span(
                attributes=attributes,
                traceState="vendor=1",
                flags=257,
                droppedAttributesCount=3,
                status={"code": 2, "message": "boom"},
                events=[
                    {
                        "timeUnixNano": "1700000000100000000",
                        "name": "e",
                        "attributes": attributes[:1],
                    }
                ],
                links=[
                    {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}
                ],
            )
        ],
        resource_attrs=[{"key": "service.name", "value": {"stringValue": "svc"}}],
    )
    [record] = otlp.decode_json(body).records
    values = json.loads(record.attributes_json)
    assert values == {
        "s": "text",
        "i": 9007199254740993,
        "d": 1.5,
        "b": True,
        "bytes": raw,
        "arr": [1, "two"],
        "kv": {"nested": {"x": 2.0}},
        "empty": None,
    }
    assert isinstance(values["kv"]["nested"]["x"], float)
    assert (record.trace_state, record.flags, record.dropped_attributes_count) == (
        "vendor=1",
        257,
        3,
    )
    assert (record.status_code, record.status_message, record.kind) == (2, "boom", 2)
    assert record.service_name == "svc"
    assert json.loads(record.links_json)[0]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert json.loads(record.events_json)[0]["time_ns"] == 1700000000100000000


def test_it_accepts_enum_names_and_uppercase_hex_in_json() -> None:
    [record] = otlp.decode_json(
        json_body(
            [
                span(
                    traceId=TRACE_ID.upper(),
                    kind="SPAN_KIND_CLIENT",
                    status={"code": "STATUS_CODE_OK"},
                )
            ]
        )
    ).records
    assert (record.trace_id, record.kind, record.status_code) == (TRACE_ID, 3, 1)


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"traceId": "abc"}, "not hex"),
        ({"traceId": "00" * 16}, "trace_id"),
        ({"traceId": "ab" * 8}, "not 16 bytes"),
        ({"spanId": "00" * 8}, "span_id"),
        ({"spanId": "zz" * 8}, "not hex"),
        ({"parentSpanId": "ab" * 3}, "not 8 bytes"),
        ({"startTimeUnixNano": "0"}, "start_time"),
        ({"endTimeUnixNano": "1600000000000000000"}, "ends before it starts"),
    ],
)
def test_it_rejects_unstorable_spans_beside_good_ones(override: dict, reason: str) -> None:
    good = span(spanId="1111111111111111")
    batch = otlp.decode_json(json_body([good, span(**override)]))
    assert [r.span_id for r in batch.records] == ["1111111111111111"]
    assert batch.rejected == 1
    assert reason in batch.error_message


def attribute(key: str, value: dict) -> dict:
    return {"key": key, "value": value}


def test_odd_token_strings_never_fail_the_request() -> None:
    # "²".isdigit() is True but int("²") raises; so does a 5000-digit number.
    odd = [
        span(spanId=f"{n:016x}", attributes=[attribute("gen_ai.usage.input_tokens", value)])
        for n, value in enumerate([{"stringValue": "²"}, {"stringValue": "9" * 5000}], start=2)
    ]
    batch = otlp.decode_json(json_body([span(spanId="1111111111111111"), *odd]))
    assert "1111111111111111" in [r.span_id for r in batch.records]
    assert len(batch.records) + batch.rejected == 3


def test_a_span_the_conventions_choke_on_is_rejected_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def choke(attributes: dict) -> str:
        if "poison" in attributes:
            raise ValueError("cannot read this")
        return ""

    monkeypatch.setattr(otlp.conventions, "model", choke)
    poisoned = span(spanId="2222222222222222", attributes=[attribute("poison", {"intValue": 1})])
    batch = otlp.decode_json(json_body([span(spanId="1111111111111111"), poisoned]))
    assert [r.span_id for r in batch.records] == ["1111111111111111"]
    assert batch.rejected == 1 and "cannot read this" in batch.error_message


def test_values_past_the_database_columns_are_clamped() -> None:
    [record] = otlp.decode_json(
        json_body(
            [
                span(
                    kind=99999,
                    droppedAttributesCount=2**32 - 1,
                    droppedEventsCount=2**32 - 1,
                    droppedLinksCount=2**32 - 1,
                    attributes=[
                        attribute("gen_ai.operation.name", {"stringValue": "chat"}),
                        attribute("gen_ai.usage.input_tokens", {"intValue": str(2**63 - 1)}),
                        attribute("gen_ai.usage.output_tokens", {"intValue": str(2**31 - 1)}),
                        attribute("gen_ai.conversation.id", {"stringValue": '"\\ud800x"'}),
                    ],
                )
            ]
        )
    ).records
    # PostgreSQL: kind is a smallint, the dropped counts integers, token sums bigints.
    assert record.kind == 0
    assert record.dropped_attributes_count == record.dropped_links_count == 2**31 - 1
    assert (record.input_tokens, record.output_tokens) == (0, 2**31 - 1)
    # A lone surrogate from a JSON-quoted id cannot be stored by any database.
    assert record.conversation_id == "?x"


def test_partial_success_is_encoded_in_the_request_encoding() -> None:
    batch = otlp.decode_json(json_body([span(spanId="00" * 8)]))
    as_json = json.loads(otlp.encode_response(batch, otlp.JSON))
    assert as_json["partialSuccess"]["rejectedSpans"] == "1"
    assert "span_id" in as_json["partialSuccess"]["errorMessage"]
    message = otlp.response_message(batch)
    assert otlp.encode_response(batch, otlp.PROTOBUF) == message.SerializeToString()
    assert message.partial_success.rejected_spans == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'{"resourceSpans": 5}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [1]}]}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "'
        + TRACE_ID.encode()
        + b'", "startTimeUnixNano": "soon"}]}]}]}',
        b"\xff\xfe",
        # Deeper than Python's recursion limit: a 400, not a RecursionError.
        b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_it_refuses_malformed_json(body: bytes) -> None:
    with pytest.raises(otlp.DecodeError):
        otlp.decode_json(body)


def test_it_refuses_garbage_protobuf() -> None:
    with pytest.raises(otlp.DecodeError):
        otlp.decode_protobuf(b"\x0a\xff\xff\xff\xff\x0f garbage")


def test_it_inflates_gzip_and_both_deflate_flavours() -> None:
    body = fixture_bytes("agentscope-2.0.10-agent.pb")
    raw_deflate = zlib.compressobj(wbits=-15)
    raw = raw_deflate.compress(body) + raw_deflate.flush()
    for encoded, encoding in [
        (gzip.compress(body), "gzip"),
        (zlib.compress(body), "deflate"),
        (raw, "deflate"),
        (body, "identity"),
        (body, ""),
    ]:
        assert otlp.decompress(encoded, encoding, 10_000_000) == body


def test_it_rejects_gzip_bombs_without_inflating_them() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(otlp.BodyTooLarge):
        otlp.decompress(bomb, "gzip", 1_000_000)


def test_it_rejects_corrupt_gzip_and_unknown_encodings() -> None:
    with pytest.raises(otlp.DecodeError):
        otlp.decompress(b"\x1f\x8b not really gzip", "gzip", 1000)
    with pytest.raises(otlp.DecodeError):
        otlp.decompress(gzip.compress(b"x" * 100)[:-12], "gzip", 1000)
    with pytest.raises(otlp.UnsupportedEncoding):
        otlp.decompress(b"x", "br", 1000)


def test_every_gzip_member_is_inflated() -> None:
    # pigz and streaming compressors write one member per flush; gzip -d reads them all.
    first, second = b"first half;", b"second half"
    body = gzip.compress(first) + gzip.compress(second)
    assert otlp.decompress(body, "gzip", 1000) == first + second
    many = b"".join(gzip.compress(bytes([n])) for n in range(200))
    assert otlp.decompress(many, "gzip", 1000) == bytes(range(200))


def test_a_body_split_between_two_gzip_members_decodes_whole() -> None:
    body = fixture_bytes("agentscope-1.0.21-react-agent.pb")
    halves = gzip.compress(body[:1000]) + gzip.compress(body[1000:])
    assert len(otlp.decode_protobuf(otlp.decompress(halves, "gzip", 10**7)).records) == 9


def test_the_members_together_are_bounded_by_the_limit() -> None:
    members = gzip.compress(b"\0" * 600) * 2
    assert otlp.decompress(members, "gzip", 1200) == b"\0" * 1200
    with pytest.raises(otlp.BodyTooLarge):
        otlp.decompress(members, "gzip", 1199)
    # A bomb in the second member is refused too, without inflating it whole.
    bomb = gzip.compress(b"{}") + gzip.compress(b"\0" * 50_000_000)
    with pytest.raises(otlp.BodyTooLarge):
        otlp.decompress(bomb, "gzip", 1_000_000)


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (gzip.compress(b"spans") + b"trailing garbage", "gzip"),
        (gzip.compress(b"spans") + gzip.compress(b"more")[:-3], "gzip"),
        (zlib.compress(b"spans") + b"trailing garbage", "deflate"),
    ],
    ids=["garbage-after-a-member", "truncated-second-member", "garbage-after-deflate"],
)
def test_anything_after_the_compressed_stream_refuses_the_body(body: bytes, encoding: str) -> None:
    # Ignoring it would acknowledge spans that were never read.
    with pytest.raises(otlp.DecodeError):
        otlp.decompress(body, encoding, 1000)


def test_json_with_a_lone_surrogate_is_a_decode_error() -> None:
    for body in (b'{"\\ud800": 1}', json_body([span(name="\ud800")])):
        with pytest.raises(otlp.DecodeError):
            otlp.decode_json(body)


# Property tests: whatever arrives, a decoder returns a batch or raises its own DecodeError,
# which the receivers answer with 400 / INVALID_ARGUMENT. Anything else would be a 500.

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Text that has broken a decoder somewhere: lone surrogates (json.dumps writes them as \\ud800
# escapes), NUL, digits int() refuses, numbers past int64.
NASTY_TEXT = ["\ud800", "a\udfff", "\x00", "²", "9" * 30, "-1", "1e400", "NaN", "SPAN_KIND_CLIENT"]
any_text = st.sampled_from(NASTY_TEXT) | st.text(
    st.characters(codec=None) | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    max_size=20,
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
    | st.sampled_from(["", "0", "1700000000000000000", "-1", TRACE_ID, SPAN_ID, "SPAN_KIND_CLIENT"])
)
any_json = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)


def otlp_value(inner: st.SearchStrategy) -> st.SearchStrategy:
    """An AnyValue, well-formed or not."""
    return st.one_of(
        any_json,
        st.fixed_dictionaries({}, optional={k: any_json for k in ("stringValue", "intValue")}),
        st.builds(lambda v: {"arrayValue": {"values": v}}, st.lists(inner, max_size=3)),
        st.builds(
            lambda kv: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kv]}},
            st.lists(st.tuples(any_text, inner), max_size=3),
        ),
    )


otlp_values = st.recursive(st.just({}) | any_json, otlp_value, max_leaves=10)
otlp_attributes = (
    st.lists(st.fixed_dictionaries({"key": any_text | any_json, "value": otlp_values}), max_size=4)
    | any_json
)
SPAN_FIELDS = {
    "traceId": st.sampled_from([TRACE_ID, "00" * 16, "xyz"]) | any_json,
    "spanId": st.sampled_from([SPAN_ID, "00" * 8]) | any_json,
    "parentSpanId": st.sampled_from(["", SPAN_ID]) | any_json,
    "name": any_text | any_json,
    "kind": st.integers(-(2**40), 2**40) | any_json,
    "startTimeUnixNano": st.sampled_from(["1700000000000000000", "1"]) | any_json,
    "endTimeUnixNano": st.sampled_from(["1700000000000000001", str(2**64)]) | any_json,
    "attributes": otlp_attributes,
    "events": st.lists(
        st.fixed_dictionaries({}, optional={"name": any_text, "attributes": otlp_attributes}),
        max_size=2,
    )
    | any_json,
    "links": st.lists(
        st.fixed_dictionaries({}, optional={"traceId": any_json, "spanId": any_json}), max_size=2
    )
    | any_json,
    "status": st.fixed_dictionaries({}, optional={"code": any_json, "message": any_json})
    | any_json,
}
otlp_span = st.fixed_dictionaries({}, optional=SPAN_FIELDS) | any_json
otlp_document = st.fixed_dictionaries(
    {
        "resourceSpans": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "resource": st.fixed_dictionaries({}, optional={"attributes": otlp_attributes})
                    | any_json,
                    "scopeSpans": st.lists(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "scope": st.fixed_dictionaries(
                                    {}, optional={"name": any_json, "attributes": otlp_attributes}
                                )
                                | any_json,
                                "spans": st.lists(otlp_span, max_size=3) | any_json,
                            },
                        ),
                        max_size=2,
                    )
                    | any_json,
                },
            ),
            max_size=2,
        )
        | any_json
    }
)


def decodes_or_refuses(decode: Callable[[bytes], otlp.Batch], body: bytes) -> None:
    try:
        batch = decode(body)
    except otlp.DecodeError:
        return
    assert isinstance(batch, otlp.Batch)
    for record in batch.records:
        # What the writer stores must be storable: text without lone surrogates or NULs.
        for value in (record.name, record.attributes_json, record.resource_json, record.label):
            value.encode("utf-8")


@PROPERTY_SETTINGS
@given(st.binary(max_size=2000))
def test_the_protobuf_decoder_takes_any_bytes(body: bytes) -> None:
    decodes_or_refuses(otlp.decode_protobuf, body)


@PROPERTY_SETTINGS
@given(st.data())
def test_the_protobuf_decoder_takes_any_mutation_of_a_real_payload(data: st.DataObject) -> None:
    body = bytearray(fixture_bytes("agentscope-1.0.21-react-agent.pb"))
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, len(body) - 1))
        body[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    decodes_or_refuses(otlp.decode_protobuf, bytes(body[:cut]))


@PROPERTY_SETTINGS
@given(st.binary(max_size=2000))
def test_the_json_decoder_takes_any_bytes(body: bytes) -> None:
    decodes_or_refuses(otlp.decode_json, body)


@PROPERTY_SETTINGS
@given(any_json)
def test_the_json_decoder_takes_any_json(document: object) -> None:
    decodes_or_refuses(otlp.decode_json, json.dumps(document).encode())


@PROPERTY_SETTINGS
@given(otlp_document)
def test_the_json_decoder_takes_any_otlp_shaped_json(document: object) -> None:
    decodes_or_refuses(otlp.decode_json, json.dumps(document).encode())
