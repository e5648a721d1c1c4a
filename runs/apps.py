from typing import Any

from django.apps import AppConfig
from django.conf import settings


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runs (the AgentScope Studio drop-in)"

    def ready(self) -> None:
        from runs import sockets, writes
        from runs.models import Run
        from studio import extensions
        from tracing import projects

        if sockets.mount not in extensions.asgi_wrappers:
            extensions.asgi_wrappers.append(sockets.mount)
        # The trace page links to its conversation and, in the same query, to its run.
        extensions.trace_annotations["run_name"] = Run.objects.name_of_conversation
        if "runs/trace_facts.html" not in extensions.trace_fact_templates:
            extensions.trace_fact_templates.append("runs/trace_facts.html")
        extensions.serving.connect(_finish_orphaned_runs, dispatch_uid="runs.orphans")
        # Runs belong to projects: counted in the project list, deleted with their project.
        extensions.project_counts["run"] = Run.objects.per_project
        extensions.project_deleted.connect(_delete_project_runs, dispatch_uid="runs.projects")
        if writes.project_of_app not in extensions.project_aliases:
            extensions.project_aliases.append(writes.project_of_app)
        # An AgentScope run's traces take the run's project.
        if writes.trace_projects_from_runs not in projects.resolvers:
            projects.resolvers.append(writes.trace_projects_from_runs)
        from runs.retention import purge_runs
        from tracing import retention

        # A run goes with its last trace: tracing purges traces and calls this after.
        retention.register_purger("runs", purge_runs)


def _finish_orphaned_runs(**kwargs: Any) -> None:
    from runs import sockets, writes

    # No socket is connected to this process yet: runs marked running lost theirs with the last
    # Studio, unless another process (a worker, a host) holds them now.
    writes.finish_orphaned_runs(sockets.live_runs)
    # Then now and again, for the runs of a Studio process killed since (kill -9 releases
    # nothing): once its holder keys expire. In the process that sent `serving`, the only one
    # (or, with --workers, the parent, which lives as long as they do).
    interval = settings.STUDIO_RUN_SWEEP_INTERVAL
    if interval:
        writes.sweep_orphaned_runs(sockets.live_runs, interval, grace=sockets.RedisSockets.TTL)


def _delete_project_runs(*, project: str, **kwargs: Any) -> None:
    from runs.models import Run

    # Their messages and input requests go with them (ForeignKey CASCADE).
    Run.objects.filter(project=project).delete()
