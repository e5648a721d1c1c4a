"""The threads that run each HTTP request's synchronous code (middleware, sync views, the ORM).

Django runs a request's synchronous parts on a thread of the request's own (asgiref's
ThreadSensitiveContext): two requests never share one, so a slow page or a reader waiting for
another's computation (studio.tree_cache) holds up no other request. Left to itself asgiref
starts that thread for the request and, after it, yet another thread to join it; and starting a
thread blocks the event loop until the OS first runs the new one. Under ingest on a busy machine
the loop spent about a tenth of its time so blocked (py-spy, benchmarks/bench_overload.py), and
every page waited behind it. Here each request borrows an idle thread from a pool instead (one
started when none is idle), which keeps the one-thread-per-request rule.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

# Idle threads kept for the next requests; more are started when requests need them, and those
# beyond this many end once their request is done.
KEEP_IDLE = 32


class RequestThread(ThreadPoolExecutor):
    """One thread, running the calls of one request at a time (thread-sensitive code needs
    exactly that); it counts the calls not finished, so that it is lent again only when idle."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="studio-request")
        self.unfinished = 0
        self._count_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._count_lock:
            self.unfinished += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._done()
            raise
        future.add_done_callback(lambda _: self._done())
        return future

    def _done(self) -> None:
        with self._count_lock:
            self.unfinished -= 1


class RequestThreads:
    def __init__(self, keep_idle: int = KEEP_IDLE) -> None:
        self.keep_idle = keep_idle
        self.idle: list[RequestThread] = []
        self._lock = threading.Lock()

    def borrow(self) -> RequestThread:
        with self._lock:
            if self.idle:
                return self.idle.pop()
        return RequestThread()

    def give_back(self, thread: RequestThread) -> None:
        # A call still running (its request went away while a sync call ran: Python cannot stop
        # a thread) would hold up the next request: that thread ends when its call does.
        with self._lock:
            if thread.unfinished == 0 and len(self.idle) < self.keep_idle:
                self.idle.append(thread)
                return
        thread.shutdown(wait=False)


threads = RequestThreads()


def pooled_request_threads(app: ASGIApp) -> ASGIApp:
    """Wraps Django's ASGI app: each HTTP request's synchronous code runs on a pooled thread."""

    async def lent(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        thread = threads.borrow()
        try:
            # Django's own ThreadSensitiveContext, inside, keeps this one.
            async with ThreadSensitiveContext(executor=thread):
                await app(scope, receive, send)
        finally:
            threads.give_back(thread)

    return lent
