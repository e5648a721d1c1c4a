"""Durations and money as every page shows them: the template filters and the trace page's
rows (whose JSON carries them formatted, so trace.js has no copy of this)."""

from __future__ import annotations


def duration(ns: int) -> str:
    """A duration in the unit that reads best, to three significant digits: 850 ns, 12 µs,
    3.41 ms, 1.27 s, 2 min 5 s, 1 h 3 min."""
    if ns < 0:
        return "-" + duration(-ns)
    if ns < 1_000:
        return f"{ns} ns"
    if ns < 1_000_000:
        return f"{_significant(ns / 1e3)} µs"
    if ns < 1_000_000_000:
        return f"{_significant(ns / 1e6)} ms"
    seconds = ns / 1e9
    if seconds < 60:
        return f"{_significant(seconds)} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _significant(value: float) -> str:
    text = f"{value:.3g}"
    return f"{value:.0f}" if "e" in text else text


def usd(value: float | None) -> str:
    """A cost in US dollars, with the digits a small cost needs ($0.0042, $0.137, $12.40);
    None is "no price" (an unknown model), never $0."""
    if value is None:
        return "no price"
    if value <= 0:
        return "$0.00"
    if value < 0.0001:
        return "<$0.0001"
    if value < 0.01:
        return f"${value:.4f}"
    if value < 1:
        return f"${value:.3f}"
    return f"${value:,.2f}"
