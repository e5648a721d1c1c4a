"""The overview's websocket (`/ws/traces/`): keeps an open `/traces/` page up to date.

The page subscribes with its own query string, the traces it shows and the newest start time it
was rendered with. Changed trace ids arrive from the channel layer (studio.live) and are
coalesced: at most a couple of pushes a second per socket, each re-checking the changed traces
against the page's filter in one query and sending rows rendered by the page's own partial.

- On the top page of a newest-first list, changed traces that match come as rows to insert or
  replace.
- Elsewhere, only the rows on the page are replaced, and new traces are counted, so nothing moves
  under the reader's cursor.
- Rows that stop matching, or are deleted, are named in `gone`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import QueryDict
from django.http.cookie import parse_cookie
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.websockets import websocket_allowed
from studio import live
from studio.filters import PAGE_SIZE, TraceFilter, zone_from_cookie
from tracing import conventions

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5
CARDS_INTERVAL = 2.0
# Beyond this many changed traces between two pushes, the top page is re-read whole instead.
MAX_CHANGED = 500
MAX_SHOWN = 200


@dataclass
class Subscription:
    filter: TraceFilter
    top: bool
    newest_ns: int | None
    shown: set[str] = field(default_factory=set)
    # Echoed in every update, so a page that has since changed its filter ignores stale ones.
    seq: int = 0

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Subscription:
        query = message.get("query")
        newest = message.get("newest_ns")
        seq = message.get("seq")
        return cls(
            filter=TraceFilter.from_query(
                QueryDict(query[:4000] if isinstance(query, str) else "")
            ),
            top=message.get("top") is True,
            newest_ns=int(newest) if isinstance(newest, str) and newest.isdigit() else None,
            shown=_trace_ids(message.get("shown")),
            seq=seq if isinstance(seq, int) else 0,
        )


def _trace_ids(value: Any) -> set[str]:
    if not isinstance(value, list):
        return set()
    return {
        tid for tid in value[:MAX_SHOWN] if isinstance(tid, str) and conventions.is_hex_id(tid, 32)
    }


class TraceListConsumer(AsyncJsonWebsocketConsumer):
    groups = [live.GROUP]

    async def connect(self) -> None:
        if not _same_origin(self.scope):
            # Another site's page must not read traces through a visitor's browser.
            await self.close(code=4003)
            return
        if not await websocket_allowed(self.scope):
            await self.close(code=4001)
            return
        live.remember_loop()
        self.subscription: Subscription | None = None
        self.changed: set[str] = set()
        self.overflow = False
        # Set by a subscription: look for traces committed since the page was rendered.
        self.catch_up = False
        self.cards_due = False
        self.last_flush = 0.0
        self.last_cards = 0.0
        self.flush_task: asyncio.Task[None] | None = None
        self.zone = _zone(self.scope)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        task = getattr(self, "flush_task", None)
        if task is not None:
            task.cancel()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("type") == "subscribe":
            with timezone.override(self.zone):
                self.subscription = Subscription.from_message(content)
            # Changes already collected are checked against the new filter, not dropped: they
            # may have been committed after the page was rendered.
            self.catch_up = True
            self.cards_due = False
            self._schedule()
        elif content.get("type") == "shown" and self.subscription is not None:
            self.subscription.shown = _trace_ids(content.get("ids"))

    # Channel layer events (studio.live).

    async def traces_changed(self, event: dict[str, Any]) -> None:
        if self.overflow:
            return
        self.changed.update(event["trace_ids"])
        if len(self.changed) > MAX_CHANGED:
            self.overflow = True
            self.changed.clear()
        if self.subscription is not None:
            self._schedule()

    async def traces_deleted(self, event: dict[str, Any]) -> None:
        if self.subscription is None:
            return
        gone = event["trace_ids"]
        self.subscription.shown.difference_update(gone)
        await self.send_json({"type": "update", "seq": self.subscription.seq, "gone": gone})
        self.cards_due = True
        self._schedule()

    # Coalescing.

    def _schedule(self) -> None:
        if self.flush_task is not None and not self.flush_task.done():
            return
        loop = asyncio.get_running_loop()
        wait = max(0.0, self.last_flush + FLUSH_INTERVAL - loop.time())
        if not (self.changed or self.overflow or self.catch_up):  # only the cards are waiting
            wait = max(wait, self.last_cards + CARDS_INTERVAL - loop.time())
        self.flush_task = asyncio.create_task(self._flush_after(wait))

    async def _flush_after(self, wait: float) -> None:
        await asyncio.sleep(wait)
        subscription = self.subscription
        if subscription is None:
            return
        loop = asyncio.get_running_loop()
        self.last_flush = loop.time()
        changed, overflow, catch_up = self.changed, self.overflow, self.catch_up
        self.changed, self.overflow, self.catch_up = set(), False, False
        with_cards = self.cards_due and loop.time() - self.last_cards >= CARDS_INTERVAL
        if changed or overflow or catch_up or with_cards:
            try:
                update = await database_sync_to_async(build_update)(
                    subscription,
                    changed,
                    overflow=overflow,
                    catch_up=catch_up,
                    with_cards=with_cards,
                    zone=self.zone,
                )
            except Exception:
                # A failed push (the database restarting, say) must not end live updates.
                logger.exception("could not build a live update")
                update = {}
            if with_cards:
                self.cards_due = False
                self.last_cards = loop.time()
            if update.pop("touched", False):
                self.cards_due = True
            if subscription is not self.subscription:
                self.changed |= changed  # the page changed its filter meanwhile: check again
            elif set(update) - {"type", "seq"}:
                await self.send_json(update)
        self.flush_task = None
        if self.changed or self.overflow or self.cards_due:
            self._schedule()


def build_update(
    subscription: Subscription,
    changed: set[str],
    *,
    overflow: bool = False,
    catch_up: bool = False,
    with_cards: bool = False,
    zone: tzinfo = UTC,
) -> dict[str, Any]:
    """The message for a page: `rows` to insert or replace, `gone`, `new_count`, `cards`, and
    `touched` (for the consumer: whether anything the filter matches changed). `catch_up` also
    looks for traces newer than the page's newest (committed before its socket listened)."""
    update: dict[str, Any] = {"type": "update", "seq": subscription.seq}
    with timezone.override(zone):
        traces = subscription.filter.traces()
        if subscription.top:
            if overflow:
                matched = list(traces.order_by("-start_ns", "-trace_id")[:PAGE_SIZE])
                checked: set[str] = set()
            else:
                matched = list(traces.filter(trace_id__in=changed)) if changed else []
                checked = changed & subscription.shown
                if catch_up:
                    newer = traces.filter(start_ns__gt=subscription.newest_ns or 0)
                    seen = {trace.trace_id for trace in matched}
                    matched += [
                        trace
                        for trace in newer.order_by("-start_ns", "-trace_id")[:PAGE_SIZE]
                        if trace.trace_id not in seen
                    ]
            matched.sort(key=lambda trace: (trace.start_ns, trace.trace_id), reverse=True)
            rows = matched[:PAGE_SIZE]
            subscription.shown.update(trace.trace_id for trace in rows)
        else:
            checked = subscription.shown if overflow else changed & subscription.shown
            rows = list(traces.filter(trace_id__in=checked)) if checked else []
            matched = rows
            if overflow or catch_up or changed - subscription.shown:
                newer = traces.filter(start_ns__gt=subscription.newest_ns or 0)
                update["new_count"] = newer.count()
        gone = sorted(checked - {trace.trace_id for trace in matched})
        subscription.shown.difference_update(gone)
        if rows:
            update["rows"] = [
                {
                    "id": trace.trace_id,
                    "start_ns": str(trace.start_ns),
                    "html": render_to_string(
                        "studio/trace_list.html#trace-row", {"trace": trace, "max_duration": 0}
                    ),
                }
                for trace in rows
            ]
        if gone:
            update["gone"] = gone
        update["touched"] = bool(matched or gone or update.get("new_count"))
        if with_cards:
            update["cards"] = render_to_string(
                "studio/trace_list.html#cards", {"stats": traces.stats()}
            )
    return update


def _zone(scope: dict[str, Any]) -> tzinfo:
    cookie = _header(scope, b"cookie")
    return zone_from_cookie(parse_cookie(cookie).get("tz")) or UTC


def _same_origin(scope: dict[str, Any]) -> bool:
    """Browsers always send Origin with a websocket; other clients (no Origin) may connect."""
    origin = _header(scope, b"origin")
    return not origin or urlsplit(origin).netloc.lower() == _header(scope, b"host").lower()


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""
