"""The Alembic revisions build exactly the schema the models describe, on both stores."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ketaflow.schema import metadata


def test_migrations_match_the_models(fresh_db):
    with fresh_db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_upgrading_twice_is_harmless(fresh_db):
    from ketaflow.core.migrate import upgrade_to_head

    upgrade_to_head(fresh_db)
    with fresh_db.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() is not None
