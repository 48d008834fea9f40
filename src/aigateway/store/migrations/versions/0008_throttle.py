"""throttle: atomic attempt counters shared by login and voucher redemption

Revision ID: 0008_throttle
Revises:
Depends on: 0001_core
"""
import sqlalchemy as sa
from alembic import op

revision = '0008_throttle'
down_revision = None
branch_labels = ('throttle',)
depends_on = '0001_core'


def upgrade() -> None:
    op.create_table(
        'throttle_counters',
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('scope', sa.String(length=40), nullable=False),
        sa.Column('label', sa.String(length=120), nullable=True),
        sa.Column('hits', sa.Integer(), nullable=False),
        sa.Column('last_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('key_hash', name=op.f('pk_throttle_counters')),
    )
    op.create_index('ix_throttle_counters_scope_last', 'throttle_counters', ['scope', 'last_ms'])


def downgrade() -> None:
    op.drop_index('ix_throttle_counters_scope_last', table_name='throttle_counters')
    op.drop_table('throttle_counters')
