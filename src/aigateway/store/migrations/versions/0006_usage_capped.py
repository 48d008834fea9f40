"""usage_records.capped: the record was charged its hold, not the upstream's (larger) reported usage

Revision ID: 0006_usage_capped
Revises: 0005_core_indexes
"""
import sqlalchemy as sa
from alembic import op

revision = '0006_usage_capped'
down_revision = '0005_core_indexes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # server_default: existing rows were never capped; a column added NOT NULL needs a value.
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("capped", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_usage_capped_created", "usage_records", ["created_at"],
                    postgresql_where=sa.text("capped"), sqlite_where=sa.text("capped"))


def downgrade() -> None:
    op.drop_index("ix_usage_capped_created", table_name="usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("capped")
