"""console catalog: a model's price source and markup (instead of a hand-set price)

Revision ID: 0016_console_model_pricing
Revises: 0015_console_catalog
"""
import sqlalchemy as sa
from alembic import op

revision = '0016_console_model_pricing'
down_revision = '0015_console_catalog'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('catalog_models') as batch:
        batch.add_column(sa.Column('price_source', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('price_source_model', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('markup', sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('catalog_models') as batch:
        batch.drop_column('markup')
        batch.drop_column('price_source_model')
        batch.drop_column('price_source')
