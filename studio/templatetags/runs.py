"""Filters for the run and conversation pages."""

from __future__ import annotations

from django import template

from studio import formatting

register = template.Library()


@register.filter
def seconds(value: float | None) -> str:
    """A duration in seconds, in the largest units that read well: 850 ms, 4.2 s, 3 min 5 s."""
    if value is None:
        return ""
    return formatting.milliseconds(value * 1000)


@register.filter
def milliseconds(value: float | None) -> str:
    if value is None:
        return ""
    return formatting.milliseconds(value)
