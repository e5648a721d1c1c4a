"""Durations as the pages show them, shared by the template filters and the trace page's rows."""

from __future__ import annotations


def minutes_and_hours(seconds: float) -> str:
    """A duration of a minute or more: 3 min 5 s, 2 h 10 min."""
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def milliseconds(ms: float) -> str:
    """A duration of a millisecond or more, in the largest units that read well: 850 ms, 4.2 s,
    3 min 5 s."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    return minutes_and_hours(seconds)
