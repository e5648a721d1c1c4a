"""Filters for the trace overview: nanosecond times and durations, compact numbers, dollars."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.urls import get_script_prefix, reverse
from django.utils import timezone

from studio import formatting
from studio.filters import TraceFilter
from tracing import conventions
from tracing.models import ns_to_datetime
from tracing.retention import policy_for

register = template.Library()

# A valid trace id standing in for each row's in the reversed trace page path.
_PLACEHOLDER = "f" * 32
# The trace page path per script prefix (reverse()'s own input besides the id).
_TRACE_PATHS: dict[str, str] = {}


@register.filter
def trace_url(trace_id: str) -> str:
    """`{% url 'trace_detail' trace_id %}` for the overview's rows: reverse() costs tens of
    microseconds a call, a few milliseconds a page of rows, so the path is reversed once (per
    script prefix) and each stored id (32 hex digits) put in its place."""
    if not conventions.is_hex_id(trace_id, 32):
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
    if moment is None:
        return ""
    local = timezone.localtime(moment)
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


@register.simple_tag
def retention_policy() -> str:
    """The retention policy in force, in a few words (settings only: no query)."""
    return policy_for().describe()
