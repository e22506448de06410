"""The command line: init, user add, demo, with one-line errors and exit code 2."""

from __future__ import annotations

import pytest
from sqlalchemy import func, inspect, select
from typer.testing import CliRunner

from ketaflow.cli import app, fail, main
from ketaflow.core.db import Database
from ketaflow.core.settings import get_settings
from ketaflow.patients.tables import Patient
from ketaflow.security.tables import User

runner = CliRunner()


@pytest.fixture
def cli_db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("KETAFLOW_DATABASE_URL", url)
    monkeypatch.setenv("KETAFLOW_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("KETAFLOW_ARGON2_MEMORY_KIB", "256")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def _count(url, model, *where):
    db = Database(url)
    with db.transaction() as session:
        value = session.scalar(select(func.count()).select_from(model).where(*where))
    db.dispose()
    return value


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "serve", "demo", "user", "audit"):
        assert command in result.output


def test_init_then_user_add_from_stdin(cli_db):
    assert runner.invoke(app, ["init"]).exit_code == 0
    result = runner.invoke(
        app,
        ["user", "add", "--username", "nurse.ann", "--role", "nurse"],
        input="a fine long password\n",
    )
    assert result.exit_code == 0, result.output
    assert "added nurse.ann (nurse)" in result.output
    assert _count(cli_db, User, User.username == "nurse.ann") == 1


def test_a_long_error_stays_one_line(capsys):
    message = "the value given for this option cannot be used, " * 4  # ~200 characters
    exit_ = fail(message)
    assert exit_.exit_code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}".strip()]


def _run_main(monkeypatch, capsys, *args):
    monkeypatch.setattr("sys.argv", ["ketaflow", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    captured = capsys.readouterr()
    return stop.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["simulate", "--patients", "many"], "Invalid value for '--patients'"),
        (["score", "--no-such-option"], "No such option: --no-such-option"),
        (["no-such-command"], "No such command 'no-such-command'"),
    ],
)
def test_usage_errors_from_the_entry_point_are_one_line_and_exit_2(monkeypatch, capsys, args, says):
    code, out, err = _run_main(monkeypatch, capsys, *args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and says in lines[0]
    assert "--help" in lines[0]  # where to look next


def test_the_entry_point_exits_0_on_success_and_shows_help_for_a_bare_group(monkeypatch, capsys):
    code, out, _ = _run_main(monkeypatch, capsys, "instruments")
    assert code == 0
    assert "PHQ-9" in out
    code, out, err = _run_main(monkeypatch, capsys, "user")
    assert code == 2  # as Click does for a group called without a command
    assert "Usage" in out + err


def test_user_add_errors_are_one_line_and_exit_2(cli_db):
    runner.invoke(app, ["init"])
    short = runner.invoke(
        app, ["user", "add", "--username", "nurse.bo", "--role", "nurse"], input="short\n"
    )
    assert short.exit_code == 2
    assert short.output.strip().splitlines() == [
        "error: password: password must be at least 12 characters"
    ]
    bad_role = runner.invoke(
        app,
        ["user", "add", "--username", "x.y", "--role", "wizard"],
        input="a fine long password\n",
    )
    assert bad_role.exit_code == 2
    runner.invoke(
        app,
        ["user", "add", "--username", "nurse.cy", "--role", "nurse"],
        input="a fine long password\n",
    )
    taken = runner.invoke(
        app,
        ["user", "add", "--username", "nurse.cy", "--role", "nurse"],
        input="a fine long password\n",
    )
    assert taken.exit_code == 2
    assert "taken" in taken.output


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "verify"],
        ["sessions", "today", "--as", "nurse.x"],
        ["user", "add", "--username", "nurse.x", "--role", "nurse"],
        ["serve"],
    ],
)
def test_a_database_without_schema_is_one_line_not_a_traceback(cli_db, args):
    result = runner.invoke(app, args, input="a fine long password\n")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: the database schema is missing or out of date: run `ketaflow init` first"
    ]
    db = Database(cli_db)
    try:
        assert inspect(db.engine).get_table_names() == []  # nothing created behind init's back
    finally:
        db.dispose()


def test_an_unreachable_database_is_one_line_without_the_statement(tmp_path, monkeypatch):
    missing = tmp_path / "no" / "such" / "dir" / "k.db"
    monkeypatch.setenv("KETAFLOW_DATABASE_URL", f"sqlite:///{missing}")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["init"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: database: unable to open database file"]


def test_demo_builds_a_deterministic_clinic_once(cli_db):
    first = runner.invoke(app, ["demo", "--no-serve"])
    assert first.exit_code == 0, first.output
    assert "dr.rivera" in first.output and "ketaflow-demo" in first.output
    assert _count(cli_db, Patient) == 40
    assert _count(cli_db, User, User.is_demo.is_(True)) == 7
    again = runner.invoke(app, ["demo", "--no-serve"])
    assert again.exit_code == 0
    assert "existing" in again.output
    assert _count(cli_db, Patient) == 40
    verify = runner.invoke(app, ["audit", "verify"])
    assert verify.exit_code == 0 and "intact" in verify.output


def test_demo_refuses_a_database_with_real_accounts(cli_db):
    runner.invoke(app, ["init"])
    runner.invoke(
        app,
        ["user", "add", "--username", "real.doc", "--role", "prescriber"],
        input="a fine long password\n",
    )
    result = runner.invoke(app, ["demo", "--no-serve"])
    assert result.exit_code == 2
    assert "real staff accounts" in result.output
    assert _count(cli_db, Patient) == 0


def test_bad_settings_are_a_clear_error(cli_db, monkeypatch):
    monkeypatch.setenv("KETAFLOW_CLINIC_TIMEZONE", "Mars/Olympus")
    get_settings.cache_clear()
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: KETAFLOW_CLINIC_TIMEZONE: Value error, unknown time zone 'Mars/Olympus'"
    )


def test_sessions_today_prints_the_day_for_a_named_user(cli_db):
    assert runner.invoke(app, ["demo", "--no-serve"]).exit_code == 0
    day = runner.invoke(app, ["sessions", "today", "--as", "nurse.kim"])
    assert day.exit_code == 0, day.output
    assert "open alarms: 1" in day.output
    assert "sessions:" in day.output
    as_json = runner.invoke(app, ["sessions", "today", "--as", "nurse.kim", "--json"])
    assert as_json.exit_code == 0
    import json

    body = json.loads(as_json.output)
    assert {"sessions", "open_alarms", "therapy_due", "safety_alerts"} <= set(body)
    assert len(body["safety_alerts"]) >= 1
    refused = runner.invoke(app, ["sessions", "today", "--as", "auditor.nguyen"])
    assert refused.exit_code == 2
    assert refused.output.startswith("error: role 'auditor' may not worklist.read")
    unknown = runner.invoke(app, ["sessions", "today", "--as", "nobody"])
    assert unknown.exit_code == 2


def test_serve_refuses_a_database_without_the_schema(cli_db):
    result = runner.invoke(app, ["serve", "--port", "8799"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: the database schema is missing or out of date: run `ketaflow init` first"
    ]
