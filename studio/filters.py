"""The traces filter, one definition for the overview page and for `/api/traces/`: parsed from the
URL (every filter lives there, so pages are bookmarkable and Back works), validated, paged by
keyset, and turned back into URLs for links.

A bad value never fails the page: it is dropped, and the page says which one and why. The API
answers 400 with the same errors, under the names the client sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from tracing import clauses as attribute_clauses
from tracing import conventions, search, totals
from tracing import timeline as timelines
from tracing.clauses import Clause
from tracing.models import (
    NO_TRACES,
    STATUS_CODES,
    Cursor,
    Span,
    Trace,
    TracePage,
    TraceQuerySet,
    TraceStats,
    datetime_to_ns,
)

PAGE_SIZE = 50
# A broad search's cards count this many matches at most ("200+"): each is a trace walked.
STATS_BOUND = 100

RANGES: dict[str, tuple[str, timedelta | None]] = {
    "15m": ("Last 15 minutes", timedelta(minutes=15)),
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
    "all": ("All time", None),
}
CUSTOM_RANGE = "custom"
# All time: a local Studio shows what it has, and unfiltered totals are the cheap case (they walk
# the duration index); a narrower preset is one click away.
DEFAULT_RANGE = "all"

# The names both the page and the API used to take: still accepted, never written.
ALIASES = {
    "min_duration_ms": "min_duration",
    "conversation_id": "conversation",
    "ordering": "sort",
}

# URL value -> Trace column. The page's four have a (column, trace_id) index, so sorting and
# paging are done by the database across all pages; the API's others sort the matched rows.
SORT_FIELDS = {
    "start": "start_ns",
    "duration": "duration_ns",
    "spans": "span_count",
    "tokens": "total_tokens",
    "errors": "error_count",
    "cost": "cost_usd",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "name": "name",
}
# The API's older sort values (its result fields), still accepted.
SORT_ALIASES = {
    "start_time": "start",
    "duration_ms": "duration",
    "span_count": "spans",
    "total_tokens": "tokens",
    "error_count": "errors",
}
# What the page's sort menu offers.
SORTS = {
    "-start": "Newest first",
    "start": "Oldest first",
    "-duration": "Slowest first",
    "duration": "Fastest first",
    "-spans": "Most spans",
    "spans": "Fewest spans",
    "-tokens": "Most tokens",
    "tokens": "Fewest tokens",
    "-cost": "Most expensive",
    "cost": "Cheapest",
}
DEFAULT_SORT = "-start"

# A cursor is "<sort value>_<trace id>"; the value is an integer, or a name (any text) when
# sorting by name.
_CURSOR = re.compile(r"^(.*)_([0-9a-f]{32})$", re.S)
_INTEGER = re.compile(r"^-?\d{1,20}$")
# Sort columns whose cursor value is a float (USD).
FLOAT_SORTS = frozenset({"cost_usd"})
_FLOAT = re.compile(r"^-?\d{1,20}(\.\d{1,20})?(e[-+]?\d{1,3})?$")


def as_trace_id(text: str) -> str:
    """The trace id in `text` as Studio stores it, or "" if it is not one. Accepts the forms
    other tools print: upper case, a 0x prefix, UUID dashes."""
    candidate = text.strip().lower().removeprefix("0x").replace("-", "")
    return candidate if conventions.is_hex_id(candidate, 32) else ""


def zone_from_cookie(value: str | None) -> ZoneInfo | None:
    """The browser's time zone, which overview.js stores in the `tz` cookie."""
    if not value or len(value) > 64:
        return None
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return None


class CursorField(forms.CharField):
    """A cursor with its value still text: the form's clean() types it by the sort."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strip=False, **kwargs)

    def to_python(self, value: Any) -> tuple[str, str] | None:  # type: ignore[override]
        text = super().to_python(value)
        if not text:
            return None
        match = _CURSOR.match(text)
        if match is None:
            raise forms.ValidationError("not a page cursor")
        return match[1], match[2]


class UpperChoiceField(forms.ChoiceField):
    def to_python(self, value: Any) -> str:
        return super().to_python(value).upper()


class SortField(forms.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        choices = [(f"{sign}{key}", "") for key in SORT_FIELDS for sign in ("-", "")]
        super().__init__(choices=choices, **kwargs)

    def to_python(self, value: Any) -> str:
        text = super().to_python(value)
        sign, key = ("-", text[1:]) if text.startswith("-") else ("", text)
        return f"{sign}{SORT_ALIASES.get(key, key)}" if key else ""


class TraceFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=500)
    service = forms.CharField(required=False, max_length=500, strip=False)
    status = UpperChoiceField(required=False, choices=[(s, s) for s in STATUS_CODES])
    range = forms.ChoiceField(required=False, choices=[(r, r) for r in [*RANGES, CUSTOM_RANGE]])
    since = forms.DateTimeField(required=False)
    until = forms.DateTimeField(required=False)
    min_duration = forms.FloatField(required=False, min_value=0, max_value=1e12)
    sort = SortField(required=False)
    after = CursorField(required=False)
    before = CursorField(required=False)
    # Rows to skip before the first page, for API clients that count; pages then have cursors.
    offset = forms.IntegerField(required=False, min_value=0, max_value=10**9)
    # The traces of one conversation (`gen_ai.conversation.id`); `run` is the same for a run id.
    conversation = forms.CharField(required=False, max_length=500)
    run = forms.CharField(required=False, max_length=500)
    # One project's traces; none: every project's.
    project = forms.CharField(required=False, max_length=conventions.MAX_PROJECT_LENGTH)
    # Trace-level filters: on the summary row, or on one of its spans.
    max_duration = forms.FloatField(required=False, min_value=0, max_value=1e12)
    min_spans = forms.IntegerField(required=False, min_value=0, max_value=10**9)
    max_spans = forms.IntegerField(required=False, min_value=0, max_value=10**9)
    min_tokens = forms.IntegerField(required=False, min_value=0, max_value=10**15)
    max_tokens = forms.IntegerField(required=False, min_value=0, max_value=10**15)
    # USD, on the cost stored at ingest (Trace.cost_usd).
    min_cost = forms.FloatField(required=False, min_value=0, max_value=1e12)
    max_cost = forms.FloatField(required=False, min_value=0, max_value=1e12)
    error_type = forms.ChoiceField(
        required=False, choices=[(kind, kind) for kind in conventions.SPAN_TYPES]
    )
    model = forms.CharField(required=False, max_length=500)
    agent = forms.CharField(required=False, max_length=500)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            self.add_error("until", "must be later than the start of the range")
        sort_field = SORT_FIELDS[(data.get("sort") or DEFAULT_SORT).lstrip("-")]
        by_name = sort_field == "name"
        for name in ("after", "before"):
            cursor = data.get(name)
            if cursor is None or by_name:
                continue
            if sort_field in FLOAT_SORTS and _FLOAT.match(cursor[0]):
                data[name] = (float(cursor[0]), cursor[1])
            elif sort_field not in FLOAT_SORTS and _INTEGER.match(cursor[0]):
                data[name] = (int(cursor[0]), cursor[1])
            else:
                self.add_error(name, "not a page cursor for this sort")
        if data.get("offset") and (data.get("after") or data.get("before")):
            self.add_error("offset", "cannot be combined with a page cursor")
        return data


def canonical_query(data: QueryDict | Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The parameters under their one name (an older name counts only when the new one is
    absent), and the name each was sent as, to name it back in errors."""
    values: dict[str, str] = {}
    sent_as: dict[str, str] = {}
    for key in sorted(data, key=lambda key: key not in ALIASES):  # aliases first, then overridden
        name = ALIASES.get(key, key)
        values[name] = data.get(key) or ""
        sent_as[name] = key
    return values, sent_as


FIELD_LABELS = {
    "q": "search",
    "service": "service",
    "status": "status",
    "range": "time range",
    "since": "from",
    "until": "to",
    "min_duration": "minimum duration",
    "sort": "sort",
    "after": "page",
    "before": "page",
    "offset": "offset",
    "conversation": "conversation",
    "run": "run",
    "project": "project",
    "max_duration": "maximum duration",
    "min_spans": "minimum span count",
    "max_spans": "maximum span count",
    "min_tokens": "minimum tokens",
    "max_tokens": "maximum tokens",
    "min_cost": "minimum cost",
    "max_cost": "maximum cost",
    "error_type": "error span type",
    "model": "model",
    "agent": "agent",
}
# The repeated attribute clause parameter.
ATTR = "attr"
MAX_CLAUSES = 10


@dataclass(frozen=True)
class TraceFilter:
    """What the overview shows: a validated, immutable view of its URL."""

    q: str = ""
    service: str = ""
    status: str = ""
    range: str = DEFAULT_RANGE
    since: datetime | None = None
    until: datetime | None = None
    min_duration_ms: float | None = None
    sort: str = DEFAULT_SORT
    after: Cursor | None = None
    before: Cursor | None = None
    offset: int = 0
    conversation: str = ""
    project: str = ""
    clauses: tuple[Clause, ...] = ()
    max_duration_ms: float | None = None
    min_spans: int | None = None
    max_spans: int | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None
    min_cost: float | None = None
    max_cost: float | None = None
    error_type: str = ""
    model: str = ""
    agent: str = ""
    # The caller reads every match (the API's count, the charts): only a broad search is walked
    # then, not a word in few spans of many traces (walked_search). Not from the URL.
    every: bool = field(default=False, compare=False)
    # What was wrong with the URL, for the page to say, and for the API's 400 (by parameter).
    problems: tuple[str, ...] = field(default=(), compare=False)
    errors: dict[str, list[str]] = field(default_factory=dict, compare=False)

    @classmethod
    def from_query(cls, data: QueryDict | Mapping[str, str]) -> TraceFilter:
        """Parse a query string; naive times are read in the active time zone."""
        values, sent_as = canonical_query(data)
        form = TraceFilterForm(values)
        form.is_valid()
        clean = form.cleaned_data
        problems = tuple(
            f"Ignored the {FIELD_LABELS[name]} “{str(form.data.get(name, ''))[:80]}”: "
            f"{' '.join(str(error) for error in errors).rstrip('.').lower()}."
            for name, errors in form.errors.items()
            if name in FIELD_LABELS
        )
        errors = {
            sent_as.get(name, name): [str(error) for error in messages]
            for name, messages in form.errors.items()
        }
        since, until = clean.get("since"), clean.get("until")
        chosen = clean.get("range") or ""
        if chosen in RANGES:
            since = until = None
            range_ = chosen
        elif since or until or chosen == CUSTOM_RANGE:
            range_ = CUSTOM_RANGE
        else:
            range_ = DEFAULT_RANGE
        after, before = clean.get("after"), clean.get("before")
        if after and before:
            before = None
        raw_clauses = data.getlist(ATTR) if isinstance(data, QueryDict) else [data.get(ATTR, "")]
        clauses, clause_problems = attribute_clauses.parse_all(
            [str(text) for text in raw_clauses if text is not None]
        )
        if len(clauses) > MAX_CLAUSES:
            clause_problems.append(f"at most {MAX_CLAUSES} attribute filters at once")
            clauses = clauses[:MAX_CLAUSES]
        if clause_problems:
            problems += tuple(
                f"Ignored the attribute filter {problem.rstrip('.')}."
                for problem in clause_problems
            )
            errors[ATTR] = clause_problems
        return cls(
            q=(clean.get("q") or "").strip(),
            service=clean.get("service") or "",
            status=clean.get("status") or "",
            range=range_,
            since=since,
            until=until,
            min_duration_ms=clean.get("min_duration"),
            sort=clean.get("sort") or DEFAULT_SORT,
            after=after,
            before=before,
            offset=clean.get("offset") or 0,
            conversation=(clean.get("conversation") or clean.get("run") or "").strip(),
            project=(clean.get("project") or "").strip(),
            clauses=tuple(clauses),
            max_duration_ms=clean.get("max_duration"),
            min_spans=clean.get("min_spans"),
            max_spans=clean.get("max_spans"),
            min_tokens=clean.get("min_tokens"),
            max_tokens=clean.get("max_tokens"),
            min_cost=clean.get("min_cost"),
            max_cost=clean.get("max_cost"),
            error_type=clean.get("error_type") or "",
            model=(clean.get("model") or "").strip(),
            agent=(clean.get("agent") or "").strip(),
            problems=problems,
            errors=errors,
        )

    # What it selects.

    @property
    def trace_id(self) -> str:
        """The trace id searched for, if the search box holds one."""
        return as_trace_id(self.q)

    @property
    def sort_field(self) -> str:
        return SORT_FIELDS[self.sort.lstrip("-")]

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def is_first_page(self) -> bool:
        return self.after is None and self.before is None

    @property
    def is_newest_first(self) -> bool:
        return self.sort == DEFAULT_SORT

    @property
    def narrows(self) -> bool:
        """True if this filter can hide traces (so an empty result may not mean an empty Studio)."""
        return bool(
            self.q
            or self.service
            or self.status
            or self.range != DEFAULT_RANGE
            or self.min_duration_ms is not None
            or self.conversation
            or self.has_trace_filters
        )

    @property
    def has_trace_filters(self) -> bool:
        """Any of the attribute and trace-level filters (the page opens its panel for them)."""
        return bool(
            self.clauses
            or self.max_duration_ms is not None
            or self.min_spans is not None
            or self.max_spans is not None
            or self.min_tokens is not None
            or self.max_tokens is not None
            or self.min_cost is not None
            or self.max_cost is not None
            or self.error_type
            or self.model
            or self.agent
        )

    def window_ns(self, now: datetime | None = None) -> tuple[int | None, int | None]:
        if self.range == CUSTOM_RANGE:
            return (
                datetime_to_ns(self.since) if self.since else None,
                datetime_to_ns(self.until) if self.until else None,
            )
        span = RANGES[self.range][1]
        if span is None:
            return None, None
        return datetime_to_ns((now or timezone.now()) - span), None

    @cached_property
    def broad_search(self) -> bool:
        """A search for a word in many spans (tracing.search.is_broad): its rows are found by
        walking the traces in the page's order, and its cards count up to STATS_BOUND."""
        return bool(self.q) and not self.trace_id and search.is_broad(self.q)

    @cached_property
    def walked_search(self) -> bool:
        """A broad search, or one for a word in few spans of many traces (search.is_broad's
        `walk_mid`): a page whose cards count up to STATS_BOUND walks its traces too. What
        reads every match (`every`: the API's count, the charts) collects the latter instead."""
        if self.every:
            return self.broad_search
        return bool(self.q) and not self.trace_id and search.is_broad(self.q, walk_mid=True)

    @cached_property
    def broad_clauses(self) -> bool:
        """The same for the attribute clauses (tracing.search.clauses_broad)."""
        return bool(self.clauses) and not self.trace_id and search.clauses_broad(self.clauses)

    @cached_property
    def walked_spans(self) -> frozenset[str]:
        """The span-level filters (error span type, model, agent) that hold on many spans: their
        traces are walked in the page's order too (one bounded index read each to tell)."""
        if self.trace_id:
            return frozenset()
        filtered = Span.objects.trace_filters(
            error_type=self.error_type, model=self.model, agent=self.agent
        )
        return frozenset(name for name, spans in filtered.items() if spans.holds_widely())

    @property
    def counts_first(self) -> bool:
        """True if the cards count the first STATS_BOUND matches in the page's order only (a
        walked search or clauses). Span-level filters that are walked count up to the bound only
        when none of them is narrow (a narrow one bounds the matches)."""
        span_filters = sum(1 for name in ("error_type", "model", "agent") if getattr(self, name))
        walked = bool(self.walked_spans) and len(self.walked_spans) == span_filters
        return self.walked_search or self.broad_clauses or walked

    def stats(self, traces: TraceQuerySet, page: TracePage | None = None) -> TraceStats:
        """The cards: over every match, or for a walked search over the first STATS_BOUND in
        the page's order (the count then reads "at least"): by their ids when `page`, read
        from these `traces`, holds them (a walk is not done twice)."""
        if not self.narrows:
            # Every trace (of the project): the totals kept as traces change, not a read of each.
            return totals.stats(self.project)
        if not self.counts_first:
            return traces.stats(walk=self.walks_durations)
        first = (self.sort_field, self.descending, STATS_BOUND)
        if page is None or page.first is None:
            return traces.stats(first=first)
        if not page.first:
            return NO_TRACES  # walked, and nothing matched
        return Trace.objects.using(traces.db).filter(trace_id__in=page.first).stats(first=first)

    def count(self, traces: TraceQuerySet) -> int:
        """How many traces `traces` (what this filter selects) holds."""
        if not self.narrows:  # every trace (of the project)
            return totals.count(self.project)
        return traces.count()

    @property
    def walks_durations(self) -> bool:
        """True if this filter tests only the columns the duration index carries (time range,
        status, duration, spans, tokens, cost, service, project): its cards' percentiles can
        walk that index."""
        return not (
            self.q
            or self.clauses
            or self.conversation
            or self.error_type
            or self.model
            or self.agent
            or self.trace_id
        )

    def timeline(self, traces: TraceQuerySet, now: datetime | None = None) -> timelines.Timeline:
        """The overview's charts of `traces` (what this filter selects) over the filter's time
        range (a preset's ends now); for a broad search, over its first STATS_BOUND matches in
        the page's order, like the cards."""
        since_ns, until_ns = self.window_ns(now)
        if since_ns is not None and until_ns is None:
            until_ns = datetime_to_ns(now or timezone.now())
        if self.trace_id:
            since_ns = until_ns = None
        if self.broad_search or self.broad_clauses:
            return timelines.timeline(self.in_page_order(traces)[:STATS_BOUND], since_ns, until_ns)
        # The window is the buckets' bounds (tracing.timeline), not a filter of the rows; the
        # charts read every match (`every`).
        unwindowed = replace(self, range=DEFAULT_RANGE, since=None, until=None, every=True)
        return timelines.timeline(unwindowed.traces(now), since_ns, until_ns)

    def in_page_order(self, traces: TraceQuerySet) -> TraceQuerySet:
        """`traces` in the order the page shows them (the order the capped cards count in)."""
        prefix = "-" if self.descending else ""
        return traces.order_by(f"{prefix}{self.sort_field}", f"{prefix}trace_id")

    def charts_query(self) -> str:
        """The query of this filter's charts: what it selects, whatever page or sort is shown."""
        return replace(self, after=None, before=None, offset=0, sort=DEFAULT_SORT).query_string()

    def traces(self, now: datetime | None = None) -> TraceQuerySet:
        # A pasted trace id means "that trace", wherever it is in the project: the other filters
        # would only hide it (they stay in the URL, for when the search box is cleared).
        if self.trace_id:
            return Trace.objects.matching(project=self.project).filter(trace_id=self.trace_id)
        since_ns, until_ns = self.window_ns(now)
        return Trace.objects.matching(
            q=self.q,
            service=self.service,
            status=self.status,
            since_ns=since_ns,
            until_ns=until_ns,
            min_duration_ns=(
                int(self.min_duration_ms * 1_000_000) if self.min_duration_ms is not None else None
            ),
            conversation_id=self.conversation,
            project=self.project,
            clauses=self.clauses,
            min_spans=self.min_spans,
            max_spans=self.max_spans,
            min_tokens=self.min_tokens,
            max_tokens=self.max_tokens,
            min_cost=self.min_cost,
            max_cost=self.max_cost,
            max_duration_ns=(
                int(self.max_duration_ms * 1_000_000) if self.max_duration_ms is not None else None
            ),
            error_type=self.error_type,
            model=self.model,
            agent=self.agent,
            broad_text=self.walked_search,
            broad_clauses=self.broad_clauses,
            walked_spans=self.walked_spans,
        )

    def page(self, size: int, traces: TraceQuerySet | None = None) -> TracePage:
        """The page of `traces` (default: what this filter selects) this filter's URL asks for.
        A first page whose cards count the first STATS_BOUND matches reads that many rows in
        one walk and carries their ids (`first`), which stats() then counts: the walk to the
        page's end and the one to the bound were the same walk twice (two thirds of a
        mid-breadth search's time)."""
        traces = self.traces() if traces is None else traces
        first = self.is_first_page and not self.offset and not self.every
        if first and size < STATS_BOUND and self.counts_first:
            rows = list(self.in_page_order(traces)[:STATS_BOUND])
            shown = rows[:size]
            last = shown[-1] if len(rows) > size else None
            following = (getattr(last, self.sort_field), last.trace_id) if last else None
            return TracePage(shown, None, following, first=[row.trace_id for row in rows])
        return traces.keyset_page(
            self.sort_field,
            descending=self.descending,
            after=self.after,
            before=self.before,
            offset=self.offset,
            size=size,
        )

    # Back to URLs.

    def params(self) -> dict[str, str]:
        """The query parameters that differ from the defaults, in a stable order (without the
        repeated `attr`: see items())."""
        params: dict[str, str] = {}
        if self.q:
            params["q"] = self.q
        if self.service:
            params["service"] = self.service
        if self.status:
            params["status"] = self.status
        if self.range == CUSTOM_RANGE:
            params["range"] = CUSTOM_RANGE
            if self.since:
                params["since"] = _local_iso(self.since)
            if self.until:
                params["until"] = _local_iso(self.until)
        elif self.range != DEFAULT_RANGE:
            params["range"] = self.range
        if self.min_duration_ms is not None:
            params["min_duration"] = f"{self.min_duration_ms:g}"
        if self.conversation:
            params["conversation"] = self.conversation
        if self.project:
            params["project"] = self.project
        if self.max_duration_ms is not None:
            params["max_duration"] = f"{self.max_duration_ms:g}"
        for name in ("min_spans", "max_spans", "min_tokens", "max_tokens"):
            if getattr(self, name) is not None:
                params[name] = str(getattr(self, name))
        for name in ("min_cost", "max_cost"):
            if getattr(self, name) is not None:
                params[name] = f"{getattr(self, name):.12g}"
        for name in ("error_type", "model", "agent"):
            if getattr(self, name):
                params[name] = getattr(self, name)
        if self.sort != DEFAULT_SORT:
            params["sort"] = self.sort
        if self.after:
            params["after"] = format_cursor(self.after)
        if self.before:
            params["before"] = format_cursor(self.before)
        if self.offset:
            params["offset"] = str(self.offset)
        return params

    def items(self) -> list[tuple[str, str]]:
        """params() with each attribute clause as its own `attr`, after `q`."""
        params = list(self.params().items())
        at = 1 if params and params[0][0] == "q" else 0
        params[at:at] = [(ATTR, str(clause)) for clause in self.clauses]
        return params

    def query_string(self) -> str:
        return urlencode(self.items())

    def url(self, **changes: Any) -> str:
        if "after" in changes or "before" in changes:
            changes.setdefault("offset", 0)  # a cursor says where the page is
        target = replace(self, **changes) if changes else self
        items = target.items()
        # A project's overview lives at its home, `/projects/<name>/`.
        base = project_url(target.project)
        rest = [(key, value) for key, value in items if key != "project"]
        return base + (f"?{urlencode(rest)}" if rest else "")

    @property
    def home_url(self) -> str:
        """The overview this filter narrows: the project's home, or every trace's."""
        return project_url(self.project)

    def first_page_url(self) -> str:
        return self.url(after=None, before=None)

    def sort_url(self, key: str) -> str:
        """A column header's link: that column, biggest first; again, smallest first."""
        sort = key if self.sort == f"-{key}" else f"-{key}"
        return self.url(sort=sort, after=None, before=None)

    def aria_sort(self, key: str) -> str:
        if self.sort.lstrip("-") != key:
            return "none"
        return "descending" if self.descending else "ascending"

    def local_input(self, name: str) -> str:
        """`since` / `until` as a datetime-local input wants them."""
        value = getattr(self, name)
        return _local_iso(value) if value else ""


def project_url(project: str) -> str:
    if not project:
        return reverse("trace_list")
    return reverse("project_home", kwargs={"project": project})


def format_cursor(cursor: Cursor) -> str:
    return f"{cursor[0]}_{cursor[1]}"


def _local_iso(value: datetime) -> str:
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return local.replace(tzinfo=None).isoformat(
        timespec="minutes" if not local.second else "seconds"
    )
