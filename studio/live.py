"""Live updates for open overview pages: which traces changed, carried by the channel layer.

The writer announces commits from its own thread (`tracing.signals.traces_changed`). The in-memory
channel layer's queues belong to the event loop that serves the websockets, so messages are
handed to that loop (remembered when the first socket connects) rather than sent from the
writer's thread; with channels_redis (`REDIS_URL`), processes without a socket of their own still
publish, from a small loop of their own, so every Studio process sees every commit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

GROUP = "traces"
# Trace ids per message: a huge commit becomes several messages of a sane size.
CHUNK = 1000

_serving_loop: asyncio.AbstractEventLoop | None = None
_own_loop: asyncio.AbstractEventLoop | None = None
_own_loop_lock = threading.Lock()


def remember_loop() -> None:
    """Called from a consumer: the loop it runs on is the one that can reach it."""
    global _serving_loop
    _serving_loop = asyncio.get_running_loop()


def traces_changed(sender: Any = None, *, trace_ids: Iterable[str], **kwargs: Any) -> None:
    """The `tracing.signals.traces_changed` receiver (connected in StudioConfig.ready)."""
    _publish("traces.changed", trace_ids)


def traces_deleted(trace_ids: Iterable[str]) -> None:
    _publish("traces.deleted", trace_ids)


def traces_purged(sender: Any = None, *, trace_ids: Iterable[str], **kwargs: Any) -> None:
    """The `tracing.signals.traces_purged` receiver (connected in StudioConfig.ready)."""
    _publish("traces.deleted", trace_ids)


def _publish(kind: str, trace_ids: Iterable[str]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _serving_loop
    if loop is None or loop.is_closed():
        if isinstance(layer, InMemoryChannelLayer):
            return  # no socket has ever connected to this process: nobody to tell
        loop = _publisher_loop()
    ids = sorted(trace_ids)
    for start in range(0, len(ids), CHUNK):
        message = {"type": kind, "trace_ids": ids[start : start + CHUNK]}
        future = asyncio.run_coroutine_threadsafe(layer.group_send(GROUP, message), loop)
        future.add_done_callback(_log_failure)


def _publisher_loop() -> asyncio.AbstractEventLoop:
    global _own_loop
    with _own_loop_lock:
        if _own_loop is None:
            _own_loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_own_loop.run_forever, name="studio-live", daemon=True)
            thread.start()
        return _own_loop


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("could not publish a live update: %s", future.exception())
