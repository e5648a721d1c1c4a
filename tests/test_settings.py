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
    assert result.returncode == 2
    assert result.stderr == (
        "Bad setting: PORT must be an integer from 0 to 65535, got 'three thousand'\n"
    )


def _run_with(tmp_path, command: list[str], **variables: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path / "data"), **variables}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PORT", "abc", "PORT must be an integer from 0 to 65535, got 'abc'"),
        ("OTEL_GRPC_PORT", "70000", "OTEL_GRPC_PORT must be an integer from 0 to 65535, got 70000"),
        ("DEBUG", "maybe", "DEBUG must be true or false, got 'maybe'"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("DATABASE_URL", "mysql://me:secret@db/studio", "got 'mysql://me:***@db/studio'"),
        ("STUDIO_DATA_DIR", "/proc/studio", "STUDIO_DATA_DIR must be a directory Studio can"),
    ],
)
def test_a_bad_setting_is_one_line_and_status_2(
    tmp_path, variable: str, value: str, expected: str
) -> None:
    # `runstudio` is what a person types; the settings fail before it would listen anywhere.
    variables = {variable: value}
    if variable != "DATABASE_URL":
        variables["DATABASE_URL"] = ""  # the SQLite default, so STUDIO_DATA_DIR counts
    result = _run_with(tmp_path, ["manage.py", "runstudio", "--port", "0"], **variables)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Bad setting: ")
    assert expected in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "secret" not in result.stderr


def test_the_asgi_entry_stops_on_a_bad_setting_too(tmp_path) -> None:
    # What `uvicorn studio.asgi:application` imports.
    result = _run_with(tmp_path, ["-c", "import studio.asgi"], STUDIO_WRITE_TIMEOUT="soon")
    assert result.returncode == 2
    assert result.stderr == "Bad setting: STUDIO_WRITE_TIMEOUT must be an integer, got 'soon'\n"


def test_more_helpers_name_the_variable_the_value_and_what_is_expected(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("STUDIO_TEST_KNOB", "warning")
    assert studio_settings.env_choice("STUDIO_TEST_KNOB", "INFO", ("INFO", "WARNING")) == "WARNING"
    monkeypatch.setenv("STUDIO_TEST_KNOB", "postgres://me:pw@db:5432/studio")
    database = studio_settings.env_database_url("STUDIO_TEST_KNOB", "sqlite:///x")
    assert (database["ENGINE"], database["NAME"]) == ("django.db.backends.postgresql", "studio")
    monkeypatch.setenv("STUDIO_TEST_KNOB", "postgres://me:pw@db:port/studio")
    with pytest.raises(
        ImproperlyConfigured,
        match=r"STUDIO_TEST_KNOB must be a URL .*'postgres://me:\*\*\*@db:port/studio'",
    ):
        studio_settings.env_database_url("STUDIO_TEST_KNOB", "sqlite:///x")
    (tmp_path / "file").write_text("")
    with pytest.raises(ImproperlyConfigured, match="STUDIO_TEST_KNOB must be a directory"):
        studio_settings.make_dir("STUDIO_TEST_KNOB", tmp_path / "file" / "data")


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


PG = "postgres://u:p@127.0.0.1:1/studio"
SHOW_POOL = [
    "-c",
    "from studio.boot import load_settings; load_settings(); from django.conf import settings; "
    "d = settings.DATABASES['default']; "
    "print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'], d.get('OPTIONS', {}).get('pool'))",
]


def test_postgresql_connections_come_from_a_pool_sized_by_the_settings(tmp_path) -> None:
    result = _run_with(tmp_path, SHOW_POOL, DATABASE_URL=PG, STUDIO_DB_POOL_MAX="4")
    assert result.returncode == 0, result.stderr
    # Not persistent (Django's advice under ASGI); the pool checks a connection before lending it.
    assert result.stdout.strip() == "0 True {'min_size': 2, 'max_size': 4, 'timeout': 10}"
    result = _run_with(tmp_path, SHOW_POOL, DATABASE_URL=PG, STUDIO_DB_POOL_MAX="0")
    assert result.stdout.strip() == "0 True None"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"STUDIO_DB_POOL_MIN": "5", "STUDIO_DB_POOL_MAX": "3"}, "STUDIO_DB_POOL_MIN must be at"),
        ({"CONN_MAX_AGE": "60"}, "CONN_MAX_AGE must be 0 while the connection pool is on"),
    ],
)
def test_a_pool_setting_that_cannot_work_fails_loudly(
    tmp_path, variables: dict[str, str], expected: str
) -> None:
    result = _run_with(tmp_path, SHOW_POOL, DATABASE_URL=PG, **variables)
    assert result.returncode == 2
    assert result.stderr.startswith("Bad setting: ") and expected in result.stderr
