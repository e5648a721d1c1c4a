"""Where an app built on studio adds to it, so that studio never imports that app (arrows point
one way: runs -> studio). An app fills these in its AppConfig.ready(), before any request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db.models.expressions import BaseExpression
from django.dispatch import Signal

# Applied in order to the ASGI application, each returning the app that serves from then on
# (runs mounts its Socket.IO server this way).
asgi_wrappers: list[Callable[[Any], Any]] = []

# The trace page: annotations added to its one query for the trace, and templates included in
# its list of facts, with `trace` (annotated) in their context.
trace_annotations: dict[str, Callable[[], BaseExpression]] = {}
trace_fact_templates: list[str] = []

# Sent by runstudio once the database is migrated and before it listens: no client is connected
# yet, so a receiver can settle what the last server left behind.
serving = Signal()

# Projects: what besides traces belongs to one. Each source maps a project to how many of its
# things it has and when the newest was active, e.g. {"run": runs_per_project}; the project list,
# the switcher and `/api/projects/` show them as `<source>_count`.
project_counts: dict[str, Callable[[], dict[str, tuple[int, datetime | None]]]] = {}

# Where a project name some client printed really lives, or None (runs: an app registered with
# another project's ingest key prints its own name in the link it logs).
project_aliases: list[Callable[[str], str | None]] = []

# Sent (with `project`) inside the transaction that deletes a project's traces: a receiver
# deletes what else of that project it keeps.
project_deleted = Signal()
