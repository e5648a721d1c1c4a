"""The streamed tree data of a big trace is made once and shared (studio.tree_cache): readers at
once wait on one computation, the lines are kept for the next reader while the trace is
unchanged, and what is kept is bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncClient

from studio import trace_page, tree_cache
from tests.test_trace_big import tricky_spans
from tests.test_trace_page import TRACE, payload, span, store
from tracing import selectors
from tracing.models import Trace
from tracing.signals import traces_changed

OTHER = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(selectors, "TREE_CHUNK", 7)
    monkeypatch.setattr(trace_page, "INLINE_SPANS", 10)
    tree_cache.cache.clear()
    yield
    tree_cache.cache.clear()


def count_calls(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, pause: float = 0) -> list:
    calls: list[Any] = []
    original = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        time.sleep(pause)  # long enough for every reader to arrive meanwhile
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def tree_response(trace_id: str = TRACE) -> bytes:
    """The tree data as the view streams it under ASGI (an asynchronous iterator)."""

    async def get() -> bytes:
        response = await AsyncClient().get(f"/traces/{trace_id}/tree/")
        assert response.status_code == 200
        return b"".join([part async for part in response.streaming_content])

    return async_to_sync(get)()


def uncached(trace_id: str = TRACE) -> bytes:
    return b"".join(trace_page.tree_chunks(Trace.objects.get(trace_id=trace_id)))


@pytest.mark.django_db(transaction=True)
def test_readers_of_a_big_trace_at_once_wait_on_one_computation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store(payload(tricky_spans(60)))
    expected = uncached()
    orders = count_calls(monkeypatch, selectors, "tree_order", pause=0.5)
    chunks = count_calls(monkeypatch, trace_page, "_chunk")
    results: list[bytes] = []
    failures: list[BaseException] = []

    def read() -> None:
        try:
            results.append(tree_response())
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)
        finally:
            connection.close()

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(60)
    assert not failures
    assert results == [expected] * 3
    assert len(orders) == 1
    assert len(chunks) == trace_page.chunk_count(selectors.tree_order(TRACE))


@pytest.mark.django_db
def test_the_next_reader_reads_the_kept_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    store(payload(tricky_spans(60)))
    first = tree_response()
    orders = count_calls(monkeypatch, selectors, "tree_order")
    again = tree_response()
    assert orders == []
    assert again == first == uncached()


@pytest.mark.django_db
def test_a_trace_that_grew_is_read_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    spans = tricky_spans(60)
    store(payload(spans[:40]))
    assert b'"count":40,' in tree_response()
    # Stored without the writer's signal (another process's writer, say): the summary row
    # says the trace changed.
    store(payload(spans[40:]))
    assert tree_response() == uncached()
    assert b'"count":64,' in tree_response()


@pytest.mark.django_db
def test_a_trace_deleted_and_sent_again_is_read_anew() -> None:
    store(payload(tricky_spans(60)))
    assert b"step 7" in tree_response()
    # Deleted, then sent again with other names but the same summary, in another process (no
    # signal reaches this one): the same count, start, end and errors, but new rows.
    Trace.objects.filter(trace_id=TRACE).delete_with_spans()
    renamed = [{**one, "name": one["name"].replace("step", "stage")} for one in tricky_spans(60)]
    store(payload(renamed))
    assert tree_response() == uncached()
    assert b"stage 7" in tree_response() and b"step 7" not in tree_response()


@pytest.mark.django_db
def test_the_writers_commit_forgets_the_traces_it_touched() -> None:
    store(payload(tricky_spans(60)))
    tree_response()
    assert TRACE in tree_cache.cache.entries
    traces_changed.send(sender=None, trace_ids={TRACE})
    assert TRACE not in tree_cache.cache.entries


@pytest.mark.django_db
def test_what_is_kept_is_bounded(settings: Any) -> None:
    store(payload(tricky_spans(60)))
    other = [span(f"{i:016x}", f"s{i}", start=i, trace_id=OTHER) for i in range(1, 60)]
    store(payload(other))
    one = len(uncached())
    settings.STUDIO_TREE_CACHE_BYTES = one + one // 2
    tree_response(TRACE)
    tree_response(OTHER)
    # The older trace went to make room for the newer.
    assert list(tree_cache.cache.entries) == [OTHER]
    assert tree_cache.cache.size <= settings.STUDIO_TREE_CACHE_BYTES
    # A trace bigger than the whole budget is served, and not kept.
    settings.STUDIO_TREE_CACHE_BYTES = one // 2
    assert tree_response(TRACE) == uncached(TRACE)
    assert TRACE not in tree_cache.cache.entries


@pytest.mark.django_db
def test_a_reader_that_goes_away_leaves_the_rest_to_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store(payload(tricky_spans(60)))
    expected = uncached().splitlines(keepends=True)
    chunks = count_calls(monkeypatch, trace_page, "_chunk")
    trace = Trace.objects.get(trace_id=TRACE)
    first = tree_cache.tree_lines(trace)
    assert [next(first), next(first)] == expected[:2]
    # A second reader joins half way: it reads what is made, then makes the rest.
    second = tree_cache.tree_lines(trace)
    assert [next(second), next(second), next(second)] == expected[:3]
    assert len(chunks) == 2
    assert list(first) == expected[2:]
    assert list(second) == expected[3:]
    assert len(chunks) == len(expected) - 1  # each chunk made once
    # A reader that leaves before the end takes its unfinished entry with it.
    tree_cache.cache.clear()
    alone = tree_cache.tree_lines(trace)
    next(alone)
    alone.close()
    assert TRACE not in tree_cache.cache.entries
