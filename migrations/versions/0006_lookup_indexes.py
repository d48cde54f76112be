"""lookup indexes that also give the order: messages (content_id, id), comment_keys (key, message_pk)

"The first record with this content / this comment text" is `… WHERE x = ? ORDER BY id LIMIT 1`. With an
index on x alone, PostgreSQL chose to walk the primary key and filter, reading every record for content
it had not seen (the usual case): 3.5 ms at 10,000 records, 16 ms at 50,000 (BENCHMARKS.md). The composite
indexes answer both the filter and the order; they replace the single-column ones they start with.

Revision ID: 0006_lookup_indexes
Revises: 0005_alerts
Create Date: 2026-11-26 17:55:00
"""

from __future__ import annotations

from alembic import op

revision = "0006_lookup_indexes"
down_revision = "0005_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_content_id_id", ["content_id", "id"], unique=False)
        batch_op.drop_index("ix_messages_content_id")
    with op.batch_alter_table("comment_keys", schema=None) as batch_op:
        batch_op.create_index("ix_comment_keys_key_message_pk", ["key", "message_pk"], unique=False)
        batch_op.drop_index("ix_comment_keys_key")


def downgrade() -> None:
    with op.batch_alter_table("comment_keys", schema=None) as batch_op:
        batch_op.create_index("ix_comment_keys_key", ["key"], unique=False)
        batch_op.drop_index("ix_comment_keys_key_message_pk")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_content_id", ["content_id"], unique=False)
        batch_op.drop_index("ix_messages_content_id_id")
