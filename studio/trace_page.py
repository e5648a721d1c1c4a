"""The call tree of the trace page, as the browser gets it: compact JSON for every row, and HTML
for the first rows.

trace.js draws the tree from the JSON, only the rows in view (a 50,000-span trace is 50,000 rows:
as HTML that is 20 MB for Chromium to parse, which takes it many seconds). The HTML rows are for
reading without JavaScript and for the first paint; they are built in Python, one string format
per row, because Django's template engine costs some 10-20 µs per tag. Every value from a span
goes through `html.escape` (span content is untrusted); only the assembled markup is marked safe.
The JSON goes through Django's `json_script`, which escapes what could close the script element.
"""

from __future__ import annotations

from html import escape
from typing import Any

from django.utils.safestring import SafeString, mark_safe

from studio.formatting import duration
from tracing import conventions
from tracing.models import STATUS_ERROR
from tracing.selectors import TraceTree, TreeRow

# Indentation classes exist in trace.css up to this depth; deeper rows share the last one.
MAX_INDENT = 32
# Rows rendered as HTML; trace.js draws the rest (and these again) from the JSON.
HTML_ROWS = 1000
TOKEN_TYPES = frozenset({conventions.LLM, conventions.EMBEDDING})
# Bits of a row's flags in the JSON.
ERROR = 1
ORPHAN = 2

_ROW = (
    '<div class="r d{indent} k-{type}{classes}" id="s-{span_id}" role="treeitem" '
    'aria-level="{level}"{expanded}{selected}><span class="n">{toggle}'
    '<a href="?span={span_id}" tabindex="-1" title="{name}">'
    '<b class="badge badge-{type}">{type}</b> {label}</a>{marks}</span>'
    '<span class="du">{duration}</span><span class="tk">{tokens}</span>'
    '<svg class="bar" aria-hidden="true"><rect x="{x:.2f}%" width="{width:.2f}%" height="100%"/>'
    "</svg></div>"
)
_TOGGLE = '<button type="button" class="tg" tabindex="-1" aria-hidden="true"></button>'
_ORPHAN = (
    '<span class="orphan" title="Its parent span was never received">parent not received</span>'
)
_ERROR = '<span class="err" title="Status ERROR">error</span>'


def _bar(row: TreeRow, start: int, total: int) -> tuple[float, float]:
    """The row's bar on the shared time axis, in percent: (x, width), at least visible."""
    x = min((row.start_ns - start) * 100 / total, 99.85)
    width = max((row.end_ns - row.start_ns) * 100 / total, 0.15)
    return x, min(width, 100 - x)


def render_rows(tree: TraceTree, selected: str = "") -> SafeString:
    """The first HTML_ROWS rows as HTML."""
    start = tree.start_ns
    total = tree.duration_ns or 1
    parts = []
    for row in tree.rows[:HTML_ROWS]:
        span_type = escape(row.span_type or conventions.OTHER)
        classes = ""
        marks = ""
        if row.orphan:
            classes += " o"
            marks += _ORPHAN
        if row.status_code == STATUS_ERROR:
            classes += " e"
            marks += _ERROR
        tokens = ""
        if row.span_type in TOKEN_TYPES and (row.input_tokens or row.output_tokens):
            tokens = f"{row.input_tokens:,} → {row.output_tokens:,}"
        x, width = _bar(row, start, total)
        parts.append(
            _ROW.format(
                indent=min(row.depth, MAX_INDENT),
                type=span_type,
                classes=classes,
                span_id=escape(row.span_id),
                level=row.depth + 1,
                expanded=' aria-expanded="true"' if row.has_children else "",
                selected=' aria-selected="true"' if row.span_id == selected else "",
                toggle=_TOGGLE if row.has_children else "",
                name=escape(row.name),
                label=escape(row.display_name),
                marks=marks,
                duration=duration(row.end_ns - row.start_ns),
                tokens=tokens,
                x=x,
                width=width,
            )
        )
    return mark_safe("".join(parts))  # every span value above went through escape()


def tree_data(tree: TraceTree) -> dict[str, Any]:
    """Every row, in tree order, as compact arrays for trace.js.

    A row is [span id, depth, start offset ns, duration ns, type, flags, input tokens,
    output tokens, name, label]; type, name and label index `types` and `strings` (agent traces
    repeat the same few names thousands of times).
    """
    strings: dict[str, int] = {}
    types: dict[str, int] = {}
    rows = []
    start = tree.start_ns
    for row in tree.rows:
        span_type = row.span_type or conventions.OTHER
        label = row.display_name
        flags = (ERROR if row.status_code == STATUS_ERROR else 0) | (ORPHAN if row.orphan else 0)
        counts = row.span_type in TOKEN_TYPES
        rows.append(
            [
                row.span_id,
                row.depth,
                row.start_ns - start,
                row.end_ns - row.start_ns,
                types.setdefault(span_type, len(types)),
                flags,
                row.input_tokens if counts else 0,
                row.output_tokens if counts else 0,
                strings.setdefault(row.name, len(strings)),
                strings.setdefault(label, len(strings)),
            ]
        )
    return {
        "duration": tree.duration_ns,
        "types": list(types),
        "strings": list(strings),
        "rows": rows,
    }


def axis_ticks(duration_ns: int, count: int = 4) -> list[str]:
    """Labels for the shared time axis: 0, then `count` evenly spaced offsets."""
    return ["0"] + [duration(duration_ns * i // count) for i in range(1, count + 1)]
