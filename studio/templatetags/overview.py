"""The trace overview's rows (`trace_row`) and its filters: nanosecond times and durations, compact
numbers, dollars."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from html import escape

from django import template
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from studio import formatting
from studio.filters import TraceFilter
from tracing import conventions
from tracing.models import Trace, ns_to_datetime
from tracing.retention import policy_for
from tracing.search import Snippet

register = template.Library()

# A valid trace id standing in for each row's in the reversed trace page path.
_PLACEHOLDER = "f" * 32
# The trace page path per script prefix (reverse()'s own input besides the id).
_TRACE_PATHS: dict[str, str] = {}


@register.filter
def trace_url(trace_id: str) -> str:
    """`{% url 'trace_detail' trace_id %}` for the overview's rows: reverse() costs tens of
    microseconds a call, a few milliseconds a page of rows, so the path is reversed once (per
    script prefix) and each stored id (32 hex digits) put in its place."""
    if not conventions.is_hex_id(trace_id, 32):
        return reverse("trace_detail", args=[trace_id])  # refuses what the path would not take
    prefix = get_script_prefix()
    path = _TRACE_PATHS.get(prefix)
    if path is None:
        path = _TRACE_PATHS[prefix] = reverse("trace_detail", args=[_PLACEHOLDER])
    return path.replace(_PLACEHOLDER, trace_id)


@register.filter
def ns_duration(ns: int | None) -> str:
    return "–" if ns is None else formatting.duration(int(ns))


@register.filter
def ns_time(ns: int | None) -> datetime | None:
    return ns_to_datetime(ns)


@register.filter
def exact_time(moment: datetime | None) -> str:
    """To the millisecond, in the viewer's time zone, naming it."""
    return "" if moment is None else _exact(timezone.localtime(moment))


def _exact(local: datetime) -> str:
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local.tzname()}"


@register.filter
def ago(moment: datetime | None) -> str:
    """Short relative time, as overview.js keeps refreshing it: 12 s ago, 5 min ago, 3 h ago."""
    if moment is None:
        return ""
    seconds = int((timezone.now() - moment).total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@register.filter
def iso_time(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@register.filter
def compact(value: int | None) -> str:
    """12, 1.2k, 34k, 5.6M: token counts that fit a narrow column (the exact number goes in a
    title)."""
    if value is None:
        return "–"
    for threshold, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(value) >= threshold:
            scaled = value / threshold
            return f"{scaled:.1f}{suffix}" if scaled < 10 else f"{scaled:.0f}{suffix}"
    return str(value)


@register.filter
def usd(value: float | None) -> str:
    """None is "no price" (model calls without a price), never $0; the trace page uses it too."""
    return formatting.usd(None if value is None else float(value))


@register.filter
def percent_of(part: int, whole: int) -> str:
    if not whole:
        return "0%"
    share = 100 * part / whole
    return f"{share:.1f}%" if share < 10 else f"{share:.0f}%"


@register.filter
def local_input(trace_filter: TraceFilter, name: str) -> str:
    """`since` / `until` of a filter, as a datetime-local input shows them."""
    return trace_filter.local_input(name)


@register.filter
def bar_width(duration_ns: int, longest_ns: int) -> str:
    """A duration bar's length, in percent of the longest on the page (SVG units, no style)."""
    if not longest_ns or duration_ns <= 0:
        return "0"
    return f"{min(100.0, 100 * duration_ns / longest_ns):.1f}"


# What a preview cell shows of the input and output (`truncatechars`'s count).
PREVIEW_CHARS = 200


# The markup of a row, as the page's template had it (its whitespace too); trace_row fills in
# the {placeholders}.
_ROW = """
<tr class="trace-row{classes}" id="trace-{tid}"{oob}
    data-trace-id="{tid}" data-start-ns="{start_ns}"
    data-duration-ns="{duration_ns}" data-version="{span_count}"
    data-href="{url}">
  <td class="col-select"><input type="checkbox" name="trace_id" value="{tid}" aria-label="Select trace {name}"></td>
  <td class="col-status"><span class="status status-{status}">{status}</span></td>
  <td class="col-name">
    <div class="name-cell">
      <a class="trace-link" href="{url}"{name_title}>{name}</a>
      {badge}
      {no_root}
      <div class="info">
        <button type="button" class="info-button" aria-label="Trace details" aria-describedby="info-{tid}" aria-expanded="false">i</button>
        <div class="info-card" id="info-{tid}">
          <dl>
            <dt>Trace id</dt><dd><code>{tid}</code> <button type="button" class="copy" data-copy="{tid}">Copy</button></dd>
            <dt>Root span id</dt><dd><code>{root_span_id}</code></dd>
            <dt>Service</dt><dd>{service_or_dash}</dd>
            <dt>Conversation</dt><dd>{conversation}</dd>
            <dt>Start</dt><dd>{exact_start}</dd>
            <dt>End</dt><dd>{exact_end}</dd>
          </dl>
        </div>
      </div>
    </div>
      {snippet}
  </td>
  <td class="col-service">{service}</td>
  <td class="col-start"><time datetime="{iso_start}" title="{exact_start}">{ago}</time></td>
  <td class="col-duration num">
    <span class="duration">{duration}</span>
    <svg class="bar" viewBox="0 0 100 4" preserveAspectRatio="none" aria-hidden="true" focusable="false"><rect height="4" width="{bar}"></rect></svg>
  </td>
  <td class="col-spans num">{span_count}</td>
  <td class="col-errors num">{errors}</td>
  <td class="col-tokens num">{tokens}</td>
  <td class="col-cost num">{cost}</td>
  <td class="col-preview"><span class="preview">{input_preview}</span></td>
  <td class="col-preview col-output"><span class="preview">{output_preview}</span></td>
</tr>
"""  # noqa: E501 (the lines of the markup as the template had them)
_BADGE = '<span class="badge badge-{0}">{0}</span>'
_NO_ROOT = (
    '<span class="no-root" title="The root span has not arrived yet: named after the earliest '
    'span">no root yet</span>'
)
_SNIPPET = (
    '<a class="match-snippet" href="{url}?span={span_id}" title="Open the trace at the matching '
    'span">{parts}</a>'
)
_NO_PRICE = '<span class="muted no-price" title="{0} model call{1} without a price">no price</span>'
_UNPRICED = '<span class="muted" title="{0} more model call{1} without a price">+?</span>'
_NO_COST = '<span class="muted" title="No priced model calls">—</span>'
_NO_TOKENS = '<span class="muted" title="No model calls">—</span>'


@register.simple_tag(takes_context=True)
def trace_row(context: template.Context, trace: Trace) -> SafeString:
    """A row of the overview, for the page, its htmx swap and the live push alike (the
    `trace-row` partial): `max_duration` (the longest on the page, for the bar), `is_new` and
    `oob` (the push's hx-swap-oob) come from the context.

    Built in Python, one string format per row, as the trace page builds its rows
    (studio.trace_page): as template variables a row was some 40 lookups, filters and escapes,
    4-5 ms of every page of 50 rows. Every value from a span goes through `html.escape`; numbers,
    times and the 32-hex trace id have nothing to escape; only the assembled row is marked safe.
    """
    name = trace.display_name or "(unnamed)"
    start = ns_to_datetime(trace.start_ns)
    zone = timezone.get_current_timezone()  # once for both times
    end = trace.end_time
    tid = trace.trace_id if conventions.is_hex_id(trace.trace_id, 32) else escape(trace.trace_id)
    url = trace_url(trace.trace_id)
    status = trace.status  # one of STATUS_NAMES
    classes = " is-error" if status == "ERROR" else ""
    if context.get("is_new"):
        classes += " is-new"
    oob = context.get("oob")
    unpriced = trace.unpriced_spans
    plural = "" if unpriced == 1 else "s"
    cost = trace.cost
    if cost is None:
        cost_cell = _NO_PRICE.format(unpriced, plural)
    elif cost or unpriced:
        cost_cell = usd(cost) + (_UNPRICED.format(unpriced, plural) if unpriced else "")
    else:
        cost_cell = _NO_COST
    snippet = getattr(trace, "snippet", None)
    return SafeString(
        _ROW.format(
            classes=classes,
            tid=tid,
            oob=f' hx-swap-oob="{conditional_escape(oob)}"' if oob else "",
            start_ns=trace.start_ns,
            duration_ns=trace.duration_ns,
            span_count=trace.span_count,
            url=escape(url),
            name=escape(name),
            name_title=f' title="{escape(trace.name)}"' if name != trace.name else "",
            status=status,
            badge=_BADGE.format(escape(trace.span_type)) if trace.span_type else "",
            no_root="" if trace.has_root else _NO_ROOT,
            root_span_id=escape(trace.root_span_id or "–"),
            service_or_dash=escape(trace.service_name or "–"),
            conversation=escape(trace.conversation_id or "–"),
            exact_start=_exact(start.astimezone(zone)),
            exact_end="" if end is None else _exact(end.astimezone(zone)),
            snippet=_snippet(url, snippet) if snippet else "",
            service=escape(trace.service_name),
            iso_start=iso_time(start),
            ago=ago(start),
            duration=ns_duration(trace.duration_ns),
            bar=bar_width(trace.duration_ns, context.get("max_duration") or 0),
            errors=(
                f'<span class="errors">{trace.error_count}</span>'
                if trace.error_count
                else '<span class="muted">0</span>'
            ),
            tokens=(
                f"{compact(trace.input_tokens)} / {compact(trace.output_tokens)}"
                if trace.input_tokens or trace.output_tokens
                else _NO_TOKENS
            ),
            cost=cost_cell,
            input_preview=escape(_preview(trace.input_preview)),
            output_preview=escape(_preview(trace.output_preview)),
        )
    )


def _snippet(url: str, snippet: Snippet) -> str:
    """Where a search matched (tracing.search.snippets): the match in `<mark>`."""
    parts = "".join(
        f"<mark>{escape(part)}</mark>" if hit else escape(part) for part, hit in snippet.parts
    )
    return _SNIPPET.format(url=escape(url), span_id=escape(snippet.span_id), parts=parts)


def _preview(text: str) -> str:
    """`truncatechars:200`, without its character walk for the text that fits (most previews):
    a normalized text no longer than the limit in code points is no longer in characters."""
    text = unicodedata.normalize("NFC", text)
    return text if len(text) <= PREVIEW_CHARS else Truncator(text).chars(PREVIEW_CHARS)


@register.simple_tag
def retention_policy() -> str:
    """The retention policy in force, in a few words (settings only: no query)."""
    return policy_for().describe()
