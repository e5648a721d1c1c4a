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


def usd(value: float) -> str:
    """Dollars to the precision a model call's cost needs: $0, <$0.0001, $0.0037, $1.25,
    $1,234."""
    if value <= 0:
        return "$0"
    if value < 0.0001:
        return "<$0.0001"
    if value < 0.01:
        return f"${value:.4f}"
    if value < 1000:
        return f"${value:.2f}"
    return f"${value:,.0f}"
