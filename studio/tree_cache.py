"""The streamed tree data of big traces (`trace_page.tree_chunks`' lines), made once per trace
and shared: readers of one trace at once wait on one computation of its tree order and read the
same encoded lines, and the lines stay (about 50 bytes a span) for the next reader, until the
trace changes, in a cache bounded by `STUDIO_TREE_CACHE_BYTES`.

Why: each reader used to compute the same order and encode the same chunks, about 1.5 s of CPU
per 150,000 spans under the one GIL, so three readers at once took three times as long as one.

A line is made by whichever reader needs it first, in that reader's thread and on its database
connection (one maker at a time; the others wait for it or read what is made). A reader that
goes away leaves nothing half made, and the next reader carries on where it stopped. A trace
whose summary row changed (more spans, a later end) is a new entry: readers already streaming
the old one finish it, as they would have read it alone.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings

from studio import trace_page
from tracing import selectors
from tracing.models import Trace

# What identifies one state of a trace: the writer recomputes the summary row in the commit
# that adds spans, so a trace that grew has another count or end. The first span's row id tells
# a trace deleted and sent again (same id, same summary) from the one kept: its rows are new, and
# another process (--workers, another host) hears of neither the delete nor the new commit.
Version = tuple[int, int, int, int, int | None]
# At most this many traces are kept, whatever their size.
MAX_ENTRIES = 64


def version_of(trace: Trace) -> Version:
    first_row = selectors.first_span_row_id(trace.trace_id)
    return (trace.span_count, trace.start_ns, trace.end_ns, trace.error_count, first_row)


class SharedTree:
    """The lines of one trace's tree data: the head, then one line per chunk of rows."""

    def __init__(self, trace: Trace, version: Version) -> None:
        self.trace = trace
        self.version = version
        self.lines: list[bytes] = []
        self.size = 0  # bytes of the lines made
        self.total: int | None = None  # lines, once the order is known
        self.order: selectors.TreeOrder | None = None  # dropped once every line is made
        self.making = False
        self.readers = 0
        self.changed = threading.Condition()

    @property
    def finished(self) -> bool:
        return self.total is not None and len(self.lines) == self.total

    def read(self, cache: TreeCache) -> Iterator[bytes]:
        """Every line, in order, made here when no other reader is making it."""
        with self.changed:
            self.readers += 1
        try:
            index = 0
            while True:
                with self.changed:
                    while index >= len(self.lines) and self.making:
                        self.changed.wait()
                    if index < len(self.lines):
                        line: bytes | None = self.lines[index]
                    elif self.finished:
                        return
                    else:
                        line = None
                        self.making = True
                if line is None:
                    line = self._make_next(cache)
                yield line
                index += 1
        finally:
            with self.changed:
                self.readers -= 1
                abandoned = self.readers == 0 and not self.finished
            if abandoned:
                # Nobody is reading it: its order is not kept for a reader who may never come.
                cache.discard(self)

    def _make_next(self, cache: TreeCache) -> bytes:
        """Makes the next line (the caller set `making`), and tells the waiting readers."""
        try:
            index = len(self.lines)
            with selectors.read_once():
                if self.order is None:
                    self.order = selectors.tree_order(self.trace.trace_id)
                    self.total = 1 + trace_page.chunk_count(self.order)
                if index == 0:
                    line = trace_page.tree_head(self.order)
                else:
                    line = trace_page.tree_chunk(self.trace, self.order, index - 1)
        except BaseException:
            with self.changed:
                self.making = False
                self.changed.notify_all()
            raise
        with self.changed:
            self.lines.append(line)
            self.size += len(line)
            self.making = False
            if self.finished:
                self.order = None
            self.changed.notify_all()
            finished = self.finished
        cache.grown(self, finished=finished)
        return line


class TreeCache:
    """SharedTrees by trace id, least recently used first, their lines' bytes bounded."""

    def __init__(self) -> None:
        self.entries: OrderedDict[str, SharedTree] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, trace: Trace) -> SharedTree:
        version = version_of(trace)
        with self.lock:
            entry = self.entries.get(trace.trace_id)
            if entry is None or entry.version != version:
                entry = self.entries[trace.trace_id] = SharedTree(trace, version)
            self.entries.move_to_end(trace.trace_id)
            while len(self.entries) > MAX_ENTRIES:  # entries whose lines were never made
                self.entries.popitem(last=False)
            return entry

    def grown(self, entry: SharedTree, *, finished: bool) -> None:
        """After a line is made: the oldest entries go while the lines held exceed the budget;
        a finished entry bigger than the whole budget is not kept."""
        limit = settings.STUDIO_TREE_CACHE_BYTES
        with self.lock:
            total = sum(each.size for each in self.entries.values())
            for trace_id, each in list(self.entries.items()):
                if total <= limit:
                    break
                if each is not entry:
                    del self.entries[trace_id]
                    total -= each.size
            if finished and entry.size > limit:
                self._remove(entry)

    def discard(self, entry: SharedTree) -> None:
        with self.lock:
            self._remove(entry)

    def _remove(self, entry: SharedTree) -> None:
        if self.entries.get(entry.trace.trace_id) is entry:
            del self.entries[entry.trace.trace_id]

    def forget(self, trace_ids: Iterable[str]) -> None:
        with self.lock:
            for trace_id in trace_ids:
                self.entries.pop(trace_id, None)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()

    @property
    def size(self) -> int:
        with self.lock:
            return sum(entry.size for entry in self.entries.values())


cache = TreeCache()


def tree_lines(trace: Trace) -> Iterator[bytes]:
    """`trace_page.tree_chunks(trace)`, shared with every other reader of the trace. `trace`
    needs its trace_id, start_ns, end_ns, span_count and error_count. Lazy: the version's query
    runs at the first line, in the thread that reads it, not in an async view's event loop."""
    yield from cache.get(trace).read(cache)


def forget(sender: Any = None, *, trace_ids: Iterable[str], **kwargs: Any) -> None:
    """The receiver of `traces_changed` and `traces_purged`: those traces' lines are stale."""
    cache.forget(trace_ids)
