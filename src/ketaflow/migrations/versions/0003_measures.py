"""measures: assessments, safety alerts, questionnaire links

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "questionnaire_links",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column(
            "instrument_codes",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("schedule_key", sa.String(length=128), nullable=True),
        sa.Column("dosing_session_id", sa.String(length=36), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_questionnaire_links_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["dosing_session_id"],
            ["dosing_sessions.id"],
            name=op.f("fk_questionnaire_links_dosing_session_id_dosing_sessions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_questionnaire_links_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_questionnaire_links")),
        sa.UniqueConstraint("schedule_key", name=op.f("uq_questionnaire_links_schedule_key")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_questionnaire_links_token_sha256")),
    )
    with op.batch_alter_table("questionnaire_links", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_questionnaire_links_patient_id"), ["patient_id"], unique=False
        )

    op.create_table(
        "assessments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("instrument_code", sa.String(length=16), nullable=False),
        sa.Column("instrument_version", sa.String(length=128), nullable=False),
        sa.Column(
            "answers", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("band_code", sa.String(length=32), nullable=True),
        sa.Column(
            "flags", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "subscores", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "imputed_items",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("missing_rule_applied", sa.Text(), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("dosing_session_id", sa.String(length=36), nullable=True),
        sa.Column("timing", sa.String(length=16), nullable=False),
        sa.Column("questionnaire_link_id", sa.String(length=36), nullable=True),
        sa.Column("recorded_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dosing_session_id"],
            ["dosing_sessions.id"],
            name=op.f("fk_assessments_dosing_session_id_dosing_sessions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_assessments_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(
            ["questionnaire_link_id"],
            ["questionnaire_links.id"],
            name=op.f("fk_assessments_questionnaire_link_id_questionnaire_links"),
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by"], ["users.id"], name=op.f("fk_assessments_recorded_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assessments")),
    )
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_assessments_dosing_session_id"), ["dosing_session_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_assessments_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(
            "ix_assessments_patient_instrument_taken",
            ["patient_id", "instrument_code", "taken_at"],
            unique=False,
        )

    op.create_table(
        "safety_alerts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("assessment_id", sa.String(length=36), nullable=False),
        sa.Column("flag_code", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_by", sa.Integer(), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledgement_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["acknowledged_by"], ["users.id"], name=op.f("fk_safety_alerts_acknowledged_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["assessment_id"],
            ["assessments.id"],
            name=op.f("fk_safety_alerts_assessment_id_assessments"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_safety_alerts_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_alerts")),
    )
    with op.batch_alter_table("safety_alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_safety_alerts_acknowledged_at"), ["acknowledged_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_safety_alerts_assessment_id"), ["assessment_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_safety_alerts_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_safety_alerts_patient_id"), ["patient_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("safety_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_safety_alerts_patient_id"))
        batch_op.drop_index(batch_op.f("ix_safety_alerts_created_at"))
        batch_op.drop_index(batch_op.f("ix_safety_alerts_assessment_id"))
        batch_op.drop_index(batch_op.f("ix_safety_alerts_acknowledged_at"))

    op.drop_table("safety_alerts")
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.drop_index("ix_assessments_patient_instrument_taken")
        batch_op.drop_index(batch_op.f("ix_assessments_patient_id"))
        batch_op.drop_index(batch_op.f("ix_assessments_dosing_session_id"))

    op.drop_table("assessments")
    with op.batch_alter_table("questionnaire_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_questionnaire_links_patient_id"))

    op.drop_table("questionnaire_links")
