"""review: the rows of the result document, their answers, supersessions and the review history (issue 18)

`review_groups` is one row of 「提出された意見及び考え方」 (one comment item, or several to the same effect) in a
section of the outline, with its answer (考え方, 修正の有無, state) and `version`, the answer's optimistic lock.
`review_items` puts each comment item (record id + index) in one group. `review_supersessions` marks a record
replaced by a later one from the same submitter. `review_events` is the append-only history.

Revision ID: 0010_review
Revises: 0009_short_word_search
Create Date: 2026-12-02 01:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_review"
down_revision = "0009_short_word_search"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "review_groups",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("section", sa.String(length=64), nullable=False),
        sa.Column("placed_by", sa.String(length=64), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("revised", sa.String(length=2), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("answered_by", sa.String(length=64), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_groups_section", "review_groups", ["section"])
    op.create_table(
        "review_items",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("message_pk", _ID, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("item_index", sa.Integer(), nullable=False),
        sa.Column("group_id", _ID, sa.ForeignKey("review_groups.id"), nullable=False),
        sa.Column("auto_section", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_pk", "item_index", name="uq_review_items_item"),
    )
    op.create_index("ix_review_items_message_pk", "review_items", ["message_pk"])
    op.create_index("ix_review_items_group_id", "review_items", ["group_id"])
    op.create_table(
        "review_supersessions",
        sa.Column("message_pk", _ID, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("replaced_by", _ID, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("message_pk"),
    )
    op.create_index("ix_review_supersessions_replaced_by", "review_supersessions", ["replaced_by"])
    op.create_table(
        "review_events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=True),
        sa.Column("message_pk", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_events_group_id", "review_events", ["group_id", "id"])


def downgrade() -> None:
    op.drop_table("review_events")
    op.drop_table("review_supersessions")
    op.drop_table("review_items")
    op.drop_table("review_groups")
