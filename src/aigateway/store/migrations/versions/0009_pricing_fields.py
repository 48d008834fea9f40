"""price_versions: cache read/write, reasoning, per-request, per-image prices and long-context tiers

Revision ID: 0009_pricing_fields
Revises: 0006_pricing_held_limits
"""
import sqlalchemy as sa
from alembic import op

revision = '0009_pricing_fields'
down_revision = '0006_pricing_held_limits'
branch_labels = None
depends_on = None

_PRICES = ("cached_input_price", "cache_write_price", "cache_write_long_price", "reasoning_price",
           "request_price", "image_price")


def upgrade() -> None:
    # All NULL for existing versions: they keep meaning exactly what they did (plain prices).
    with op.batch_alter_table("price_versions") as batch:
        for name in _PRICES:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("tiers", sa.Text(), nullable=True))
    with op.batch_alter_table("price_version_details") as batch:
        batch.add_column(sa.Column("usd_extra", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("price_version_details") as batch:
        batch.drop_column("usd_extra")
    with op.batch_alter_table("price_versions") as batch:
        batch.drop_column("tiers")
        for name in reversed(_PRICES):
            batch.drop_column(name)
