"""Settings come from the environment and fail loudly on bad values."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from studio import settings as studio_settings
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("helper", "raw"),
    [
        (studio_settings.env_int, "many"),
        (studio_settings.env_int, "-5"),
        (studio_settings.env_bool, "maybe"),
    ],
)
def test_bad_values_fail_loudly(monkeypatch: pytest.MonkeyPatch, helper, raw: str) -> None:
    monkeypatch.setenv("STUDIO_TEST_KNOB", raw)
    with pytest.raises(ImproperlyConfigured, match="STUDIO_TEST_KNOB"):
        helper("STUDIO_TEST_KNOB", 1)


def test_good_values_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_TEST_KNOB", "42")
    assert studio_settings.env_int("STUDIO_TEST_KNOB", 1) == 42
    monkeypatch.setenv("STUDIO_TEST_KNOB", "off")
    assert studio_settings.env_bool("STUDIO_TEST_KNOB", True) is False
    monkeypatch.delenv("STUDIO_TEST_KNOB")
    assert studio_settings.env_int("STUDIO_TEST_KNOB", 7) == 7


def test_a_bad_port_stops_studio_with_a_message(tmp_path) -> None:
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path), "PORT": "three thousand"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "PORT must be an integer" in result.stderr


@pytest.mark.django_db
def test_sqlite_runs_in_wal_mode() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


def test_a_choice_outside_its_set_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_TEST_KNOB", "sometimes")
    with pytest.raises(ImproperlyConfigured, match="STUDIO_TEST_KNOB must be one of FULL, NORMAL"):
        studio_settings.env_choice("STUDIO_TEST_KNOB", "FULL", ("FULL", "NORMAL"))
    monkeypatch.setenv("STUDIO_TEST_KNOB", "normal")
    assert studio_settings.env_choice("STUDIO_TEST_KNOB", "FULL", ("FULL", "NORMAL")) == "NORMAL"


@pytest.mark.django_db
def test_sqlite_syncs_every_commit_to_disk() -> None:
    # In WAL mode NORMAL can lose the last commits on power loss: commits already acknowledged.
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == 2  # FULL
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] == 20_000
