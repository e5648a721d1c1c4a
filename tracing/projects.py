"""Which project a trace belongs to.

The writer gives a trace, when it first stores it, the project its spans claim: the sending
ingest key's, else their resource's `studio.project` or `openinference.project.name`, else
`default`; later spans never move it (the first commit wins). Apps that know more register a
resolver here (the runs app: an AgentScope run's traces take the run's project), so that ingest
and tracing never import them. Resolvers run in the writer's transaction, after the summaries,
and may only move traces that are still in the default project.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tracing.conventions import DEFAULT_PROJECT

__all__ = ["DEFAULT_PROJECT", "resolve", "resolvers"]

# Each is called with a database cursor and the sorted ids of the traces a commit touched.
Resolver = Callable[[Any, Sequence[str]], None]
resolvers: list[Resolver] = []


def resolve(cursor: Any, trace_ids: Sequence[str]) -> None:
    for resolver in resolvers:
        resolver(cursor, trace_ids)
