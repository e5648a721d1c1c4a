"""Live updates of the overview: the writer's commits reach open pages over the websocket.

The path is the real one: spans go through the process's writer, whose thread sends
`traces_changed`; studio.live hands it to the in-memory channel layer on the loop serving the
socket; the consumer re-checks the page's filter and pushes rows rendered by the page's own
partials, as HTML fragments that htmx's ws extension swaps in out of band.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from socket import create_connection
from typing import Any

import pytest
import requests
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from channels.routing import URLRouter
from websockets.sync.client import connect

from ingest import otlp
from ingest.writer import get_writer
from studio import consumers, live
from studio.consumers import Subscription, build_update, render_update
from studio.filters import TraceFilter
from studio.routing import websocket_urlpatterns
from tests.conftest import StudioServer, free_port
from tracing.models import Trace

pytestmark = pytest.mark.django_db(transaction=True)

MS = 1_000_000


def spans(
    trace: int, *, span: int = 1, parent: int = 0, start_ms: float = 0, status: int = 0,
    name: str = "invoke_agent Live", service: str = "live",
) -> list[otlp.SpanRecord]:  # fmt: skip
    start = time.time_ns() + int(start_ms * MS)
    record = {
        "traceId": f"{trace:032x}",
        "spanId": f"{span:016x}",
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 5 * MS),
        "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "invoke_agent"}}],
        "status": {"code": status},
    }
    if parent:
        record["parentSpanId"] = f"{parent:016x}"
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [record]}]}]}
    return otlp.decode(json.dumps(body).encode(), otlp.JSON).records


class WebsocketCommunicator:
    """A websocket client for an ASGI app in the test's loop (channels.testing needs daphne)."""

    def __init__(self, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        scope = {"type": "websocket", "path": path, "query_string": b"", "headers": headers or []}
        self.app = ApplicationCommunicator(URLRouter(websocket_urlpatterns), scope)

    async def connect(self) -> str:
        await self.app.send_input({"type": "websocket.connect"})
        return (await self.app.receive_output(5))["type"]

    async def send_json_to(self, data: Any) -> None:
        await self.app.send_input({"type": "websocket.receive", "text": json.dumps(data)})

    async def receive_from(self, timeout: float) -> str:
        message = await self.app.receive_output(timeout)
        assert message["type"] == "websocket.send"
        return message["text"]

    async def receive_nothing(self, timeout: float) -> bool:
        return await self.app.receive_nothing(timeout)

    async def disconnect(self) -> None:
        await self.app.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.app.wait(2)


@sync_to_async
def commit(*batches: list[otlp.SpanRecord]) -> None:
    """Through the process's writer, as a receiver would, waiting for each commit."""
    for batch in batches:
        get_writer().submit(batch).result(timeout=20)


def run(scenario: Callable[[WebsocketCommunicator], Awaitable[None]]) -> None:
    async def main() -> None:
        socket = WebsocketCommunicator("/ws/traces/")
        assert await socket.connect() == "websocket.accept"
        try:
            await scenario(socket)
        finally:
            await socket.disconnect()

    async_to_sync(main)()


async def subscribe(socket: WebsocketCommunicator, query: str = "", **fields: Any) -> None:
    """As the page's #live-subscription form sends itself (htmx's ws-send: JSON of its fields)."""
    message = {"type": "subscribe", "key": "k1", "query": query, "top": "1", "empty": "0"}
    await socket.send_json_to({**message, "HEADERS": {"HX-Request": "true"}, **fields})


async def receive_until(
    socket: WebsocketCommunicator, done: Callable[[list[str]], bool], timeout: float = 10
) -> list[str]:
    """Messages until `done(all received so far)` holds."""
    received: list[str] = []
    deadline = time.monotonic() + timeout
    while not received or not done(received):
        received.append(await socket.receive_from(timeout=deadline - time.monotonic()))
    return received


def shown(trace: int, start_ns: int = 0) -> str:
    return f"{start_ns}_{trace:032x}"


ROW = re.compile(r'<tr class="trace-row[^"]*" id="trace-([0-9a-f]{32})"')
GONE = re.compile(r"delete:#results\[data-live-key=&quot;(\w+)&quot;\] #trace-([0-9a-f]{32})")


def row_ids(messages: list[str]) -> list[str]:
    """The rows the messages insert or replace, in order."""
    return [tid for message in messages for tid in ROW.findall(message)]


def gone_ids(messages: list[str]) -> list[str]:
    return [tid for message in messages for _, tid in GONE.findall(message)]


def has(pattern: str) -> Callable[[list[str]], bool]:
    return lambda received: re.search(pattern, received[-1]) is not None


def target(key: str, selector: str) -> str:
    """The out-of-band target of a fragment for the rendering `key`, as it appears in HTML."""
    return f"#results[data-live-key=&quot;{key}&quot;] {selector}"


def test_a_trace_the_writer_commits_reaches_an_open_first_page() -> None:
    async def scenario(socket: WebsocketCommunicator) -> None:
        await subscribe(socket)
        await commit(spans(1))
        (message,) = await receive_until(socket, has("trace-row"))
        # The page's own row partial, inserted on top of the rendering that subscribed.
        oob = f'<tbody hx-swap-oob="afterbegin:{target("k1", "#trace-rows")}">'
        assert message.startswith(oob)
        assert row_ids([message]) == [f"{1:032x}"]
        assert "is-new" in message and "invoke_agent Live" in message
        assert f'data-start-ns="{(await Trace.objects.aget()).start_ns}"' in message
        # The cards follow, no more often than every couple of seconds.
        cards = await receive_until(socket, has('id="cards"'))
        assert f'hx-swap-oob="outerHTML:{target("k1", "#cards")}"' in cards[-1]
        assert "<dd>1</dd>" in cards[-1]

    run(scenario)


def test_many_commits_are_coalesced_into_a_few_pushes() -> None:
    async def scenario(socket: WebsocketCommunicator) -> None:
        await subscribe(socket)
        await commit(*(spans(n, start_ms=n) for n in range(1, 31)))
        received = await receive_until(socket, lambda got: len(set(row_ids(got))) == 30)
        pushes = [message for message in received if row_ids([message])]
        assert len(pushes) <= 6  # 30 commits, at most two pushes a second
        # Each new row goes after the one before it, newest first, as the page shows them.
        insert = r'<tbody hx-swap-oob="([^"]+)">\s*<tr [^>]*id="trace-(\w+)"'
        inserts = re.findall(insert, pushes[-1])
        ids = [tid for _, tid in inserts]
        assert len(ids) > 1 and ids == sorted(ids, reverse=True)
        for (_, before), (oob, _) in itertools.pairwise(inserts):
            assert oob == "afterend:" + target("k1", f"#trace-{before}")

    run(scenario)


def test_only_traces_matching_the_pages_filter_are_pushed() -> None:
    async def scenario(socket: WebsocketCommunicator) -> None:
        await subscribe(socket, "service=wanted&min_duration=1")
        await commit(spans(1, service="other"), spans(2, service="wanted"))
        received = await receive_until(socket, has("trace-row"))
        assert row_ids(received) == [f"{2:032x}"]

    run(scenario)


def test_a_later_page_gets_its_own_rows_replaced_and_a_count_of_new_traces() -> None:
    async def scenario(socket: WebsocketCommunicator) -> None:
        await commit(spans(1), spans(2, start_ms=-60_000))
        tid = f"{2:032x}"
        newest = (await Trace.objects.aget(trace_id=f"{1:032x}")).start_ns
        await subscribe(
            socket, "after=1_" + "f" * 32, top="0", shown=shown(2), newest_ns=str(newest)
        )
        # A late error span in the shown trace, and a brand new trace.
        await commit(spans(2, span=9, parent=1, status=2, name="execute_tool search"))
        await commit(spans(3, start_ms=1000))
        received = await receive_until(
            socket, lambda got: tid in row_ids(got) and ">1 new trace</a>" in got[-1]
        )
        assert set(row_ids(received)) == {tid}  # never inserts rows under the reader
        assert "<tbody" not in "".join(received)
        row = next(m for m in received if tid in row_ids([m]))
        # Replaced in place, in the rendering that subscribed.
        assert f'hx-swap-oob="outerHTML:{target("k1", f"#trace-{tid}")}"' in row
        assert "is-error" in row

    run(scenario)


def test_a_shown_trace_that_stops_matching_is_gone() -> None:
    async def scenario(socket: WebsocketCommunicator) -> None:
        await commit(spans(1, status=1))
        await subscribe(socket, "status=OK", shown=[shown(1)])
        await commit(spans(1, span=2, parent=1, status=2))
        received = await receive_until(socket, has("delete:"))
        assert gone_ids(received[-1:]) == [f"{1:032x}"]

    run(scenario)


def test_deleted_traces_leave_every_open_page() -> None:
    async def scenario(socket: WebsocketCommunicator) -> None:
        await subscribe(socket, top="0", shown=[shown(5), shown(6)])
        await socket.receive_nothing(timeout=0.1)  # let the subscription land
        await sync_to_async(live.traces_deleted)([f"{5:032x}", f"{7:032x}"])
        received = await receive_until(socket, has("delete:"))
        assert received[-1] == f'<tr hx-swap-oob="delete:{target("k1", f"#trace-{5:032x}")}"></tr>'

    run(scenario)


def test_updates_target_only_the_rendering_that_subscribed() -> None:
    """A page that changed its filter has a new rendering of #results, with a key of its own:
    fragments still on their way for the old one find no target there."""

    async def scenario(socket: WebsocketCommunicator) -> None:
        await subscribe(socket, "service=first", key="a1")
        await subscribe(socket, "service=second", key="b2")
        await commit(spans(1, service="first"), spans(2, service="second"))
        received = await receive_until(socket, lambda got: f"{2:032x}" in row_ids(got))
        for message in received:
            assert ("data-live-key=&quot;b2&quot;" in message) == (f"{2:032x}" in message)
            assert f"{1:032x}" not in message or "data-live-key=&quot;a1&quot;" in message

    run(scenario)


def test_nonsense_from_the_page_is_ignored() -> None:
    async def scenario(socket: WebsocketCommunicator) -> None:
        await socket.send_json_to([1, 2, 3])
        await socket.send_json_to({"type": "shown", "ids": ["not-an-id"]})
        await subscribe(socket, query=42, newest_ns=-1, shown=["x", 3], key='"]*', top="yes")
        await subscribe(socket, "status=NOPE&since=garbage", key="z" * 40)
        await subscribe(socket, "status=NOPE&since=garbage")
        await commit(spans(1))
        received = await receive_until(socket, has("trace-row"))
        assert row_ids(received) == [f"{1:032x}"]

    run(scenario)


def test_publishing_with_no_socket_in_the_process_is_a_no_op(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "_serving_loop", None)
    monkeypatch.setattr(live, "_own_loop", None)
    live.traces_changed(trace_ids={"a" * 32})  # the in-memory layer has nobody to tell
    assert live._own_loop is None  # and no publisher loop was started for nobody


def test_a_subscription_catches_up_with_traces_committed_since_the_page_was_rendered() -> None:
    for batch in (spans(1), spans(2, start_ms=1000), spans(3, start_ms=-1000)):
        get_writer().submit(batch).result(timeout=20)
    rendered = Trace.objects.get(trace_id=f"{1:032x}")
    page = Subscription(
        TraceFilter(),
        top=True,
        newest_ns=rendered.start_ns,
        shown={rendered.trace_id: rendered.start_ns},
    )
    update = build_update(page, set(), catch_up=True)
    # Newer than the page (and so on top); not the older one.
    assert [(trace.trace_id, after) for trace, after in update.inserted] == [(f"{2:032x}", None)]
    later_page = Subscription(TraceFilter(), top=False, newest_ns=rendered.start_ns)
    assert build_update(later_page, set(), catch_up=True).new_count == 1


def test_new_rows_go_where_they_belong_and_push_the_last_off_the_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumers, "PAGE_SIZE", 3)
    for batch in (spans(1, start_ms=-3000), spans(2, start_ms=-2000), spans(3, start_ms=-1000)):
        get_writer().submit(batch).result(timeout=20)
    on_page = {trace.trace_id: trace.start_ns for trace in Trace.objects.all()}
    page = Subscription(TraceFilter(), top=True, newest_ns=None, key="k1", shown=on_page)
    # Arrived late, but started between the first two rows; and one newer than all.
    get_writer().submit(spans(4, start_ms=-1500)).result(timeout=20)
    get_writer().submit(spans(5)).result(timeout=20)
    update = build_update(page, {f"{4:032x}", f"{5:032x}"})
    assert [(trace.trace_id, after) for trace, after in update.inserted] == [
        (f"{5:032x}", None),
        (f"{4:032x}", f"{3:032x}"),
    ]
    assert sorted(update.gone) == [f"{1:032x}", f"{2:032x}"]  # now below the page size
    assert set(page.shown) == {f"{5:032x}", f"{3:032x}", f"{4:032x}"}
    inserts, rows, rest = render_update(page, update)
    assert inserts.index(f"{5:032x}") < inserts.index(f"{4:032x}")
    assert f"afterend:{target('k1', f'#trace-{3:032x}')}" in inserts
    assert sorted(gone_ids([rows])) == [f"{1:032x}", f"{2:032x}"]
    # "Older" now starts after the new last row.
    last = Trace.objects.get(trace_id=f"{4:032x}")
    assert f"after={last.start_ns}_{last.trace_id}" in rest
    assert f'hx-swap-oob="outerHTML:{target("k1", "#pager")}"' in rest


def test_an_empty_page_fetches_itself_again_for_its_first_trace() -> None:
    page = Subscription(TraceFilter(), top=True, newest_ns=None, key="k1", empty=True)
    get_writer().submit(spans(1)).result(timeout=20)
    update = build_update(page, {f"{1:032x}"})
    (frame,) = render_update(page, update)
    assert 'hx-swap-oob="beforeend:#results[data-live-key=&quot;k1&quot;]"' in frame
    assert 'hx-get="/traces/" hx-trigger="load" hx-target="#results"' in frame


@pytest.fixture
def redis_url() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.server
def test_with_redis_studio_processes_hear_each_others_commits(
    fresh_studio: Callable[..., StudioServer], redis_url: str
) -> None:
    first = fresh_studio(REDIS_URL=redis_url)
    shared = {"STUDIO_DATA_DIR": str(first.data_dir)}
    if "DATABASE_URL" in first.env:
        shared["DATABASE_URL"] = first.env["DATABASE_URL"]
    second = fresh_studio(REDIS_URL=redis_url, **shared)
    with connect(f"ws://127.0.0.1:{first.port}/ws/traces/") as page:
        page.send(json.dumps({"type": "subscribe", "key": "k1", "query": "", "top": "1"}))
        body = {
            "resourceSpans": [
                {"scopeSpans": [{"spans": [{
                    "traceId": "5" * 32, "spanId": "6" * 16, "name": "sent to the other one",
                    "startTimeUnixNano": str(time.time_ns()),
                    "endTimeUnixNano": str(time.time_ns() + 1000),
                }]}]}
            ]
        }  # fmt: skip
        response = requests.post(f"{second.url}/v1/traces", json=body, timeout=10)
        assert response.status_code == 200
        deadline = time.monotonic() + 15
        while True:
            message = page.recv(timeout=max(0.1, deadline - time.monotonic()))
            if row_ids([message]):
                break
        assert row_ids([message]) == ["5" * 32]


def test_other_sites_pages_cannot_listen() -> None:
    async def attempt(origin: bytes) -> str:
        headers = [(b"host", b"localhost:3000"), (b"origin", origin)]
        return await WebsocketCommunicator("/ws/traces/", headers).connect()

    assert async_to_sync(attempt)(b"http://localhost:3000") == "websocket.accept"
    assert async_to_sync(attempt)(b"https://evil.example") == "websocket.close"
