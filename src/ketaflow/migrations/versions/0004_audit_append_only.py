"""audit log: append-only in the database, and the key that signed each event

Triggers refuse UPDATE and DELETE on audit_events (and TRUNCATE on PostgreSQL, which row
triggers do not see; on SQLite also an INSERT OR REPLACE over an existing event, whose
implicit delete fires no delete trigger). They stop the application's own connection, a
mistaken script or a console session; anyone allowed to drop a trigger can still remove them,
which is what the hash chain, its key and checkpoints are for. `key_id` names the key whose
HMAC an event's hash is (NULL: plain SHA-256, every event written before a key was set).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Literal SQL: a revision is frozen text, whatever the code does later.
_SQLITE_TRIGGERS = {
    "audit_events_no_update": """
        CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END""",
    "audit_events_no_delete": """
        CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END""",
    "audit_events_no_replace": """
        CREATE TRIGGER audit_events_no_replace BEFORE INSERT ON audit_events
        WHEN EXISTS (SELECT 1 FROM audit_events WHERE id = NEW.id)
        BEGIN SELECT RAISE(ABORT,
            'audit_events is append-only: INSERT over an existing event refused'); END""",
}

_POSTGRES_FUNCTION = """
    CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
            USING ERRCODE = 'restrict_violation';
    END
    $$"""

_POSTGRES_TRIGGERS = {
    "audit_events_no_update_delete": """
        CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change()""",
    "audit_events_no_truncate": """
        CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change()""",
}


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in _SQLITE_TRIGGERS.values():
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(_POSTGRES_FUNCTION)
        for statement in _POSTGRES_TRIGGERS.values():
            op.execute(statement)
    else:  # pragma: no cover - ketaflow runs on SQLite and PostgreSQL only
        raise NotImplementedError(f"no append-only triggers for {dialect}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    elif dialect == "postgresql":
        for name in _POSTGRES_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_refuse_change()")

    # Dropping the column rebuilds the table on SQLite: the triggers are gone by now.
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("key_id")
