"""imap claims and service health: the daemon's leases on IMAP messages, and its health for `intake status`

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 13:31:46.801654
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imap_claims",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("mailbox", sa.Text(), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account", "mailbox", "uidvalidity", "uid", name="uq_imap_claims_key"),
    )
    with op.batch_alter_table("imap_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_imap_claims_lease_until"), ["lease_until"], unique=False)

    op.create_table(
        "service_health",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("status_line", sa.Text(), nullable=True),
        sa.Column("mailbox", sa.Text(), nullable=True),
        sa.Column("last_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("backlog", sa.Integer(), nullable=True),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clamd_ok", sa.Boolean(), nullable=True),
        sa.Column("clamd_version", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("owner"),
    )


def downgrade() -> None:
    op.drop_table("service_health")
    with op.batch_alter_table("imap_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_imap_claims_lease_until"))
    op.drop_table("imap_claims")
