"""comment keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 13:27:23.423822
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "comment_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("message_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["message_pk"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("comment_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_comment_keys_key"), ["key"], unique=False)
        batch_op.create_index(batch_op.f("ix_comment_keys_message_pk"), ["message_pk"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("comment_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_comment_keys_message_pk"))
        batch_op.drop_index(batch_op.f("ix_comment_keys_key"))

    op.drop_table("comment_keys")
