"""The periodic sweep of runs whose Studio process was killed (runs.writes.sweep_orphaned_runs,
started by runstudio every STUDIO_RUN_SWEEP_INTERVAL seconds)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Collection

import pytest
from django.db import connection

from runs import sockets, writes
from runs.models import Run
from tests.conftest import ROOT
from tests.test_live import redis_url  # noqa: F401  (a private redis-server per test)


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def status(run_id: str) -> str:
    return Run.objects.get(id=run_id).status


@pytest.mark.django_db(transaction=True)
def test_the_sweep_finishes_runs_nobody_holds_and_leaves_the_others() -> None:
    for run_id in ("orphan", "held"):
        writes.register_run(run_id=run_id, project="p", name=run_id)
    Run.objects.update(started_at=Run.objects.get(id="orphan").started_at - _minutes(5))
    writes.register_run(run_id="young", project="p", name="young")  # its socket is on its way

    def is_live(run_ids: Collection[str]) -> set[str]:
        return {"held"} & set(run_ids)

    thread, stop = writes.sweep_orphaned_runs(is_live, interval=0.1, grace=60)
    try:
        assert wait_for(lambda: status("orphan") == "finished", 10)
        time.sleep(0.3)  # a few more sweeps
        assert (status("held"), status("young")) == ("running", "running")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


@pytest.mark.django_db(transaction=True)
def test_a_run_held_by_a_killed_process_is_finished_once_its_key_expires(
    redis_url: str,  # noqa: F811
) -> None:
    """A process holds a run's socket key in Redis and is killed with -9: nothing releases the
    key, it expires after its TTL, and the next sweep finishes the run. A run held by a live
    process stays running throughout."""
    for run_id in ("killed", "alive"):
        writes.register_run(run_id=run_id, project="p", name=run_id)
    Run.objects.update(started_at=Run.objects.get(id="killed").started_at - _minutes(5))
    connection.close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import os, sys, time
                import django
                os.environ["DJANGO_SETTINGS_MODULE"] = "studio.settings"
                django.setup()
                from runs.sockets import RedisSockets
                RedisSockets.TTL = 2
                registry = RedisSockets({redis_url!r})
                assert registry.claim("killed", "sid-of-the-killed")
                print("claimed", flush=True)
                time.sleep(600)
                """
            ),
        ],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": ""},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "claimed"
    alive = sockets.RedisSockets(redis_url)
    alive.TTL = 2
    assert alive.claim("alive", "sid-of-the-living")
    thread, stop = writes.sweep_orphaned_runs(alive.live, interval=0.2, grace=1)
    try:
        time.sleep(3)  # beyond the TTL: the holder's heartbeat keeps its key
        assert status("killed") == "running"
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert wait_for(lambda: status("killed") == "finished", 10)
        assert status("alive") == "running"
    finally:
        stop.set()
        thread.join(5)
        alive.release("alive", "sid-of-the-living")
        if holder.poll() is None:
            holder.kill()


def _minutes(n: int) -> object:
    from datetime import timedelta

    return timedelta(minutes=n)


def test_runstudio_sweeps_at_the_interval_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings

    from runs import apps

    started: list[tuple[float, float]] = []
    monkeypatch.setattr(settings, "STUDIO_RUN_SWEEP_INTERVAL", 7)
    monkeypatch.setattr(writes, "finish_orphaned_runs", lambda *a, **k: 0)
    monkeypatch.setattr(
        writes,
        "sweep_orphaned_runs",
        lambda is_live, interval, grace: started.append((interval, grace)),
    )
    apps._finish_orphaned_runs()
    assert started == [(7, sockets.RedisSockets.TTL)]
    monkeypatch.setattr(settings, "STUDIO_RUN_SWEEP_INTERVAL", 0)
    apps._finish_orphaned_runs()
    assert len(started) == 1
