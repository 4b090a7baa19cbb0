"""Quiet by default: the patient key on issued cards, the quieted_cards
table, and indexes for purging by age.

Only additions, so the previous release keeps working against this schema.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("issued_cards", sa.Column("patient_key", sa.String(64), nullable=True))
    op.create_index("ix_issued_cards_issued_at", "issued_cards", ["issued_at"])
    op.create_index("ix_feedback_received_at", "feedback", ["received_at"])
    op.create_table(
        "quieted_cards",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_quieted_cards_patient", "quieted_cards", ["patient_key", "decided_at"])
    op.create_index("ix_quieted_cards_decided_at", "quieted_cards", ["decided_at"])


def downgrade() -> None:
    op.drop_table("quieted_cards")
    op.drop_index("ix_feedback_received_at", table_name="feedback")
    op.drop_index("ix_issued_cards_issued_at", table_name="issued_cards")
    with op.batch_alter_table("issued_cards") as batch:
        batch.drop_column("patient_key")
