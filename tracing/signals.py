"""Signals sent by the writer after a commit, so the web side can push updates without ingest
importing it (arrows point one way: ingest -> tracing <- studio)."""

from django.dispatch import Signal

# Sent from the writer thread after each commit, with `trace_ids`: the set of traces whose spans
# (and so whose summary rows) changed. Receivers must be quick and must not raise.
traces_changed = Signal()

# Sent by tracing.retention after each committed purge batch, with `trace_ids` (the traces deleted
# whole, spans and summary row) and `conversation_ids` (theirs, non-empty ones). Sent from the
# purging thread; receivers must be quick and must not raise.
traces_purged = Signal()
