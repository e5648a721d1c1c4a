"""Filters for the trace page."""

from __future__ import annotations

from django import template

from studio.trace_page import format_duration

register = template.Library()


@register.filter
def duration(ns: int | None) -> str:
    """Nanoseconds as a duration that reads well: 850 ns, 12 µs, 3.41 ms, 1.27 s, 2 min 5 s."""
    if ns is None or ns == "":
        return ""
    return format_duration(int(ns))
