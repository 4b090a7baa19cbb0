"""Initial schema: issued cards, feedback, used JWT ids.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issued_cards",
        sa.Column("card_uuid", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(100), nullable=False),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("hook_instance", sa.String(128), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("suggestion_uuids", sa.Text, nullable=False),
    )
    op.create_index("ix_issued_cards_card_id", "issued_cards", ["card_id"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service_id", sa.String(100), nullable=False),
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("card_id", sa.String(64), nullable=True),
        sa.Column("known_card", sa.Boolean, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_timestamp", sa.String(64), nullable=False),
        sa.Column("accepted_suggestions", sa.Text, nullable=False),
        sa.Column("override_reason_system", sa.String(255), nullable=True),
        sa.Column("override_reason_code", sa.String(128), nullable=True),
        sa.Column("override_comment", sa.Text, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("card_uuid", "outcome", "outcome_timestamp", name="uq_feedback_entry"),
    )
    op.create_index("ix_feedback_card_id", "feedback", ["card_id"])
    op.create_table(
        "used_jtis",
        sa.Column("issuer", sa.String(255), primary_key=True),
        sa.Column("jti", sa.String(255), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_used_jtis_expires_at", "used_jtis", ["expires_at"])


def downgrade() -> None:
    op.drop_table("used_jtis")
    op.drop_table("feedback")
    op.drop_table("issued_cards")
