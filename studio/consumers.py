"""The overview's websocket (`/ws/traces/`): keeps an open `/traces/` page up to date.

The page is wired with htmx's ws extension: its `#live-subscription` form (sent as JSON when a
rendering of `#results` loads) says what that rendering shows; the server answers with HTML
fragments of the page's own template that htmx swaps in out of band. Every fragment targets
`#results[data-live-key=<key>]`, the rendering that subscribed, so a push still on its way when
the reader changes the filter lands nowhere.

Changed trace ids arrive from the channel layer (studio.live) and are coalesced: at most a couple
of pushes a second per socket, each re-checking the changed traces against the page's filter in
one query and rendering rows with the page's own partial.

- On the top page of a newest-first list, changed traces that match are inserted at their place
  (after the row that precedes them) or replaced in place; rows pushed below the page size go,
  and the pager's "Older" link follows the new last row.
- Elsewhere, only the rows on the page are replaced, and new traces are counted, so nothing moves
  under the reader's cursor.
- Rows that stop matching, or are deleted, are removed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import QueryDict
from django.http.cookie import parse_cookie
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.websockets import websocket_allowed
from studio import live, security
from studio.filters import PAGE_SIZE, TraceFilter, zone_from_cookie
from tracing.models import Trace, TraceStats

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5
CARDS_INTERVAL = 2.0
# Beyond this many changed traces between two pushes, the top page is re-read whole instead.
MAX_CHANGED = 500
MAX_SHOWN = 200
TEMPLATE = "studio/trace_list.html"
_KEY = re.compile(r"[A-Za-z0-9_-]{1,32}")
_SHOWN = re.compile(r"(\d{1,20})_([0-9a-f]{32})")


@dataclass
class Subscription:
    filter: TraceFilter
    top: bool
    newest_ns: int | None
    # The rendering's data-live-key: every fragment targets that rendering only.
    key: str = ""
    # Trace id -> start (ns) of the rows on the page: where new rows go, which rows to re-check.
    shown: dict[str, int] = field(default_factory=dict)
    # The page shows "No traces yet": the first trace brings the whole table.
    empty: bool = False
    # The table shows "No traces match" (it had no rows): the first row inserted replaces it.
    placeholder: bool = False

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Subscription:
        query = message.get("query")
        newest = message.get("newest_ns")
        key = message.get("key")
        shown = _shown(message.get("shown"))
        return cls(
            filter=TraceFilter.from_query(
                QueryDict(query[:4000] if isinstance(query, str) else "")
            ),
            top=message.get("top") in ("1", True),
            newest_ns=int(newest) if isinstance(newest, str) and newest.isdigit() else None,
            key=key if isinstance(key, str) and _KEY.fullmatch(key) else "",
            shown=shown,
            empty=message.get("empty") in ("1", True),
            placeholder=not shown,
        )

    @property
    def scope(self) -> str:
        return f'#results[data-live-key="{self.key}"]'


def _shown(value: Any) -> dict[str, int]:
    """`start_traceid` strings (one, as htmx sends a single field, or a list)."""
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    shown = {}
    for item in values[:MAX_SHOWN]:
        if isinstance(item, str) and (match := _SHOWN.fullmatch(item)):
            shown[match[2]] = int(match[1])
    return shown


@dataclass
class Update:
    """What changed for one page: rows to insert (each after the row named, or first), rows to
    replace, rows to remove, the count of new traces, the new "Older" cursor, the cards."""

    inserted: list[tuple[Trace, str | None]] = field(default_factory=list)
    replaced: list[Trace] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    new_count: int | None = None
    older: tuple[int, str] | None = None
    cards: TraceStats | None = None
    # The page was empty and has a first trace: it fetches the whole table again.
    refresh: bool = False
    # The first row goes into a table that said "No traces match".
    placeholder_gone: bool = False
    # For the consumer: whether anything the filter matches changed (the cards are then due).
    touched: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.inserted
            or self.replaced
            or self.gone
            or self.new_count is not None
            or self.cards
            or self.refresh
        )


class TraceListConsumer(AsyncJsonWebsocketConsumer):
    groups = [live.GROUP]

    async def connect(self) -> None:
        if not security.connection_allowed(self.scope):
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

    async def send_frames(self, frames: list[str]) -> None:
        for frame in frames:
            await self.send(text_data=frame)

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
        subscription = self.subscription
        gone = [tid for tid in event["trace_ids"] if subscription.shown.pop(tid, None) is not None]
        if gone:
            await self.send_frames(render_update(subscription, Update(gone=gone)))
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
        if (changed or overflow or catch_up or with_cards) and not await websocket_allowed(
            self.scope
        ):
            # Signed out, disabled or its key revoked since it connected: nothing more is sent.
            self.flush_task = None
            await self.close(code=4001)
            return
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
                update = Update()
            if with_cards:
                self.cards_due = False
                self.last_cards = loop.time()
            if update.touched:
                self.cards_due = True
            if subscription is not self.subscription:
                self.changed |= changed  # the page changed its filter meanwhile: check again
            elif update:
                frames = await database_sync_to_async(render_update)(
                    subscription, update, zone=self.zone
                )
                await self.send_frames(frames)
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
) -> Update:
    """What the page must change after `changed` traces changed; `subscription.shown` follows
    it. `catch_up` also looks for traces newer than the page's newest (committed before its
    socket listened)."""
    update = Update()
    shown = subscription.shown
    with timezone.override(zone):
        traces = subscription.filter.traces()
        if subscription.top:
            if overflow:
                matched = list(traces.order_by("-start_ns", "-trace_id")[:PAGE_SIZE])
                checked = set(shown)
            else:
                matched = list(traces.filter(trace_id__in=changed)) if changed else []
                checked = changed & shown.keys()
                if catch_up:
                    newer = traces.filter(start_ns__gt=subscription.newest_ns or 0)
                    seen = {trace.trace_id for trace in matched}
                    matched += [
                        trace
                        for trace in newer.order_by("-start_ns", "-trace_id")[:PAGE_SIZE]
                        if trace.trace_id not in seen
                    ]
        else:
            checked = set(shown) if overflow else changed & shown.keys()
            matched = list(traces.filter(trace_id__in=checked)) if checked else []
            if overflow or catch_up or changed - shown.keys():
                newer = traces.filter(start_ns__gt=subscription.newest_ns or 0)
                update.new_count = newer.count()
        update.gone = sorted(checked - {trace.trace_id for trace in matched})
        for tid in update.gone:
            del shown[tid]
        if subscription.empty and matched:
            update.refresh = True
        elif subscription.top:
            _place(update, shown, matched)
            if update.inserted and subscription.placeholder:
                update.placeholder_gone = True
                subscription.placeholder = False
        else:
            update.replaced = matched
        update.touched = bool(matched or update.gone or update.new_count)
        if with_cards:
            update.cards = subscription.filter.stats(traces)
    return update


def _place(update: Update, shown: dict[str, int], matched: list[Trace]) -> None:
    """The top page, newest first: replace the rows it shows, insert the rest where they belong
    (after the row before them), and let the rows pushed past the page size go."""
    fresh = {}
    for trace in matched:
        if trace.trace_id in shown:
            update.replaced.append(trace)
        else:
            fresh[trace.trace_id] = trace
        shown[trace.trace_id] = trace.start_ns
    order = sorted(shown.items(), key=lambda item: (item[1], item[0]), reverse=True)
    for place, (tid, _) in enumerate(order[:PAGE_SIZE]):
        if tid in fresh:
            update.inserted.append((fresh[tid], order[place - 1][0] if place else None))
    if len(order) > PAGE_SIZE:
        for tid, _ in order[PAGE_SIZE:]:
            del shown[tid]
            if tid not in fresh:
                update.gone.append(tid)
        last_tid, last_start = order[PAGE_SIZE - 1]
        update.older = (last_start, last_tid)


def render_update(subscription: Subscription, update: Update, *, zone: tzinfo = UTC) -> list[str]:
    """The update as websocket messages of HTML for htmx's ws extension, every element swapped out
    of band into the subscribed rendering. Rows go in messages of their own: a `<tr>` or a
    `<tbody>` must open its message for the HTML parser to keep it."""
    with timezone.override(zone):  # the rows' exact times, as the page shows them
        return _frames(subscription, update)


def _frames(subscription: Subscription, update: Update) -> list[str]:
    scope = subscription.scope
    frames = []
    inserts = []
    for trace, after in update.inserted:
        target = f"afterend:{scope} #trace-{after}" if after else f"afterbegin:{scope} #trace-rows"
        row = render_to_string(
            f"{TEMPLATE}#trace-row", {"trace": trace, "is_new": True, "max_duration": 0}
        )
        inserts.append(f'<tbody hx-swap-oob="{_attr(target)}">{row}</tbody>')
    if inserts:
        frames.append("".join(inserts))
    rows = [
        render_to_string(
            f"{TEMPLATE}#trace-row",
            {
                "trace": trace,
                "max_duration": 0,
                "oob": f"outerHTML:{scope} #trace-{trace.trace_id}",
            },
        )
        for trace in update.replaced
    ]
    rows += [
        f'<tr hx-swap-oob="{_attr(f"delete:{scope} #trace-{tid}")}"></tr>' for tid in update.gone
    ]
    if update.placeholder_gone:
        rows.append(f'<tr hx-swap-oob="{_attr(f"delete:{scope} #no-rows")}"></tr>')
    if rows:
        frames.append("".join(rows))
    parts = []
    first_url = subscription.filter.first_page_url()
    if update.new_count is not None:
        context = {"new_count": update.new_count, "first_url": first_url}
        parts.append(_fragment("new-traces", f"outerHTML:{scope} #new-traces", context))
    if update.older is not None:
        context = {
            "filter": subscription.filter,
            "first_url": first_url,
            "older_url": subscription.filter.url(after=update.older, before=None),
        }
        parts.append(_fragment("pager", f"outerHTML:{scope} #pager", context))
    if update.cards is not None:
        parts.append(_fragment("cards", f"outerHTML:{scope} #cards", {"stats": update.cards}))
    if update.refresh:
        parts.append(
            render_to_string(
                f"{TEMPLATE}#live-refresh", {"scope": scope, "url": subscription.filter.url()}
            )
        )
    if parts:
        frames.append("".join(parts))
    return frames


def _fragment(name: str, oob: str, context: dict[str, Any]) -> str:
    return render_to_string(f"{TEMPLATE}#{name}", {**context, "oob": oob})


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;")


def _zone(scope: dict[str, Any]) -> tzinfo:
    cookie = _header(scope, b"cookie")
    return zone_from_cookie(parse_cookie(cookie).get("tz")) or UTC


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""
