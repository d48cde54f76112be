"""door refusals: messages refused at the LMTP/SMTP door (552, too large)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "door_refusals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("door_refusals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_door_refusals_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("door_refusals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_door_refusals_at"))
    op.drop_table("door_refusals")
