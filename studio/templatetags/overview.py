"""Filters for the trace overview: nanosecond times and durations, compact numbers, dollars."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any

from django import template
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from studio import formatting
from studio.filters import TraceFilter
from tracing.models import Trace, ns_to_datetime
from tracing.retention import policy_for

register = template.Library()

_HEX_ID = re.compile(r"[0-9a-f]{32}")

# A valid trace id standing in for each row's in the reversed trace page path.
_PLACEHOLDER = "f" * 32
# The trace page path per script prefix (reverse()'s own input besides the id).
_TRACE_PATHS: dict[str, str] = {}


@register.filter
def trace_url(trace_id: str) -> str:
    """`{% url 'trace_detail' trace_id %}` for the overview's rows: reverse() costs tens of
    microseconds a call, a few milliseconds a page of rows, so the path is reversed once (per
    script prefix) and each stored id (32 hex digits) put in its place."""
    if not _HEX_ID.fullmatch(trace_id):
        return reverse("trace_detail", args=[trace_id])  # refuses what the path would not take
    prefix = get_script_prefix()
    path = _TRACE_PATHS.get(prefix)
    if path is None:
        path = _TRACE_PATHS[prefix] = reverse("trace_detail", args=[_PLACEHOLDER])
    return path.replace(_PLACEHOLDER, trace_id)


@register.filter
def ns_duration(ns: int | None) -> str:
    return "–" if ns is None else formatting.duration(int(ns))


@register.filter
def ns_time(ns: int | None) -> datetime | None:
    return ns_to_datetime(ns)


@register.filter
def exact_time(moment: datetime | None) -> str:
    """To the millisecond, in the viewer's time zone, naming it."""
    return "" if moment is None else _exact(timezone.localtime(moment))


def _exact(local: datetime) -> str:
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local.tzname()}"


@register.filter
def ago(moment: datetime | None) -> str:
    """Short relative time, as overview.js keeps refreshing it: 12 s ago, 5 min ago, 3 h ago."""
    if moment is None:
        return ""
    seconds = int((timezone.now() - moment).total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@register.filter
def iso_time(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@register.filter
def compact(value: int | None) -> str:
    """12, 1.2k, 34k, 5.6M: token counts that fit a narrow column (the exact number goes in a
    title)."""
    if value is None:
        return "–"
    for threshold, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(value) >= threshold:
            scaled = value / threshold
            return f"{scaled:.1f}{suffix}" if scaled < 10 else f"{scaled:.0f}{suffix}"
    return str(value)


@register.filter
def usd(value: float | None) -> str:
    """None is "no price" (model calls without a price), never $0; the trace page uses it too."""
    return formatting.usd(None if value is None else float(value))


@register.filter
def percent_of(part: int, whole: int) -> str:
    if not whole:
        return "0%"
    share = 100 * part / whole
    return f"{share:.1f}%" if share < 10 else f"{share:.0f}%"


@register.filter
def local_input(trace_filter: TraceFilter, name: str) -> str:
    """`since` / `until` of a filter, as a datetime-local input shows them."""
    return trace_filter.local_input(name)


@register.filter
def bar_width(duration_ns: int, longest_ns: int) -> str:
    """A duration bar's length, in percent of the longest on the page (SVG units, no style)."""
    if not longest_ns or duration_ns <= 0:
        return "0"
    return f"{min(100.0, 100 * duration_ns / longest_ns):.1f}"


# What a preview cell shows of the input and output (`truncatechars`'s count).
PREVIEW_CHARS = 200


@register.filter
def overview_row(trace: Trace, longest_ns: int) -> dict[str, Any]:
    """What a row of the overview shows, formatted once in Python: the row partial then does
    dictionary lookups, not a filter chain and an attribute lookup per cell (about 40 variables
    a row, 50 rows a page). Text from the spans stays plain `str`, escaped by the template;
    what is made of numbers and the trace id's path is marked safe, to skip escaping it."""
    name = trace.display_name or "(unnamed)"
    start = ns_to_datetime(trace.start_ns)
    zone = timezone.get_current_timezone()  # once for both times
    exact_start = _exact(start.astimezone(zone))
    end = trace.end_time
    cost = trace.cost
    unpriced = trace.unpriced_spans
    tokens = (
        f"{compact(trace.input_tokens)} / {compact(trace.output_tokens)}"
        if trace.input_tokens or trace.output_tokens
        else ""
    )
    tid = trace.trace_id
    return {
        # A stored id is 32 hex digits (ingest checks): nothing to escape, seven times a row.
        "tid": SafeString(tid) if _HEX_ID.fullmatch(tid) else tid,
        "status": SafeString(trace.status),  # one of STATUS_NAMES
        "name": name,
        # The raw name in a title when the label (or the placeholder) stands in for it.
        "name_title": trace.name if name != trace.name else None,
        "url": SafeString(trace_url(tid)),
        "start_ns": SafeString(trace.start_ns),
        "duration_ns": SafeString(trace.duration_ns),
        "span_count": SafeString(trace.span_count),
        "errors": SafeString(trace.error_count) if trace.error_count else "",
        "exact_start": SafeString(exact_start),
        "exact_end": SafeString("" if end is None else _exact(end.astimezone(zone))),
        "iso_start": SafeString(iso_time(start)),
        "ago": SafeString(ago(start)),
        "duration": SafeString(ns_duration(trace.duration_ns)),
        "bar": SafeString(bar_width(trace.duration_ns, longest_ns)),
        "tokens": SafeString(tokens),
        "cost": None if cost is None else SafeString(usd(cost)),
        "has_cost": bool(cost or unpriced),
        "unpriced": SafeString(unpriced) if unpriced else "",
        "unpriced_s": "" if unpriced == 1 else "s",
        "span_type": trace.span_type,
        "no_root": not trace.has_root,
        "snippet": getattr(trace, "snippet", None),
        "root_span_id": trace.root_span_id or "–",
        "service_name": trace.service_name,
        "service_or_dash": trace.service_name or "–",
        "conversation": trace.conversation_id or "–",
        "input_preview": _preview(trace.input_preview),
        "output_preview": _preview(trace.output_preview),
    }


def _preview(text: str) -> str:
    """`truncatechars:200`, without its character walk for the text that fits (most previews):
    a normalized text no longer than the limit in code points is no longer in characters."""
    text = unicodedata.normalize("NFC", text)
    return text if len(text) <= PREVIEW_CHARS else Truncator(text).chars(PREVIEW_CHARS)


@register.simple_tag
def retention_policy() -> str:
    """The retention policy in force, in a few words (settings only: no query)."""
    return policy_for().describe()
