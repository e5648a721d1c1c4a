"""Filters for the run and conversation pages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def seconds(value: float | None) -> str:
    """A duration in seconds, in the largest units that read well: 850 ms, 4.2 s, 3 min 5 s."""
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@register.filter
def milliseconds(value: float | None) -> str:
    if value is None:
        return ""
    return seconds(value / 1000)
