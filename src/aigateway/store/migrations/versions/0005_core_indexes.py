"""index customers.updated_at: every process's balance and key refreshers filter on it each second

Revision ID: 0005_core_indexes
Revises: 0001_core
"""
from alembic import op

revision = '0005_core_indexes'
down_revision = '0001_core'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_customers_updated_at", "customers", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_customers_updated_at", table_name="customers")
