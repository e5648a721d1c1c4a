"""What the tests of races with the writer share: skipping where SQLite's single write lock rules
the race out, the writer held in the middle of folding a batch into a trace's summary, and threads
whose failures the test sees."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

ON_POSTGRESQL = os.environ.get("DATABASE_URL", "").startswith("postgres")


def postgresql_only(reason: str) -> pytest.MarkDecorator:
    """Skip on SQLite, whose write lock (taken by the first write) serialises the race."""
    return pytest.mark.skipif(not ON_POSTGRESQL, reason=reason)


def hold_the_fold(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """The writer stopped between reading a trace's summary row and writing it back with its
    batch added: the first event is set once a batch got there, and it goes on once the second
    is set (or after 10 s)."""
    from ingest import writer

    folding, go = threading.Event(), threading.Event()
    fold = writer._fold

    def slow_fold(*args: Any) -> Any:
        folding.set()
        go.wait(10)
        return fold(*args)

    monkeypatch.setattr(writer, "_fold", slow_fold)
    return folding, go


class Threads:
    """Threads for a test: what they raise lands in `failures`, and each closes its database
    connection (a transactional test's database cannot be flushed while one is open)."""

    def __init__(self) -> None:
        self.failures: list[BaseException] = []

    def start(
        self, target: Callable[..., object], *args: object, **kwargs: object
    ) -> threading.Thread:
        def body() -> None:
            try:
                target(*args, **kwargs)
            except BaseException as exc:
                self.failures.append(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=body)
        thread.start()
        return thread
