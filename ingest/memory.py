"""Keeping glibc's malloc from holding on to memory Studio freed (elsewhere these do nothing).

Used by the server (runstudio) and by the decoding processes (ingest.workers), which decode and
free a body of several megabytes at a time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

# glibc's malloc options (mallopt): buffers from this size up are mapped on their own and given
# back to the OS when freed; at most this many arenas serve the server's many threads.
M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES = -3, 256 * 1024
M_ARENA_MAX, ARENA_MAX = -8, 2
# malloc_trim walks the heap: at most this often.
TRIM_INTERVAL = 1.0

_libc: ctypes.CDLL | None = None
_last_trim = 0.0
_trim_lock = threading.Lock()


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
        except OSError:
            libc = None
        # Not glibc (musl...): its allocator has its own ways.
        if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
            return None
        _libc = libc
    return _libc


def limit_heap_growth() -> None:
    """Keep freed request bodies from staying in the process's memory. Left to itself, glibc
    raises its mmap threshold to the size of the largest buffer freed so far (up to 32 MB), so
    every later body lands in a heap that fragments and is seldom returned, one heap per thread
    that ever allocated one: under 20 senders that doubled the server's peak memory. Call
    before starting threads."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        libc.mallopt(M_ARENA_MAX, ARENA_MAX)


def trim(interval: float = TRIM_INTERVAL) -> None:
    """Give the free memory of malloc's heaps back to the OS (freed spans' strings over 512
    bytes live there, not in Python's own arenas), at most once per `interval` seconds."""
    global _last_trim
    libc = _glibc()
    if libc is None:
        return
    now = time.monotonic()
    with _trim_lock:
        if now - _last_trim < interval:
            return
        _last_trim = now
    libc.malloc_trim(0)
