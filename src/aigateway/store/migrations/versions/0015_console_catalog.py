"""console catalog: providers and models defined in the database

Revision ID: 0015_console_catalog
Revises:
Depends on: 0001_core
"""
import sqlalchemy as sa
from alembic import op

revision = '0015_console_catalog'
down_revision = None
branch_labels = ('console_catalog',)
depends_on = '0001_core'


def upgrade() -> None:
    op.create_table(
        'catalog_providers',
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('base_url', sa.String(length=500), nullable=False),
        sa.Column('api_key_env', sa.String(length=200), nullable=True),
        sa.Column('api_key_enc', sa.Text(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_catalog_providers')),
    )
    op.create_table(
        'catalog_models',
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('type', sa.String(length=20), nullable=False),
        sa.Column('routes', sa.Text(), nullable=False),
        sa.Column('context_length', sa.Integer(), nullable=True),
        sa.Column('max_output_tokens', sa.Integer(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_catalog_models')),
    )


def downgrade() -> None:
    op.drop_table('catalog_models')
    op.drop_table('catalog_providers')
