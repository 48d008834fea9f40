"""keylimits: per-key spend cap, rates, concurrency, expiry

Revision ID: 0010_key_limits
Revises:
Depends on: 0001_core
"""
import sqlalchemy as sa
from alembic import op

revision = '0010_key_limits'
down_revision = None
branch_labels = ('keylimits',)
depends_on = '0001_core'


def upgrade() -> None:
    op.create_table(
        'api_key_limits',
        sa.Column('key_id', sa.Integer(), nullable=False),
        sa.Column('spend_cap', sa.BigInteger(), nullable=True),
        sa.Column('spend_period', sa.String(length=10), nullable=False),
        sa.Column('rpm', sa.Integer(), nullable=True),
        sa.Column('tpm', sa.Integer(), nullable=True),
        sa.Column('concurrency', sa.Integer(), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], name=op.f('fk_api_key_limits_key_id_api_keys')),
        sa.PrimaryKeyConstraint('key_id', name=op.f('pk_api_key_limits')),
    )


def downgrade() -> None:
    op.drop_table('api_key_limits')
