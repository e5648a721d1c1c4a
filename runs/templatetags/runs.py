"""Filters for the run pages (trace durations use the overview's `ns_duration`)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from studio import formatting

register = template.Library()


@register.filter
def cost(row: Any) -> SafeString:
    """The cost of a run, a trace, a conversation or a model's calls (anything with `cost_usd`
    and `unpriced_spans`), as the overview's Cost column reads: "no price" when every model
    call was without one, "$x + n without a price" when some were, "—" without model calls."""
    cost_usd = getattr(row, "cost_usd", None) or 0.0
    unpriced = getattr(row, "unpriced_spans", None) or 0
    if unpriced and not cost_usd:
        return mark_safe(
            '<span class="muted no-price" title="Model calls whose model has no price (see '
            'Prices)">no price</span>'
        )
    if not cost_usd:
        return mark_safe('<span class="muted" title="No priced model calls">—</span>')
    text = formatting.usd(float(cost_usd))
    if not unpriced:
        return format_html("{}", text)
    return format_html(
        '{} <span class="muted" title="Model calls whose model has no price (see Prices)">'
        "+ {} without a price</span>",
        text,
        unpriced,
    )


@register.filter
def seconds(value: float | None) -> str:
    return "" if value is None else formatting.duration(int(value * 1e9))
