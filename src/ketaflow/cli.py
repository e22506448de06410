"""The ketaflow command line (Typer). `ketaflow --help` lists every command."""

from __future__ import annotations

import functools
import logging
import sys
import threading
from collections.abc import Callable
from typing import Annotated, TypeVar
from zoneinfo import ZoneInfo

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.exc import OperationalError

from ketaflow.core.db import Database
from ketaflow.core.errors import KetaflowError
from ketaflow.core.migrate import schema_is_current, upgrade_to_head
from ketaflow.core.settings import get_settings
from ketaflow.measures.cli import instruments_command, score_command
from ketaflow.pharmacology.cli import simulate_command
from ketaflow.security import service as security
from ketaflow.security.permissions import Role
from ketaflow.treatment import service as treatment

app = typer.Typer(
    help="ketaflow: run a ketamine-assisted therapy program.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
user_app = typer.Typer(help="Staff accounts.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
sessions_app = typer.Typer(help="Dosing sessions.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(audit_app, name="audit")
app.add_typer(sessions_app, name="sessions")
app.command("score")(score_command)
app.command("instruments")(instruments_command)
app.command("simulate")(simulate_command)

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., object])


def fail(message: str, code: int = 2) -> typer.Exit:
    # soft_wrap: one line whatever the terminal's width, so scripts can read it
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(command: F) -> F:
    """Domain errors become one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except KetaflowError as exc:
            field = getattr(exc, "field_name", "")
            raise fail(f"{field}: {exc.detail}" if field else exc.detail) from None
        except ValidationError as exc:  # settings from the environment
            first = exc.errors()[0]
            name = "KETAFLOW_" + "_".join(str(p) for p in first["loc"]).upper()
            raise fail(f"{name}: {first['msg']}") from None
        except OperationalError as exc:  # unreachable server, unwritable file, ...
            # the driver's own reason only: the statement and its parameters may hold PHI
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unavailable"
            raise fail(f"database: {reason}") from None

    return wrapper  # type: ignore[return-value]


def open_database() -> Database:
    settings = get_settings()
    return Database(settings.database_url, settings)


def open_current_database() -> Database:
    """The configured database, refusing one whose schema is missing or out of date."""
    db = open_database()
    if not schema_is_current(db):
        raise fail("the database schema is missing or out of date: run `ketaflow init` first")
    return db


@app.command()
@handle_errors
def init() -> None:
    """Create or upgrade the database schema to the latest revision."""
    db = open_database()
    upgrade_to_head(db)
    console.print(f"database ready: {db.engine.url.render_as_string(hide_password=True)}")


@app.command()
@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8000,
) -> None:
    """Serve the API and web pages."""
    open_current_database().dispose()
    run_server(host, port)


def run_server(host: str, port: int) -> None:
    import uvicorn

    from ketaflow.app import create_app

    threading.Thread(target=_warm_up_pharmacology, name="pk-warm-up", daemon=True).start()
    config = uvicorn.Config(create_app(), host=host, port=port, log_level="info")
    uvicorn.Server(config).run()


def _warm_up_pharmacology() -> None:
    from ketaflow.pharmacology.clinical import warm_up

    log = logging.getLogger("uvicorn.error")  # configured by uvicorn to show INFO
    try:
        log.info("pharmacology kernels ready in %.1f s", warm_up())
    except Exception:  # the server keeps serving; the first PK request compiles instead
        log.exception("pharmacology warm-up failed")


@app.command()
@handle_errors
def demo(
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="serve the demo after building it")
    ] = True,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8000,
) -> None:
    """Build a deterministic demo clinic in the configured database, then serve it."""
    from ketaflow.demo import DEMO_PASSWORD, build_demo_clinic

    settings = get_settings()
    db = Database(settings.database_url, settings)
    upgrade_to_head(db)
    summary = build_demo_clinic(db, settings, progress=console)
    console.print(summary.describe())
    console.print(f"\nOpen http://{host}:{port}/docs and log in (Authorize) as:")
    for username, role in summary.logins:
        console.print(f"  {role:<11} {username:<20} password: {DEMO_PASSWORD}")
    console.print("[yellow]Demo accounts have published passwords: never use real data here.")
    db.dispose()
    if serve_after:
        run_server(host, port)


@user_app.command("add")
@handle_errors
def user_add(
    username: Annotated[str, typer.Option(help="login name")],
    role: Annotated[Role, typer.Option(help="what the user may do")],
    display_name: Annotated[str | None, typer.Option(help="name shown to colleagues")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Add a staff account. The password is prompted for, or read from stdin."""
    db = open_current_database()  # before the password is typed for nothing
    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = security.create_user(
        db,
        get_settings(),
        security.SYSTEM_ACTOR,
        username=username,
        password=password,
        role=role,
        display_name=display_name,
    )
    console.print(f"added {user.username} ({user.role})")


@audit_app.command("verify")
@handle_errors
def audit_verify(
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            metavar="ID:HASH",
            help="a checkpoint printed by an earlier verify and kept outside the database: "
            "fail unless the log still holds that event with that hash",
        ),
    ] = None,
) -> None:
    """Walk the audit hash chain; name the first broken event (exit 1) if any, and print the
    head as a checkpoint to keep elsewhere."""
    from ketaflow.security import audit
    from ketaflow.security.chain import Checkpoint

    expect = None
    if expect_head is not None:
        try:
            expect = Checkpoint.parse(expect_head)
        except ValueError as exc:
            raise fail(f"--expect-head: {exc}") from None
    db = open_current_database()
    try:
        with db.transaction() as session:
            report = audit.verify(session, expect)
    finally:
        db.dispose()
    if not report.intact:
        brk = report.first_break
        assert brk is not None
        raise fail(f"audit chain broken at event {brk.event_id}: {brk.problem}", code=1)
    if report.head is None:
        console.print("audit log empty: 0 events, nothing to verify", highlight=False)
        return
    keyed = (
        f" (signed with the audit key from event {report.keyed_from} on)"
        if report.keyed_from is not None
        else " (no audit key: plain SHA-256)"
    )
    console.print(
        f"audit chain intact: {report.events_checked} events verified{keyed}",
        highlight=False,
        soft_wrap=True,
    )
    if expect is not None:
        console.print(f"checkpoint {expect} still holds", highlight=False, soft_wrap=True)
    # the checkpoint to keep outside the database, for a later --expect-head
    console.print(f"head: {report.head}", highlight=False, soft_wrap=True)


@sessions_app.command("today")
@handle_errors
def sessions_today(
    as_user: Annotated[
        str, typer.Option("--as", help="the staff account this is read as (audited)")
    ],
    json_output: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print the clinic's day: sessions by state, alarms, overdue readings, what is due."""
    import json

    from fastapi.encoders import jsonable_encoder
    from rich.table import Table

    from ketaflow.treatment import worklist
    from ketaflow.treatment.clinic import load_clinic_config

    settings = get_settings()
    db = open_current_database()
    actor = security.actor_by_username(db, as_user, "cli")
    day = worklist.today(db, actor, load_clinic_config(settings))
    if json_output:
        console.print_json(json.dumps(jsonable_encoder(day)))
        return
    zone = settings.clinic_timezone
    table = Table(title=f"{settings.clinic_name}: {day['date']} ({zone})")
    for column in ("time", "chair", "patient", "MRN", "protocol", "session", "state"):
        table.add_column(column)
    chairs = {c.id: c.name for c in treatment.list_chairs(db, actor)}
    for entry in day["sessions"]:
        local = entry["scheduled_start"].astimezone(ZoneInfo(zone))
        table.add_row(
            local.strftime("%H:%M"),
            chairs.get(entry["chair_id"], "-"),
            entry["patient_name"],
            entry["mrn"],
            entry["protocol_id"],
            f"{entry['kind']} #{entry['sequence']}",
            entry["state"],
        )
    console.print(table)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(day["counts_by_state"].items()))
    console.print(f"sessions: {len(day['sessions'])} ({counts or 'none'})")
    for label, key in (
        ("open alarms", "open_alarms"),
        ("overdue readings", "overdue_readings"),
        ("therapy due", "therapy_due"),
        ("safety alerts", "safety_alerts"),
        ("courses needing a decision", "courses_needing_decision"),
    ):
        console.print(f"{label}: {len(day[key])}")


def main() -> None:
    """The `ketaflow` entry point: Typer's usage errors (an unknown option, a value of the
    wrong type) become one line and exit code 2 too, instead of a framed box."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        err_console.print("error: aborted", soft_wrap=True)
        sys.exit(1)
    except typer.TyperException as exc:  # Click's ClickException, UsageError and kin
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: show its help
            exc.show()
            sys.exit(exc.exit_code)
        message = " ".join(exc.format_message().split())
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        sys.exit(fail(message + hint, getattr(exc, "exit_code", 2)).exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
