"""Schema upgrades through Alembic (never create_all in production paths)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from ketaflow.core.db import Database


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "ketaflow:migrations")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(db: Database) -> None:
    config = alembic_config(db.url)
    # Alembic runs its own transaction; SQLite's BEGIN IMMEDIATE listener is on our engine, so
    # hand Alembic a connection from it.
    with db.engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()


def schema_is_current(db: Database) -> bool:
    """Whether the database is at the newest Alembic revision (False if it has no schema)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(alembic_config(db.url)).get_heads())
    with db.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == heads
