"""Who each card was issued to: issued_cards.client, the verified client
(issuer and tenant, hashed) or "anonymous", so feedback from any other client
is not taken for the card's (cds_service.store).

Only an addition, so the previous release keeps working against this schema.
Cards issued before it (and by a previous release's pods during a rolling
upgrade) have no client: their feedback is stored and counted but quiets
nothing (README, "Upgrades").

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("issued_cards", sa.Column("client", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issued_cards") as batch:
        batch.drop_column("client")
