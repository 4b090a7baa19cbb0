"""New triggers by content: issued_cards.trigger_keys and quieted_cards.trigger_keys,
the keyed hashes (patient_key.trigger_key) of the coded data a card rested on, so a
quieted card comes back when it rests on coded data the card acted on did not, dated
or not (a diagnosis back-entered with an old onset, a worse kidney band the same day).

Only additions, so the previous release keeps working against this schema. Cards
issued and feedback given before it (and by a previous release's pods during a rolling
upgrade) have no keys: their quieting is lifted by a newer date alone, as before.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("issued_cards", sa.Column("trigger_keys", sa.Text, nullable=True))
    op.add_column("quieted_cards", sa.Column("trigger_keys", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quieted_cards") as batch:
        batch.drop_column("trigger_keys")
    with op.batch_alter_table("issued_cards") as batch:
        batch.drop_column("trigger_keys")
