"""Each HTTP request's synchronous code runs on a thread of its own (what Django does, and what
readers sharing one computation rely on: studio.tree_cache), borrowed from a pool of started
threads rather than started for the request (studio.request_threads)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from asgiref.sync import sync_to_async

from studio import request_threads


def test_requests_at_once_run_on_threads_of_their_own_and_the_threads_are_lent_again() -> None:
    both_running = threading.Barrier(2, timeout=10)
    seen: list[tuple[int, int]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Two calls of one request share its thread; requests at once never share one (the
        # barrier would time out).
        first = await sync_to_async(threading.get_ident)()
        if scope["wait"]:
            await sync_to_async(both_running.wait)()
        seen.append((first, await sync_to_async(threading.get_ident)()))

    pooled = request_threads.pooled_request_threads(app)
    request_threads.threads.idle.clear()

    async def requests(*waits: bool) -> None:
        await asyncio.gather(*(pooled({"type": "http", "wait": w}, None, None) for w in waits))

    asyncio.run(requests(True, True))
    assert all(first == second for first, second in seen)
    assert len({first for first, _ in seen}) == 2
    assert threading.get_ident() not in {first for first, _ in seen}
    started = {first for first, _ in seen}
    seen.clear()
    asyncio.run(requests(False))
    # Borrowed, not started: one of the threads of before.
    assert seen[0][0] in started


def test_a_thread_still_running_a_call_is_not_lent_again() -> None:
    pool = request_threads.RequestThreads(keep_idle=4)
    thread = pool.borrow()
    release = threading.Event()
    running = thread.submit(release.wait, 10)
    pool.give_back(thread)
    assert thread not in pool.idle
    release.set()
    running.result(10)
    idle = pool.borrow()
    idle.submit(int).result(10)
    pool.give_back(idle)
    assert pool.idle == [idle]
    # No more idle threads are kept than asked.
    extra = [pool.borrow() for _ in range(6)]
    for each in extra:
        pool.give_back(each)
    assert len(pool.idle) == 4
