"""Filters for the trace page."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import escape

from django import template
from django.utils.safestring import SafeString, mark_safe

from studio import formatting

register = template.Library()

_BREAK_AFTER = re.compile(r"([._])")


@register.filter
def duration(ns: int | None) -> str:
    return "" if ns is None or ns == "" else formatting.duration(int(ns))


@register.filter
def wrap_name(name: str) -> SafeString:
    """An attribute name that may wrap after its dots and underscores, and nowhere else
    (`gen_ai.usage.input_tokens`, not `input_token / s`): a <wbr> after each."""
    return mark_safe(_BREAK_AFTER.sub(r"\1<wbr>", escape(str(name))))  # escaped first


@register.filter
def utc_time(moment: datetime | None) -> str:
    """To the microsecond, in UTC, for the title of a time shown in the viewer's zone."""
    if moment is None:
        return ""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f} UTC"
