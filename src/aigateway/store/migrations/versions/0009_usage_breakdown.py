"""usage_records: the usage breakdown a cost was computed from (cache reads/writes, reasoning, images, fees)

Revision ID: 0009_usage_breakdown
Revises: 0006_usage_capped
"""
import sqlalchemy as sa
from alembic import op

revision = '0009_usage_breakdown'
down_revision = '0006_usage_capped'
branch_labels = None
depends_on = None

_COLUMNS = ("cached_tokens", "cache_write_tokens", "cache_write_long_tokens", "reasoning_tokens", "images",
            "request_fees")


def upgrade() -> None:
    # server_default: existing rows had no breakdown (plain prices); a column added NOT NULL needs a value.
    with op.batch_alter_table("usage_records") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
