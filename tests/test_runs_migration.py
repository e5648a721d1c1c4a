"""Moving the run models from `tracing` to `runs` keeps every row of an existing database."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from runs.models import Message, Run, UserInputRequest

BEFORE_THE_MOVE = [("tracing", "0003_trace_cards_index")]


@pytest.mark.django_db(transaction=True)
def test_a_database_made_before_the_move_keeps_its_runs() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_THE_MOVE)
    # The models as the code before the move had them: in `tracing`.
    old = executor.loader.project_state(BEFORE_THE_MOVE).apps
    now = timezone.now()
    old_run = old.get_model("tracing", "Run").objects.create(
        id="kept", project="p", name="made before the move", started_at=now
    )
    old.get_model("tracing", "Message").objects.create(
        run=old_run, msg_id="m1", created_at=now, updated_at=now, content_json='"hello"'
    )
    old.get_model("tracing", "UserInputRequest").objects.create(
        request_id="q1", run=old_run, created_at=now
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    run = Run.objects.get(id="kept")
    assert run.name == "made before the move"
    assert [m.content for m in Message.objects.filter(run=run)] == ["hello"]
    assert UserInputRequest.objects.get(request_id="q1").run_id == "kept"
    assert Run._meta.db_table == "tracing_run"
