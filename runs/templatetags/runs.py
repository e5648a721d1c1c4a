"""Filters for the run pages (trace durations use the overview's `ns_duration`)."""

from __future__ import annotations

from django import template

from studio import formatting

register = template.Library()


@register.filter
def seconds(value: float | None) -> str:
    return "" if value is None else formatting.duration(int(value * 1e9))
