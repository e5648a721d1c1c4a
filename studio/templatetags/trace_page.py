"""Filters for the trace page."""

from __future__ import annotations

from django import template

from studio import formatting

register = template.Library()


@register.filter
def duration(ns: int | None) -> str:
    return "" if ns is None or ns == "" else formatting.duration(int(ns))
